"""The times tests reason with: when a test's world starts, and the default
lease and send margin.

Every test world starts at :data:`T0` unless it has a reason not to; what a
test checks is always relative to it (``T0 + LEASE``), never a calendar date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from payout_core import retry

__all__ = ["HALF_JITTER", "LEASE", "MARGIN", "T0"]

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)

#: The lease a test's claims take (the worker's default).
LEASE = timedelta(minutes=10)

#: The send margin of the default timing (Stripe timeout 30 s + 30 s).
MARGIN = timedelta(seconds=60)

#: Retries at half the full-jitter range, every time, so that a retry's time is
#: exact: 15 s after a first try, 30 s after a second (the default base of 30 s).
HALF_JITTER = retry.RetryPolicy(uniform=lambda: 0.5)
