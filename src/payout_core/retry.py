"""When to try a failed transfer again: exponential backoff with full jitter.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads
the retries of many transfers that failed together (a Stripe incident) instead
of sending them back in one wave. The random source is injected so tests and
simulations are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

import attrs

__all__ = ["RetryPolicy"]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """``delay(n)`` is uniform in ``[0, min(max_seconds, base_seconds * 2 ** (n - 1))]``."""

    base_seconds: float = attrs.field(default=30.0, validator=_positive)
    max_seconds: float = attrs.field(default=3600.0, validator=_positive)
    # A float in [0, 1); random.random by default, a seeded Random's in tests.
    uniform: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    def ceiling(self, attempt: int) -> float:
        """The largest delay after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # Cap the exponent before computing: 2 ** 10_000 is a waste of a big int.
        exponent = min(attempt - 1, 64)
        return min(self.max_seconds, self.base_seconds * float(2**exponent))

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed try number ``attempt``. (A look-up after an
        uncertain send has a floor of its own: the send margin, see
        :mod:`payout_core.attempt`.)"""
        return timedelta(seconds=self.uniform() * self.ceiling(attempt))
