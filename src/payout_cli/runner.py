"""The long-running loop: a tick at start, then one every interval, until told to stop.

The loop itself owns no payout logic: each tick is
:func:`payout_core.services.tick.run_tick`. What lives here is time (the
interruptible wait, the back-off after a systemic halt), the registry served
at ``/admin/jobs``, and the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs

from payout_cli import metrics as metrics_
from payout_core import models, ports

__all__ = ["Registry", "Runner"]

log = logging.getLogger("payout.runner")

# After a systemic halt (bad key, empty balance) the next ticks wait longer, up
# to this, so that a broken key does not hammer Stripe every interval.
MAX_HALT_BACKOFF_SECONDS = 3600.0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def report_as_dict(report: models.RunReport) -> dict[str, Any]:
    fields = attrs.asdict(report)
    fields["started_at"] = _iso(report.started_at)
    fields["finished_at"] = _iso(report.finished_at)
    return fields


@attrs.define
class Registry:
    """What ``/admin/jobs`` shows: the scheduler, its last run and its next one."""

    interval_seconds: float
    name: str = "payout-scheduler"
    running: bool = False
    last_run: models.RunReport | None = None
    next_run_at: datetime | None = None
    consecutive_failures: int = 0
    pause: models.PauseState = attrs.Factory(models.PauseState)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def update(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "jobs": [
                    {
                        "name": self.name,
                        "description": "Take settlements from the inbox and pay due transfers",
                        "interval_seconds": self.interval_seconds,
                        "running": self.running,
                        "next_run_at": _iso(self.next_run_at),
                        "consecutive_failures": self.consecutive_failures,
                        "last_run": report_as_dict(self.last_run) if self.last_run else None,
                    }
                ],
                # An operator's pause: no worker of the fleet claims anything.
                "pause": self.pause.as_dict(),
            }


@attrs.define
class Runner:
    """Runs ticks until ``stop`` is set (SIGTERM/SIGINT set it)."""

    tick: Callable[[threading.Event], models.RunReport]
    interval_seconds: float
    clock: ports.Clock
    registry: Registry
    metrics: metrics_.Metrics
    # Called after every tick to refresh the queue gauges; failures are logged only.
    observe_queue: Callable[[], None] | None = None
    # The most transfers one tick may claim: a tick that used it all starts the
    # next one at once instead of waiting the interval.
    tick_budget: int | None = None
    stop: threading.Event = attrs.Factory(threading.Event)
    _halts: int = 0

    def run_once(self) -> models.RunReport:
        self.registry.update(running=True)
        started = time.perf_counter()
        report = self.tick(self.stop)
        self.metrics.observe_tick(report, time.perf_counter() - started)
        # After a failed tick the database is likely away: do not wait on it again.
        if self.observe_queue is not None and report.error is None:
            try:
                self.observe_queue()
            except Exception:
                log.warning("payout.runner.queue_unobserved", exc_info=True)
        failures = 0 if report.succeeded else self.registry.consecutive_failures + 1
        self.registry.update(running=False, last_run=report, consecutive_failures=failures)
        return report

    def next_wait(self, report: models.RunReport) -> float:
        """Seconds to wait before the next tick."""
        if report.halted_reason:
            self._halts += 1
            backoff = self.interval_seconds * float(2 ** min(self._halts - 1, 32))
            return min(backoff, MAX_HALT_BACKOFF_SECONDS)
        self._halts = 0
        if report.error is None and self.tick_budget and report.claimed >= self.tick_budget:
            return 0.0
        return self.interval_seconds

    def run_forever(self) -> None:
        while not self.stop.is_set():
            report = self.run_once()
            if self.stop.is_set():
                break
            wait = self.next_wait(report)
            if report.halted_reason:
                log.error(
                    "payout.runner.halted",
                    extra={"reason": report.halted_reason, "retry_in_seconds": wait},
                )
            self.registry.update(next_run_at=self.clock.now() + timedelta(seconds=wait))
            self.stop.wait(wait)
        log.info("payout.runner.stopped")
