"""A clock that moves only when a test moves it."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

__all__ = ["ManualClock"]


def _require_aware(value: datetime) -> None:
    if value.utcoffset() is None:
        raise ValueError(f"ManualClock needs a timezone-aware datetime, got {value!r}")


class ManualClock:
    """:class:`payout_core.ports.Clock` for tests: time stands still until
    :meth:`advance` or :meth:`set` moves it, so leases, backoffs and key
    windows can be crossed exactly, without sleeping.

    Safe to share between threads (the services execute transfers on a pool).
    """

    def __init__(self, start: datetime) -> None:
        _require_aware(start)
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by ``by`` (a ``timedelta`` or seconds) and return the new time.

        Raises:
            ValueError: ``by`` is negative (use :meth:`set` to go back on purpose).
        """
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if step < timedelta(0):
            raise ValueError(f"a clock only advances forward, got {step}")
        with self._lock:
            self._now += step
            return self._now

    def set(self, to: datetime) -> None:
        """Jump to ``to``, forward or back (a clock jump, as NTP may make one)."""
        _require_aware(to)
        with self._lock:
            self._now = to
