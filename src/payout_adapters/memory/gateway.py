"""A simulated Stripe for tests and the demo: Create, List and Retrieve Transfers, Create
and List Reversals, in memory.

It implements :class:`payout_core.ports.PaymentGateway`,
:class:`payout_core.ports.TransferRecords` and
:class:`payout_core.ports.ReversalGateway`. Two halves:

* :mod:`payout_adapters.memory.stripe_model` is Stripe: transfers and their
  reversals, idempotency keys for both (replays, 409 while in flight,
  ``idempotency_error``, saved refusals and 500s, keys forgotten 24 hours
  after first use), the balance, accounts that refuse transfers, requests
  that finish after their caller gave up;
* this module scripts what happens on the way to it: faults, latency, threads.

Failures are scripted with a *handler*, as ``httpx.MockTransport`` scripts HTTP:
a callable that gets each request (a transfer, a look-up or a reversal) and a
:class:`Call` (which operation, which attempt of this key it is) and returns a
:class:`Fault`, or ``None`` to behave normally::

    def lose_first_response(request, call):
        if isinstance(request, TransferRequest) and call.attempt == 1:
            return Fault.lost_response()  # created, but the caller sees a timeout
        return None

    gateway = SimulatedGateway(handler=lose_first_response, clock=clock)

Or seeded random faults, reproducible for the same seed and sequence of calls::

    gateway = SimulatedGateway.with_random_faults(
        seed=7, rates=FaultRates(lost_response=0.05, server_error=0.03, rate_limited=0.05)
    )

Stripe's own state is set with methods: ``gateway.decline("acct_x" or "user-1")``
(a refusal Stripe saves under the key), ``gateway.set_balance(cents)``,
``gateway.delete_account("acct_x")``, and ``gateway.systemic_outage()``. What
``reconcile`` must find is planted the same way: ``gateway.plant_transfer(...)``
(a transfer payout-core did not make, or a second one for a payout) and
``gateway.reverse("tr_...", cents)`` (a reversal made in Stripe's dashboard).

A reversal (:meth:`SimulatedGateway.create_reversal`) meets the handler as a
create does (``Operation.REVERSE``), with the same faults and the same key
rules: a lost response after Stripe reversed, then a resend of the key, is
one reversal.

Reads (:meth:`SimulatedGateway.retrieve_transfer`, :meth:`SimulatedGateway.list_transfers`,
:meth:`SimulatedGateway.list_reversals`) are not shown to the handler: only an
outage makes them fail, as it makes look-ups fail.

The gateway's clock is Stripe's clock: key ages, finish times of slow requests
and ``created_at`` all follow it. Driven from one thread with a
:class:`~payout_adapters.memory.ManualClock`, a seed and no latency, every
answer, id and record is reproducible, and nothing sleeps or reads the wall clock.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias, TypeVar, overload

import attrs

from payout_adapters import clock as clock_
from payout_adapters.memory import stripe_model
from payout_adapters.memory.stripe_model import ReversalRecord, TransferRecord
from payout_core import errors, outcomes, ports

__all__ = [
    "Call",
    "Fault",
    "FaultKind",
    "FaultRates",
    "Handler",
    "Operation",
    "Request",
    "ReversalRecord",
    "SimulatedGateway",
    "TransferRecord",
]


class Operation(enum.StrEnum):
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
    RESPOND = "respond"
    LOST_RESPONSE = "lost_response"
    SERVER_ERROR = "server_error"
    FINISHES_LATER = "finishes_later"


_AnyOutcome: TypeAlias = outcomes.GatewayOutcome | outcomes.LookupOutcome | outcomes.ReversalOutcome
_Failure: TypeAlias = outcomes.Transient | outcomes.Unknown | outcomes.Permanent | outcomes.Systemic


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


Request: TypeAlias = outcomes.TransferRequest | outcomes.TransferLookup | outcomes.ReversalRequest
"""What a handler is shown: a create, a look-up or a reversal."""

Handler: TypeAlias = Callable[[Request, Call], Fault | None]


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


_LOST = outcomes.Unknown(
    code="timeout", message="simulated: the request was sent and its response was lost"
)
_GAVE_UP = outcomes.Unknown(
    code="timeout", message="simulated: the caller gave up while Stripe was still executing"
)
_LOOKUP_SERVER_ERROR = outcomes.Unknown(code="api_error", message="simulated 500 on list")


class _Listed(Protocol):
    @property
    def id(self) -> str: ...


_Record = TypeVar("_Record", bound=_Listed)


class SimulatedGateway:
    """A stand-in for Stripe Connect transfers. **It moves no money**: transfers
    exist only in this object's memory and are gone with it.

    Public API for downstream tests and the demo. Safe to share between
    threads (one lock; handlers and latency run outside it, so a handler may
    block, for instance on a ``threading.Barrier``). Two calls with the same key
    at the same moment: the second answers 409 ``idempotency_key_in_use``
    (``Unknown``), as Stripe does.

    Args:
        handler: scripts faults (see :class:`Fault`); called for every call
            with the request and a :class:`Call`, outside the lock, so it must
            be thread-safe when the gateway is shared. An exception it raises
            propagates to the caller (a simulated adapter bug).
        clock: Stripe's clock: records, key ages, slow requests' finish times;
            the system clock by default.
        key_window: how long idempotency keys are kept after their first use
            (Stripe: about 24 hours).
        latency: each call sleeps a uniform draw in ``[min_s, max_s]`` seconds;
            ``(0, 0)`` by default: no call ever sleeps unless asked to.
        sleep: how to sleep (inject a fake to record latencies without waiting).
        seed: makes the ``tr_...`` ids and latencies reproducible.
        page_size: how many transfers (or reversals) a page of
            :meth:`list_transfers` (or :meth:`list_reversals`) holds (Stripe's
            largest page by default; small, to test paging cheaply).
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
        page_size: int = 100,
    ) -> None:
        low, high = latency
        if not 0.0 <= low <= high:
            raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {latency}")
        if key_window <= timedelta(0):
            raise ValueError(f"key_window must be positive, got {key_window}")
        if not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be within 1..100 (Stripe's limits), got {page_size}")
        self._page_size = page_size
        self._handler = handler
        self._clock: ports.Clock = clock or clock_.SystemClock()
        self._key_window = key_window
        self._latency = (low, high)
        self._sleep = sleep
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        self._stripe = stripe_model.StripeModel(
            clock=self._clock, key_window=self._key_window, rng=self._random
        )
        self._attempts: dict[tuple[Operation, str], int] = {}
        self._calls = 0
        self._writes: list[stripe_model.Write] = []
        self._lookups: list[outcomes.TransferLookup] = []
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

    # -- Stripe's state -----------------------------------------------------------------------

    def decline(
        self, who: str, *, code: str = "account_invalid", message: str | None = None
    ) -> None:
        """Refuse every transfer to ``who`` (a destination ``acct_...`` or a
        ``user_id`` in the metadata) with ``Permanent(code)``, until
        :meth:`end_decline` or :meth:`reset`.

        As at Stripe, the refusal comes from executing the request, so it is
        saved under the key: that key answers it again even after the decline
        ends (a new key is needed). Faults a handler answers in front of the
        API (:meth:`Fault.respond`) come first. Look-ups are not affected.
        """
        refusal = outcomes.Permanent(code=code, message=message or f"simulated decline: {code}")
        with self._lock:
            self._stripe.refuse(who, refusal)

    def end_decline(self, who: str) -> None:
        """Stop declining ``who``; keys that were refused still replay their refusal."""
        with self._lock:
            self._stripe.stop_refusing(who)

    def delete_account(self, account_id: str) -> None:
        """Stripe no longer knows ``account_id`` (every other account exists):
        creates to it are refused with ``Permanent("resource_missing")``, saved
        under their key, and look-ups filtered by it answer the same refusal.
        Until :meth:`reset`."""
        with self._lock:
            self._stripe.delete_account(account_id)

    def set_balance(self, cents: int | None) -> None:
        """The platform's available balance in cents; ``None`` (the default)
        never runs out. Each transfer created draws on it; a create for more
        than is left answers ``Systemic("balance_insufficient", conclusive=True)``,
        saved under its key and replayed to it even after a top-up."""
        if cents is not None and cents < 0:
            raise ValueError(f"a balance cannot be negative, got {cents}")
        with self._lock:
            self._stripe.set_balance(cents)

    @property
    def balance(self) -> int | None:
        with self._lock:
            return self._stripe.balance

    def plant_transfer(
        self,
        *,
        amount_cents: int,
        destination: str,
        currency: str = "usd",
        transfer_group: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> TransferRecord:
        """A transfer Stripe holds from now on that payout-core did not create:
        one made in the dashboard or by another program, or, with a
        ``payout_transfer_id`` in ``metadata``, a second payment of a winner.

        It is dated by the gateway's clock, listed and retrieved like any other,
        and found by :meth:`find_transfer` when it matches the look-up, as at
        Stripe. Set-up, not a request: no handler, outage or balance applies.
        """
        with self._lock:
            return self._stripe.plant(
                amount_cents=amount_cents,
                currency=currency,
                destination=destination,
                transfer_group=transfer_group,
                metadata=metadata or {},
            )

    def reverse(self, stripe_transfer_id: str, amount_cents: int) -> ReversalRecord:
        """Reverse ``amount_cents`` of a transfer, as an operator would in
        Stripe's dashboard: a reversal with no metadata (so no
        ``payout_reversal_key``) and no key; the transfer's ``amount_reversed``
        grows, and it is ``reversed`` once the whole amount is. Returns the
        reversal; the balance is left as it is. Set-up, not a request: no
        handler or outage applies.

        Raises:
            ValueError: Stripe holds no such transfer, or ``amount_cents`` is not
                between 1 and what is left to reverse of it.
        """
        with self._lock:
            return self._stripe.reverse(stripe_transfer_id, amount_cents)

    def systemic_outage(
        self, code: str = "authentication_error", message: str | None = None
    ) -> None:
        """Answer every call, creates, reversals, look-ups and reads, with ``Systemic(code)``
        until :meth:`end_outage`, in front of the API (nothing saved); a listing
        raises :class:`~payout_core.errors.GatewayUnavailable` at its next page.
        Takes precedence over the handler."""
        with self._lock:
            self._outage = Fault.systemic(code, message)

    def end_outage(self) -> None:
        with self._lock:
            self._outage = None

    def finish_in_flight(self) -> None:
        """Let Stripe finish every request it is still executing (see
        :meth:`Fault.finishes_later`), whatever the clock says: the end of a
        simulation. A request held by a sleeping thread finishes with its thread."""
        with self._lock:
            self._stripe.finish_all()

    @property
    def in_flight(self) -> int:
        """How many requests Stripe is still executing."""
        with self._lock:
            return self._stripe.in_flight

    @property
    def next_finish_at(self) -> datetime | None:
        """When the next request Stripe is still executing finishes, by the
        gateway's clock; ``None`` when none is scheduled."""
        with self._lock:
            return self._stripe.next_finish_at

    def reset(self) -> None:
        """Forget every transfer, reversal, key, logged request, decline, deleted
        account, balance, request in flight and outage. The handler, clock, window,
        latency and page size stay."""
        with self._lock:
            self._init_state()

    # -- what happened, for assertions ----------------------------------------

    def created_transfers(self) -> list[TransferRecord]:
        """Every transfer created, in creation order."""
        with self._lock:
            return self._stripe.records()

    def transfers_for(self, payout_transfer_id: str) -> list[TransferRecord]:
        """The transfers created for one payout transfer (more than one is a double payment)."""
        with self._lock:
            return self._stripe.records_for(payout_transfer_id)

    def reversals_of(self, stripe_transfer_id: str) -> list[ReversalRecord]:
        """Every reversal of one transfer, made through :meth:`create_reversal`
        or :meth:`reverse`, oldest first."""
        with self._lock:
            return self._stripe.reversals_of(stripe_transfer_id)

    @property
    def requests(self) -> tuple[outcomes.TransferRequest, ...]:
        """Every Create Transfer call received, in order, whatever it answered."""
        with self._lock:
            self._stripe.catch_up()
            return tuple(r for r in self._writes if isinstance(r, outcomes.TransferRequest))

    @property
    def reversal_requests(self) -> tuple[outcomes.ReversalRequest, ...]:
        """Every Create Reversal call received, in order, whatever it answered."""
        with self._lock:
            self._stripe.catch_up()
            return tuple(r for r in self._writes if isinstance(r, outcomes.ReversalRequest))

    @property
    def lookups(self) -> tuple[outcomes.TransferLookup, ...]:
        """Every look-up received, in order."""
        with self._lock:
            self._stripe.catch_up()
            return tuple(self._lookups)

    # -- the port -------------------------------------------------------------

    def create_transfer(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        return self._send(Operation.CREATE, request)

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        with self._lock:
            self._lookups.append(lookup)
            call = self._next_call(Operation.FIND, lookup.payout_transfer_id)
            outage = self._outage
        fault = outage or self._ask_handler(lookup, call)
        self._pause()
        if fault is not None:
            match fault.kind:
                case FaultKind.RESPOND:
                    return _as_lookup_outcome(fault)
                case FaultKind.LOST_RESPONSE | FaultKind.FINISHES_LATER:
                    return _LOST
                case FaultKind.SERVER_ERROR:
                    return _LOOKUP_SERVER_ERROR
        with self._lock:
            return self._stripe.find(lookup)

    def retrieve_transfer(self, stripe_transfer_id: str) -> outcomes.RetrieveOutcome:
        with self._lock:
            outage = self._outage
        self._pause()
        if outage is not None:
            return _as_read_failure(outage)
        with self._lock:
            record = self._stripe.get(stripe_transfer_id)
        return outcomes.NotFound() if record is None else record.as_stripe_transfer()

    def list_transfers(self, query: outcomes.TransferQuery) -> Iterator[outcomes.StripeTransfer]:
        """Page by page as Stripe lists, each page read when the iteration
        reaches it: an outage begun meanwhile fails the next page."""
        pages = self._pages(
            lambda after: self._stripe.list_page(query, starting_after=after, limit=self._page_size)
        )
        yield from (record.as_stripe_transfer() for record in pages)

    # -- ReversalGateway ------------------------------------------------------

    def create_reversal(self, request: outcomes.ReversalRequest) -> outcomes.ReversalOutcome:
        return self._send(Operation.REVERSE, request)

    def list_reversals(self, stripe_transfer_id: str) -> Iterator[outcomes.StripeReversal]:
        """Newest first, page by page as :meth:`list_transfers`; a transfer
        Stripe does not hold raises ``GatewayUnavailable("resource_missing")``."""
        pages = self._pages(
            lambda after: self._stripe.reversals_page(
                stripe_transfer_id, starting_after=after, limit=self._page_size
            )
        )
        yield from (record.as_stripe_reversal() for record in pages)

    # -- inside ---------------------------------------------------------------

    @overload
    def _send(
        self, operation: Operation, request: outcomes.TransferRequest
    ) -> outcomes.GatewayOutcome: ...
    @overload
    def _send(
        self, operation: Operation, request: outcomes.ReversalRequest
    ) -> outcomes.ReversalOutcome: ...
    def _send(
        self, operation: Operation, request: stripe_model.Write
    ) -> outcomes.GatewayOutcome | outcomes.ReversalOutcome:
        """One write through the handler, the faults and Stripe's idempotency
        layer: the one path of Create Transfer and Create Reversal."""
        # Stripe's side catches up with its clock in receive(), before it answers.
        with self._lock:
            self._writes.append(request)
            call = self._next_call(operation, request.idempotency_key)
            outage = self._outage
        fault = outage or self._ask_handler(request, call)
        if (
            fault is not None
            and fault.kind is FaultKind.RESPOND
            and isinstance(fault.outcome, outcomes.Permanent)
        ):
            with self._lock:
                if self._stripe.knows(request.idempotency_key):
                    # Parameters are validated behind the idempotency layer: a
                    # key Stripe knows is replayed, never refused anew.
                    fault = None
        kind = fault.kind if fault is not None else None
        if fault is not None and kind is FaultKind.RESPOND:
            self._pause()
            return _as_write_outcome(fault, request)
        with self._lock:
            stripe = self._stripe  # after a reset(), this request still ends where it began
            answer = stripe.receive(request)
            if answer is None and fault is not None and kind is FaultKind.FINISHES_LATER:
                stripe.execute_later(request, timedelta(seconds=fault.seconds))
                return _GAVE_UP
        if answer is None:
            try:
                self._pause()  # with the key in flight: a concurrent request meets a 409
            except BaseException:
                with self._lock:
                    stripe.abandon(request)
                raise
            with self._lock:
                answer = stripe.execute(
                    request,
                    server_error=kind is FaultKind.SERVER_ERROR,
                    created=fault is not None and fault.created,
                )
        else:
            self._pause()
        return _LOST if kind is FaultKind.LOST_RESPONSE else answer

    def _pages(
        self, read: Callable[[str | None], tuple[list[_Record], bool] | outcomes.Permanent]
    ) -> Iterator[_Record]:
        """Every record of a listing, one page a step as Stripe lists, each page
        read (by ``read``, given the cursor) when the iteration reaches it: an
        outage begun meanwhile fails the next page."""
        starting_after: str | None = None
        while True:
            with self._lock:
                outage = self._outage
            self._pause()
            if outage is not None:
                failure = _as_read_failure(outage)
                raise errors.GatewayUnavailable(failure.code, failure.message)
            with self._lock:
                page = read(starting_after)
            if isinstance(page, outcomes.Permanent):
                # No such transfer, or Stripe forgot the cursor (a reset() meanwhile).
                raise errors.GatewayUnavailable(page.code, page.message)
            records, has_more = page
            yield from records
            if not has_more:
                return
            starting_after = records[-1].id

    def _next_call(self, operation: Operation, subject: str) -> Call:
        self._calls += 1
        attempt = self._attempts.get((operation, subject), 0) + 1
        self._attempts[operation, subject] = attempt
        return Call(operation=operation, attempt=attempt, number=self._calls)

    def _ask_handler(self, request: Request, call: Call) -> Fault | None:
        return None if self._handler is None else self._handler(request, call)

    def _pause(self) -> None:
        low, high = self._latency
        if high <= 0.0:
            return
        with self._lock:
            seconds = self._random.uniform(low, high)
        self._sleep(seconds)


def _as_write_outcome(
    fault: Fault, request: stripe_model.Write
) -> outcomes.GatewayOutcome | outcomes.ReversalOutcome:
    outcome = fault.outcome
    if isinstance(outcome, _Failure):
        return outcome
    if isinstance(request, outcomes.TransferRequest) and isinstance(outcome, outcomes.Succeeded):
        return outcome
    if isinstance(request, outcomes.ReversalRequest) and isinstance(outcome, outcomes.Reversed):
        return outcome
    endpoint = (
        "Create Transfer" if isinstance(request, outcomes.TransferRequest) else "Create Reversal"
    )
    raise TypeError(f"{fault!r} is not an answer to {endpoint}")


def _as_lookup_outcome(fault: Fault) -> outcomes.LookupOutcome:
    outcome = fault.outcome
    if outcome is None or isinstance(outcome, outcomes.Succeeded | outcomes.Reversed):
        raise TypeError(f"{fault!r} is not an answer to a look-up")
    return outcome


def _as_read_failure(fault: Fault) -> _Failure:
    outcome = fault.outcome
    if outcome is None or isinstance(
        outcome, outcomes.Succeeded | outcomes.Reversed | outcomes.Found | outcomes.NotFound
    ):
        raise TypeError(f"{fault!r} is not a failure to read")
    return outcome


@attrs.define
class _RandomFaults:
    """A handler drawing faults at fixed rates from a seeded generator."""

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
