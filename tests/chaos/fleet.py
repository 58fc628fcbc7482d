"""The fleet: ``payout-core loop`` processes, started, killed and replaced.

Each worker slot is filled by one process after another (an *incarnation*):
the installed console script, as an operator runs it, with its output in
files of its own. Every incarnation remembers how it ended and whether the
run ended it (SIGKILL, or SIGTERM for a rolling restart or the end), so that
any other death is a finding.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from tests.integration import cli_helpers as cli

__all__ = ["Fleet", "Incarnation"]

_ADMIN_LINE = re.compile(r"admin endpoints on http://([^/\s]+)/")
_WEBHOOKS_LINE = re.compile(r"Stripe webhooks on (http://\S+)")
_STARTED = re.compile(r"payout-core loop on ")
START_DEADLINE = 60.0
STOP_DEADLINE = 60.0


@attrs.define
class Incarnation:
    slot: int
    number: int  # across the run, in start order
    process: subprocess.Popen[bytes]
    directory: Path
    started_at: float  # seconds into the run
    ended_by_us: str | None = None  # "SIGKILL", "SIGTERM"
    returncode: int | None = None
    admin_url: str | None = None
    webhooks_url: str | None = None
    _read_upto: int = 0  # how much of stderr was scanned for events

    @property
    def name(self) -> str:
        return f"w{self.slot}#{self.number}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def claim_prefix(self) -> str:
        """How its claim tokens begin (``host:pid/``; see ``payout-core loop``)."""
        return f"{socket.gethostname()}:{self.pid}/"

    @property
    def stdout_path(self) -> Path:
        return self.directory / "stdout"

    @property
    def stderr_path(self) -> Path:
        return self.directory / "stderr"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def new_events(self) -> Iterator[dict[str, Any]]:
        """The JSON log lines written since the last call."""
        with self.stderr_path.open("rb") as err:
            err.seek(self._read_upto)
            data = err.read()
        complete = data.rfind(b"\n") + 1
        self._read_upto += complete
        for line in data[:complete].decode(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def wait_started(self) -> None:
        """Until it serves its admin endpoints and has begun its loop."""
        end = time.monotonic() + START_DEADLINE
        while True:
            text = self.stderr()
            admin = _ADMIN_LINE.search(text)
            if admin is not None and _STARTED.search(text):
                self.admin_url = f"http://{admin.group(1)}"
                hook = _WEBHOOKS_LINE.search(text)
                self.webhooks_url = hook.group(1) if hook else None
                return
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}) while starting:\n{text}"
                )
            if time.monotonic() > end:
                raise AssertionError(f"{self.name} did not start:\n{text}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.ended_by_us = "SIGKILL"
        self.process.kill()
        self.returncode = self.process.wait(timeout=STOP_DEADLINE)

    def terminate(self) -> None:
        """SIGTERM, and wait for it to exit; one that does not within the
        deadline is killed, and its return code says ``None``."""
        self.ended_by_us = "SIGTERM"
        self.process.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE)
            self.returncode = None

    def how_it_ended(self) -> str:
        if self.returncode is None:
            return "did not exit within a minute of SIGTERM" if self.ended_by_us else "running"
        return f"exited {self.returncode}"

    def reap(self) -> None:
        """Whatever happened to it, make sure it is gone (the end of a run)."""
        if self.process.poll() is None:
            self.process.kill()
        self.returncode = self.process.wait(timeout=STOP_DEADLINE)


@attrs.define
class Fleet:
    directory: Path
    env: dict[str, str]
    clock: Any  # () -> seconds into the run
    slots: int
    incarnations: list[Incarnation] = attrs.Factory(list)

    def current(self, slot: int) -> Incarnation | None:
        mine = [i for i in self.incarnations if i.slot == slot]
        return mine[-1] if mine else None

    def live(self) -> list[Incarnation]:
        return [i for i in self.incarnations if i.ended_by_us is None and i.alive()]

    def start(self, slot: int, env: Mapping[str, str] | None = None) -> Incarnation:
        number = len(self.incarnations) + 1
        directory = self.directory / f"w{slot}-{number:03d}"
        directory.mkdir(parents=True)
        with (directory / "stdout").open("wb") as out, (directory / "stderr").open("wb") as err:
            process = subprocess.Popen(
                [cli.executable(), "loop"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env or self.env),
            )
        incarnation = Incarnation(
            slot=slot,
            number=number,
            process=process,
            directory=directory,
            started_at=self.clock(),
        )
        self.incarnations.append(incarnation)
        incarnation.wait_started()
        return incarnation

    def start_all(self) -> None:
        for slot in range(self.slots):
            self.start(slot)

    def unexpected_deaths(self) -> list[Incarnation]:
        """Incarnations that ended without the run ending them."""
        return [i for i in self.incarnations if i.ended_by_us is None and not i.alive()]

    def reap_all(self) -> None:
        for incarnation in self.incarnations:
            incarnation.reap()
