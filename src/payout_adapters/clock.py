"""The real clock: :class:`payout_core.ports.Clock` on the system's wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["SystemClock"]


class SystemClock:
    """The current time in UTC.

    The core never reads the wall clock itself (ruff bans ``datetime.now``
    everywhere): it asks a ``Clock``, and this adapter is the one place where
    the wall clock is actually read. Tests use
    :class:`payout_adapters.memory.ManualClock` instead.
    """

    def now(self) -> datetime:
        # The one sanctioned read of the wall clock (see the class docstring).
        return datetime.now(UTC)  # noqa: TID251
