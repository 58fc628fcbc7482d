"""The payment gateway on Stripe Connect transfers and their reversals, through the
official ``stripe`` SDK.

One module, longer than most, on purpose: it is every request payout-core
makes to Stripe, each paced, timed out and classified the same way, so that
whoever audits what leaves for Stripe reads one file. What a failure means is
:mod:`~payout_adapters.stripe.classify`'s; the pace, :mod:`~payout_adapters.stripe.rate_limit`'s.

Choices worth knowing (``docs/stripe-errors.md`` says the same for operators):

* **No SDK network retries** (``max_network_retries=0``). The SDK would retry
  timeouts, connection errors, 409s and 5xx itself, sleeping in the calling
  thread, outside the rate limiter and invisible to the state machine. We
  want every attempt to be one request: the state machine already retries
  with the same idempotency key after a backoff, records each attempt in the
  ledger, and knows after which failures a look-up must come first (a
  replayed 500 would only come back again). A hidden retry would also turn a
  timeout into a longer timeout and spend rate-limit tokens nobody counted.
* **Timeout**: the ``requests`` HTTP client the SDK uses by default, with
  ``timeout_seconds`` for connecting and for each read (the SDK's default is
  80 s). ``requests`` is a dependency of ``stripe``.
* **Rate limit**: every request first takes a slot of its budget (a create or
  a reversal of the create budget's, waiting no longer than a create may; each
  page of a look-up or a listing and a retrieve of the reads') from
  a :class:`payout_core.ports.RateLimiter`: the fleet's shared schedule in
  ``payout-core loop``, :class:`~payout_adapters.stripe.rate_limit.LocalRateLimiter`
  by default. A 429 pushes the budget back by its ``Retry-After``.
* **Reads** (:class:`payout_core.ports.TransferRecords`, the look-up of
  :meth:`StripeGateway.find_transfer`, and :meth:`StripeGateway.list_reversals`)
  walk List Transfers or List Reversals with ``starting_after``, one request
  and one read slot a page, so a listing of any length is paced with the
  fleet's other reads and held one page at a time.
* **Reversals** (:class:`payout_core.ports.ReversalGateway`) are writes like
  creates: one request under the reversal's idempotency key, its failures
  classified by the same table, a replay read from ``Idempotent-Replayed``.
* **The API key** lives in the SDK client and in a field that is left out of
  ``repr``; every message that leaves this module is passed through the one
  secret scrubber, :func:`payout_adapters.redaction.scrub`, naming the key.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import stripe

from payout_adapters import redaction
from payout_adapters.stripe import classify
from payout_adapters.stripe import rate_limit as limits
from payout_core import errors, outcomes, ports

if TYPE_CHECKING:
    from stripe.params import (
        TransferCreateParams,
        TransferListParams,
        TransferReversalCreateParams,
        TransferReversalListParams,
    )

__all__ = ["PAGE_SIZE", "StripeGateway"]

log = logging.getLogger("payout.stripe")

PAGE_SIZE = 100  # Stripe's largest page: the fewest requests for a listing
# The longest a create waits for its slot of the fleet's budget: well inside the
# 30 s within which a send must leave its intent (payout_core.attempt.SEND_START_LIMIT).
CREATE_MAX_WAIT_SECONDS = 10.0
R = TypeVar("R")
Listed = TypeVar("Listed", stripe.Transfer, stripe.TransferReversal)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _page_size(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= PAGE_SIZE:
        raise ValueError(f"page_size must be within 1..{PAGE_SIZE} (Stripe's limits), got {value}")


def _key(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError("api_key must not be empty")


@attrs.define(kw_only=True)
class StripeGateway:
    """:class:`payout_core.ports.PaymentGateway`,
    :class:`payout_core.ports.TransferRecords` and
    :class:`payout_core.ports.ReversalGateway` on Stripe.

    ``api_base`` points the SDK elsewhere than ``https://api.stripe.com`` (a
    local fake in tests). ``limiter`` paces the requests; by default a new
    :class:`LocalRateLimiter` at ``rate_limit`` requests per second for each
    budget. Pass one limiter to several gateways to make them share it (the
    command line passes the fleet's). ``page_size`` is how many transfers (or
    reversals) a list request asks for (tests make it small to page cheaply). Call
    :meth:`close` when done.
    """

    api_key: str = attrs.field(repr=False, validator=_key)
    api_base: str | None = None
    timeout_seconds: float = attrs.field(default=30.0, validator=_positive)
    rate_limit: float = attrs.field(default=20.0, validator=_positive)
    page_size: int = attrs.field(default=PAGE_SIZE, validator=_page_size)
    limiter: ports.RateLimiter = attrs.field(
        default=attrs.Factory(
            lambda self: limits.LocalRateLimiter.at(self.rate_limit), takes_self=True
        ),
        repr=False,
    )
    _http: stripe.RequestsClient = attrs.field(init=False, repr=False)
    _client: stripe.StripeClient = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._http = stripe.RequestsClient(timeout=self.timeout_seconds)
        self._client = stripe.StripeClient(
            self.api_key,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=0,  # see the module docstring
            http_client=self._http,
        )

    def close(self) -> None:
        """Close the HTTP connections this thread holds (others close with their threads)."""
        close: Callable[[], None] = self._http.close  # unannotated in the SDK
        close()

    def __enter__(self) -> StripeGateway:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the port ------------------------------------------------------------------------------

    def create_transfer(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        params: TransferCreateParams = {
            "amount": request.amount_cents,
            "currency": request.currency,
            "destination": request.destination,
            "transfer_group": request.transfer_group,
            "metadata": dict(request.metadata),
        }
        ids = {"idempotency_key": request.idempotency_key, "destination": request.destination}
        result = self._call(
            "create_transfer",
            ports.Budget.CREATE,
            ids,
            lambda: self._client.v1.transfers.create(
                params, options={"idempotency_key": request.idempotency_key}
            ),
        )
        if not isinstance(result, stripe.Transfer):
            return result
        replayed = _created("payout.stripe.transfer_created", "stripe_transfer_id", result, ids)
        return outcomes.Succeeded(stripe_transfer_id=result.id, replayed=replayed)

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        """List the group's transfers (to the destination, when known), page by
        page, and match ``metadata.payout_transfer_id``. More than one match
        means the winner was paid twice: logged as an error; the oldest counts."""
        params: TransferListParams = {"transfer_group": lookup.transfer_group}
        if lookup.destination is not None:
            params["destination"] = lookup.destination
        ids = {"payout_transfer_id": lookup.payout_transfer_id, "destination": lookup.destination}
        matches: list[str] = []  # newest first, as Stripe lists
        pages = 0
        for page in self._pages("list_transfers", ids, functools.partial(self._list, params)):
            if not isinstance(page, list):
                return page  # a NotFound needs every page: an unread one leaves it open
            pages += 1
            matches += (t.id for t in page if _payout_transfer_id(t) == lookup.payout_transfer_id)
        log.info(
            "payout.stripe.lookup",
            extra={**ids, "found": matches[-1] if matches else None, "pages": pages},
        )
        if not matches:
            return outcomes.NotFound()
        if len(matches) > 1:
            log.error(
                "payout.stripe.duplicate_transfers",
                extra={**ids, "stripe_transfer_ids": ",".join(reversed(matches))},
            )
        return outcomes.Found(stripe_transfer_id=matches[-1])

    # -- TransferRecords -----------------------------------------------------------------------

    def retrieve_transfer(self, stripe_transfer_id: str) -> outcomes.RetrieveOutcome:
        _transfer_id(stripe_transfer_id)
        result = self._call(
            "retrieve_transfer",
            ports.Budget.READ,
            {"stripe_transfer_id": stripe_transfer_id},
            functools.partial(self._retrieve, stripe_transfer_id),
        )
        if not isinstance(result, stripe.Transfer):
            return result
        return _as_stripe_transfer(result)

    def list_transfers(self, query: outcomes.TransferQuery) -> Iterator[outcomes.StripeTransfer]:
        params: TransferListParams = {}
        if query.transfer_group is not None:
            params["transfer_group"] = query.transfer_group
        if query.created_since is not None:
            if query.created_since.tzinfo is None:
                raise ValueError(f"created_since must be timezone-aware, got {query.created_since}")
            # Stripe keeps whole seconds: rounding down keeps every transfer of
            # the second created_since falls in (one too many, never one missed).
            params["created"] = {"gte": math.floor(query.created_since.timestamp())}
        ids = {
            "transfer_group": query.transfer_group,
            "created_since": None
            if query.created_since is None
            else query.created_since.isoformat(),
        }
        pages = self._pages("list_transfers", ids, functools.partial(self._list, params))
        for page in pages:
            if not isinstance(page, list):
                raise errors.GatewayUnavailable(page.code, page.message)
            yield from (_as_stripe_transfer(t) for t in page)

    # -- ReversalGateway -----------------------------------------------------------------------

    def create_reversal(self, request: outcomes.ReversalRequest) -> outcomes.ReversalOutcome:
        _transfer_id(request.stripe_transfer_id)
        params: TransferReversalCreateParams = {
            "amount": request.amount_cents,
            "metadata": dict(request.metadata),
        }
        ids = {
            "idempotency_key": request.idempotency_key,
            "stripe_transfer_id": request.stripe_transfer_id,
        }
        result = self._call(
            "create_reversal",
            ports.Budget.CREATE,
            ids,
            lambda: self._client.v1.transfers.reversals.create(
                request.stripe_transfer_id,
                params,
                options={"idempotency_key": request.idempotency_key},
            ),
        )
        if not isinstance(result, stripe.TransferReversal):
            return result
        replayed = _created("payout.stripe.reversal_created", "stripe_reversal_id", result, ids)
        return outcomes.Reversed(stripe_reversal_id=result.id, replayed=replayed)

    def list_reversals(self, stripe_transfer_id: str) -> Iterator[outcomes.StripeReversal]:
        """Newest first, as Stripe lists them; a transfer Stripe does not hold
        raises ``GatewayUnavailable("resource_missing")``."""
        _transfer_id(stripe_transfer_id)
        ids = {"stripe_transfer_id": stripe_transfer_id}
        pages = self._pages(
            "list_reversals", ids, functools.partial(self._list_reversals, stripe_transfer_id)
        )
        for page in pages:
            if not isinstance(page, list):
                raise errors.GatewayUnavailable(page.code, page.message)
            yield from (_as_stripe_reversal(r) for r in page)

    # -- plumbing ------------------------------------------------------------------------------

    def _pages(
        self,
        operation: str,
        ids: Mapping[str, str | None],
        list_page: Callable[[int, str | None], stripe.ListObject[Listed]],
    ) -> Iterator[list[Listed] | classify.Failed]:
        """A listing, one page per step of the iteration, each one request on the
        read budget (``list_page(limit, starting_after)``), following
        ``starting_after`` until Stripe has no more.

        A page that cannot be read is yielded as its failure outcome, and ends
        the iteration: whatever the caller concludes needs every page.
        """
        starting_after: str | None = None
        while True:
            page = self._call(
                operation,
                ports.Budget.READ,
                ids,
                functools.partial(list_page, self.page_size, starting_after),
            )
            if not isinstance(page, stripe.ListObject):
                yield page
                return
            yield list(page.data)
            if not page.has_more or not page.data:
                return
            last = page.data[-1].id
            if last == starting_after:
                yield outcomes.Unknown(
                    code="pagination_stuck",
                    message=f"Stripe returned the same page twice after {last}; "
                    "the listing cannot be completed",
                )
                return
            starting_after = last

    def _list(
        self, params: TransferListParams, limit: int, starting_after: str | None
    ) -> stripe.ListObject[stripe.Transfer]:
        params = params.copy()
        params["limit"] = limit
        if starting_after is not None:
            params["starting_after"] = starting_after
        return self._client.v1.transfers.list(params)

    def _list_reversals(
        self, stripe_transfer_id: str, limit: int, starting_after: str | None
    ) -> stripe.ListObject[stripe.TransferReversal]:
        params: TransferReversalListParams = {"limit": limit}
        if starting_after is not None:
            params["starting_after"] = starting_after
        return self._client.v1.transfers.reversals.list(stripe_transfer_id, params)

    def _retrieve(self, stripe_transfer_id: str) -> stripe.Transfer | outcomes.NotFound:
        try:
            return self._client.v1.transfers.retrieve(stripe_transfer_id)
        except stripe.InvalidRequestError as exc:
            # The one answer that is Stripe's word that the transfer does not
            # exist; any other failure leaves the question open.
            if exc.http_status == 404 and exc.code == "resource_missing":
                return outcomes.NotFound()
            raise

    def _call(
        self,
        operation: str,
        budget: ports.Budget,
        ids: Mapping[str, str | None],
        send: Callable[[], R],
    ) -> R | classify.Failed:
        """Send one request under the rate limit; a failure comes back as an outcome."""
        # A create waits at most a little for its slot: it must leave soon after its
        # send intent (DESIGN 3, rule 2). Booked further ahead, it is not sent now.
        max_wait = CREATE_MAX_WAIT_SECONDS if budget is ports.Budget.CREATE else None
        if self.limiter.acquire(budget, max_wait=max_wait) is None:
            return outcomes.Transient(
                code="rate_limited_locally",
                message=f"the fleet's Stripe budget is booked more than {max_wait:g} s ahead; "
                "not sent",
            )
        try:
            return send()
        except stripe.StripeError as exc:
            failure = classify.describe(exc)
            outcome = classify.classify(failure)
        except Exception:
            # A bug in the SDK or here, after the request may have been sent: the
            # state machine treats Unknown as "may exist" and never pays twice.
            log.exception("payout.stripe.unexpected_error", extra={"operation": operation, **ids})
            return outcomes.Unknown(
                code="unexpected_error",
                message=f"unexpected error during {operation}; see the worker's log",
            )
        outcome = attrs.evolve(outcome, message=redaction.scrub(outcome.message, self.api_key))
        if failure.status == 429 and failure.code != "lock_timeout":
            # The account's limit was hit (lock_timeout is contention on one object):
            # the whole fleet waits, as long as Stripe asks when it says, and slows.
            self.limiter.push_back(budget, failure.retry_after)
        level = logging.ERROR if isinstance(outcome, outcomes.Systemic) else logging.WARNING
        log.log(
            level,
            "payout.stripe.request_failed",
            extra={
                "operation": operation,
                **ids,
                "outcome": type(outcome).__name__.lower(),
                "code": outcome.code,
                "status": failure.status,
                "request_id": failure.request_id,
                "reason": outcome.message,
            },
        )
        return outcome


def _transfer_id(stripe_transfer_id: str) -> None:
    if not stripe_transfer_id:
        # The SDK would turn an empty id into /v1/transfers/, a listing, or
        # /v1/transfers//reversals: a request to the wrong endpoint.
        raise ValueError("stripe_transfer_id must not be empty")


def _created(
    event: str,
    id_field: str,
    created: stripe.Transfer | stripe.TransferReversal,
    ids: Mapping[str, Any],
) -> bool:
    """Log what a write made (its id as ``id_field``); whether Stripe replayed
    it from the idempotency key."""
    response = created.last_response
    replayed = response is not None and response.headers.get("Idempotent-Replayed") == "true"
    log.debug(
        event,
        extra={
            **ids,
            id_field: created.id,
            "replayed": replayed,
            "request_id": response.request_id if response is not None else None,
        },
    )
    return replayed


def _as_stripe_transfer(transfer: stripe.Transfer) -> outcomes.StripeTransfer:
    destination = transfer.destination  # an Account when expanded
    return outcomes.StripeTransfer(
        id=transfer.id,
        amount_cents=transfer.amount,
        currency=transfer.currency,
        destination=destination if isinstance(destination, str | None) else destination.id,
        transfer_group=transfer.transfer_group,
        payout_transfer_id=_payout_transfer_id(transfer),
        created_at=datetime.fromtimestamp(transfer.created, tz=UTC),
        amount_reversed=transfer.amount_reversed,
        reversed=transfer.reversed,
    )


def _payout_transfer_id(transfer: stripe.Transfer) -> str | None:
    return _metadata(transfer, "payout_transfer_id")


def _metadata(stripe_object: stripe.Transfer | stripe.TransferReversal, name: str) -> str | None:
    metadata = getattr(stripe_object, "metadata", None)
    if metadata is None or name not in metadata:
        return None
    value = metadata[name]
    return value if isinstance(value, str) else None


def _as_stripe_reversal(reversal: stripe.TransferReversal) -> outcomes.StripeReversal:
    transfer = reversal.transfer  # a Transfer when expanded
    return outcomes.StripeReversal(
        id=reversal.id,
        stripe_transfer_id=transfer if isinstance(transfer, str) else transfer.id,
        amount_cents=reversal.amount,
        currency=reversal.currency,
        created_at=datetime.fromtimestamp(reversal.created, tz=UTC),
        payout_reversal_key=_metadata(reversal, "payout_reversal_key"),
    )
