"""The payment gateway on Stripe Connect transfers, through the official ``stripe`` SDK.

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
* **Rate limit**: every request first takes a slot of its budget (a create of
  Create Transfer's, each page of a look-up and a retrieve of the reads') from
  a :class:`payout_core.ports.RateLimiter`: the fleet's shared schedule in
  ``payout-core loop``, :class:`~payout_adapters.stripe.rate_limit.LocalRateLimiter`
  by default. A 429 pushes the budget back by its ``Retry-After``.
* **The API key** lives in the SDK client and in a field that is left out of
  ``repr``; every message that leaves this module is passed through
  :func:`~payout_adapters.stripe.classify.redact`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import attrs
import stripe

from payout_adapters.stripe import classify
from payout_adapters.stripe import rate_limit as limits
from payout_core import outcomes, ports

if TYPE_CHECKING:
    from stripe.params import TransferCreateParams, TransferListParams

__all__ = ["PAGE_SIZE", "RemoteTransfer", "StripeGateway"]

log = logging.getLogger("payout.stripe")

PAGE_SIZE = 100  # Stripe's largest page
# The longest a create waits for its slot of the fleet's budget: well inside the
# 30 s within which a send must leave its intent (payout_core.attempt.SEND_START_LIMIT).
CREATE_MAX_WAIT_SECONDS = 10.0
R = TypeVar("R")


@attrs.frozen(kw_only=True)
class RemoteTransfer:
    """A transfer as Stripe holds it (for reconciliation)."""

    id: str
    amount: int
    currency: str
    destination: str | None
    transfer_group: str | None
    payout_transfer_id: str | None
    reversed: bool
    amount_reversed: int


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _key(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError("api_key must not be empty")


@attrs.define(kw_only=True)
class StripeGateway:
    """:class:`payout_core.ports.PaymentGateway` on Stripe.

    ``api_base`` points the SDK elsewhere than ``https://api.stripe.com`` (a
    local fake in tests). ``limiter`` paces the requests; by default a new
    :class:`LocalRateLimiter` at ``rate_limit`` requests per second for each
    budget. Pass one limiter to several gateways to make them share it (the
    command line passes the fleet's). Call :meth:`close` when done.
    """

    api_key: str = attrs.field(repr=False, validator=_key)
    api_base: str | None = None
    timeout_seconds: float = attrs.field(default=30.0, validator=_positive)
    rate_limit: float = attrs.field(default=20.0, validator=_positive)
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
        response = result.last_response
        replayed = response is not None and response.headers.get("Idempotent-Replayed") == "true"
        log.debug(
            "payout.stripe.transfer_created",
            extra={
                **ids,
                "stripe_transfer_id": result.id,
                "replayed": replayed,
                "request_id": response.request_id if response is not None else None,
            },
        )
        return outcomes.Succeeded(stripe_transfer_id=result.id, replayed=replayed)

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        """List the group's transfers (to the destination, when known), page by
        page, and match ``metadata.payout_transfer_id``. More than one match
        means the winner was paid twice: logged as an error; the oldest counts."""
        params: TransferListParams = {"transfer_group": lookup.transfer_group, "limit": PAGE_SIZE}
        if lookup.destination is not None:
            params["destination"] = lookup.destination
        ids = {"payout_transfer_id": lookup.payout_transfer_id, "destination": lookup.destination}
        matches: list[str] = []  # newest first, as Stripe lists
        pages = 0
        while True:
            page = self._call(
                "list_transfers",
                ports.Budget.READ,
                ids,
                functools.partial(self._list, params.copy()),
            )
            if not isinstance(page, stripe.ListObject):
                return page
            pages += 1
            for transfer in page.data:
                if _payout_transfer_id(transfer) == lookup.payout_transfer_id:
                    matches.append(transfer.id)
            if not page.has_more or not page.data:
                break
            last = page.data[-1].id
            if last == params.get("starting_after"):
                return outcomes.Unknown(
                    code="pagination_stuck",
                    message=f"Stripe returned the same page twice after {last}; "
                    "cannot tell whether the transfer exists",
                )
            params["starting_after"] = last
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

    # -- reconciliation ------------------------------------------------------------------------

    def retrieve_transfer(self, stripe_transfer_id: str) -> RemoteTransfer | classify.Failed:
        """The transfer as Stripe holds it, or why it could not be read."""
        result = self._call(
            "retrieve_transfer",
            ports.Budget.READ,
            {"stripe_transfer_id": stripe_transfer_id},
            lambda: self._client.v1.transfers.retrieve(stripe_transfer_id),
        )
        if not isinstance(result, stripe.Transfer):
            return result
        destination = result.destination
        return RemoteTransfer(
            id=result.id,
            amount=result.amount,
            currency=result.currency,
            destination=destination if isinstance(destination, str | None) else destination.id,
            transfer_group=result.transfer_group,
            payout_transfer_id=_payout_transfer_id(result),
            reversed=result.reversed,
            amount_reversed=result.amount_reversed,
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _list(self, params: TransferListParams) -> stripe.ListObject[stripe.Transfer]:
        return self._client.v1.transfers.list(params)

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
        outcome = attrs.evolve(outcome, message=classify.redact(outcome.message, self.api_key))
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


def _payout_transfer_id(transfer: stripe.Transfer) -> str | None:
    metadata = getattr(transfer, "metadata", None)
    if metadata is None or "payout_transfer_id" not in metadata:
        return None
    value = metadata["payout_transfer_id"]
    return value if isinstance(value, str) else None
