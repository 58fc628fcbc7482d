"""Faults a test can script into the fake Stripe, and ready-made ones for each Stripe error.

A script (:meth:`tests.fake_stripe.FakeStripe.script`) picks its requests by
method, path and idempotency key. A path segment written ``{id}`` matches any
one segment, so :data:`REVERSALS` meets the reversals of every transfer, and
:data:`TRANSFERS` (the default) only Create and List Transfers.

A fault acts at one of two stages of a request, as at Stripe:

* ``edge``: in front of the API (rate limiter, authentication, a proxy, the
  network). Nothing is executed and nothing is saved under the idempotency key.
* ``endpoint``: after the idempotency layer let the request in (the key is
  marked in flight), while the endpoint executes. What it answers is saved
  under the key, as Stripe saves every result once execution has begun.

For long runs under chaos, a script may last for ever (``times=None``) or
until a moment of the fake's clock (``until``: a fault window), and a
:class:`Mix` draws a fault, or none, for each request it meets from a seeded
random generator: one script, a whole weather of faults.
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Iterable

import attrs

__all__ = [
    "REVERSALS",
    "TRANSFERS",
    "Delay",
    "Drop",
    "Hold",
    "Mix",
    "Respond",
    "Stage",
    "bad_gateway",
    "forbidden",
    "lock_timeout",
    "rate_limited",
    "server_error",
    "service_unavailable",
]


TRANSFERS = "/v1/transfers"
REVERSALS = "/v1/transfers/{id}/reversals"  # Create and List Reversals, of any transfer


class Stage(enum.Enum):
    EDGE = "edge"
    ENDPOINT = "endpoint"


@attrs.frozen(kw_only=True)
class Respond:
    """Answer with this error instead of the endpoint's own answer.

    ``saved``: the answer is saved under the idempotency key and replayed to
    every retry (an error raised while the endpoint executed, like a 500).
    ``create``: the endpoint's work is done anyway before the error is returned
    (a 500 after which the transfer, or the reversal, exists).
    ``raw_body``: send this instead of a JSON error envelope (a proxy's page).
    """

    status: int
    error_type: str = "api_error"
    code: str | None = None
    message: str = "An unknown error occurred"
    param: str | None = None
    saved: bool = False
    create: bool = False
    raw_body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.create and not self.saved:
            raise ValueError("a fault that creates something ran the endpoint: it is saved")

    @property
    def stage(self) -> Stage:
        return Stage.ENDPOINT if self.saved else Stage.EDGE


@attrs.frozen(kw_only=True)
class Drop:
    """Close the connection without answering.

    ``create=True``: the request reached Stripe, which executed it (created the
    transfer or the reversal, or refused it) and saved its answer under the
    key, and then the answer was lost. With
    ``create=False`` the request was lost before Stripe executed anything.
    ``reset``: end with a TCP reset instead of an orderly close.
    """

    create: bool = True
    reset: bool = False

    @property
    def stage(self) -> Stage:
        return Stage.ENDPOINT if self.create else Stage.EDGE


@attrs.frozen(kw_only=True)
class Hold:
    """Hold the request, with its idempotency key in flight, until ``release`` is
    set; then execute it as usual and answer (probably to a client that timed
    out long ago). A response slower than any client timeout, made
    deterministic: the test decides when the slow request completes."""

    release: threading.Event = attrs.field(eq=False)
    held: threading.Event = attrs.field(factory=threading.Event, eq=False)  # set on arrival

    @property
    def stage(self) -> Stage:
        return Stage.ENDPOINT


@attrs.frozen(kw_only=True)
class Delay:
    """Take ``seconds`` (real time) over the request: longer than the client's
    timeout, Stripe finishing a request its client gave up on, as :class:`Hold`
    does but timed, so that it can be drawn at random.

    By default Stripe works on it the whole time, its idempotency key in flight
    (a retry meanwhile is a 409), and executes it at the end; with
    ``execute_first`` it executes at once and only the answer is late (a retry
    meanwhile is replayed). Stopping the fake cuts the wait short (and drops
    the request, as :class:`Hold` does, when it had not executed yet).
    """

    seconds: float
    execute_first: bool = False

    def __attrs_post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"a delay takes some time, not {self.seconds} s")

    @property
    def stage(self) -> Stage:
        return Stage.ENDPOINT


Fault = Respond | Drop | Hold | Delay


def _choices(value: Iterable[tuple[float, Fault]]) -> tuple[tuple[float, Fault], ...]:
    return tuple(value)


@attrs.define
class Mix:
    """A seeded random mix of faults: each request it meets draws one of
    ``choices`` (``(probability, fault)`` pairs) or, with what probability is
    left, none. Script it like a fault (:meth:`tests.fake_stripe.FakeStripe.script`),
    usually with ``times=None`` and a window (``until``); ``times`` then counts
    the requests that drew a fault.

    The draws follow the order in which requests arrive: one seed replays the
    same sequence of faults for the same sequence of requests.
    """

    seed: int
    choices: tuple[tuple[float, Fault], ...] = attrs.field(converter=_choices)
    _random: random.Random = attrs.field(init=False, repr=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if any(p < 0 for p, _ in self.choices) or sum(p for p, _ in self.choices) > 1:
            raise ValueError("probabilities must be >= 0 and add up to at most 1")
        self._random = random.Random(self.seed)

    def draw(self) -> Fault | None:
        """The fault the next request meets, or ``None``."""
        with self._lock:
            roll = self._random.random()
        for probability, fault in self.choices:
            if roll < probability:
                return fault
            roll -= probability
        return None


def rate_limited() -> Respond:
    return Respond(
        status=429,
        error_type="invalid_request_error",
        code="rate_limit",
        message="Too many requests hit the API too quickly. "
        "We recommend an exponential backoff of your requests.",
    )


def lock_timeout() -> Respond:
    return Respond(
        status=429,
        error_type="invalid_request_error",
        code="lock_timeout",
        message="This object cannot be accessed right now because another API request "
        "or Stripe process is currently accessing it.",
    )


def forbidden() -> Respond:
    return Respond(
        status=403,
        error_type="invalid_request_error",
        message="The provided key does not have the required permissions for this endpoint.",
    )


def server_error(*, create: bool = False) -> Respond:
    """Stripe's own 500, saved under the key; ``create``: the transfer (or
    reversal) exists anyway."""
    return Respond(
        status=500,
        error_type="api_error",
        message="An unknown error occurred",
        saved=True,
        create=create,
        headers=(("Stripe-Should-Retry", "false"),),
    )


def bad_gateway() -> Respond:
    """A 502 from a proxy in front of the API: an HTML page, nothing saved."""
    return Respond(status=502, raw_body="<html><body>502 Bad Gateway</body></html>")


def service_unavailable() -> Respond:
    """Stripe's own 503 before execution: a JSON envelope, nothing saved."""
    return Respond(status=503, message="Stripe is temporarily unavailable.")
