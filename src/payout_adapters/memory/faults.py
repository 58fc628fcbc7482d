"""Scripting the simulated gateway's failures: what a handler is shown, and what it answers.

Failures are scripted with a *handler*, as ``httpx.MockTransport`` scripts HTTP:
a callable that gets each request (a transfer, a look-up or a reversal) and a
:class:`Call` (which operation, which attempt of this key it is) and returns a
:class:`Fault`, or ``None`` to behave normally::

    def lose_first_response(request, call):
        if isinstance(request, TransferRequest) and call.attempt == 1:
            return Fault.lost_response()  # created, but the caller sees a timeout
        return None

    gateway = SimulatedGateway(handler=lose_first_response, clock=clock)

Or seeded random faults (:class:`RandomFaults`), reproducible for the same seed
and sequence of calls::

    gateway = SimulatedGateway.with_random_faults(
        seed=7, rates=FaultRates(lost_response=0.05, server_error=0.03, rate_limited=0.05)
    )

This module is the vocabulary only; what a fault does to Stripe's state is
:class:`~payout_adapters.memory.gateway.SimulatedGateway`'s, and Stripe's own
rules are :mod:`payout_adapters.memory.stripe_model`'s. Every name here is also
importable from :mod:`payout_adapters.memory.gateway`.
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Callable
from typing import TypeAlias

import attrs

from payout_adapters.memory import stripe_model
from payout_core import outcomes

__all__ = [
    "Call",
    "Fault",
    "FaultKind",
    "FaultRates",
    "Handler",
    "Operation",
    "RandomFaults",
    "Request",
]

Request: TypeAlias = outcomes.TransferRequest | outcomes.TransferLookup | outcomes.ReversalRequest
"""What a handler is shown: a create, a look-up or a reversal."""


class Operation(enum.StrEnum):
    """Which kind of call a handler is shown."""

    CREATE = "create"  # Create Transfer
    FIND = "find"  # List Transfers, filtered (the look-up of an unknown outcome)
    REVERSE = "reverse"  # Create Reversal


@attrs.frozen(kw_only=True)
class Call:
    """What a handler knows about a call besides the request itself."""

    operation: Operation
    # Which time this key (create, reverse) or this payout transfer (find) is asked, from 1.
    attempt: int
    # Which call this is on the gateway, creates, reversals and look-ups counted
    # (not reads), from 1.
    number: int


class FaultKind(enum.Enum):
    """The four behaviours underneath :class:`Fault`'s constructors."""

    RESPOND = "respond"
    LOST_RESPONSE = "lost_response"
    SERVER_ERROR = "server_error"
    FINISHES_LATER = "finishes_later"


_AnyOutcome: TypeAlias = outcomes.GatewayOutcome | outcomes.LookupOutcome | outcomes.ReversalOutcome


def _not_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class Fault:
    """What a handler asks the gateway to do instead of answering normally.

    Build one with the class methods; there are four behaviours underneath:

    * ``respond``: answer with an outcome *in front of* Stripe's API; nothing
      is created and nothing is saved under the key, so the next request with
      the key runs normally (Stripe saves no result for a request its endpoint
      never began executing: rate limits, authentication, a key in use);
    * ``lost_response``: do the work normally, then answer ``Unknown("timeout")``,
      as when the response is lost on its way back (a look-up has no effect to
      do, so it only answers the timeout);
    * ``server_error``: a 500 is saved under the key, after creating the
      transfer (or the reversal) or not (``created``); this call and every
      later one with the key answer ``Unknown("api_error", key_replays_error=True)``;
    * ``finishes_later``: Stripe takes ``seconds`` (by the gateway's clock) to
      execute the request and the caller gives up at once with
      ``Unknown("timeout")``; see :meth:`finishes_later`.

    A key Stripe already knows is answered by its idempotency layer instead
    (replay, 409, ``idempotency_error``): the last three do not run its
    endpoint again, though a lost response still loses that answer.
    """

    kind: FaultKind
    outcome: _AnyOutcome | None = None
    created: bool = False
    seconds: float = attrs.field(default=0.0, validator=_not_negative)

    @classmethod
    def respond(cls, outcome: _AnyOutcome) -> Fault:
        """Answer ``outcome`` and do nothing else."""
        return cls(kind=FaultKind.RESPOND, outcome=outcome)

    @classmethod
    def lost_response(cls) -> Fault:
        return cls(kind=FaultKind.LOST_RESPONSE)

    @classmethod
    def server_error(cls, *, created: bool = False) -> Fault:
        return cls(kind=FaultKind.SERVER_ERROR, created=created)

    @classmethod
    def finishes_later(cls, seconds: float) -> Fault:
        """A request Stripe completes after the client gave up.

        The caller gets ``Unknown("timeout")`` at once. At Stripe the key is in
        flight until the gateway's clock reaches ``seconds`` later: a create
        (or reversal) with the same key meanwhile answers 409
        ``idempotency_key_in_use``, and a look-up finds nothing. Then it
        executes as any create would at that time (balance, declines, what is
        left to reverse) and its answer is saved under the key. It runs
        at the first call or inspection once the clock has passed its finish
        time, or at :meth:`SimulatedGateway.finish_in_flight`. On a look-up it
        is a timeout and nothing more.
        """
        return cls(kind=FaultKind.FINISHES_LATER, seconds=seconds)

    @classmethod
    def rate_limited(cls) -> Fault:
        """A 429: nothing created, nothing saved."""
        return cls.respond(
            outcomes.Transient(code="rate_limit", message="simulated 429: too many requests")
        )

    @classmethod
    def key_in_use(cls) -> Fault:
        """A 409: another request with this key is still running (nothing created,
        nothing saved; the earlier request may still create a transfer)."""
        return cls.respond(stripe_model.KEY_IN_USE)

    @classmethod
    def permanent(cls, code: str, message: str | None = None) -> Fault:
        """A refusal (``account_invalid``, ``amount_too_small``, ...) answered by
        parameter validation: **not** saved under the key, so the next request
        with the key executes normally. Validation comes behind the idempotency
        layer, so a key Stripe already knows is answered by that layer (a
        replay) instead. Stripe saves its own refusals under the key and
        replays them; :meth:`SimulatedGateway.decline` does that."""
        return cls.respond(
            outcomes.Permanent(code=code, message=message or f"simulated decline: {code}")
        )

    @classmethod
    def systemic(cls, code: str = "authentication_error", message: str | None = None) -> Fault:
        """The platform's fault as answered in front of the API (401, 403): not
        saved under the key. A ``balance_insufficient`` as Stripe answers it
        (saved, ``conclusive``) comes from :meth:`SimulatedGateway.set_balance`."""
        return cls.respond(
            outcomes.Systemic(code=code, message=message or f"simulated platform failure: {code}")
        )


Handler: TypeAlias = Callable[[Request, Call], Fault | None]
"""What scripts the faults: given each call, a fault or ``None`` (behave normally)."""


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value}")


@attrs.frozen(kw_only=True)
class FaultRates:
    """The probability of each fault per call, drawn independently for each call.

    Look-ups draw too: a lost response or a server error answers ``Unknown``,
    a rate limit ``Transient``; ``key_in_use`` applies to creates and
    reversals only. Half of the server errors come after the transfer (or
    reversal) was created.
    """

    lost_response: float = attrs.field(default=0.0, validator=_probability)
    server_error: float = attrs.field(default=0.0, validator=_probability)
    rate_limited: float = attrs.field(default=0.0, validator=_probability)
    key_in_use: float = attrs.field(default=0.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        total = self.lost_response + self.server_error + self.rate_limited + self.key_in_use
        if total > 1.0:
            raise ValueError(f"fault rates add up to {total}, more than 1")


@attrs.define
class RandomFaults:
    """A handler drawing faults at fixed ``rates`` from a seeded generator
    (``SimulatedGateway.with_random_faults`` builds one)."""

    rates: FaultRates
    random: random.Random
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def __call__(self, request: Request, call: Call) -> Fault | None:
        with self._lock:
            # Two draws on every call, so one call's fault never shifts the next one's.
            draw, created = self.random.random(), self.random.random() < 0.5
        choices = (
            (self.rates.lost_response, Fault.lost_response()),
            (self.rates.server_error, Fault.server_error(created=created)),
            (self.rates.rate_limited, Fault.rate_limited()),
            (
                self.rates.key_in_use,
                Fault.key_in_use() if call.operation is not Operation.FIND else None,
            ),
        )
        for rate, fault in choices:
            if draw < rate:
                return fault
            draw -= rate
        return None
