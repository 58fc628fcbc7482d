"""The times tests reason with: when a test's world starts, and the default
lease and send margin.

Every test world starts at :data:`T0` unless it has a reason not to; what a
test checks is always relative to it (``T0 + LEASE``), never a calendar date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["LEASE", "MARGIN", "T0"]

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)

#: The lease a test's claims take (the worker's default).
LEASE = timedelta(minutes=10)

#: The send margin of the default timing (Stripe timeout 30 s + 30 s).
MARGIN = timedelta(seconds=60)
