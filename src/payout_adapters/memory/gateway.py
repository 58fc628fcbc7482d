"""A simulated Stripe for tests and the demo: Create, List and Retrieve Transfers, Create
and List Reversals, in memory.

Why one module of this length: its public surface is wide, not its idea. It is
the port over Stripe's model and the scripted faults, and each of Stripe's
states a test can set (``decline``, ``set_balance``, ``delete_account``,
``systemic_outage``, ``plant_transfer``, ``reverse``), each record it can
inspect, and each method of the three ports is a few locked lines over the model.

It implements :class:`payout_core.ports.PaymentGateway`,
:class:`payout_core.ports.TransferRecords` and
:class:`payout_core.ports.ReversalGateway`, over two modules:

* :mod:`payout_adapters.memory.stripe_model` is Stripe: transfers and their
  reversals, idempotency keys for both (replays, 409 while in flight,
  ``idempotency_error``, saved refusals and 500s, keys forgotten 24 hours
  after first use), the balance, accounts that refuse transfers, requests
  that finish after their caller gave up;
* :mod:`payout_adapters.memory.faults` is how a test scripts what happens on
  the way to it: a handler, called with each request and a ``Call``, answers
  a ``Fault`` or ``None`` (as ``httpx.MockTransport`` scripts HTTP), or faults
  drawn at seeded rates (:meth:`SimulatedGateway.with_random_faults`). Its
  names are importable from here too.

This module is the port over them: it asks the handler, applies the fault,
passes the request to Stripe's model under one lock, and adds latency.

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
answer, id and record is reproducible, and nothing sleeps or reads the wall
clock: the only time it knows is its ``clock``'s (the system clock only when
none is given), and the only waiting is latency asked for, through ``sleep``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias, TypeVar, overload

from payout_adapters import clock as clock_
from payout_adapters.memory import faults, stripe_model

# The scripting vocabulary, re-exported: a test scripting a gateway imports it from here.
from payout_adapters.memory.faults import (
    Call,
    Fault,
    FaultKind,
    FaultRates,
    Handler,
    Operation,
    Request,
)
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

_Failure: TypeAlias = outcomes.Transient | outcomes.Unknown | outcomes.Permanent | outcomes.Systemic

# What the gateway answers for a fault, in place of Stripe's answer.
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
            handler=faults.RandomFaults(rates=rates, random=random.Random(f"faults:{seed}")),
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
