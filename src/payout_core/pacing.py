"""The fleet's pace toward Stripe: the numbers every rate limiter shares.

A rate limiter (:class:`payout_core.ports.RateLimiter`) spaces each budget's
requests ``1 / rate`` apart on one schedule (a GCRA). The configured rate is
what the operator believes Stripe allows; Stripe may allow less (a sandbox, an
account Stripe slowed down). A 429 says so, and the fleet adapts the way TCP
does, additive increase and multiplicative decrease:

- a 429 cuts the pace to :data:`CUT` of what it was, at most once per
  :data:`COOLDOWN_SECONDS` (the requests already in flight when the first 429
  came answer 429 too, and must not cut again), never below :data:`FLOOR` of
  the configured rate;
- the pace then grows back by :data:`RECOVERY_PER_SECOND` of the configured
  rate each second, up to the configured rate, so that a fleet slowed by a
  passing limit returns to full speed, and a fleet under a lasting one meets
  it again only every few seconds.

The schedule keeps :data:`HEADROOM` below the configured rate.
docs/performance.md shows the figures these give against a Stripe tighter than
configured. The in-memory limiter computes with these functions; the
PostgreSQL one does the same arithmetic in SQL, with these constants as its
parameters.
"""

from __future__ import annotations

import math

__all__ = [
    "CLAIM_HORIZON_SECONDS",
    "COOLDOWN_SECONDS",
    "CUT",
    "FLOOR",
    "HEADROOM",
    "RECOVERY_PER_SECOND",
    "factor_after_429",
    "factor_now",
    "ready_within",
]

# The schedule spaces requests at this share of the configured rate. A request
# reaches Stripe a little after its slot (a thread waking, a connection), by a
# varying delay; at exactly the configured rate, one late request and the next
# on time would put one request too many into Stripe's one-second window.
# 3% leaves each request 30 ms of such jitter at 20 per second.
HEADROOM = 0.97

CUT = 0.8
COOLDOWN_SECONDS = 0.5
FLOOR = 0.05
RECOVERY_PER_SECOND = 0.01

# A worker claims no more than the budget lets it send within this many
# seconds, so that a lease is never spent waiting for Stripe's budget.
CLAIM_HORIZON_SECONDS = 1.0


def factor_now(factor: float, seconds_since_cut: float | None) -> float:
    """The share of the configured rate in force: ``factor`` as set by the
    last cut, grown back since."""
    if seconds_since_cut is None:
        return factor
    return min(1.0, factor + max(seconds_since_cut, 0.0) * RECOVERY_PER_SECOND)


def factor_after_429(factor: float, seconds_since_cut: float | None) -> float | None:
    """The new factor after a 429, or ``None`` while the last cut is too recent
    to cut again."""
    if seconds_since_cut is not None and seconds_since_cut < COOLDOWN_SECONDS:
        return None
    return max(FLOOR, factor_now(factor, seconds_since_cut) * CUT)


def ready_within(seconds: float, *, backlog: float, interval: float) -> int:
    """How many requests could leave within ``seconds``, when the next slot is
    ``backlog`` seconds away and slots are ``interval`` apart."""
    backlog = max(backlog, 0.0)
    if backlog > seconds:
        return 0
    return math.floor((seconds - backlog) / interval) + 1
