"""The simulated Stripe itself: transfers, reversals, idempotency keys, the balance and accounts.

Why one long module: it is one idea, Stripe's behaviour, and the rules below
share one state (a key's saved answer is the transfer or the reversal its
endpoint made; a late execution runs the endpoint as of its finish time).
Split by endpoint, each half would need the other's indexes; the records and
the paging helper at the top and bottom are what the reads hand out.

:class:`StripeModel` is what Stripe (API v1) does with Create Transfer, List
Transfers, Create Reversal and List Reversals, with no faults and no threads:
:class:`~payout_adapters.memory.gateway.SimulatedGateway` wraps it with the
faults a test scripts (:mod:`payout_adapters.memory.faults`), latency and a
lock. The rules it keeps are the ones payout-core's exactly-once rules rely on
(DESIGN.md section 3), each pinned against the fake Stripe server too by
``tests/contracts/gateway_contract.py``:

* **One idempotency layer for every write.** Create Transfer and Create
  Reversal go through the same keys, as at Stripe, where a key belongs to the
  account and not to an endpoint: a transfer's key sent with a reversal is an
  ``idempotency_error``. What follows holds for both.
* **Keys are saved once the endpoint runs.** The first request with a key saves
  its answer, whatever it is: a success, a refusal (a decline,
  ``balance_insufficient``), a 500. Later requests with the key and the same
  parameters get it back (a success marked ``replayed``); with other parameters
  they get ``idempotency_error``; while the first request still executes, 409
  ``idempotency_key_in_use``. Neither of those two creates anything.
* **Keys are forgotten** ``key_window`` after their *first* use (replays do not
  extend it), by the model's clock, which is Stripe's own clock. After that the
  same key executes again: a second transfer.
* **A request can finish after its caller gave up** (:meth:`StripeModel.execute_later`):
  its key stays in flight until the clock reaches the finish time, and it runs
  then, as any request would at that moment. Due executions run lazily, at the
  start of every method, so a driver that only moves a
  :class:`~payout_adapters.memory.ManualClock` sees them happen in order.
* **Look-ups** list by transfer group and, when given, destination, and match
  ``metadata.payout_transfer_id``; a destination Stripe does not know is a
  ``resource_missing`` refusal, not an empty list.
* **Lists** (:meth:`StripeModel.list_page`) are newest first, by transfer group
  and creation time, paged with ``starting_after`` as Stripe pages; a transfer
  is retrieved by id (:meth:`StripeModel.get`).
* **Reversals** (:meth:`StripeModel.receive` with a
  :class:`~payout_core.outcomes.ReversalRequest`) take back part or all of
  what is left of a transfer: more than is left, or anything of a transfer
  wholly reversed, is a 400 refusal saved under the key, and a transfer
  Stripe does not hold a 404 ``resource_missing``; an amount below one cent
  is refused by parameter validation, in front of the key (nothing saved).
  Each reversal grows the transfer's ``amount_reversed``, and it is
  ``reversed`` once all of it is; they are listed newest first
  (:meth:`StripeModel.reversals_page`). The platform's balance is left as it
  is (Stripe would credit it): nothing here pays from a reversal.
* **Set-up outside the API**: a transfer made by someone else
  (:meth:`StripeModel.plant`, no idempotency key) and a reversal made in the
  dashboard (:meth:`StripeModel.reverse`, no metadata) change what the reads
  see, and nothing else (the balance is left as it is).

Nothing here reads the wall clock or sleeps: its time is its ``clock``'s
(:class:`payout_core.ports.Clock`), so, driven from one thread with a manual
clock and a seeded generator, it is deterministic.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import random
import string
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar, overload

import attrs

from payout_core import outcomes, ports

__all__ = [
    "KEY_IN_USE",
    "SERVER_ERROR",
    "Answer",
    "ReversalAnswer",
    "ReversalRecord",
    "StripeModel",
    "TransferRecord",
    "Write",
]

_ID_ALPHABET = string.ascii_letters + string.digits

Answer = outcomes.Succeeded | outcomes.Unknown | outcomes.Permanent | outcomes.Systemic
"""What Create Transfer answers once its endpoint ran, and what is saved under the key."""

ReversalAnswer = outcomes.Reversed | outcomes.Unknown | outcomes.Permanent | outcomes.Systemic
"""What Create Reversal answers once its endpoint ran, and what is saved under the key."""

Write = outcomes.TransferRequest | outcomes.ReversalRequest
"""A request the idempotency layer keeps a key for."""

_AnyAnswer = Answer | ReversalAnswer


@attrs.frozen(kw_only=True)
class TransferRecord:
    """A transfer the simulated Stripe holds, as Create Transfer made it (or a
    test planted it), with the reversals made since."""

    id: str
    amount_cents: int
    currency: str
    destination: str
    transfer_group: str | None
    metadata: tuple[tuple[str, str], ...]
    idempotency_key: str | None  # None: made outside payout-core's requests (planted)
    created_at: datetime
    sequence: int  # creation order, from 1
    amount_reversed: int = 0
    reversed: bool = False  # the whole amount was reversed

    @property
    def payout_transfer_id(self) -> str | None:
        return dict(self.metadata).get("payout_transfer_id")

    @property
    def user_id(self) -> str | None:
        """The winner it pays, as payout-core's metadata names them."""
        return dict(self.metadata).get("user_id")

    def as_stripe_transfer(self) -> outcomes.StripeTransfer:
        """What a retrieve or a list answers about it."""
        return outcomes.StripeTransfer(
            id=self.id,
            amount_cents=self.amount_cents,
            currency=self.currency,
            destination=self.destination,
            transfer_group=self.transfer_group,
            payout_transfer_id=self.payout_transfer_id,
            created_at=self.created_at,
            amount_reversed=self.amount_reversed,
            reversed=self.reversed,
        )


@attrs.frozen(kw_only=True)
class ReversalRecord:
    """A reversal the simulated Stripe holds, as Create Reversal made it (or an
    operator in the dashboard, with no metadata and no key)."""

    id: str  # trr_...
    stripe_transfer_id: str
    amount_cents: int
    currency: str
    metadata: tuple[tuple[str, str], ...]
    idempotency_key: str | None  # None: made in the dashboard
    created_at: datetime
    sequence: int  # creation order among every reversal, from 1

    @property
    def payout_reversal_key(self) -> str | None:
        return dict(self.metadata).get("payout_reversal_key")

    def as_stripe_reversal(self) -> outcomes.StripeReversal:
        """What a list of the transfer's reversals answers about it."""
        return outcomes.StripeReversal(
            id=self.id,
            stripe_transfer_id=self.stripe_transfer_id,
            amount_cents=self.amount_cents,
            currency=self.currency,
            created_at=self.created_at,
            payout_reversal_key=self.payout_reversal_key,
        )


class _Listed(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def sequence(self) -> int: ...


_R = TypeVar("_R", bound=_Listed)

# Where a record sorts in a list: newest last here, listed from the end. The
# sequence breaks ties of one instant, so no two records share a place.
_Place = tuple[datetime, int, str]


def _place(record: _Listed) -> _Place:
    return (record.created_at, record.sequence, record.id)


@attrs.define
class _Key:
    """What Stripe remembers about one idempotency key."""

    params: Write  # the first request's, key blanked, for comparison
    first_used_at: datetime
    answer: _AnyAnswer | None = None  # None while the first request is still executing


@attrs.frozen(order=True)
class _Scheduled:
    finishes_at: datetime
    sequence: int  # ties run in the order they were scheduled
    request: Write = attrs.field(order=False)


SERVER_ERROR = outcomes.Unknown(
    code="api_error",
    message="simulated 500, saved under the idempotency key",
    key_replays_error=True,
)


KEY_IN_USE = outcomes.Unknown(
    code="idempotency_key_in_use",
    message="simulated 409: another request with this idempotency key is in progress",
)


def _idempotency_error() -> outcomes.Unknown:
    return outcomes.Unknown(
        code="idempotency_error",
        message="simulated 400: keys for idempotent requests can only be used with the same "
        "parameters they were first used with",
        key_replays_error=True,
    )


def _no_such_destination(account_id: str) -> outcomes.Permanent:
    return outcomes.Permanent(
        code="resource_missing", message=f"simulated 400: no such destination: '{account_id}'"
    )


def _no_such_transfer(transfer_id: str) -> outcomes.Permanent:
    return outcomes.Permanent(
        code="resource_missing", message=f"simulated 404: no such transfer: '{transfer_id}'"
    )


def _more_than_left(transfer_id: str, amount_cents: int, left: int) -> outcomes.Permanent:
    # Stripe answers a 400 invalid_request_error with no code (the gateway's
    # table names it invalid_request), on the amount parameter.
    if left == 0:
        said = f"the transfer {transfer_id} is already fully reversed"
    else:
        said = (
            f"reversal amount ({amount_cents}) is greater than the amount left to reverse "
            f"({left}) of transfer {transfer_id}"
        )
    return outcomes.Permanent(code="invalid_request", message=f"simulated 400: {said}")


def _balance_insufficient(amount_cents: int, balance: int) -> outcomes.Systemic:
    return outcomes.Systemic(
        code="balance_insufficient",
        message=f"simulated 400: insufficient available funds ({amount_cents} asked, "
        f"{balance} available)",
        conclusive=True,
    )


def _invalid(request: Write) -> outcomes.Permanent | None:
    """Parameter validation: a refusal in front of the endpoint, saved under no key."""
    if isinstance(request, outcomes.ReversalRequest) and request.amount_cents < 1:
        return outcomes.Permanent(
            code="parameter_invalid_integer",
            message=f"simulated 400: invalid positive integer: amount {request.amount_cents}",
        )
    return None


class StripeModel:
    """One platform account at the simulated Stripe. Not thread-safe: its owner
    serialises every call (``SimulatedGateway`` holds its lock around each).

    Args:
        clock: Stripe's clock: key ages, finish times, ``created_at``.
        key_window: how long after its first use a key is kept.
        rng: draws the ``tr_...`` ids (seeded: reproducible ids).
    """

    def __init__(self, *, clock: ports.Clock, key_window: timedelta, rng: random.Random) -> None:
        if key_window <= timedelta(0):
            raise ValueError(f"key_window must be positive, got {key_window}")
        self._clock = clock
        self._key_window = key_window
        self._rng = rng
        # Records are frozen: a reversal replaces one here, and the indexes hold ids.
        self._by_id: dict[str, TransferRecord] = {}  # in creation order
        self._by_payout: dict[str, list[str]] = {}
        self._ordered: list[_Place] = []  # every record, oldest first
        self._by_group: dict[str | None, list[_Place]] = {}  # each group's, oldest first
        self._reversals: dict[str, ReversalRecord] = {}  # in creation order
        self._reversals_of: dict[str, list[_Place]] = {}  # each transfer's, oldest first
        self._keys: dict[str, _Key] = {}
        # Keys with a saved answer, oldest first use (nearly) first, so that
        # forgetting them costs nothing per call; see _forget_old_keys.
        self._saved_order: collections.deque[tuple[datetime, str]] = collections.deque()
        self._scheduled: list[_Scheduled] = []  # a heap
        self._scheduled_count = 0
        self._executing = 0
        self._balance: int | None = None
        self._refusals: dict[str, outcomes.Permanent] = {}
        self._deleted: set[str] = set()

    # -- the platform's state ------------------------------------------------------------------

    @property
    def balance(self) -> int | None:
        self.catch_up()
        return self._balance

    def set_balance(self, cents: int | None) -> None:
        """The available balance in cents; ``None`` never runs out."""
        self.catch_up()  # what finished before now drew on the old balance
        self._balance = cents

    def refuse(self, who: str, refusal: outcomes.Permanent) -> None:
        """Refuse transfers to ``who`` (a destination, or a ``user_id`` in the metadata)."""
        self.catch_up()
        self._refusals[who] = refusal

    def stop_refusing(self, who: str) -> None:
        self.catch_up()
        self._refusals.pop(who, None)

    def delete_account(self, account_id: str) -> None:
        """Stripe no longer knows ``account_id``: creates to it and look-ups
        filtered by it answer ``resource_missing``. There is no way back."""
        self.catch_up()
        self._deleted.add(account_id)

    # -- the idempotency layer, in front of Create Transfer and Create Reversal ---------------

    def knows(self, key: str) -> bool:
        """Whether the idempotency layer holds ``key`` (answered or in flight, not
        yet forgotten): a request with it is answered by that layer."""
        now = self._catch_up()
        known = self._keys.get(key)
        return known is not None and not (known.answer is not None and self._expired(known, now))

    @overload
    def receive(self, request: outcomes.TransferRequest) -> Answer | None: ...
    @overload
    def receive(self, request: outcomes.ReversalRequest) -> ReversalAnswer | None: ...
    def receive(self, request: Write) -> _AnyAnswer | None:
        """The idempotency layer, in front of the endpoint.

        Returns the answer Stripe gives without running the endpoint (a replay,
        409 ``idempotency_key_in_use``, ``idempotency_error``, or a refusal of
        parameter validation for a new key, which saves nothing), or ``None``:
        the endpoint will run, and the key is in flight until :meth:`execute`,
        :meth:`execute_later` or :meth:`abandon` is called for this request.
        """
        now = self._catch_up()
        key = request.idempotency_key
        params = attrs.evolve(request, idempotency_key="")
        known = self._keys.get(key)
        if known is not None and known.answer is not None and self._expired(known, now):
            del self._keys[key]  # pruned: Stripe no longer knows this key
            known = None
        if known is None:
            refusal = _invalid(request)
            if refusal is not None:
                return refusal
            self._keys[key] = _Key(params=params, first_used_at=now)
            self._executing += 1
            return None
        if known.params != params:
            return _idempotency_error()
        if known.answer is None:
            return KEY_IN_USE
        if isinstance(known.answer, outcomes.Succeeded | outcomes.Reversed):
            return attrs.evolve(known.answer, replayed=True)
        return known.answer

    @overload
    def execute(
        self, request: outcomes.TransferRequest, *, server_error: bool = ..., created: bool = ...
    ) -> Answer: ...
    @overload
    def execute(
        self, request: outcomes.ReversalRequest, *, server_error: bool = ..., created: bool = ...
    ) -> ReversalAnswer: ...
    def execute(
        self, request: Write, *, server_error: bool = False, created: bool = False
    ) -> _AnyAnswer:
        """Run the endpoint now for a request :meth:`receive` let in, and save its
        answer under the key.

        ``server_error``: the endpoint fails with a 500, after creating the
        transfer or the reversal when ``created`` (and Stripe would otherwise
        have created it).
        """
        return self._run(request, self._catch_up(), server_error=server_error, created=created)

    def execute_later(self, request: Write, after: timedelta) -> datetime:
        """Run the endpoint of a request :meth:`receive` let in once the clock
        is ``after`` later; until then its key is in flight. Returns the finish time."""
        if after < timedelta(0):
            raise ValueError(f"a request cannot finish before it started ({after})")
        finishes_at = self._clock.now() + after
        self._scheduled_count += 1
        heapq.heappush(self._scheduled, _Scheduled(finishes_at, self._scheduled_count, request))
        return finishes_at

    def abandon(self, request: Write) -> None:
        """The request let in never reached the endpoint: its key is free again."""
        key = self._keys.get(request.idempotency_key)
        if key is not None and key.answer is None:
            del self._keys[request.idempotency_key]
            self._executing -= 1

    def catch_up(self) -> None:
        """Run every execution the clock has reached, in finish order, and forget
        keys past their window."""
        self._catch_up()

    def finish_all(self) -> None:
        """Run every scheduled execution now, whatever the clock says, each at
        its own finish time (the end of a simulation)."""
        while self._scheduled:
            due = heapq.heappop(self._scheduled)
            self._run(due.request, due.finishes_at)

    @property
    def in_flight(self) -> int:
        """Requests whose endpoint is still executing (scheduled or not)."""
        self.catch_up()
        return self._executing

    @property
    def next_finish_at(self) -> datetime | None:
        """When the next scheduled execution finishes; ``None`` when none is."""
        self.catch_up()
        return self._scheduled[0].finishes_at if self._scheduled else None

    # -- List Transfers ------------------------------------------------------------------------

    def find(
        self, lookup: outcomes.TransferLookup
    ) -> outcomes.Found | outcomes.NotFound | outcomes.Permanent:
        """The oldest transfer of the group (to the destination, when given) made
        for ``lookup.payout_transfer_id``, as a paged list filtered by Stripe
        and matched on metadata would find it."""
        self.catch_up()
        if lookup.destination is not None and lookup.destination in self._deleted:
            return _no_such_destination(lookup.destination)
        for record in self._records_for(lookup.payout_transfer_id):
            if record.transfer_group == lookup.transfer_group and lookup.destination in (
                None,
                record.destination,
            ):
                return outcomes.Found(stripe_transfer_id=record.id)
        return outcomes.NotFound()

    def get(self, transfer_id: str) -> TransferRecord | None:
        """Retrieve a transfer: ``None`` when Stripe holds no such transfer."""
        self.catch_up()
        return self._by_id.get(transfer_id)

    def list_page(
        self, query: outcomes.TransferQuery, *, starting_after: str | None, limit: int
    ) -> tuple[list[TransferRecord], bool] | outcomes.Permanent:
        """One page of List Transfers: up to ``limit`` transfers ``query``
        selects, newest first, after the transfer ``starting_after`` (from the
        newest when ``None``), and whether more follow; a ``resource_missing``
        refusal when Stripe holds no transfer ``starting_after``."""
        self.catch_up()
        places = (
            self._ordered
            if query.transfer_group is None
            else self._by_group.get(query.transfer_group, [])
        )
        return _page(
            places,
            self._by_id,
            kind="transfer",
            starting_after=starting_after,
            limit=limit,
            since=query.created_since,
        )

    # -- Create Reversal, List Reversals -------------------------------------------------------

    def reversals_page(
        self, stripe_transfer_id: str, *, starting_after: str | None, limit: int
    ) -> tuple[list[ReversalRecord], bool] | outcomes.Permanent:
        """One page of the transfer's reversals, newest first, after the reversal
        ``starting_after`` (from the newest when ``None``), and whether more
        follow; a ``resource_missing`` refusal when Stripe holds no such
        transfer, or no such reversal of it to start after."""
        self.catch_up()
        if stripe_transfer_id not in self._by_id:
            return _no_such_transfer(stripe_transfer_id)
        return _page(
            self._reversals_of.get(stripe_transfer_id, []),
            self._reversals,
            kind="transfer reversal",
            starting_after=starting_after,
            limit=limit,
        )

    def reversals_of(self, stripe_transfer_id: str) -> list[ReversalRecord]:
        """Every reversal of the transfer, oldest first."""
        self.catch_up()
        places = self._reversals_of.get(stripe_transfer_id, [])
        return [self._reversals[reversal_id] for _at, _sequence, reversal_id in places]

    def records(self) -> list[TransferRecord]:
        self.catch_up()
        return list(self._by_id.values())

    def records_for(self, payout_transfer_id: str) -> list[TransferRecord]:
        self.catch_up()
        return self._records_for(payout_transfer_id)

    # -- outside the API: set-up for tests -----------------------------------------------------

    def plant(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
    ) -> TransferRecord:
        """A transfer made now by someone else than payout-core (the dashboard,
        another program), or a second one for a payout: held and listed, found
        by look-ups like any other. Nothing is refused and the balance is left
        as it is."""
        if amount_cents < 1:
            raise ValueError(f"a transfer moves at least one cent, got {amount_cents}")
        return self._add(
            amount_cents=amount_cents,
            currency=currency,
            destination=destination,
            transfer_group=transfer_group,
            metadata=tuple(metadata.items()),
            idempotency_key=None,
            created_at=self._catch_up(),
        )

    def reverse(self, transfer_id: str, amount_cents: int) -> ReversalRecord:
        """A reversal of ``amount_cents`` made now in the dashboard, with no
        metadata and no key: the transfer's ``amount_reversed`` grows, and it is
        ``reversed`` once all of it is. Returns the reversal.

        Raises:
            ValueError: no such transfer, or not between 1 cent and what is left
                to reverse of it.
        """
        now = self._catch_up()
        record = self._by_id.get(transfer_id)
        if record is None:
            raise ValueError(f"no such transfer: {transfer_id!r}")
        left = record.amount_cents - record.amount_reversed
        if not 1 <= amount_cents <= left:
            raise ValueError(
                f"{transfer_id} has {left} cents left to reverse, cannot reverse {amount_cents}"
            )
        return self._add_reversal(
            record, amount_cents=amount_cents, metadata=(), idempotency_key=None, created_at=now
        )

    # -- inside --------------------------------------------------------------------------------

    def _catch_up(self) -> datetime:
        now = self._clock.now()
        while self._scheduled and self._scheduled[0].finishes_at <= now:
            due = heapq.heappop(self._scheduled)
            self._run(due.request, due.finishes_at)
        self._forget_old_keys(now)
        return now

    def _expired(self, key: _Key, now: datetime) -> bool:
        return now - key.first_used_at >= self._key_window

    def _forget_old_keys(self, now: datetime) -> None:
        # Only memory is at stake here: receive() checks a key's age itself, so
        # a key left behind (the clock was set back, or it finished out of
        # order) is still forgotten on time.
        while self._saved_order and now - self._saved_order[0][0] >= self._key_window:
            first_used_at, key = self._saved_order.popleft()
            known = self._keys.get(key)
            if (
                known is not None
                and known.answer is not None
                and known.first_used_at == first_used_at
            ):
                del self._keys[key]

    def _run(
        self,
        request: Write,
        at: datetime,
        *,
        server_error: bool = False,
        created: bool = False,
    ) -> _AnyAnswer:
        if server_error:
            if created:
                self._endpoint(request, at)  # what it did is lost behind the 500
            saved: _AnyAnswer = SERVER_ERROR
        else:
            saved = self._endpoint(request, at)
        key = self._keys.get(request.idempotency_key)
        if key is not None and key.answer is None:
            key.answer = saved
            self._executing -= 1
            self._saved_order.append((key.first_used_at, request.idempotency_key))
        return saved

    def _endpoint(self, request: Write, at: datetime) -> _AnyAnswer:
        if isinstance(request, outcomes.ReversalRequest):
            return self._reverse_endpoint(request, at)
        return self._transfer_endpoint(request, at)

    def _transfer_endpoint(self, request: outcomes.TransferRequest, at: datetime) -> Answer:
        """Create Transfer itself: refuse, or move the money."""
        if request.destination in self._deleted:
            return _no_such_destination(request.destination)
        user_id = dict(request.metadata).get("user_id")
        refusal = self._refusals.get(request.destination) or (
            self._refusals.get(user_id) if user_id is not None else None
        )
        if refusal is not None:
            return refusal
        if self._balance is not None:
            if request.amount_cents > self._balance:
                return _balance_insufficient(request.amount_cents, self._balance)
            self._balance -= request.amount_cents
        record = self._add(
            amount_cents=request.amount_cents,
            currency=request.currency,
            destination=request.destination,
            transfer_group=request.transfer_group,
            metadata=request.metadata,
            idempotency_key=request.idempotency_key,
            created_at=at,
        )
        return outcomes.Succeeded(stripe_transfer_id=record.id)

    def _add(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        metadata: tuple[tuple[str, str], ...],
        idempotency_key: str | None,
        created_at: datetime,
    ) -> TransferRecord:
        record = TransferRecord(
            id="tr_" + "".join(self._rng.choices(_ID_ALPHABET, k=24)),
            amount_cents=amount_cents,
            currency=currency,
            destination=destination,
            transfer_group=transfer_group,
            metadata=metadata,
            idempotency_key=idempotency_key,
            created_at=created_at,
            sequence=len(self._by_id) + 1,
        )
        self._by_id[record.id] = record
        if record.payout_transfer_id is not None:
            self._by_payout.setdefault(record.payout_transfer_id, []).append(record.id)
        # A request finishing late, or a clock set back, may come before newer ones.
        bisect.insort(self._ordered, _place(record))
        bisect.insort(self._by_group.setdefault(transfer_group, []), _place(record))
        return record

    def _records_for(self, payout_transfer_id: str) -> list[TransferRecord]:
        return [self._by_id[i] for i in self._by_payout.get(payout_transfer_id, ())]

    def _reverse_endpoint(self, request: outcomes.ReversalRequest, at: datetime) -> ReversalAnswer:
        """Create Reversal itself: refuse, or take the money back."""
        record = self._by_id.get(request.stripe_transfer_id)
        if record is None:
            return _no_such_transfer(request.stripe_transfer_id)
        left = record.amount_cents - record.amount_reversed
        if request.amount_cents > left:
            return _more_than_left(record.id, request.amount_cents, left)
        reversal = self._add_reversal(
            record,
            amount_cents=request.amount_cents,
            metadata=request.metadata,
            idempotency_key=request.idempotency_key,
            created_at=at,
        )
        return outcomes.Reversed(stripe_reversal_id=reversal.id)

    def _add_reversal(
        self,
        record: TransferRecord,
        *,
        amount_cents: int,
        metadata: tuple[tuple[str, str], ...],
        idempotency_key: str | None,
        created_at: datetime,
    ) -> ReversalRecord:
        reversal = ReversalRecord(
            id="trr_" + "".join(self._rng.choices(_ID_ALPHABET, k=24)),
            stripe_transfer_id=record.id,
            amount_cents=amount_cents,
            currency=record.currency,
            metadata=metadata,
            idempotency_key=idempotency_key,
            created_at=created_at,
            sequence=len(self._reversals) + 1,
        )
        self._reversals[reversal.id] = reversal
        bisect.insort(self._reversals_of.setdefault(record.id, []), _place(reversal))
        reversed_now = record.amount_reversed + amount_cents
        # Records are frozen: the transfer is replaced, its indexes hold its id.
        self._by_id[record.id] = attrs.evolve(
            record, amount_reversed=reversed_now, reversed=reversed_now == record.amount_cents
        )
        return reversal


def _page(
    places: Sequence[_Place],
    records: Mapping[str, _R],
    *,
    kind: str,
    starting_after: str | None,
    limit: int,
    since: datetime | None = None,
) -> tuple[list[_R], bool] | outcomes.Permanent:
    """Up to ``limit`` of ``places`` (oldest first), newest first, after the
    record ``starting_after``, none created before ``since``; and whether more
    follow. A cursor that is not in ``records`` is Stripe's ``resource_missing``
    (``No such <kind>``)."""
    if limit < 1:
        raise ValueError(f"a page holds at least one record, got {limit}")
    end = len(places)
    if starting_after is not None:
        after = records.get(starting_after)
        if after is None:
            return outcomes.Permanent(
                code="resource_missing",
                message=f"simulated 400: no such {kind}: '{starting_after}'",
            )
        end = bisect.bisect_left(places, _place(after))
    page: list[_R] = []
    for index in range(end - 1, -1, -1):
        created_at, _sequence, record_id = places[index]
        if since is not None and created_at < since:
            break  # older ones all are: the list is in creation time order
        if len(page) == limit:
            return page, True
        page.append(records[record_id])
    return page, False
