"""A real PostgreSQL for every integration test, found without asking anyone to set one up.

One fixture, :func:`postgres_server`, picks the server, in this order:

1. ``PAYOUT_TEST_DATABASE_URL``, when set (CI, or your own server). The role
   needs ``CREATEDB``: the tests make their own databases on that server and
   drop them afterwards; the database named in the URL is only used to run
   ``CREATE DATABASE`` and is never written to.
2. A throwaway PostgreSQL container (testcontainers), when a Docker engine answers.
3. Otherwise the embedded PostgreSQL (``pgserver``) in a temporary directory,
   deleted when the session ends: what a fresh laptop gets.

No test is ever skipped for want of a database.

Beside the database: the fake Stripe server on a clock the test moves
(:func:`stripe`, :func:`stripe_time`), and :func:`begin`, which starts an
exactly-once story (:mod:`tests.integration.stories`).

Isolation: the migrations are applied once, to a template database; every test
that asks for ``database_url`` gets a fresh ``CREATE DATABASE ... TEMPLATE``
copy of it, dropped after the test. The ledger refuses TRUNCATE and DELETE, so
dropping the database is also the only honest way to empty it. A copy costs a
tenth of a second on an idle disk and several tenths on a busy one, so
:class:`_Copies` makes them ahead, and drops the used ones, in threads of their
own while the tests run.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import psycopg
import psycopg_pool
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from payout_adapters import postgres
from tests import fake_stripe
from tests.integration.stories import Story

log = logging.getLogger(__name__)

ENV_URL = "PAYOUT_TEST_DATABASE_URL"
_HERE = Path(__file__).parent
_PREFIX = f"payout_it_{os.getpid()}_{secrets.token_hex(3)}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in tests/integration needs the database: mark it ``integration``."""
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@attrs.frozen
class PostgresServer:
    """A server the tests may create databases on."""

    admin_url: str = attrs.field(repr=False)  # a database to run CREATE/DROP DATABASE from
    source: str  # which of the three ways found it

    def url(self, database: str) -> str:
        return make_conninfo(self.admin_url, dbname=database)

    def create_database(self, name: str, *, template: str = "template0") -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _docker_answers() -> bool:
    """Whether a Docker engine responds, within a couple of seconds; never raises."""
    with warnings.catch_warnings():
        # A failed ping leaves its socket to the garbage collector, which would
        # warn (an error under filterwarnings=error) in some later test.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # type: ignore[import-untyped]  # noqa: PLC0415

            client = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # no socket, no permission, no engine: no Docker
            return False
        finally:
            gc.collect()


@contextlib.contextmanager
def _container() -> Iterator[PostgresServer]:
    try:
        from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415
    except ImportError:  # testcontainers < 4.14 kept it here
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield PostgresServer(admin_url=container.get_connection_url(), source="testcontainers")


@contextlib.contextmanager
def _embedded() -> Iterator[PostgresServer]:
    from payout_adapters import embedded  # noqa: PLC0415

    directory = Path(tempfile.mkdtemp(prefix="payout-it-pg-"))
    try:
        # at_exit="delete": the server stops and the directory goes when pytest exits.
        server = embedded.start(directory, at_exit="delete")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    yield PostgresServer(admin_url=server.url, source=f"embedded ({server.data_dir})")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The one place that decides which PostgreSQL the integration tests use."""
    url = os.environ.get(ENV_URL)
    finder: contextlib.AbstractContextManager[PostgresServer]
    if url:
        finder = contextlib.nullcontext(PostgresServer(admin_url=url, source=ENV_URL))
    elif _docker_answers():
        finder = _container()
    else:
        finder = _embedded()
    with finder as server:
        log.info("integration tests on PostgreSQL from %s", server.source)
        yield server


@pytest.fixture(scope="session")
def template_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database with every migration applied, copied for each test."""
    name = f"{_PREFIX}_template"
    url = postgres_server.create_database(name)
    try:
        postgres.migrate(url)
        yield name
    finally:
        postgres_server.drop_database(name)


_counter = iter(range(1, 1_000_000))


# How many threads make copies, and how many copies wait ready. Measured on the
# 2-core CI machine with its disk busy (2026-11-30), 203 tests of test_postgres_store,
# test_cli_ledger_export, test_schema and test_postgres_events: 86-92 s with each
# copy made by its test, 70-72 s with one maker, 59-61 s with two, 38-40 s with four.
_MAKERS = 4
_AHEAD = 2 * _MAKERS


class _Copies:
    """Fresh copies of the template, made ahead by threads of their own, and
    the used ones dropped there too: the disk's work overlaps the tests' instead
    of adding to it (a copy waits mostly on the disk, so several are made at
    once). Each copy is still used by one test only."""

    def __init__(self, server: PostgresServer, template: str, *, ahead: int = _AHEAD) -> None:
        self._server, self._template, self._ahead = server, template, ahead
        self._ready: queue.Queue[str] = queue.Queue()
        self._used: queue.Queue[str] = queue.Queue()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._failure: BaseException | None = None
        self._threads = [
            threading.Thread(target=self._work, name=f"test-databases-{n}", daemon=True)
            for n in range(_MAKERS)
        ]
        for thread in self._threads:
            thread.start()

    def take(self) -> str:
        """A fresh copy's name, waiting for one if none is ready."""
        while True:
            try:
                return self._ready.get(timeout=0.5)
            except queue.Empty:
                if self._failure is not None:
                    raise RuntimeError("the test databases could not be made") from self._failure
                self._wake.set()

    def give_back(self, name: str) -> None:
        """``name`` is done with: dropped in the background."""
        self._used.put(name)
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=120)
        for leftovers in (self._ready, self._used):
            while not leftovers.empty():
                self._server.drop_database(leftovers.get_nowait())

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                # A test waiting for a copy comes first; then the used ones go.
                if self._ready.qsize() < self._ahead and (
                    self._ready.empty() or self._used.empty()
                ):
                    name = f"{_PREFIX}_{next(_counter)}"
                    self._server.create_database(name, template=self._template)
                    self._ready.put(name)
                    continue
                try:
                    used = self._used.get_nowait()
                except queue.Empty:  # none, or another maker took it
                    self._wake.wait(1.0)
                    self._wake.clear()
                else:
                    self._server.drop_database(used)
        except BaseException as exc:  # told to the next test that takes a copy
            self._failure = exc


@pytest.fixture(scope="session")
def _copies(postgres_server: PostgresServer, template_database: str) -> Iterator[_Copies]:
    copies = _Copies(postgres_server, template_database)
    try:
        yield copies
    finally:
        copies.close()


@pytest.fixture
def database_url(postgres_server: PostgresServer, _copies: _Copies) -> Iterator[str]:
    """A fresh, migrated database of this test's own, dropped afterwards."""
    name = _copies.take()
    try:
        yield postgres_server.url(name)
    finally:
        _copies.give_back(name)


@pytest.fixture
def empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with nothing in it (for the migration tests)."""
    name = f"{_PREFIX}_{next(_counter)}_empty"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def pool(database_url: str) -> Iterator[psycopg_pool.ConnectionPool]:
    pool = postgres.connect_pool(database_url, max_size=8)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def admin(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A plain autocommit connection to the test's database, for raw SQL."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


# -- the fake Stripe, and the stories told against it ------------------------------------------


@pytest.fixture
def stripe_time() -> fake_stripe.ManualTime:
    """The fake Stripe's own clock: it moves only when the test moves it."""
    return fake_stripe.ManualTime()


@pytest.fixture
def stripe(stripe_time: fake_stripe.ManualTime) -> Iterator[fake_stripe.FakeStripeServer]:
    """The fake Stripe server, on :func:`stripe_time`."""
    with fake_stripe.running(fake_stripe.FakeStripe(clock=stripe_time)) as server:
        yield server


@pytest.fixture
def begin(
    database_url: str,
    stripe: fake_stripe.FakeStripeServer,
    stripe_time: fake_stripe.ManualTime,
    tmp_path: Path,
) -> Callable[..., Story]:
    """Start a story: ``begin(max_attempts=...)``."""
    return functools.partial(Story.begin, database_url, stripe, stripe_time, tmp_path)
