"""An embedded PostgreSQL for a laptop with no database URL (the ``embedded`` extra).

:func:`start` runs a real PostgreSQL server from the ``pgserver`` package,
with its data in the user's data directory (``platformdirs.user_data_dir("payout-core")``,
e.g. ``~/.local/share/payout-core/postgres`` on Linux). The first call
initialises the directory and starts the server; later calls, from this
process or any other, find it running and reuse it. By default it keeps
running after the process exits, so the next command starts instantly; it
listens on a Unix socket in its data directory only, never on the network.

Show :attr:`EmbeddedServer.data_dir` to the user: it is where their payouts live.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, Final, Literal

import attrs

__all__ = ["DATABASE", "EmbeddedServer", "default_data_dir", "start"]

# The database payout-core uses inside the embedded server.
DATABASE: Final = "payout"

AtExit = Literal["keep_running", "stop", "delete"]
_CLEANUP: Final[dict[str, str | None]] = {"keep_running": None, "stop": "stop", "delete": "delete"}


@attrs.frozen
class EmbeddedServer:
    url: str = attrs.field(repr=False)  # a libpq URL to the payout database
    data_dir: Path


def _pgserver() -> Any:
    """Import pgserver quietly.

    Importing it asks platformdirs for the user's runtime directory, which
    warns (``RuntimeDirWarning``) when ``XDG_RUNTIME_DIR`` is unset, as under
    cron, in containers and as root; pgserver then falls back to
    ``/tmp/runtime-<uid>``, which is what we want anyway.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        try:
            import pgserver  # noqa: PLC0415 - optional; loaded only when used
        except ImportError as exc:
            raise RuntimeError(
                "no database URL is set and the embedded PostgreSQL is not installed: "
                "set PAYOUT_DATABASE_URL, or install payout-core[embedded]"
            ) from exc
    return pgserver


def default_data_dir() -> Path:
    """Where the embedded server keeps its data unless told otherwise."""
    import platformdirs  # noqa: PLC0415 - installed with pgserver

    return Path(platformdirs.user_data_dir("payout-core")) / "postgres"


def start(data_dir: Path | None = None, *, at_exit: AtExit = "keep_running") -> EmbeddedServer:
    """Start the embedded server in ``data_dir`` (default :func:`default_data_dir`),
    or find it running, and make sure the payout database exists.

    ``at_exit`` is what happens when this process exits: the server keeps
    running for the next command (the default), or stops, or stops and its
    directory is deleted (for tests), once no other process is using it.

    Raises:
        RuntimeError: ``pgserver`` is not installed.
        OSError, subprocess.CalledProcessError: the server could not start
            (its log is ``<data_dir>/log``).
    """
    pgserver = _pgserver()
    pgdata = (data_dir or default_data_dir()).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        server = pgserver.get_server(pgdata, cleanup_mode=_CLEANUP[at_exit])
    _create_database(str(server.get_uri()))
    return EmbeddedServer(url=str(server.get_uri(DATABASE)), data_dir=pgdata)


def _create_database(maintenance_url: str) -> None:
    import psycopg  # noqa: PLC0415
    from psycopg import errors  # noqa: PLC0415

    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is not None:
            return
        with contextlib.suppress(errors.DuplicateDatabase):  # another process was first
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
