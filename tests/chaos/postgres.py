"""A PostgreSQL of the chaos run's own, which it stops, kills and starts at will.

Its own ``initdb`` data directory, on a free loopback port, with a password
(SCRAM) that every command connects with, so that the run can check that the
password never shows in anything payout-core prints. The binaries are the
embedded PostgreSQL's (``pgserver``), or else the machine's. PostgreSQL
refuses to run as root: as root, the server runs as an unprivileged user
(``pgserver``'s, or ``postgres``).

``fsync`` is off: the server is killed (``-m immediate``), never the machine,
so nothing the kernel holds is lost, and a run spends no time on disks.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import psycopg

__all__ = ["OwnPostgres", "own_postgres"]

USER = "payout"
DATABASE = "payout"
START_DEADLINE = 60.0


def _bin_dir() -> Path:
    """Where ``initdb``, ``pg_ctl`` and ``postgres`` are."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        from payout_adapters import embedded  # noqa: PLC0415

        candidates.append(Path(embedded._pgserver().__file__).parent / "pginstall" / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    raise RuntimeError("no PostgreSQL binaries: pip install -e '.[dev]' (pgserver) or a server")


def _server_user() -> str | None:
    """Who runs the server: ourselves, or, as root, an unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@attrs.define
class OwnPostgres:
    """One server: :meth:`stop` (fast or immediate) and :meth:`start` again on the
    same port, so the URL every worker holds stays right."""

    directory: Path
    port: int
    password: str = attrs.field(repr=False)
    bin_dir: Path
    user: str | None
    running: bool = False

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> None:
        log = self.directory / "pg_ctl.out"
        with log.open("ab") as out:  # files, not pipes: the postmaster inherits them
            done = subprocess.run(
                [str(self.bin_dir / args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                user=self.user,
                timeout=START_DEADLINE * 2,
                check=False,
                cwd=self.directory,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}):\n{tail}")

    def init(self) -> None:
        self.directory.chmod(0o755)  # the server's user must reach its data
        pwfile = self.directory / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.directory, info.pw_uid, info.pw_gid)
            os.chown(pwfile, info.pw_uid, info.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        pwfile.unlink()

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                "-c unix_socket_directories=''",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_DEADLINE)),
            "start",
        )
        self.running = True
        self.wait_ready()

    def stop(self, *, immediate: bool = False) -> None:
        """Stop the server: ``fast`` ends every session and shuts down cleanly;
        ``immediate`` is a crash (no checkpoint; recovery at the next start)."""
        self.running = False
        mode = "immediate" if immediate else "fast"
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def wait_ready(self, database: str = "postgres") -> None:
        url = f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"
        end = time.monotonic() + START_DEADLINE
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def create_database(self) -> None:
        admin = f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def server_log(self) -> str:
        log = self.data_dir / "server.log"
        return log.read_text(errors="replace") if log.exists() else ""


@contextlib.contextmanager
def own_postgres(keep_log_in: Path) -> Iterator[OwnPostgres]:
    """A fresh server with the payout database created; stopped at the end,
    whatever happened, its log copied to ``keep_log_in/postgres.log`` and its
    data deleted.

    The data lives in a directory of its own under the system's temporary
    directory: the server's user must reach it, and a test's ``tmp_path``
    (mode 0700, root's) would not let it.
    """
    directory = Path(tempfile.mkdtemp(prefix="payout-chaos-pg-"))
    server = OwnPostgres(
        directory=directory,
        port=free_port(),
        password=secrets.token_hex(16),
        bin_dir=_bin_dir(),
        user=_server_user(),
    )
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        if (server.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                server.stop(immediate=True)
        keep_log_in.mkdir(parents=True, exist_ok=True)
        (keep_log_in / "postgres.log").write_text(
            server.server_log() + (directory / "pg_ctl.out").read_text(errors="replace")
            if (directory / "pg_ctl.out").exists()
            else server.server_log()
        )
        shutil.rmtree(directory, ignore_errors=True)
