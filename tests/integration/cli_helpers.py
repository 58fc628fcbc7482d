"""Running the installed ``payout-core`` command as a user would, for the CLI tests.

Every command runs in a subprocess from the console script next to this
interpreter, with an environment cleaned of the developer's own ``PAYOUT_*``
and ``STRIPE_*`` variables, so what a test sets is all the command sees.

Waiting for a long-running ``loop`` is done by polling for what it does (a
line it prints, a row it writes, an answer of its admin server) with the kit's
:func:`~tests.kit.waiting.wait_for`, whose generous deadline only exists so
that a broken build fails instead of hanging: no assertion here is about how
long anything took.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict

from payout_adapters import embedded
from tests import fake_stripe
from tests.kit.builders import settlement_json as settlement  # re-exported: the CLI tests' name
from tests.kit.waiting import wait_for

__all__ = [
    "CommandResult",
    "DedicatedPostgres",
    "LoopProcess",
    "cli_env",
    "dedicated_postgres",
    "executable",
    "http_get",
    "query",
    "run_cli",
    "settlement",
    "start_loop",
    "stop_embedded",
    "stripe_env",
]

# Deadlines against hangs, not measurements.
COMMAND_DEADLINE = 120.0


def executable() -> str:
    """The installed ``payout-core`` console script of this virtualenv."""
    beside = Path(sys.executable).parent / "payout-core"
    if beside.exists():
        return str(beside)
    found = shutil.which("payout-core")
    if found is None:
        raise RuntimeError("payout-core is not installed: pip install -e .[dev]")
    return found


def cli_env(database_url: str | None = None, **variables: str) -> dict[str, str]:
    """This process's environment without any payout or Stripe setting, plus ``variables``.

    The admin server is off unless a test asks for it, so that parallel loops
    never race for the default port.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAYOUT_", "STRIPE_")) and k != "COLUMNS"
    }
    env["PAYOUT_ADMIN_ADDR"] = "off"
    if database_url is not None:
        env["PAYOUT_DATABASE_URL"] = database_url
    env.update(variables)
    return env


def stripe_env(
    database_url: str, stripe: fake_stripe.FakeStripeServer, **variables: str
) -> dict[str, str]:
    """:func:`cli_env` with the key and address of the fake Stripe ``stripe``."""
    return cli_env(
        database_url, STRIPE_API_KEY=stripe.api_key, PAYOUT_STRIPE_API_BASE=stripe.url, **variables
    )


@attrs.frozen
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def describe(self) -> str:
        return (
            f"payout-core {' '.join(self.args)} exited {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def run_cli(
    *args: str, env: Mapping[str, str], stdin: str | None = None, cwd: Path | None = None
) -> CommandResult:
    """Run ``payout-core ARGS`` to completion."""
    done = subprocess.run(
        [executable(), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=COMMAND_DEADLINE,
        check=False,
    )
    return CommandResult(
        args=tuple(args), returncode=done.returncode, stdout=done.stdout, stderr=done.stderr
    )


_ADMIN_LINE = re.compile(r"admin endpoints on http://([^/\s]+)/")
_WEBHOOKS_LINE = re.compile(r"Stripe webhooks on (http://\S+)")


@attrs.define
class LoopProcess:
    """A ``payout-core loop`` running in the background, its output in files."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_for_output(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in what the loop wrote to stderr."""

        def probe() -> re.Match[str] | None:
            found = re.search(pattern, self.stderr)
            if found is None and not self.running():
                raise AssertionError(
                    f"the loop exited ({self.process.returncode}) before printing "
                    f"{pattern!r}:\n{self.stderr}"
                )
            return found

        return wait_for(f"{pattern!r} in the loop's output", probe)

    def admin_url(self) -> str:
        return f"http://{self.wait_for_output(_ADMIN_LINE.pattern).group(1)}"

    def webhooks_url(self) -> str:
        """Where the process receives Stripe's events (``webhooks serve``, or a
        ``loop`` with ``PAYOUT_WEBHOOK_ADDR``)."""
        return self.wait_for_output(_WEBHOOKS_LINE.pattern).group(1)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def describe(self) -> str:
        return f"--- loop stdout\n{self.stdout}\n--- loop stderr\n{self.stderr}"


@contextlib.contextmanager
def start_loop(
    *args: str, env: Mapping[str, str], directory: Path, command: tuple[str, ...] = ("loop",)
) -> Iterator[LoopProcess]:
    """``payout-core loop ARGS`` (or another long-running ``command``) in the
    background; killed at the end if still running."""
    stdout_path, stderr_path = directory / "loop.stdout", directory / "loop.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [executable(), *command, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env),
        )
    loop = LoopProcess(process=process, stdout_path=stdout_path, stderr_path=stderr_path)
    try:
        yield loop
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def http_get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback http
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def query(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one statement on the test's own database (autocommit)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


# -- a PostgreSQL server a test may stop and start -----------------------------------------------


def _pg_ctl(data_dir: Path, *args: str) -> None:
    """Run pgserver's own pg_ctl on ``data_dir``, as the user pgserver runs it as."""
    # The same quiet import the adapter uses.
    pgserver = embedded._pgserver()
    user = "pgserver" if os.geteuid() == 0 else None  # pgserver never runs postgres as root
    # pgserver's wrapper sends pg_ctl's output to files: with pipes, the
    # postmaster would inherit them and hold them open.
    pgserver.pg_ctl(["-w", *args], pgdata=data_dir, user=user, timeout=COMMAND_DEADLINE)


def stop_embedded(data_dir: Path) -> None:
    """Stop an embedded server left running (the demo keeps its server up on purpose)."""
    if (data_dir / "postmaster.pid").exists():
        _pg_ctl(data_dir, "-m", "fast", "stop")


@attrs.frozen
class DedicatedPostgres:
    """An embedded PostgreSQL of one test's own, which the test may stop and start."""

    url: str = attrs.field(repr=False)
    data_dir: Path

    def stop(self) -> None:
        _pg_ctl(self.data_dir, "-m", "fast", "stop")

    def start(self) -> None:
        # As pgserver starts it: no TCP listener, a Unix socket in the same directory.
        socket_dir = conninfo_to_dict(self.url)["host"]
        _pg_ctl(
            self.data_dir,
            "-o",
            '-h ""',
            "-o",
            f"-k {socket_dir}",
            "-l",
            str(self.data_dir / "log"),
            "start",
        )


@contextlib.contextmanager
def dedicated_postgres(directory: Path) -> Iterator[DedicatedPostgres]:
    """Start a server in ``directory``; stopped at the end, and deleted when pytest exits."""
    server = embedded.start(directory, at_exit="delete")
    dedicated = DedicatedPostgres(url=server.url, data_dir=server.data_dir)
    try:
        yield dedicated
    finally:
        stop_embedded(dedicated.data_dir)
