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
"""

from __future__ import annotations

import enum
import threading

import attrs

__all__ = [
    "REVERSALS",
    "TRANSFERS",
    "Drop",
    "Hold",
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


Fault = Respond | Drop | Hold


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
