"""A simulated Stripe for tests and the demo: Create Transfer and List Transfers, in memory.

It implements :class:`payout_core.ports.PaymentGateway` with the idempotency
rules of Stripe's API v1 that payout-core depends on:

* the same idempotency key with the same parameters replays the first result
  (``Succeeded(replayed=True)`` with the same ``tr_...``), never a second transfer;
* the same key with other parameters is ``Permanent(code="idempotency_error")``;
* a 500 is saved under its key and replayed for as long as the key is kept;
* keys are forgotten after a window (24 hours by default, by the injected clock);
  after that the same key creates a new transfer, as at Stripe.

Failures are scripted with a *handler*, as ``httpx.MockTransport`` scripts HTTP:
a callable that gets each request and a :class:`Call` (which attempt of this
key it is) and returns a :class:`Fault`, or ``None`` to behave normally::

    def lose_first_response(request, call):
        if isinstance(request, TransferRequest) and call.attempt == 1:
            return Fault.lost_response()  # created, but the caller sees a timeout
        return None

    gateway = SimulatedGateway(handler=lose_first_response, clock=clock)

Or seeded random faults, reproducible for the same seed and sequence of calls::

    gateway = SimulatedGateway.with_random_faults(
        seed=7, rates=FaultRates(lost_response=0.05, server_error=0.03, rate_limited=0.05)
    )

Two conveniences cover what downstream tests ask most:
``gateway.decline("acct_x" or "user-1")`` and ``gateway.systemic_outage()``.
"""

from __future__ import annotations

import enum
import random
import string
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

import attrs

from payout_core import outcomes, ports

__all__ = [
    "Call",
    "Fault",
    "FaultKind",
    "FaultRates",
    "Handler",
    "Operation",
    "SimulatedGateway",
    "TransferRecord",
]

_ID_ALPHABET = string.ascii_letters + string.digits


class Operation(enum.StrEnum):
    CREATE = "create"  # Create Transfer
    FIND = "find"  # List Transfers, filtered (the look-up of an unknown outcome)


@attrs.frozen(kw_only=True)
class Call:
    """What a handler knows about a call besides the request itself."""

    operation: Operation
    # Which time this key (create) or this payout transfer (find) is asked, from 1.
    attempt: int
    # Which call this is on the gateway, all operations counted, from 1.
    number: int


class FaultKind(enum.Enum):
    RESPOND = "respond"
    LOST_RESPONSE = "lost_response"
    SERVER_ERROR = "server_error"


_AnyOutcome: TypeAlias = outcomes.GatewayOutcome | outcomes.LookupOutcome


@attrs.frozen(kw_only=True)
class Fault:
    """What a handler asks the gateway to do instead of answering normally.

    Build one with the class methods; there are three behaviours underneath:

    * ``respond``: answer with an outcome; nothing is created and nothing is
      saved under the key (Stripe saves no result for a request its endpoint
      never began executing: rate limits, authentication, a key in use);
    * ``lost_response``: do the work normally, then answer ``Unknown("timeout")``,
      as when the response is lost on its way back (a look-up has no effect to
      do, so it only answers the timeout);
    * ``server_error``: a 500 is saved under the key, after creating the
      transfer or not (``created``); this call and every later one with the key
      answer ``Unknown("api_error", key_replays_error=True)``. A key already
      known replays its saved result instead: its endpoint does not run again.
    """

    kind: FaultKind
    outcome: _AnyOutcome | None = None
    created: bool = False

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
    def rate_limited(cls) -> Fault:
        """A 429: nothing created, nothing saved."""
        return cls.respond(
            outcomes.Transient(code="rate_limit", message="simulated 429: too many requests")
        )

    @classmethod
    def key_in_use(cls) -> Fault:
        """A 409: another request with this key is still running."""
        return cls.respond(_key_in_use())

    @classmethod
    def permanent(cls, code: str, message: str | None = None) -> Fault:
        """A decline (``account_invalid``, ``amount_too_small``, ...)."""
        return cls.respond(
            outcomes.Permanent(code=code, message=message or f"simulated decline: {code}")
        )

    @classmethod
    def systemic(cls, code: str = "authentication_error", message: str | None = None) -> Fault:
        """The platform's fault (401, 403, ``balance_insufficient``)."""
        return cls.respond(
            outcomes.Systemic(code=code, message=message or f"simulated platform failure: {code}")
        )


Handler: TypeAlias = Callable[
    [outcomes.TransferRequest | outcomes.TransferLookup, Call], Fault | None
]


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value}")


@attrs.frozen(kw_only=True)
class FaultRates:
    """The probability of each fault per call, drawn independently for each call.

    Look-ups draw too: a lost response or a server error answers ``Unknown``,
    a rate limit ``Transient``; ``key_in_use`` applies to creates only. Half
    of the server errors come after the transfer was created.
    """

    lost_response: float = attrs.field(default=0.0, validator=_probability)
    server_error: float = attrs.field(default=0.0, validator=_probability)
    rate_limited: float = attrs.field(default=0.0, validator=_probability)
    key_in_use: float = attrs.field(default=0.0, validator=_probability)

    def __attrs_post_init__(self) -> None:
        total = self.lost_response + self.server_error + self.rate_limited + self.key_in_use
        if total > 1.0:
            raise ValueError(f"fault rates add up to {total}, more than 1")


@attrs.frozen(kw_only=True)
class TransferRecord:
    """A transfer the simulated Stripe holds, as Create Transfer made it."""

    id: str
    amount_cents: int
    currency: str
    destination: str
    transfer_group: str
    metadata: tuple[tuple[str, str], ...]
    idempotency_key: str
    created_at: datetime
    sequence: int  # creation order, from 1

    @property
    def payout_transfer_id(self) -> str | None:
        return dict(self.metadata).get("payout_transfer_id")


@attrs.frozen
class _Saved:
    """A result saved under an idempotency key, with the parameters it answered."""

    params: outcomes.TransferRequest  # with the key blanked, for comparison
    saved_at: datetime
    response: outcomes.Succeeded | outcomes.Unknown


class _SystemClock:
    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time(), UTC)


def _key_in_use() -> outcomes.Transient:
    return outcomes.Transient(
        code="idempotency_key_in_use",
        message="simulated 409: another request with this idempotency key is in progress",
    )


_LOST = outcomes.Unknown(
    code="timeout", message="simulated: the request was sent and its response was lost"
)
_SERVER_ERROR = outcomes.Unknown(
    code="api_error",
    message="simulated 500, saved under the idempotency key",
    key_replays_error=True,
)
_LOOKUP_SERVER_ERROR = outcomes.Unknown(code="api_error", message="simulated 500 on list")


class SimulatedGateway:
    """A stand-in for Stripe Connect transfers. **It moves no money**: transfers
    exist only in this object's memory and are gone with it.

    Public API for downstream tests and the demo. Safe to share between
    threads (one lock; handlers and latency run outside it, so a handler may
    block, for instance on a ``threading.Barrier``). Two calls with the same key
    at the same moment: the second answers ``idempotency_key_in_use``, as Stripe
    does.

    Args:
        handler: scripts faults (see :class:`Fault`); called for every call
            with the request and a :class:`Call`, outside the lock, so it must
            be thread-safe when the gateway is shared. An exception it raises
            propagates to the caller (a simulated adapter bug).
        clock: the time of records and of key pruning; the system clock by default.
        key_window: how long idempotency keys are kept (Stripe: about 24 hours).
        latency: each call sleeps a uniform draw in ``[min_s, max_s]`` seconds;
            ``(0, 0)`` by default: no call ever sleeps unless asked to.
        sleep: how to sleep (inject a fake to record latencies without waiting).
        seed: makes the ``tr_...`` ids and latencies reproducible.
    """

    def __init__(
        self,
        *,
        handler: Handler | None = None,
        clock: ports.Clock | None = None,
        key_window: timedelta = timedelta(hours=24),
        latency: tuple[float, float] = (0.0, 0.0),
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        low, high = latency
        if not 0.0 <= low <= high:
            raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {latency}")
        if key_window <= timedelta(0):
            raise ValueError(f"key_window must be positive, got {key_window}")
        self._handler = handler
        self._clock: ports.Clock = clock or _SystemClock()
        self._key_window = key_window
        self._latency = (low, high)
        self._sleep = sleep
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        self._records: list[TransferRecord] = []
        self._keys: dict[str, _Saved] = {}
        self._in_flight: set[str] = set()
        self._attempts: dict[tuple[Operation, str], int] = {}
        self._calls = 0
        self._requests: list[outcomes.TransferRequest] = []
        self._lookups: list[outcomes.TransferLookup] = []
        self._declines: dict[str, Fault] = {}
        self._outage: Fault | None = None

    @classmethod
    def with_random_faults(
        cls,
        *,
        seed: int,
        rates: FaultRates,
        latency: tuple[float, float] = (0.0, 0.0),
        clock: ports.Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
        key_window: timedelta = timedelta(hours=24),
    ) -> SimulatedGateway:
        """A gateway whose handler draws faults at ``rates`` from a generator
        seeded with ``seed``: the same seed and the same sequence of calls give
        the same faults, ids and latencies."""
        return cls(
            handler=_RandomFaults(rates=rates, random=random.Random(f"faults:{seed}")),
            clock=clock,
            key_window=key_window,
            latency=latency,
            sleep=sleep,
            seed=seed,
        )

    # -- scripted behaviour -------------------------------------------------

    def decline(
        self, who: str, *, code: str = "account_invalid", message: str | None = None
    ) -> None:
        """Decline every transfer to ``who`` (a destination ``acct_...`` or a
        ``user_id`` in the metadata) with ``Permanent(code)``, until :meth:`reset`.
        Look-ups are not affected. Takes precedence over the handler."""
        with self._lock:
            self._declines[who] = Fault.permanent(code, message)

    def systemic_outage(
        self, code: str = "authentication_error", message: str | None = None
    ) -> None:
        """Answer every call, creates and look-ups, with ``Systemic(code)`` until
        :meth:`end_outage`. Takes precedence over declines and the handler."""
        with self._lock:
            self._outage = Fault.systemic(code, message)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def reset(self) -> None:
        """Forget every transfer, key, logged request, decline and outage.
        The handler, clock, window and latency stay."""
        with self._lock:
            self._init_state()

    # -- what happened, for assertions ----------------------------------------

    def created_transfers(self) -> list[TransferRecord]:
        """Every transfer created, in creation order."""
        with self._lock:
            return list(self._records)

    def transfers_for(self, payout_transfer_id: str) -> list[TransferRecord]:
        """The transfers created for one payout transfer (more than one is a double payment)."""
        with self._lock:
            return [r for r in self._records if r.payout_transfer_id == payout_transfer_id]

    @property
    def requests(self) -> tuple[outcomes.TransferRequest, ...]:
        """Every Create Transfer call received, in order, whatever it answered."""
        with self._lock:
            return tuple(self._requests)

    @property
    def lookups(self) -> tuple[outcomes.TransferLookup, ...]:
        """Every look-up received, in order."""
        with self._lock:
            return tuple(self._lookups)

    # -- the port -------------------------------------------------------------

    def create_transfer(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        key = request.idempotency_key
        with self._lock:
            self._requests.append(request)
            call = self._next_call(Operation.CREATE, key)
            scripted = self._scripted(request)
        fault = scripted or self._ask_handler(request, call)
        if fault is not None and fault.kind is FaultKind.RESPOND:
            self._pause()
            return _as_create_outcome(fault)
        with self._lock:
            if key in self._in_flight:
                conflict = True
            else:
                conflict = False
                self._in_flight.add(key)
        self._pause()
        if conflict:
            return _key_in_use()
        try:
            with self._lock:
                return self._execute(request, fault)
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        with self._lock:
            self._lookups.append(lookup)
            call = self._next_call(Operation.FIND, lookup.payout_transfer_id)
            scripted = self._outage
        fault = scripted or self._ask_handler(lookup, call)
        self._pause()
        if fault is not None:
            match fault.kind:
                case FaultKind.RESPOND:
                    return _as_lookup_outcome(fault)
                case FaultKind.LOST_RESPONSE:
                    return _LOST
                case FaultKind.SERVER_ERROR:
                    return _LOOKUP_SERVER_ERROR
        with self._lock:
            for record in self._records:
                if (
                    record.transfer_group == lookup.transfer_group
                    and lookup.destination in (None, record.destination)
                    and record.payout_transfer_id == lookup.payout_transfer_id
                ):
                    return outcomes.Found(stripe_transfer_id=record.id)
        return outcomes.NotFound()

    # -- inside ---------------------------------------------------------------

    def _next_call(self, operation: Operation, subject: str) -> Call:
        self._calls += 1
        attempt = self._attempts.get((operation, subject), 0) + 1
        self._attempts[operation, subject] = attempt
        return Call(operation=operation, attempt=attempt, number=self._calls)

    def _scripted(self, request: outcomes.TransferRequest) -> Fault | None:
        if self._outage is not None:
            return self._outage
        user_id = dict(request.metadata).get("user_id")
        return self._declines.get(request.destination) or (
            self._declines.get(user_id) if user_id is not None else None
        )

    def _ask_handler(
        self, request: outcomes.TransferRequest | outcomes.TransferLookup, call: Call
    ) -> Fault | None:
        return None if self._handler is None else self._handler(request, call)

    def _pause(self) -> None:
        low, high = self._latency
        if high <= 0.0:
            return
        with self._lock:
            seconds = self._random.uniform(low, high)
        self._sleep(seconds)

    def _execute(
        self, request: outcomes.TransferRequest, fault: Fault | None
    ) -> outcomes.GatewayOutcome:
        """The endpoint itself, under the lock: replay, refuse or create."""
        now = self._clock.now()
        key = request.idempotency_key
        params = attrs.evolve(request, idempotency_key="")
        saved = self._keys.get(key)
        if saved is not None and now - saved.saved_at >= self._key_window:
            del self._keys[key]  # pruned: Stripe no longer knows this key
            saved = None
        result: outcomes.GatewayOutcome
        if saved is None:
            first: outcomes.Succeeded | outcomes.Unknown
            if fault is not None and fault.kind is FaultKind.SERVER_ERROR:
                if fault.created:
                    self._create(request, now)
                first = _SERVER_ERROR
            else:
                first = outcomes.Succeeded(stripe_transfer_id=self._create(request, now).id)
            self._keys[key] = _Saved(params, now, first)
            result = first
        elif saved.params != params:
            result = outcomes.Permanent(
                code="idempotency_error",
                message="simulated 400: keys for idempotent requests can only be used "
                "with the same parameters they were first used with",
            )
        elif isinstance(saved.response, outcomes.Succeeded):
            result = attrs.evolve(saved.response, replayed=True)
        else:
            result = saved.response
        if fault is not None and fault.kind is FaultKind.LOST_RESPONSE:
            return _LOST
        return result

    def _create(self, request: outcomes.TransferRequest, now: datetime) -> TransferRecord:
        record = TransferRecord(
            id="tr_" + "".join(self._random.choices(_ID_ALPHABET, k=24)),
            amount_cents=request.amount_cents,
            currency=request.currency,
            destination=request.destination,
            transfer_group=request.transfer_group,
            metadata=request.metadata,
            idempotency_key=request.idempotency_key,
            created_at=now,
            sequence=len(self._records) + 1,
        )
        self._records.append(record)
        return record


def _as_create_outcome(fault: Fault) -> outcomes.GatewayOutcome:
    outcome = fault.outcome
    if outcome is None or isinstance(outcome, outcomes.Found | outcomes.NotFound):
        raise TypeError(f"{fault!r} is not an answer to Create Transfer")
    return outcome


def _as_lookup_outcome(fault: Fault) -> outcomes.LookupOutcome:
    outcome = fault.outcome
    if outcome is None or isinstance(outcome, outcomes.Succeeded):
        raise TypeError(f"{fault!r} is not an answer to a look-up")
    return outcome


@attrs.define
class _RandomFaults:
    """A handler drawing faults at fixed rates from a seeded generator."""

    rates: FaultRates
    random: random.Random
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def __call__(
        self, request: outcomes.TransferRequest | outcomes.TransferLookup, call: Call
    ) -> Fault | None:
        with self._lock:
            # Two draws on every call, so one call's fault never shifts the next one's.
            draw, created = self.random.random(), self.random.random() < 0.5
        choices = (
            (self.rates.lost_response, Fault.lost_response()),
            (self.rates.server_error, Fault.server_error(created=created)),
            (self.rates.rate_limited, Fault.rate_limited()),
            (
                self.rates.key_in_use,
                Fault.key_in_use() if call.operation is Operation.CREATE else None,
            ),
        )
        for rate, fault in choices:
            if draw < rate:
                return fault
            draw -= rate
        return None
