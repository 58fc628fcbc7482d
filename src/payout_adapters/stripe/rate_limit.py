"""A token bucket shared by every Stripe call of a process.

Stripe limits requests per second per account, and (unless raised for the
account) per endpoint: 25/s on Create Transfer. Every request the gateway
sends, a create or a page of a look-up, takes one token first, so all threads
of a worker together stay under ``rate`` requests per second.

Callers *reserve* a token under the lock and wait for it outside the lock: the
waits are first come, first served, nobody spins, and a test can count the
reservations exactly with an injected clock and sleep.

A 429 from Stripe means the limit was hit anyway (other processes share the
account): :meth:`TokenBucket.penalize` empties the bucket and owes it a short
pause, so the whole process slows down at once instead of each thread
discovering the limit on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

__all__ = ["TokenBucket"]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.define(kw_only=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up (``rate`` by default,
    that is one second's worth, and never less than one)."""

    rate: float = attrs.field(validator=_positive)
    burst: float | None = None
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _tokens: float = attrs.field(init=False, repr=False)
    _updated: float = attrs.field(init=False, repr=False)
    _taken: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.burst is not None and not self.burst > 0:
            raise ValueError(f"burst must be > 0, got {self.burst}")
        self._tokens = self.capacity
        self._updated = self.clock()

    @property
    def capacity(self) -> float:
        return max(1.0, self.burst if self.burst is not None else self.rate)

    @property
    def taken(self) -> int:
        """How many tokens have been taken since the bucket was made."""
        with self._lock:
            return self._taken

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        self._updated = now

    def acquire(self) -> float:
        """Take one token, waiting until it is due. Returns the seconds waited."""
        with self._lock:
            self._refill(self.clock())
            self._tokens -= 1
            self._taken += 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait

    def penalize(self, pause_seconds: float = 1.0) -> None:
        """Stripe said 429: owe ``pause_seconds`` worth of tokens, so that the next
        requests of every thread wait about that long. Penalties do not add up:
        many 429s at once cost one pause."""
        with self._lock:
            self._refill(self.clock())
            self._tokens = min(self._tokens, -pause_seconds * self.rate)
