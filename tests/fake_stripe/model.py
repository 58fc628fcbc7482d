"""The fake Stripe itself, without sockets: accounts, transfers and their
reversals, the idempotency layer, authentication, scripted faults and events.

It behaves as Stripe documents API v1 (https://docs.stripe.com/api/idempotent_requests):

* the first request with an idempotency key saves its status and body once the
  endpoint has begun executing, 500s included; a retry with the same key and
  the same parameters gets them back with ``Idempotent-Replayed: true``;
* the same key with other parameters is a 400 ``idempotency_error``;
* a request whose key is still in flight is a 409 ``idempotency_key_in_use``;
* requests refused before execution (authentication, rate limit, parameter
  validation) save nothing; refusals of the endpoint itself (a closed
  account, ``balance_insufficient``) are saved and replayed like any answer;
* keys are forgotten ``key_window`` (24 hours) after their first use, by the
  fake's own ``clock``: after that the same key executes again;
* a list filtered by a destination Stripe does not know is a 400
  ``resource_missing``, as Stripe answers a list filtered by an unknown object;
* a list filters by ``created`` as Stripe does: an exact unix time, or a range
  of ``created[gt]``, ``created[gte]``, ``created[lt]``, ``created[lte]``;
* Create Reversal (``POST /v1/transfers/{id}/reversals``: ``amount``, all
  that is left when absent; ``metadata``; ``description``) goes through the
  same idempotency layer as every POST. More than is left to reverse is a 400
  ``invalid_request_error`` on ``amount`` (Stripe's own words when nothing is
  left: "The transfer tr_... is already fully reversed."), a transfer Stripe
  does not hold a 404 ``resource_missing``; both are saved under the key, as
  the endpoint ran. An amount that is not a positive integer is refused by
  parameter validation (nothing saved). List Reversals (``GET`` on the same
  path) pages newest first with ``limit`` and ``starting_after``; the
  transfer's ``amount_reversed``, ``reversed`` and ``reversals`` (its latest
  ten, as Stripe embeds them) follow. The balance is left as it is;
* a transfer is planted with :meth:`FakeStripe.seed_transfer` and partly or
  wholly reversed with :meth:`FakeStripe.reverse_transfer`, as the dashboard
  would (a reversal with no metadata; neither is a request, and neither
  touches the balance);
* :meth:`FakeStripe.event_for` makes the ``event`` Stripe would send about a
  transfer (``transfer.reversed`` after a reversal), for
  :mod:`tests.fake_stripe.webhooks` to sign and deliver.

For benchmarks it can also behave like Stripe under load:

* ``latency``: every answer leaves no sooner than that after its request
  arrived. The request is decided and executed on arrival and its answer is
  held back, as a slow network or a slow Stripe would: a client that gives up
  sooner loses an answer to a request that did execute (the case the
  idempotency key exists for), and the rate limiter and
  :attr:`RecordedRequest.received_at` see requests when the client sent them.
  The wait holds no lock, so concurrent requests wait together.
* ``rate_limit``: Stripe's own limit, in requests per second for each
  endpoint on its own (Create Transfer, List Transfers, Retrieve a Transfer,
  Create and List Reversals are five), counted over a rolling second. It
  stands in front of everything else, as Stripe's limiter stands in front of
  the API: a request over the limit is a 429 ``rate_limit`` that executes
  nothing and saves nothing under its key. Only the requests it lets through
  count toward the window, whatever the API then answers them; refusals do
  not, so a client that keeps retrying at once does not lock itself out for
  longer.
* ``accept_any_account``: every destination is an active connected account
  (those starting with ``accounts_prefix``, when given), unless set up
  otherwise with :meth:`FakeStripe.add_account`, so a benchmark can pay
  thousands of winners without adding each account first.

For chaos runs (``tests/chaos``) it can also:

* keep faults for a window of its clock (``script(..., times=None, until=...)``)
  and draw them at random from a seed (:class:`~tests.fake_stripe.faults.Mix`),
  including :class:`~tests.fake_stripe.faults.Delay`, a request that takes
  longer than the client waits;
* revoke an API key (:meth:`FakeStripe.revoke_api_key`): a rotated key, whose
  every request is a 401 from then on;
* keep idempotency keys per account rather than per API key
  (``idempotency_per_account=True``), so that a request sent again with the new
  key after a rotation replays what the old key's request did, as Stripe's keys
  belong to the account;
* say which idempotency keys are in flight (:meth:`FakeStripe.in_flight_keys`).

Everything here is guarded by one lock, so the HTTP server may call
:meth:`FakeStripe.handle` from any number of threads.
"""

from __future__ import annotations

import collections
import copy
import enum
import json
import operator
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import attrs

from tests.fake_stripe import faults
from tests.fake_stripe.forms import FormValue

__all__ = [
    "API_VERSION",
    "DEFAULT_API_KEY",
    "AccountState",
    "FakeStripe",
    "ManualTime",
    "RecordedRequest",
    "Reply",
    "Report",
    "Request",
]

DEFAULT_API_KEY = "sk_test_FAKEfakeFAKE0123456789secretPART"
API_VERSION = "2026-10-28.endive"  # the Stripe-Version it answers with and dates events by
EMBEDDED_REVERSALS = 10  # how many of its latest reversals a transfer object carries


@attrs.define
class ManualTime:
    """A clock for :class:`FakeStripe` (seconds since the epoch) that moves only
    when the test moves it: a day passes at Stripe in no time."""

    now: float = 1_800_000_000.0  # 2027-01-15, any fixed moment will do
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self.now += by.total_seconds()


class AccountState(enum.Enum):
    ACTIVE = "active"
    CLOSED = "closed"  # rejected or closed by Stripe or the platform
    NO_TRANSFERS_CAPABILITY = "no_transfers_capability"


@attrs.frozen(kw_only=True)
class Request:
    method: str
    path: str
    params: Mapping[str, FormValue]  # the query of a GET, the form body of a POST
    headers: Mapping[str, str]  # names in lower case


@attrs.frozen(kw_only=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False  # close the connection without answering
    reset: bool = False  # ... with a TCP reset


@attrs.frozen(kw_only=True)
class RecordedRequest:
    method: str
    path: str
    params: Mapping[str, FormValue]
    idempotency_key: str | None
    status: int | None  # None: the connection was dropped
    replayed: bool
    fault: str | None  # the scripted fault that acted on it
    received_at: float  # by the fake's clock: when it arrived and met the rate limiter
    answered_at: float  # by the fake's clock: when its answer left, after the latency
    rate_limited: bool  # refused by the fake's own rate limiter (not by a scripted fault)
    # The endpoint ran: what it answered is what Stripe saves under an idempotency
    # key (its own refusals, a 500 while it ran). Refusals in front of it (401, the
    # rate limit, faults at the edge, 403, replays and key conflicts, invalid
    # parameters) did not execute.
    executed: bool


@attrs.frozen(kw_only=True)
class Report:
    """What happened at the fake Stripe during a run, for a benchmark to print."""

    requests: int
    transfers: int
    duplicated_payouts: int  # payout_transfer_ids in the metadata of more than one transfer
    rate_limited: int  # 429s answered by the fake's own rate limiter
    max_creates_in_one_second: int  # the most creates executed in any one-second window
    statuses: Mapping[str, int]  # answers per HTTP status; "dropped" for no answer
    # When each transfer was created (its create's arrival, by the fake's clock),
    # in order: the pace at which the fleet paid, as Stripe saw it.
    created_at: Sequence[float] = ()


@attrs.define
class _Trace:
    """What became of one request, filled in while it is handled, then recorded."""

    fault: str | None = None
    rate_limited: bool = False
    executed: bool = False
    # What each Mix script drew for this request, by the script's id: drawn once,
    # at the edge, and applied at the drawn fault's own stage.
    drawn: dict[int, faults.Fault | None] = attrs.Factory(dict)
    late_by: float = 0.0  # a Delay that executed first: its answer leaves this much later


@attrs.define
class _Script:
    fault: faults.Fault | faults.Mix
    method: str | None
    path: str | None
    idempotency_key: str | None
    times: int | None  # None: for ever (or until ``until``)
    after: int
    until: float | None = None  # by the fake's clock: the script ends then

    def fault_for(self, trace: _Trace) -> faults.Fault | None:
        """The fault this script holds for the request: its own, or what its mix
        drew for it (drawn on first asking)."""
        if not isinstance(self.fault, faults.Mix):
            return self.fault
        if id(self) not in trace.drawn:
            trace.drawn[id(self)] = self.fault.draw()
        return trace.drawn[id(self)]

    def matches(self, request: Request) -> bool:
        return (
            (self.method is None or self.method == request.method)
            and (self.path is None or _path_matches(self.path, request.path))
            and (
                self.idempotency_key is None
                or self.idempotency_key == request.headers.get("idempotency-key")
            )
        )


@attrs.define
class _SavedKey:
    fingerprint: str
    request_id: str
    first_used: float  # by the fake's clock: the key is forgotten a window after this
    reply: Reply | None = None  # None while the first request is in flight


@attrs.frozen
class _Result:
    reply: Reply
    executed: bool  # the endpoint began executing: the reply is saved under the key


def _segments(path: str) -> list[str]:
    return path.strip("/").split("/")


def _path_matches(pattern: str, path: str) -> bool:
    """``pattern`` is ``path``, where a segment ``{...}`` stands for any one segment."""
    wanted, given = _segments(pattern), _segments(path)
    return len(wanted) == len(given) and all(
        w == g or (w.startswith("{") and w.endswith("}") and g != "")
        for w, g in zip(wanted, given, strict=True)
    )


def _endpoint(request: Request) -> str:
    """The endpoint a request is counted against, as Stripe limits each on its own:
    retrieving any transfer is one endpoint, whatever its id, and so is
    reversing any transfer."""
    parts = _segments(request.path)
    if parts[:2] == ["v1", "transfers"] and len(parts) >= 3:
        parts[2] = "{id}"
    return f"{request.method} /{'/'.join(parts)}"


_CREATED_BOUNDS: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _created_filter(value: FormValue | None) -> Callable[[int], bool] | Reply:
    """List Transfers' ``created``: an exact unix time (``created=1700000000``)
    or bounds (``created[gte]=...``, any of ``gt``, ``gte``, ``lt``, ``lte``),
    all of which must hold; anything else is a 400, as Stripe answers it."""
    if value is None:
        return lambda _created: True
    if isinstance(value, list) or not value:
        return _error(400, "Invalid created: must be an integer or a hash", param="created")
    given = {"": value} if isinstance(value, str) else value
    bounds: list[tuple[Callable[[int, int], bool], int]] = []
    for name, text in given.items():
        param = f"created[{name}]" if name else "created"
        compare = _CREATED_BOUNDS.get(name) if name else operator.eq
        if compare is None:
            return _error(400, f"Received unknown parameter: {param}", param=param)
        if not isinstance(text, str) or not text.lstrip("-").isdigit():
            return _error(
                400, f"Invalid integer: {text}", code="parameter_invalid_integer", param=param
            )
        bounds.append((compare, int(text)))
    return lambda created: all(compare(created, bound) for compare, bound in bounds)


def _metadata(params: Mapping[str, FormValue]) -> dict[str, str] | Reply:
    metadata = params.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        return _error(400, "Invalid metadata.", param="metadata")
    return {k: str(v) for k, v in metadata.items()}


def _list_page(
    items: Sequence[dict[str, Any]], params: Mapping[str, FormValue], *, url: str, noun: str
) -> Reply:
    """One page of a Stripe list of ``items`` (newest first), as ``limit``
    (1 to 100, 10 by default) and ``starting_after`` (the id of an item) ask.
    Called under the lock: the page is a copy."""
    limit_text = params.get("limit", "10")
    if not isinstance(limit_text, str) or not limit_text.isdigit():
        return _error(400, f"Invalid integer: {limit_text}", param="limit")
    limit = int(limit_text)
    if not 1 <= limit <= 100:
        return _error(400, "Invalid limit: must be between 1 and 100", param="limit")
    starting_after = params.get("starting_after")
    if starting_after is not None:
        ids = [item["id"] for item in items]
        if starting_after not in ids:
            return _error(
                400,
                f"No such {noun}: '{starting_after}'",
                code="resource_missing",
                param="starting_after",
            )
        items = items[ids.index(starting_after) + 1 :]
    return _json(
        200,
        {
            "object": "list",
            "url": url,
            "has_more": len(items) > limit,
            "data": copy.deepcopy(list(items[:limit])),
        },
    )


def _no_such_transfer(transfer_id: str) -> Reply:
    return _error(404, f"No such transfer: '{transfer_id}'", code="resource_missing", param="id")


def _reversal_refusal(transfer_id: str, amount: int, left: int) -> Reply | None:
    """Create Reversal's refusal of ``amount`` when ``left`` is all there is to reverse."""
    if left == 0:
        return _error(400, f"The transfer {transfer_id} is already fully reversed.")
    if amount > left:
        return _error(
            400,
            f"Reversal amount ({amount}) is greater than the amount left to reverse "
            f"({left}) of transfer {transfer_id}.",
            param="amount",
        )
    return None


def _mask(key: str) -> str:
    """How Stripe shows a key it refused: the prefix and the last four characters."""
    prefix = key[: key.find("_", 3) + 1] if key.count("_") >= 2 else ""
    return f"{prefix}{'*' * max(len(key) - len(prefix) - 4, 0)}{key[-4:]}"


def _json(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status=status, body=json.dumps(payload).encode(), headers=headers)


def _error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    error: dict[str, str] = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
        error["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    return _json(status, {"error": error}, headers)


class FakeStripe:
    """A Stripe account with connected accounts, a balance and transfers.

    ``clock`` (seconds since the epoch) dates transfers, ages idempotency keys
    and measures the rate limiter's rolling second; ``latency`` is waited in
    real time, whatever the clock. ``rate_limit`` is requests per second per
    endpoint (``None``: no limit); a fractional rate admits its whole part.
    ``retry_after`` (seconds) adds a ``Retry-After`` header to its 429s.
    ``idempotency_per_account``: every API key of the account shares one set of
    idempotency keys (by default each API key has its own).
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        clock: Callable[[], float] = time.time,
        key_window: timedelta = timedelta(hours=24),
        min_amount: int = 1,
        max_amount: int = 99_999_999,
        latency: float = 0.0,
        rate_limit: float | None = None,
        retry_after: float | None = None,
        accept_any_account: bool = False,
        accounts_prefix: str = "",
        idempotency_per_account: bool = False,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        if rate_limit is not None and rate_limit < 1:
            raise ValueError(f"rate_limit must admit a request a second, got {rate_limit}")
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after}")
        self.api_key = api_key
        self._clock = clock
        self._key_window = key_window.total_seconds()
        self._min_amount = min_amount
        self._max_amount = max_amount
        self._latency = latency
        self._rate_limit = rate_limit
        limited = faults.rate_limited()
        if retry_after is not None:
            limited = attrs.evolve(limited, headers=(("Retry-After", f"{retry_after:g}"),))
        self._limited = self._fault_reply(limited)
        self._accept_any_account = accept_any_account
        self._accounts_prefix = accounts_prefix
        self._idempotency_per_account = idempotency_per_account
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self.reset()

    # -- set-up and inspection, for tests ------------------------------------------------------

    def reset(self) -> None:
        """Forget everything but the API key and the limits."""
        with self._lock:
            self._keys: dict[str, bool] = {self.api_key: True}  # key -> may write
            self._accounts: dict[str, AccountState] = {}
            self._balance: int | None = None
            self._transfers: list[dict[str, Any]] = []
            # Indexes, so that a retrieve or a list by destination does not read
            # every transfer under the lock while a benchmark creates thousands.
            self._by_id: dict[str, dict[str, Any]] = {}
            self._by_destination: dict[str, list[dict[str, Any]]] = {}
            self._reversals_of: dict[str, list[dict[str, Any]]] = {}  # newest first
            self._windows: dict[str, collections.deque[float]] = {}  # endpoint -> admitted at
            self._saved: dict[tuple[str, str], _SavedKey] = {}
            self._scripts: list[_Script] = []
            self._recorded: list[RecordedRequest] = []
            self._in_flight = 0
            self._in_flight_keys: collections.Counter[str] = collections.Counter()
            self._seq = 0
            self._reversal_seq = 0
            self._event_seq = 0
            self._request_seq = 0

    def add_account(self, account_id: str, state: AccountState = AccountState.ACTIVE) -> None:
        with self._lock:
            self._accounts[account_id] = state

    def delete_account(self, account_id: str) -> None:
        """Stripe no longer knows ``account_id``: creates to it and lists filtered
        by it answer 400 ``resource_missing``."""
        with self._lock:
            self._accounts.pop(account_id, None)

    def add_api_key(self, key: str, *, can_write: bool) -> None:
        """Another key for this account; ``can_write=False`` is a restricted key that
        may list transfers but not create them (a 403)."""
        with self._lock:
            self._keys[key] = can_write

    def revoke_api_key(self, key: str) -> None:
        """Stop accepting ``key`` (rolled, or expired): every request made with
        it from now on is a 401. Requests already past authentication finish."""
        with self._lock:
            self._keys.pop(key, None)

    def set_balance(self, amount_cents: int | None) -> None:
        """The available balance; ``None`` (the default) never runs out."""
        with self._lock:
            self._balance = amount_cents

    def script(
        self,
        fault: faults.Fault | faults.Mix,
        *,
        method: str | None = "POST",
        path: str | None = faults.TRANSFERS,
        idempotency_key: str | None = None,
        times: int | None = 1,
        after: int = 0,
        until: float | None = None,
    ) -> None:
        """Make ``times`` matching requests meet ``fault``, once ``after`` matching
        requests have passed untouched. Scripts apply in the order they were made.

        ``None`` matches every method, path or key; a ``path`` segment ``{id}``
        matches any one segment (:data:`~tests.fake_stripe.faults.REVERSALS`).
        ``times=None``: every matching request, until ``until`` (a moment of the
        fake's clock, after which the script is gone) if given, else for ever.
        A :class:`~tests.fake_stripe.faults.Mix` meets every matching request and
        draws its fault; ``after`` and ``times`` then count the faults drawn."""
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None: for ever), got {times}")
        with self._lock:
            self._scripts.append(
                _Script(fault, method, path, idempotency_key, times, after, until=until)
            )

    def clear_scripts(self) -> None:
        """Forget every script (faults already drawn for requests in flight stay)."""
        with self._lock:
            self._scripts = []

    def seed_transfer(
        self,
        *,
        amount: int,
        destination: str,
        transfer_group: str | None = None,
        metadata: Mapping[str, str] | None = None,
        currency: str = "usd",
    ) -> dict[str, Any]:
        """Create a transfer directly, as if an earlier request had (fast set-up)."""
        with self._lock:
            return copy.deepcopy(
                self._new_transfer(amount, currency, destination, transfer_group, metadata or {})
            )

    def reverse_transfer(self, transfer_id: str, amount: int) -> dict[str, Any]:
        """Reverse ``amount`` of a stored transfer, as a reversal made in the
        dashboard would: a ``transfer_reversal`` with no metadata, listed with
        the transfer's reversals; ``amount_reversed`` grows, and ``reversed`` is
        true once all of it is. Returns the reversal.

        Raises:
            ValueError: no such transfer, or ``amount`` is not between 1 and what
                is left to reverse of it (Stripe refuses those too).
        """
        with self._lock:
            transfer = self._by_id.get(transfer_id)
            if transfer is None:
                raise ValueError(f"no such transfer: {transfer_id!r}")
            left = transfer["amount"] - transfer["amount_reversed"]
            if not 1 <= amount <= left:
                raise ValueError(f"{transfer_id} has {left} left to reverse, not {amount}")
            return copy.deepcopy(self._new_reversal(transfer, amount, {}))

    def reversals_of(self, transfer_id: str) -> list[dict[str, Any]]:
        """Every reversal of a stored transfer, oldest first."""
        with self._lock:
            return copy.deepcopy(self._reversals_of.get(transfer_id, [])[::-1])

    def event_for(
        self,
        transfer_id: str,
        event_type: str = "transfer.reversed",
        *,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """The ``event`` Stripe would send now about a stored transfer, its
        ``data.object`` the transfer as the fake holds it (after
        :meth:`reverse_transfer`, a ``transfer.reversed`` that shows the
        reversal). ``request_id`` and ``idempotency_key``: the API request that
        caused it (``None`` for the dashboard). Sign and send it with
        :func:`tests.fake_stripe.webhooks.deliver`.

        Raises:
            ValueError: no such transfer.
        """
        with self._lock:
            transfer = self._by_id.get(transfer_id)
            if transfer is None:
                raise ValueError(f"no such transfer: {transfer_id!r}")
            self._event_seq += 1
            return {
                "id": f"evt_fake{self._event_seq:014d}",
                "object": "event",
                "api_version": API_VERSION,
                "created": int(self._clock()),
                "data": {"object": copy.deepcopy(transfer)},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": request_id, "idempotency_key": idempotency_key},
                "type": event_type,
            }

    def set_transfer_amount(self, transfer_id: str, amount: int) -> dict[str, Any]:
        """Make a stored transfer's ``amount`` read ``amount``. Stripe never
        changes an amount: this stands for a record that disagrees with
        payout-core's, for ``reconcile`` to find. Returns the transfer as it now is.

        Raises:
            ValueError: no such transfer, or an amount below what it already
                had reversed.
        """
        with self._lock:
            transfer = self._by_id.get(transfer_id)
            if transfer is None:
                raise ValueError(f"no such transfer: {transfer_id!r}")
            if amount < max(transfer["amount_reversed"], 1):
                raise ValueError(f"{transfer_id} cannot hold {amount}")
            transfer["amount"] = amount
            transfer["reversed"] = transfer["amount_reversed"] == amount
            return copy.deepcopy(transfer)

    def transfers(self) -> list[dict[str, Any]]:
        """Every transfer created, oldest first."""
        with self._lock:
            return copy.deepcopy(self._transfers)

    def transfers_for(self, payout_transfer_id: str) -> list[dict[str, Any]]:
        return [
            t
            for t in self.transfers()
            if t["metadata"].get("payout_transfer_id") == payout_transfer_id
        ]

    def requests(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """The requests received, in the order they finished."""
        with self._lock:
            return [
                r
                for r in self._recorded
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def statuses(
        self, method: str | None = None, path: str | None = None
    ) -> collections.Counter[int | None]:
        """How many requests got each HTTP status (``None``: dropped)."""
        return collections.Counter(r.status for r in self.requests(method, path))

    def max_in_window(self, method: str, path: str, seconds: float = 1.0) -> int:
        """The most requests to ``method path`` that executed within any ``seconds``,
        by their :attr:`RecordedRequest.received_at`: what Stripe's limit is about.

        Two requests ``seconds`` apart are in different windows, as in the rate
        limiter. Refusals did not execute and do not count (see
        :attr:`RecordedRequest.executed`).
        """
        times = sorted(r.received_at for r in self.requests(method, path) if r.executed)
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    def report(self) -> Report:
        """Tally the run: what was created, duplicated, refused, and the peak rate."""
        transfers, recorded = self.transfers(), self.requests()
        per_payout = collections.Counter(
            t["metadata"]["payout_transfer_id"]
            for t in transfers
            if "payout_transfer_id" in t["metadata"]
        )
        statuses = collections.Counter(r.status for r in recorded)
        return Report(
            requests=len(recorded),
            transfers=len(transfers),
            duplicated_payouts=sum(1 for n in per_payout.values() if n > 1),
            rate_limited=sum(1 for r in recorded if r.rate_limited),
            max_creates_in_one_second=self.max_in_window("POST", "/v1/transfers"),
            created_at=sorted(
                r.received_at
                for r in recorded
                if r.method == "POST"
                and r.path == "/v1/transfers"
                and r.executed
                and r.status == 200
                and not r.replayed
            ),
            statuses={
                "dropped" if status is None else str(status): n
                for status, n in sorted(statuses.items(), key=lambda item: item[0] or 0)
            },
        )

    def prune_idempotency_keys(self) -> None:
        """Forget every key not in flight, whatever its age: what Stripe does to
        keys older than about 24 hours (those are forgotten anyway, by the clock)."""
        with self._lock:
            self._saved = {k: v for k, v in self._saved.items() if v.reply is None}

    def in_flight_keys(self) -> frozenset[str]:
        """The idempotency keys of the requests being handled now (held,
        delayed, or waiting out the latency)."""
        with self._lock:
            return frozenset(self._in_flight_keys)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being handled (a held one has completed)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def stop(self) -> None:
        """Let go of held requests (they are dropped): the server is shutting down."""
        self._stopping.set()

    # -- the API -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        arrived = time.monotonic()
        trace = _Trace()
        idempotency_key = request.headers.get("idempotency-key")
        with self._lock:
            self._in_flight += 1
            if idempotency_key:
                self._in_flight_keys[idempotency_key] += 1
            self._request_seq += 1
            request_id = f"req_fake{self._request_seq:010d}"
            # One clock reading under the lock for the limiter and the record, so
            # the window max_in_window measures is the one the limiter kept.
            received_at = self._clock()
            trace.rate_limited = not self._admit(request, received_at)
        reply: Reply | None = None
        try:
            reply = (
                self._limited if trace.rate_limited else self._handle(request, trace, request_id)
            )
            reply = attrs.evolve(reply, headers=(("Request-Id", request_id), *reply.headers))
            self._wait_latency(arrived + trace.late_by)
            return reply
        finally:
            with self._idle:
                self._in_flight -= 1
                if idempotency_key:
                    self._in_flight_keys[idempotency_key] -= 1
                    if self._in_flight_keys[idempotency_key] <= 0:
                        del self._in_flight_keys[idempotency_key]
                self._recorded.append(
                    RecordedRequest(
                        method=request.method,
                        path=request.path,
                        params=request.params,
                        idempotency_key=request.headers.get("idempotency-key"),
                        status=None if reply is None or reply.drop else reply.status,
                        replayed=reply is not None
                        and ("Idempotent-Replayed", "true") in reply.headers,
                        fault=trace.fault,
                        received_at=received_at,
                        answered_at=self._clock(),
                        rate_limited=trace.rate_limited,
                        executed=trace.executed,
                    )
                )
                self._idle.notify_all()

    def _admit(self, request: Request, now: float) -> bool:
        """Stripe's rate limiter: let the request in unless ``rate_limit`` requests
        of its endpoint were let in within the last second (called under the lock).

        Each window keeps the times of at most ``rate_limit`` admissions.
        """
        if self._rate_limit is None:
            return True
        window = self._windows.setdefault(_endpoint(request), collections.deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) + 1 > self._rate_limit:
            return False
        window.append(now)
        return True

    def _wait_latency(self, arrived: float) -> None:
        """Hold the answer until ``latency`` has passed since the request arrived,
        holding no lock; stopping the fake cuts the wait short."""
        deadline = arrived + self._latency
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(left):
                return

    def _handle(self, request: Request, trace: _Trace, request_id: str) -> Reply:
        key = self._authenticate(request)
        if isinstance(key, Reply):
            return key
        edge = self._take_fault(request, faults.Stage.EDGE, trace)
        if isinstance(edge, faults.Respond):
            return self._fault_reply(edge)
        if isinstance(edge, faults.Drop):
            return Reply(status=0, body=b"", drop=True, reset=edge.reset)
        if request.method == "POST" and not self._keys[key]:
            return _error(
                403,
                f"The provided key '{_mask(key)}' does not have the required permissions "
                f"for this endpoint ({request.method} {request.path}).",
            )
        idempotency_key = request.headers.get("idempotency-key")
        if request.method != "POST" or not idempotency_key:
            return self._execute(request, trace)[0]

        scope = ("account" if self._idempotency_per_account else key, idempotency_key)
        fingerprint = json.dumps([request.method, request.path, request.params], sort_keys=True)
        with self._lock:
            saved = self._saved.get(scope)
            now = self._clock()
            if (
                saved is not None
                and saved.reply is not None
                and now - saved.first_used >= self._key_window
            ):
                del self._saved[scope]  # pruned: the request executes as if new
                saved = None
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    return _error(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{idempotency_key}' if you meant to execute a different request.",
                        error_type="idempotency_error",
                    )
                if saved.reply is None:
                    return _error(
                        409,
                        "There is currently another in-progress request using this "
                        f"Idempotency-Key ('{idempotency_key}'). Please try again later.",
                        code="idempotency_key_in_use",
                    )
                return attrs.evolve(
                    saved.reply,
                    headers=(
                        *saved.reply.headers,
                        ("Idempotent-Replayed", "true"),
                        ("Original-Request", saved.request_id),
                    ),
                )
            self._saved[scope] = _SavedKey(fingerprint, request_id, first_used=now)
        sent, to_save = self._execute(request, trace)
        with self._lock:
            if to_save is not None:
                self._saved[scope].reply = to_save
            else:
                del self._saved[scope]
        return sent

    def _authenticate(self, request: Request) -> str | Reply:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or not key:
            return _error(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth.",
            )
        if key not in self._keys:
            return _error(401, f"Invalid API Key provided: {_mask(key)}")
        return key

    def _take_fault(
        self, request: Request, stage: faults.Stage, trace: _Trace
    ) -> faults.Fault | None:
        with self._lock:
            now = self._clock()
            for script in list(self._scripts):
                if script.until is not None and now >= script.until:
                    self._scripts.remove(script)  # its window has passed
                    continue
                if not script.matches(request):
                    continue
                fault = script.fault_for(trace)
                if fault is None or fault.stage is not stage:
                    continue
                if script.after > 0:
                    script.after -= 1
                    continue
                if script.times is not None:
                    script.times -= 1
                    if script.times == 0:
                        self._scripts.remove(script)
                trace.fault = type(fault).__name__
                return fault
        return None

    def _fault_reply(self, fault: faults.Respond) -> Reply:
        if fault.raw_body is not None:
            return Reply(
                status=fault.status,
                body=fault.raw_body.encode(),
                headers=(("Content-Type", "text/html"), *fault.headers),
            )
        return _error(
            fault.status,
            fault.message,
            error_type=fault.error_type,
            code=fault.code,
            param=fault.param,
            headers=fault.headers,
        )

    def _execute(self, request: Request, trace: _Trace) -> tuple[Reply, Reply | None]:
        """Run the endpoint, or the endpoint-stage fault scripted for it.

        Returns what to send and what to save under the key (``None``: nothing,
        as the endpoint did not execute).
        """
        sent, saved = self._run_endpoint(request, trace)
        trace.executed = saved is not None
        return sent, saved

    def _run_endpoint(self, request: Request, trace: _Trace) -> tuple[Reply, Reply | None]:
        fault = self._take_fault(request, faults.Stage.ENDPOINT, trace)
        if isinstance(fault, faults.Hold):
            fault.held.set()
            while not fault.release.wait(0.05):
                if self._stopping.is_set():
                    return Reply(status=0, body=b"", drop=True), None
        if isinstance(fault, faults.Delay):
            if fault.execute_first:
                trace.late_by = fault.seconds  # waited once saved: see handle()
                done = self._route(request)
                return done.reply, done.reply if done.executed else None
            if self._stopping.wait(fault.seconds):
                return Reply(status=0, body=b"", drop=True), None
        if isinstance(fault, faults.Respond):
            if fault.create:
                self._route(request)
            reply = self._fault_reply(fault)
            return reply, reply
        result = self._route(request)
        saved = result.reply if result.executed else None
        if isinstance(fault, faults.Drop):
            return Reply(status=0, body=b"", drop=True, reset=fault.reset), saved
        return result.reply, saved

    def _route(self, request: Request) -> _Result:
        parts = _segments(request.path)
        if parts[:2] == ["v1", "transfers"]:
            if len(parts) == 2 and request.method == "POST":
                return self._create_transfer(request.params)
            if len(parts) == 2 and request.method == "GET":
                return _Result(self._list_transfers(request.params), executed=True)
            if len(parts) == 3 and request.method == "GET":
                return _Result(self._retrieve_transfer(parts[2]), executed=True)
            if len(parts) == 4 and parts[3] == "reversals" and request.method == "POST":
                return self._create_reversal(parts[2], request.params)
            if len(parts) == 4 and parts[3] == "reversals" and request.method == "GET":
                return _Result(self._list_reversals(parts[2], request.params), executed=True)
        return _Result(
            _error(404, f"Unrecognized request URL ({request.method}: {request.path})."),
            executed=False,
        )

    # -- transfers -----------------------------------------------------------------------------

    def _create_transfer(self, params: Mapping[str, FormValue]) -> _Result:
        for name in ("amount", "currency", "destination"):
            if not isinstance(params.get(name), str) or not params[name]:
                return _Result(
                    _error(400, f"Missing required param: {name}.", code="parameter_missing"),
                    executed=False,
                )
        amount_text, currency, destination = (
            str(params["amount"]),
            str(params["currency"]),
            str(params["destination"]),
        )
        if not amount_text.isdigit():
            return _Result(
                _error(
                    400,
                    f"Invalid integer: {amount_text}",
                    code="parameter_invalid_integer",
                    param="amount",
                ),
                executed=False,
            )
        metadata = _metadata(params)
        group = params.get("transfer_group")
        if isinstance(metadata, Reply):
            return _Result(metadata, executed=False)
        if group is not None and not isinstance(group, str):
            return _Result(_error(400, "Invalid transfer_group.", param="transfer_group"), False)
        amount = int(amount_text)
        with self._lock:
            refusal = self._refusal(amount, currency, destination)
            if refusal is not None:
                return _Result(refusal, executed=True)
            transfer = self._new_transfer(amount, currency, destination, group, metadata)
            if self._balance is not None:
                self._balance -= amount
        return _Result(_json(200, transfer), executed=True)

    def _account(self, account_id: str) -> AccountState | None:
        """The state of a connected account; ``None``: Stripe does not know it."""
        state = self._accounts.get(account_id)
        if state is None and self._accept_any_account:
            return AccountState.ACTIVE if account_id.startswith(self._accounts_prefix) else None
        return state

    def _refusal(self, amount: int, currency: str, destination: str) -> Reply | None:
        state = self._account(destination)
        if state is None:
            return _error(
                400,
                f"No such destination: '{destination}'",
                code="resource_missing",
                param="destination",
            )
        if state is AccountState.CLOSED:
            return _error(
                400,
                f"The account {destination} has been closed or rejected and cannot receive "
                "transfers.",
                code="account_invalid",
                param="destination",
            )
        if state is AccountState.NO_TRANSFERS_CAPABILITY:
            return _error(
                400,
                "Your destination account needs to have at least one of the following "
                "capabilities enabled: transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param="destination",
            )
        if amount < self._min_amount:
            return _error(
                400,
                f"Amount must be at least {self._min_amount} {currency}",
                code="amount_too_small",
                param="amount",
            )
        if amount > self._max_amount:
            return _error(
                400,
                f"Amount must be no more than {self._max_amount} {currency}",
                code="amount_too_large",
                param="amount",
            )
        if self._balance is not None and amount > self._balance:
            return _error(
                400,
                "You have insufficient available funds in your Stripe account. Try adding "
                "funds directly to your available balance by creating Charges using the "
                "4000000000000077 test card.",
                code="balance_insufficient",
            )
        return None

    def _new_transfer(
        self,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str | None,
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        self._seq += 1
        transfer_id = f"tr_fake{self._seq:08d}"
        transfer: dict[str, Any] = {
            "id": transfer_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": f"txn_fake{self._seq:08d}",
            "created": int(self._clock()),
            "currency": currency,
            "description": None,
            "destination": destination,
            "destination_payment": f"py_fake{self._seq:08d}",
            "livemode": False,
            "metadata": dict(metadata),
            "reversals": self._embedded_reversals(transfer_id),
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": transfer_group,
        }
        self._transfers.append(transfer)
        self._by_id[transfer_id] = transfer
        self._by_destination.setdefault(destination, []).append(transfer)
        return transfer

    def _list_transfers(self, params: Mapping[str, FormValue]) -> Reply:
        destination = params.get("destination")
        group = params.get("transfer_group")
        created = _created_filter(params.get("created"))
        if isinstance(created, Reply):
            return created
        with self._lock:
            if destination is not None and (
                not isinstance(destination, str) or self._account(destination) is None
            ):
                return _error(
                    400,
                    f"No such destination: '{destination}'",
                    code="resource_missing",
                    param="destination",
                )
            candidates = (
                self._transfers
                if not isinstance(destination, str)
                else self._by_destination.get(destination, [])
            )
            matching = [
                t
                for t in reversed(candidates)  # newest first, as Stripe lists
                if (destination is None or t["destination"] == destination)
                and (group is None or t["transfer_group"] == group)
                and created(t["created"])
            ]
            return _list_page(matching, params, url="/v1/transfers", noun="transfer")

    def _retrieve_transfer(self, transfer_id: str) -> Reply:
        with self._lock:
            transfer = self._by_id.get(transfer_id)
            if transfer is not None:
                return _json(200, copy.deepcopy(transfer))
        return _no_such_transfer(transfer_id)

    # -- reversals -----------------------------------------------------------------------------

    def _create_reversal(self, transfer_id: str, params: Mapping[str, FormValue]) -> _Result:
        amount_text = params.get("amount")
        if amount_text is not None and (
            not isinstance(amount_text, str) or not amount_text.isdigit() or int(amount_text) < 1
        ):
            return _Result(
                _error(
                    400,
                    f"Invalid positive integer: {amount_text}",
                    code="parameter_invalid_integer",
                    param="amount",
                ),
                executed=False,
            )
        metadata = _metadata(params)
        if isinstance(metadata, Reply):
            return _Result(metadata, executed=False)
        if not isinstance(params.get("description", ""), str):
            return _Result(_error(400, "Invalid description.", param="description"), False)
        with self._lock:
            transfer = self._by_id.get(transfer_id)
            if transfer is None:
                return _Result(_no_such_transfer(transfer_id), executed=True)
            left = transfer["amount"] - transfer["amount_reversed"]
            amount = int(amount_text) if amount_text is not None else left
            refusal = _reversal_refusal(transfer_id, amount, left)
            if refusal is not None:
                return _Result(refusal, executed=True)
            reversal = self._new_reversal(transfer, amount, metadata)
            return _Result(_json(200, reversal), executed=True)

    def _new_reversal(
        self, transfer: dict[str, Any], amount: int, metadata: Mapping[str, str]
    ) -> dict[str, Any]:
        """A reversal of ``amount`` of ``transfer``, which must have that much left
        (called under the lock)."""
        self._reversal_seq += 1
        reversal: dict[str, Any] = {
            "id": f"trr_fake{self._reversal_seq:08d}",
            "object": "transfer_reversal",
            "amount": amount,
            "balance_transaction": f"txn_fakerev{self._reversal_seq:08d}",
            "created": int(self._clock()),
            "currency": transfer["currency"],
            "destination_payment_refund": f"pyr_fake{self._reversal_seq:08d}",
            "metadata": dict(metadata),
            "source_refund": None,
            "transfer": transfer["id"],
        }
        self._reversals_of.setdefault(transfer["id"], []).insert(0, reversal)
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        transfer["reversals"] = self._embedded_reversals(transfer["id"])
        return reversal

    def _embedded_reversals(self, transfer_id: str) -> dict[str, Any]:
        """The transfer object's ``reversals``: its latest, as Stripe embeds them."""
        reversals = self._reversals_of.get(transfer_id, [])
        return {
            "object": "list",
            "data": copy.deepcopy(reversals[:EMBEDDED_REVERSALS]),
            "has_more": len(reversals) > EMBEDDED_REVERSALS,
            "total_count": len(reversals),
            "url": f"/v1/transfers/{transfer_id}/reversals",
        }

    def _list_reversals(self, transfer_id: str, params: Mapping[str, FormValue]) -> Reply:
        with self._lock:
            if transfer_id not in self._by_id:
                return _no_such_transfer(transfer_id)
            return _list_page(
                self._reversals_of.get(transfer_id, []),
                params,
                url=f"/v1/transfers/{transfer_id}/reversals",
                noun="transfer reversal",
            )
