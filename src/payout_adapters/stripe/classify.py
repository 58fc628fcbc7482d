"""What each Stripe failure means for a transfer: one table, read top to bottom.

One module, a little over the usual length, because the table is read in
order (the first matching row wins) and its rows are only right next to each
other; splitting it would hide which row comes first.

Every exception the ``stripe`` SDK raises is reduced to a :class:`Failure`
(the SDK's exception class, the HTTP status, Stripe's error code) and the first
matching :data:`RULES` row decides the outcome. A network failure has no status
and no Stripe code; :func:`describe` names it from the exception chain the SDK
and ``requests``/``urllib3`` leave behind, so the same table covers it.

Each row names the outcome itself, a class of :mod:`payout_core.outcomes`:

* ``Transient``: nothing was created by this request; retry later.
* ``Unknown``: a transfer may exist or still be created (a timeout, a 5xx Stripe
  did not save, a 409 while an earlier request with the key still runs); send
  the same key again, and Stripe replays what happened (409 while it is still
  running). Never decided on.
* ``Unknown`` with ``key_replays_error``: a transfer may exist *and* the key
  can only ever answer this error again: Stripe saved a 500 (or any 5xx it
  replays) under it, or the key was first used with other parameters
  (``idempotency_error``). Only a look-up decides.
* ``Permanent``: the winner's or the request's fault; retrying cannot help.
* ``Systemic``: the platform's fault (bad key, no permission); it would fail
  every winner alike, so nobody's attempt is spent.
* ``Systemic`` and ``conclusive``: Stripe executed the request and saved the
  refusal under the key (``balance_insufficient``): the key created nothing
  and would replay the refusal for a day, so the transfer's next request
  needs its next key.

Why 502/503/504 are ``Unknown`` without ``key_replays_error``: Stripe saves a
result only once the endpoint has begun executing, and a gateway timeout in
front of the API may come back while the endpoint is *still* executing. A
look-up at that moment finds nothing and would move to a new key while the
first request can still create a transfer: paid twice. Sending the same key
again is always safe: it is refused with a 409 while the first request runs,
replays its result once it is done, or executes once if it never arrived. If
the 5xx was saved after all, the retry gets it back marked
``Idempotent-Replayed``, and that replay is ``Unknown`` with ``key_replays_error``.

``docs/stripe-errors.md`` is this table as an operator reads it.
"""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from typing import Final

import attrs
import stripe
import urllib3.exceptions

from payout_core import outcomes

__all__ = [
    "RULES",
    "Failed",
    "Failure",
    "Rule",
    "classify",
    "classify_error",
    "describe",
    "rule_for",
]


Failed = outcomes.Transient | outcomes.Unknown | outcomes.Permanent | outcomes.Systemic
"""The outcomes a failed request can have (a :data:`payout_core.outcomes.GatewayOutcome`
that is not a success)."""


@attrs.frozen(kw_only=True)
class Failure:
    """What went wrong with one request, as far as the SDK tells."""

    exception: type[stripe.StripeError]
    status: int | None  # None: no HTTP answer
    code: str | None  # Stripe's error code, or the name of a network failure
    error_type: str | None = None
    param: str | None = None
    message: str = ""
    request_id: str | None = None
    replayed: bool = False  # Stripe replayed an answer saved under the idempotency key
    retry_after: float | None = None  # seconds, from a 429's Retry-After header


@attrs.frozen(kw_only=True)
class Rule:
    """One row: which failures it matches, what they mean, what the operator reads.

    ``status``, ``code``, ``param`` and ``replayed`` of ``None`` match anything.
    ``outcome`` is the class of the answer, with its ``key_replays_error`` (an
    ``Unknown``'s) or ``conclusive`` (a ``Systemic``'s) when the row says so.
    ``name`` is the failure code recorded on the transfer when Stripe gave none.
    """

    exception: type[stripe.StripeError]
    status: int | range | None = None
    code: str | None = None
    param: str | None = None
    replayed: bool | None = None
    outcome: type[Failed]
    key_replays_error: bool = False
    conclusive: bool = False
    name: str
    explain: str

    def __attrs_post_init__(self) -> None:
        if self.key_replays_error and self.outcome is not outcomes.Unknown:
            raise ValueError(f"{self.name}: only an Unknown has a key that replays its error")
        if self.conclusive and self.outcome is not outcomes.Systemic:
            raise ValueError(f"{self.name}: only a Systemic is marked conclusive")

    def matches(self, failure: Failure) -> bool:
        if not issubclass(failure.exception, self.exception):
            return False
        if self.code is not None and failure.code != self.code:
            return False
        if self.param is not None and failure.param != self.param:
            return False
        if self.replayed is not None and failure.replayed != self.replayed:
            return False
        if self.status is None:
            return True
        if failure.status is None:
            return False
        if isinstance(self.status, range):
            return failure.status in self.status
        return failure.status == self.status


# Short names keep each row on a few lines.
Transient, Unknown = outcomes.Transient, outcomes.Unknown
Permanent, Systemic = outcomes.Permanent, outcomes.Systemic
Net, Api = stripe.APIConnectionError, stripe.StripeError
Invalid = stripe.InvalidRequestError

RULES: Final[tuple[Rule, ...]] = (
    # -- no answer: the network ----------------------------------------------------------------
    Rule(exception=Net, code="connection_refused", outcome=Transient, name="connection_refused",
         explain="Stripe refused the connection; nothing was sent"),
    Rule(exception=Net, code="connect_failed", outcome=Transient, name="connect_failed",
         explain="could not connect to Stripe (DNS or network); nothing was sent"),
    Rule(exception=Net, code="connect_timeout", outcome=Transient, name="connect_timeout",
         explain="connecting to Stripe timed out; nothing was sent"),
    Rule(exception=Net, code="tls_certificate_rejected", outcome=Systemic,
         name="tls_certificate_rejected",
         explain="Stripe's TLS certificate was not trusted: something is intercepting TLS "
         "or PAYOUT_STRIPE_API_BASE points at the wrong host; nothing was sent"),
    Rule(exception=Net, code="timeout", outcome=Unknown, name="timeout",
         explain="Stripe did not answer within PAYOUT_STRIPE_TIMEOUT_SECONDS; the transfer "
         "may exist, the same idempotency key is sent again"),
    Rule(exception=Net, code="connection_lost", outcome=Unknown, name="connection_lost",
         explain="the connection broke after the request was sent; the transfer may exist, "
         "the same idempotency key is sent again"),
    Rule(exception=Net, outcome=Unknown, name="connection_error",
         explain="the request failed on the way to or from Stripe; the transfer may exist, "
         "the same idempotency key is sent again"),
    # -- Stripe answered: slow down ------------------------------------------------------------
    Rule(exception=stripe.RateLimitError, code="lock_timeout", outcome=Transient,
         name="lock_timeout",
         explain="Stripe was busy with another request on the same object (429 lock_timeout)"),
    Rule(exception=stripe.RateLimitError, outcome=Transient, name="rate_limit",
         explain="Stripe's rate limit was hit (429); this process slows down"),
    # -- Stripe is still working on the key, or the key cannot tell ----------------------------
    Rule(exception=Api, status=409, code="idempotency_key_in_use", outcome=Unknown,
         name="idempotency_key_in_use",
         explain="an earlier request with this idempotency key is still running at Stripe "
         "(409) and may still create the transfer; the same key is sent again later, and "
         "Stripe replays that request's result once it is done"),
    Rule(exception=Api, status=409, outcome=Unknown, name="conflict",
         explain="the request conflicted with another one at Stripe (409); the transfer may "
         "exist, the same idempotency key is sent again"),
    Rule(exception=stripe.IdempotencyError, outcome=Unknown, key_replays_error=True,
         name="idempotency_error",
         explain="the idempotency key was first used with other parameters, so it may have "
         "created a transfer and can only answer this error again; the transfer is looked up "
         "before a new key is used"),
    # -- the platform's fault: stop, fail no one -----------------------------------------------
    Rule(exception=stripe.AuthenticationError, outcome=Systemic, name="authentication_failed",
         explain="Stripe refused the API key (401): check STRIPE_API_KEY"),
    Rule(exception=stripe.PermissionError, outcome=Systemic, name="permission_denied",
         explain="Stripe refused the API key's permissions (403): STRIPE_API_KEY must be a "
         "secret key, or a restricted key with write access to Transfers"),
    Rule(exception=Invalid, code="balance_insufficient", outcome=Systemic, conclusive=True,
         name="balance_insufficient",
         explain="the platform's Stripe balance is too low for this transfer: top up the "
         "balance; payouts resume by themselves, each transfer under its next idempotency key "
         "(Stripe saved this refusal under the old one and would replay it for a day)"),
    Rule(exception=Invalid, code="api_key_expired", outcome=Systemic, name="api_key_expired",
         explain="the Stripe API key has expired: roll STRIPE_API_KEY"),
    Rule(exception=Invalid, code="platform_api_key_expired", outcome=Systemic,
         name="platform_api_key_expired",
         explain="the Connect platform's API key has expired: roll STRIPE_API_KEY"),
    Rule(exception=Invalid, code="secret_key_required", outcome=Systemic,
         name="secret_key_required",
         explain="STRIPE_API_KEY is a publishable key; a secret key is required"),
    Rule(exception=Invalid, code="livemode_mismatch", outcome=Systemic, name="livemode_mismatch",
         explain="STRIPE_API_KEY and the connected accounts are in different modes "
         "(test and live)"),
    Rule(exception=Invalid, code="platform_account_required", outcome=Systemic,
         name="platform_account_required",
         explain="STRIPE_API_KEY does not belong to a Stripe Connect platform"),
    # -- the winner's or the request's fault ---------------------------------------------------
    Rule(exception=Invalid, code="resource_missing", param="destination", outcome=Permanent,
         name="resource_missing", explain="Stripe does not know the destination account"),
    Rule(exception=Invalid, code="resource_missing", outcome=Permanent, name="resource_missing",
         explain="Stripe has no such object"),
    Rule(exception=Invalid, code="account_invalid", outcome=Permanent, name="account_invalid",
         explain="the destination account is invalid, closed or rejected"),
    Rule(exception=Invalid, code="insufficient_capabilities_for_transfer", outcome=Permanent,
         name="insufficient_capabilities_for_transfer",
         explain="the destination account cannot receive transfers (its transfers "
         "capability is not active)"),
    Rule(exception=Invalid, code="transfers_not_allowed", outcome=Permanent,
         name="transfers_not_allowed",
         explain="Stripe does not allow this transfer"),
    Rule(exception=Invalid, code="amount_too_small", outcome=Permanent, name="amount_too_small",
         explain="the amount is below Stripe's minimum for a transfer"),
    Rule(exception=Invalid, code="amount_too_large", outcome=Permanent, name="amount_too_large",
         explain="the amount is above what Stripe allows for a transfer"),
    # -- Stripe failed -------------------------------------------------------------------------
    Rule(exception=Api, status=500, outcome=Unknown, key_replays_error=True, name="api_error",
         explain="Stripe failed (500) and saved that answer under the idempotency key; "
         "the transfer may exist, so it is looked up before a new key is used"),
    Rule(exception=Api, status=range(500, 600), replayed=True, outcome=Unknown,
         key_replays_error=True, name="server_error",
         explain="Stripe replayed a 5xx saved under the idempotency key; the transfer may "
         "exist, so it is looked up before a new key is used"),
    Rule(exception=Api, status=424, outcome=Unknown, key_replays_error=True,
         name="external_dependency_failed",
         explain="a service Stripe depends on failed (424); the transfer is looked up "
         "before a new key is used"),
    Rule(exception=Api, status=range(500, 600), outcome=Unknown, name="server_error",
         explain="Stripe or a proxy in front of it failed (5xx) without saving the answer; "
         "the transfer may exist, the same idempotency key is sent again"),
    # -- anything else, by status --------------------------------------------------------------
    Rule(exception=Api, status=range(400, 500), outcome=Permanent, name="invalid_request",
         explain="Stripe refused the request"),
    Rule(exception=Api, outcome=Unknown, name="unexpected_answer",
         explain="Stripe's answer could not be understood; the transfer may exist, the "
         "same idempotency key is sent again"),
)  # fmt: skip


def rule_for(failure: Failure) -> Rule:
    """The first row that matches; the last row matches every failure."""
    return next(rule for rule in RULES if rule.matches(failure))


def classify(failure: Failure) -> Failed:
    rule = rule_for(failure)
    code = failure.code if failure.status is not None and failure.code else rule.name
    message = _message(rule, failure)
    if rule.outcome is outcomes.Unknown:
        return outcomes.Unknown(
            code=code, message=message, key_replays_error=rule.key_replays_error
        )
    if rule.outcome is outcomes.Systemic:
        return outcomes.Systemic(code=code, message=message, conclusive=rule.conclusive)
    return rule.outcome(code=code, message=message)


def classify_error(exc: stripe.StripeError) -> Failed:
    return classify(describe(exc))


def _message(rule: Rule, failure: Failure) -> str:
    details = []
    if failure.status is not None:
        said = f"{failure.status} {failure.code}" if failure.code else str(failure.status)
        if failure.param:
            said += f" on {failure.param}"
        details.append(f"Stripe said {said}: {failure.message}" if failure.message else said)
    elif failure.message:
        details.append(failure.message)
    if failure.replayed:
        details.append("replayed")
    if failure.request_id:
        details.append(f"request {failure.request_id}")
    return f"{rule.explain} ({'; '.join(details)})" if details else rule.explain


# -- from an SDK exception to a Failure --------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, urllib3's ``reason``,
    and exceptions passed as arguments (``requests`` wraps urllib3's that way)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        stack.extend(e for e in linked if isinstance(e, BaseException))


def _network_failure(exc: stripe.APIConnectionError) -> str:
    chain = list(_chain(exc))

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    # Order matters: urllib3's NewConnectionError is a ConnectTimeoutError, and a
    # refused connection is an OSError like a reset one.
    if has(ssl.SSLCertVerificationError):
        return "tls_certificate_rejected"
    if has(ConnectionRefusedError):
        return "connection_refused"
    if has(urllib3.exceptions.NewConnectionError):
        return "connect_failed"
    if has(urllib3.exceptions.ConnectTimeoutError):
        return "connect_timeout"
    if has(urllib3.exceptions.ReadTimeoutError, TimeoutError):
        return "timeout"
    if has(urllib3.exceptions.ProtocolError, ConnectionError, http.client.HTTPException):
        return "connection_lost"
    return "connection_error"


def _innermost(exc: BaseException) -> BaseException:
    chain = list(_chain(exc))
    return chain[-1] if chain else exc


def describe(exc: stripe.StripeError) -> Failure:
    """The facts of a failed request, read from the SDK's exception."""
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    if isinstance(exc, stripe.APIConnectionError):
        cause = _innermost(exc)
        return Failure(
            exception=type(exc),
            status=None,
            code=_network_failure(exc),
            message=f"{type(cause).__name__}: {cause}"[:300],
        )
    error = exc.error
    return Failure(
        exception=type(exc),
        status=exc.http_status,
        code=(error.code if error is not None else None) or exc.code,
        error_type=error.type if error is not None else None,
        param=error.param if error is not None else None,
        message=((error.message if error is not None else None) or exc.user_message or "")[:500],
        request_id=exc.request_id or headers.get("request-id"),
        replayed=headers.get("idempotent-replayed") == "true",
        retry_after=_seconds(headers.get("retry-after")),
    )


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` of delta-seconds; ``None`` when absent or not a number
    (an HTTP date is not worth parsing: the pause then defaults to a second)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 3600 else None
