"""Apply the numbered SQL files of ``migrations/``, each once, in order.

* Each file runs in its own transaction, recorded in ``payout_schema_migrations``
  (name, sha256 of the file) in that same transaction: a file is applied and
  recorded together, or not at all.
* The whole run holds a PostgreSQL advisory lock, so any number of processes
  on any number of hosts may migrate at once: one applies, the others wait and
  then find nothing left to do.
* A file changed after it was applied is refused before anything runs: the
  database no longer matches the file, and a person must decide what to do.
* The session migrates with its own ``statement_timeout``, an hour by default:
  far above the workers' (a file may build an index over the whole ledger),
  short of forever. A pooled connection goes back to the pool with its own.
* Run it as the role that owns the tables (it creates them); the workers'
  roles are granted what they need by the files (0012), and never migrate.

Where the files are: a wheel carries them inside the package
(``payout_adapters/postgres/migrations``, see pyproject's ``force-include``);
a source checkout or editable install reads ``<repo>/migrations``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import psycopg
import psycopg_pool

from payout_adapters.postgres import translate
from payout_core import errors

__all__ = [
    "MIGRATION_STATEMENT_TIMEOUT_SECONDS",
    "Migration",
    "MigrationError",
    "default_directory",
    "migrate",
    "migration_files",
    "pending_migrations",
]

_NAME: Final = re.compile(r"(?P<number>\d{4})_[a-z0-9_]+\.sql")

# How long one statement of a migration may run. Files build indexes over
# whole tables (0011: about a second per million ledger rows); an hour leaves
# room for the largest, and still ends a migration stuck behind a lock.
MIGRATION_STATEMENT_TIMEOUT_SECONDS: Final = 3600.0

# -- the migrator's own statements (the store's are in sql/queries.sql) ------------

# One advisory lock for every migrating process of every host: two `migrate`
# runs at once apply each file once, in order. Session-level, held across the
# per-file transactions and released at the end (or when the session ends).
MIGRATION_LOCK_ID: Final = 7_305_867_011_232_010_573  # fixed; any bigint works

_ACQUIRE_MIGRATION_LOCK: Final = "SELECT pg_advisory_lock(%(lock_id)s)"

_RELEASE_MIGRATION_LOCK: Final = "SELECT pg_advisory_unlock(%(lock_id)s)"

# The migrations' own bookkeeping, created under the lock before anything else.
_CREATE_MIGRATIONS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS payout_schema_migrations (
    name        text        PRIMARY KEY,
    checksum    text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

# Whether any migration ever ran here (read without the lock, to report, never to apply).
_MIGRATIONS_TABLE_EXISTS: Final = "SELECT to_regclass('payout_schema_migrations') IS NOT NULL"

_APPLIED_MIGRATIONS: Final = "SELECT name, checksum FROM payout_schema_migrations ORDER BY name"

# In the same transaction as the file's own statements: applied and recorded together.
_RECORD_MIGRATION: Final = """
INSERT INTO payout_schema_migrations (name, checksum) VALUES (%(name)s, %(checksum)s)
"""

# The migrating session's own statement_timeout (set_config: SET takes no
# parameters), then back to the one the session started with (a pooled
# connection's, from its startup options).
_SET_STATEMENT_TIMEOUT: Final = "SELECT set_config('statement_timeout', %(timeout)s, false)"
_RESET_STATEMENT_TIMEOUT: Final = "RESET statement_timeout"


class MigrationError(errors.PayoutError):
    """A migration cannot be applied, or the database disagrees with the files.

    ``name`` is the file concerned (``None`` when the whole set is at fault).
    """

    def __init__(self, name: str | None, message: str) -> None:
        self.name = name
        super().__init__(f"migration {name}: {message}" if name else message)


@attrs.frozen(kw_only=True)
class Migration:
    name: str
    sql: str
    checksum: str  # sha256 of the file's bytes, hex


def default_directory() -> Path:
    """The migrations shipped in the wheel, else those of the source checkout."""
    shipped = importlib.resources.files("payout_adapters.postgres").joinpath("migrations")
    if shipped.is_dir():
        return Path(str(shipped))
    # src/payout_adapters/postgres/migrate.py -> <repo>/migrations
    checkout = Path(__file__).resolve().parents[3] / "migrations"
    if checkout.is_dir():
        return checkout
    raise MigrationError(
        None,
        f"no migrations found: neither {shipped} (an installed wheel) nor {checkout} "
        "(a source checkout) exists",
    )


def migration_files(directory: Path) -> list[Migration]:
    """Every migration file of ``directory``, in order.

    Raises:
        MigrationError: a ``.sql`` file is misnamed, or two share a number.
    """
    found: dict[str, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(
                path.name, "is not named NNNN_lowercase_words.sql; rename it so its order is clear"
            )
        number = match["number"]
        if number in found:
            raise MigrationError(
                path.name, f"has the same number as {found[number].name}; renumber one of them"
            )
        data = path.read_bytes()
        found[number] = Migration(
            name=path.name, sql=data.decode("utf-8"), checksum=hashlib.sha256(data).hexdigest()
        )
    return [found[number] for number in sorted(found)]


def _check_applied(files: list[Migration], applied: dict[str, str]) -> None:
    """Refuse when an applied file changed or is unknown to this version."""
    known = {m.name: m for m in files}
    for name, checksum in sorted(applied.items()):
        migration = known.get(name)
        if migration is None:
            raise MigrationError(
                name,
                "is applied to the database but is not among this version's files; "
                "the database is newer than this payout-core (or the file was removed)",
            )
        if migration.checksum != checksum:
            raise MigrationError(
                name,
                f"was changed after it was applied (applied sha256 {checksum[:12]}..., "
                f"file now {migration.checksum[:12]}...); restore the file and put the "
                "change in a new migration",
            )


def _apply(conn: psycopg.Connection[Any], files: list[Migration]) -> list[str]:
    done: list[str] = []
    conn.execute(_ACQUIRE_MIGRATION_LOCK, {"lock_id": MIGRATION_LOCK_ID})
    try:
        with conn.transaction():
            conn.execute(_CREATE_MIGRATIONS_TABLE)
        applied = {str(name): str(checksum) for name, checksum in conn.execute(_APPLIED_MIGRATIONS)}
        _check_applied(files, applied)
        for migration in files:
            if migration.name in applied:
                continue
            try:
                with conn.transaction():
                    # No parameters: the file is sent as it is, several statements at once.
                    conn.execute(migration.sql.encode("utf-8"))
                    conn.execute(
                        _RECORD_MIGRATION, {"name": migration.name, "checksum": migration.checksum}
                    )
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise  # the database went away: StoreUnavailable, not a bad file
            except psycopg.Error as exc:
                raise MigrationError(migration.name, f"failed and was rolled back: {exc}") from exc
            done.append(migration.name)
    finally:
        if not conn.closed and not conn.broken:
            conn.execute(_RELEASE_MIGRATION_LOCK, {"lock_id": MIGRATION_LOCK_ID})
    return done


@contextlib.contextmanager
def _autocommit(target: str | psycopg_pool.ConnectionPool) -> Iterator[psycopg.Connection[Any]]:
    """A connection in autocommit mode: each file opens its own transaction."""
    if isinstance(target, str):
        with psycopg.connect(target, autocommit=True) as conn:
            yield conn
        return
    with target.connection() as pooled:
        previous = pooled.autocommit
        pooled.autocommit = True
        try:
            yield pooled
        finally:
            if not pooled.closed and not pooled.broken:
                pooled.autocommit = previous


@contextlib.contextmanager
def _statement_timeout(conn: psycopg.Connection[Any], seconds: float) -> Iterator[None]:
    """``conn`` (autocommit) with ``statement_timeout`` at ``seconds`` until the block ends."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"statement_timeout must be seconds > 0, got {seconds}")
    conn.execute(_SET_STATEMENT_TIMEOUT, {"timeout": f"{max(1, math.ceil(seconds * 1000))}ms"})
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute(_RESET_STATEMENT_TIMEOUT)


def migrate(
    target: str | psycopg_pool.ConnectionPool,
    directory: Path | str | None = None,
    *,
    statement_timeout: float = MIGRATION_STATEMENT_TIMEOUT_SECONDS,
) -> list[str]:
    """Apply the pending migrations; return the names applied, in order
    (empty when the database was up to date).

    ``target`` is a connection string (``postgresql://...`` or ``key=value``)
    or an open pool; ``directory`` overrides where the files are read from;
    ``statement_timeout`` (seconds) bounds each statement of the migrating
    session, whatever the pool's own.

    Raises:
        MigrationError: a file is misnamed, was changed after it was applied,
            is missing, or failed (its transaction was rolled back; the files
            before it stay applied).
        StoreUnavailable: the database could not be reached.
    """
    files = migration_files(Path(directory) if directory is not None else default_directory())
    with (
        translate.unavailable("migrate the database"),
        _autocommit(target) as conn,
        _statement_timeout(conn, statement_timeout),
    ):
        return _apply(conn, files)


def pending_migrations(
    target: str | psycopg_pool.ConnectionPool, directory: Path | str | None = None
) -> list[str]:
    """The migrations not yet applied, in order, without applying anything
    (a worker refuses to start on a schema that is behind).

    Raises:
        MigrationError: as :func:`migrate` would, for a changed or unknown file.
        StoreUnavailable: the database could not be reached.
    """
    files = migration_files(Path(directory) if directory is not None else default_directory())
    with translate.unavailable("read the schema version"), _autocommit(target) as conn:
        exists = conn.execute(_MIGRATIONS_TABLE_EXISTS).fetchone()
        applied: dict[str, str] = {}
        if exists is not None and exists[0]:
            applied = {
                str(name): str(checksum) for name, checksum in conn.execute(_APPLIED_MIGRATIONS)
            }
    _check_applied(files, applied)
    return [m.name for m in files if m.name not in applied]
