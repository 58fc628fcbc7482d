"""Clocks the library does not ship, each for a behaviour some test needs.

The library's :class:`payout_adapters.memory.ManualClock` (time stands still
until the test moves it) and :class:`payout_adapters.clock.SystemClock` (the
wall clock) serve most tests as they are; this module adds only what they lack.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from payout_core import ports
from tests.kit.times import T0

__all__ = ["FakeTime", "NotingClock", "ShiftedClock"]


@attrs.frozen
class ShiftedClock:
    """``base``'s time moved by ``by``: a worker whose own clock runs ahead of
    (or behind) the others', or one that starts long after a crash."""

    base: ports.Clock
    by: timedelta

    def now(self) -> datetime:
        return self.base.now() + self.by


@attrs.define
class NotingClock:
    """A clock that stands still at ``at`` and notes each read as ``"clock"`` in
    ``log``, so a test can pin down when, among other steps, the time is read."""

    log: list[str]
    at: datetime = T0

    def now(self) -> datetime:
        self.log.append("clock")
        return self.at


@attrs.define
class FakeTime:
    """The ``clock`` (seconds, as ``time.monotonic``) and ``sleep`` a rate limiter
    takes: each sleep is recorded in ``slept``, and nothing waits for real.

    Time stands still unless the test moves ``now``, so every wait the limiter
    asks for stays visible; with ``advance_when_sleeping`` a sleep moves the
    clock on, as a real one would.
    """

    now: float = 0.0
    advance_when_sleeping: bool = False
    slept: list[float] = attrs.Factory(list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.advance_when_sleeping:
            self.now += seconds
