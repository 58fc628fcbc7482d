"""One attempt of one claimed transfer, as decisions without I/O.

Why one module of this length: it holds one idea, the attempt, whole. The
operations a driver performs are the attempt's half of the conversation and
the functions after :func:`run_attempt` say what each answer means; the rules
of docs/exactly-once.md read here top to bottom, and cutting the answers from
the questions would send a reader of one rule through two files.

:func:`run_attempt` is a generator: it yields each piece of I/O it needs (an
operation below), is sent back its result, and returns the
:class:`AttemptResult`. It never touches a store, a gateway or a clock itself.
Two drivers run it: :func:`payout_core.services.attempting.drive` does each
operation at once, and the deterministic simulation (``tests/simulation``)
does each one at a simulated time of its choosing, with crashes, stalls and
outages in between. Both drive this very code, so what the simulation proves
is proved of the engine (the sans-I/O pattern of h11).

The order of one attempt (docs/exactly-once.md explains each rule):

1. the destination: pinned by an earlier intent, or read from the directory;
2. decide from the stored row alone, at the claim's database time: a new
   attempt; a resend of an uncertain key Stripe still remembers (rule 5); a
   look-up, once the send margin has passed since the last send began; or
   a failure (no connected account);
3. for a send: the write-ahead intent (rule 2), then the request, only if it
   leaves within :data:`SEND_START_LIMIT` of the intent;
4. record the outcome: the transfer, its ledger row, its job, all at once.

The worker's own clock is read only on the way to a send, at most twice:
just before the intent (:class:`ReadLocalClock`) and as the request leaves
(the driver calls :meth:`Send.too_late`); never after the send. The time
between the two reads is rule 2's start limit; every time the attempt decides
or records with is the database's (rule 1).
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Final, TypeAlias

import attrs

from payout_core import errors, idempotency, ledger, models, outcomes, retry
from payout_core import state_machine as sm

__all__ = [
    "SEND_START_LIMIT",
    "AttemptResult",
    "Disposition",
    "LookUp",
    "Operation",
    "ReadAccount",
    "ReadLocalClock",
    "Record",
    "Send",
    "Timing",
    "WriteIntent",
    "run_attempt",
    "send_margin",
]

#: A send must leave within this of its intent, by the worker's own clock;
#: later, the worker gives it up (the intent stands, and whoever resolves the
#: transfer resends the key). With the Stripe timeout it makes the send margin.
SEND_START_LIMIT: Final = timedelta(seconds=30)


def send_margin(
    stripe_timeout: timedelta, send_start_limit: timedelta = SEND_START_LIMIT
) -> timedelta:
    """The lease a send intent needs left, and the wait after a send began
    before a look-up may trust what it finds: the Stripe timeout + 30 s."""
    return stripe_timeout + send_start_limit


class Disposition(enum.StrEnum):
    COMPLETED = "completed"
    RETRIED = "retried"  # retryable again, uncertain or not
    FAILED_TERMINAL = "failed_terminal"
    RELEASED = "released"  # handed back without an outcome (halt, stop, too early)
    NEEDS_OPERATOR = "needs_operator"  # no claim takes it until an operator decides
    STALE = "stale"  # the claim was taken over, or the send came too late: nothing recorded
    ERROR = "error"  # an infrastructure failure; the lease will expire and be taken over


@attrs.frozen(kw_only=True)
class AttemptResult:
    transfer: models.PayoutTransfer
    disposition: Disposition
    systemic: outcomes.Systemic | None = None


@attrs.frozen(kw_only=True)
class Timing:
    """The times an attempt decides with."""

    stripe_timeout: timedelta = timedelta(seconds=30)
    # Shorter only where no money moves (the demo, tests): see SEND_START_LIMIT.
    send_start_limit: timedelta = SEND_START_LIMIT
    policy: retry.RetryPolicy = attrs.Factory(retry.RetryPolicy)

    @property
    def margin(self) -> timedelta:
        return send_margin(self.stripe_timeout, self.send_start_limit)


# -- the operations a driver performs ------------------------------------------------


@attrs.frozen(kw_only=True)
class ReadAccount:
    """Answer with ``AccountDirectory.account_for(user_id)``."""

    user_id: str


@attrs.frozen(kw_only=True)
class ReadLocalClock:
    """Answer with the worker's own clock. Only ever used for elapsed time:
    an offset between hosts changes nothing. Asked once per send, just before
    its intent; :meth:`Send.too_late` takes the one other read."""


@attrs.frozen(kw_only=True)
class WriteIntent:
    """Answer with ``PayoutStore.write_intent(claimed=..., destination=...,
    margin=...)``: the transfer as the intent left it, or why it was refused."""

    claimed: models.PayoutTransfer
    destination: str
    margin: timedelta


@attrs.frozen(kw_only=True)
class Send:
    """Answer with ``PaymentGateway.create_transfer(request)``, or with
    :data:`TOO_LATE` without sending when :meth:`too_late` says so at the
    moment of sending: the driver reads the worker's clock for it right
    before the request, so that a stall since the intent is seen."""

    request: outcomes.TransferRequest
    intent_began: datetime  # the worker's clock just before the intent
    start_limit: timedelta = SEND_START_LIMIT

    def too_late(self, local_now: datetime) -> bool:
        """Whether the send may no longer leave: more than the start limit
        (:data:`SEND_START_LIMIT`) since its intent, by the worker's clock (a
        worker that stalled, past its lease perhaps)."""
        return local_now - self.intent_began > self.start_limit


class _TooLate(enum.Enum):
    TOO_LATE = "too late"


TOO_LATE: Final = _TooLate.TOO_LATE


@attrs.frozen(kw_only=True)
class LookUp:
    """Answer with ``PaymentGateway.find_transfer(lookup)``."""

    lookup: outcomes.TransferLookup


@attrs.frozen(kw_only=True)
class Record:
    """Answer with ``PayoutStore.record(claimed=..., updated=...,
    ledger_entry=..., now=...)``: whether it was written."""

    claimed: models.PayoutTransfer
    updated: models.PayoutTransfer
    ledger_entry: models.LedgerEntry | None
    now: datetime


Operation: TypeAlias = ReadAccount | ReadLocalClock | WriteIntent | Send | LookUp | Record
Attempt: TypeAlias = Generator[Operation, object, AttemptResult]

# -- the attempt -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Outcome:
    """What to record, and how to report it."""

    updated: models.PayoutTransfer
    book: bool
    disposition: Disposition
    systemic: outcomes.Systemic | None = None


def run_attempt(claimed: models.PayoutTransfer, *, timing: Timing) -> Attempt:
    """One attempt of ``claimed``, a transfer as :meth:`PayoutStore.claim_due`
    returned it (its ``updated_at`` is the database time of the claim).

    Raises:
        IllegalTransition: ``claimed`` is not a claimed transfer.
    """
    if claimed.status is not models.TransferStatus.PROCESSING or claimed.claim_token is None:
        raise errors.IllegalTransition(claimed.id, claimed.status.value, "execute unclaimed")
    now = claimed.updated_at
    destination = claimed.destination_account
    if destination is None and not claimed.outcome_uncertain:
        account = yield ReadAccount(user_id=claimed.user_id)
        if not isinstance(account, str | None):
            raise _unexpected(account)
        destination = account
    decided = _decide(claimed, destination, now=now, timing=timing)
    held = claimed
    if isinstance(decided, WriteIntent):
        sent = yield from _send(claimed, decided, now=now, timing=timing)
        if isinstance(sent, AttemptResult):
            return sent
        held, decided = sent
    if isinstance(decided, LookUp):
        found = yield decided
        if not isinstance(found, _LOOKUP_OUTCOMES):
            raise _unexpected(found)
        decided = _after_lookup(held, found, now=now, timing=timing)
    record_now = max(now, decided.updated.updated_at)
    entry = ledger.entry_for(decided.updated, now=record_now) if decided.book else None
    recorded = yield Record(
        claimed=held, updated=decided.updated, ledger_entry=entry, now=record_now
    )
    if recorded is not True:
        return AttemptResult(transfer=held, disposition=Disposition.STALE)
    return AttemptResult(
        transfer=decided.updated, disposition=decided.disposition, systemic=decided.systemic
    )


def _send(
    claimed: models.PayoutTransfer, intent: WriteIntent, *, now: datetime, timing: Timing
) -> Generator[
    Operation,
    object,
    AttemptResult | tuple[models.PayoutTransfer, LookUp | _Outcome],
]:
    """The intent, then the request: what the transfer is after them, and what
    to do next; or the attempt's end when nothing may be recorded."""
    began = yield ReadLocalClock()
    written = yield intent
    if not isinstance(began, datetime):
        raise _unexpected(began)
    if isinstance(written, sm.IntentRefusal):
        after = _refused(claimed, written, now=now, timing=timing)
        if after is None:
            return AttemptResult(transfer=claimed, disposition=Disposition.STALE)
        return claimed, after
    if not isinstance(written, models.PayoutTransfer):
        raise _unexpected(written)
    request = idempotency.transfer_request(written, intent.destination)
    answer = yield Send(request=request, intent_began=began, start_limit=timing.send_start_limit)
    if answer is TOO_LATE:
        return AttemptResult(transfer=written, disposition=Disposition.STALE)
    if not isinstance(answer, _GATEWAY_OUTCOMES):
        raise _unexpected(answer)
    return written, _after_send(written, answer, now=_sent_at(written), timing=timing)


def _unexpected(answer: object) -> TypeError:
    return TypeError(f"the driver answered {answer!r}, which this step does not take")


_GATEWAY_OUTCOMES = (
    outcomes.Succeeded,
    outcomes.Transient,
    outcomes.Unknown,
    outcomes.Permanent,
    outcomes.Systemic,
)
_LOOKUP_OUTCOMES = (
    outcomes.Found,
    outcomes.NotFound,
    outcomes.Transient,
    outcomes.Unknown,
    outcomes.Permanent,
    outcomes.Systemic,
)


def _sent_at(sent: models.PayoutTransfer) -> datetime:
    # The intent's database time: later than the claim's, still never ahead of the database.
    return sent.last_send_at or sent.updated_at


def _decide(
    t: models.PayoutTransfer, destination: str | None, *, now: datetime, timing: Timing
) -> WriteIntent | LookUp | _Outcome:
    """What this claim does, from the stored row alone."""
    if t.outcome_uncertain:
        if t.destination_account is not None and sm.key_trusted(t, now):
            # Rule 5: the same key again is the conclusive test, and spends nothing.
            return WriteIntent(claimed=t, destination=t.destination_account, margin=timing.margin)
        return _look_up_when_safe(t, now=now, timing=timing)
    if destination is None:
        failed = sm.fail(
            t,
            code=sm.ACCOUNT_NOT_CONNECTED,
            message="the user has no connected account",
            now=now,
            spend_attempt=True,
        )
        return _Outcome(updated=failed, book=True, disposition=Disposition.FAILED_TERMINAL)
    return WriteIntent(claimed=t, destination=destination, margin=timing.margin)


def _look_up_when_safe(
    t: models.PayoutTransfer, *, now: datetime, timing: Timing
) -> LookUp | _Outcome:
    """A look-up only once the send margin has passed since the last send
    began: before that, the request may still be running at Stripe and a
    look-up could miss the transfer it is creating."""
    last = t.last_send_at or t.key_first_sent_at
    if last is not None and now < last + timing.margin:
        waiting = sm.release(t, now=now, next_attempt_at=last + timing.margin)
        return _Outcome(updated=waiting, book=False, disposition=Disposition.RELEASED)
    return LookUp(lookup=idempotency.transfer_lookup(t, t.destination_account))


def _refused(
    t: models.PayoutTransfer, refusal: sm.IntentRefusal, *, now: datetime, timing: Timing
) -> LookUp | _Outcome | None:
    """No intent, so nothing was sent: what now."""
    match refusal:
        case sm.IntentRefusal.STALE_CLAIM:
            return None  # the newer claim owns the transfer; nothing to record
        case sm.IntentRefusal.KEY_UNTRUSTED:
            # The key aged past trust between the claim and the intent.
            return _look_up_when_safe(t, now=now, timing=timing)
        case sm.IntentRefusal.LEASE_TOO_SHORT:
            back = sm.release(t, now=now)
            return _Outcome(updated=back, book=False, disposition=Disposition.RELEASED)
        case _:
            raise errors.IllegalTransition(t.id, t.status.value, f"send refused: {refusal}")


def _delay(t: models.PayoutTransfer, timing: Timing) -> timedelta:
    # Grows with every attempt, every resend of the key and every failed look-up.
    tries = max(t.attempt_count, 1) + max(t.key_sends - 1, 0) + t.lookup_failures
    return timing.policy.delay(tries)


def _after_send(
    t: models.PayoutTransfer,
    outcome: outcomes.GatewayOutcome,
    *,
    now: datetime,
    timing: Timing,
) -> _Outcome:
    """What Stripe's answer to the request under the current key means (rule 4)."""
    match outcome:
        case outcomes.Succeeded(stripe_transfer_id=stripe_id):
            return _complete(t, stripe_id, now=now)
        case outcomes.Permanent(code=code, message=message):
            # Saved under the key: the key created nothing, and never will.
            ended = sm.key_refused(t, now=now)
            return _Outcome(
                updated=sm.fail(ended, code=code, message=message, now=now),
                book=True,
                disposition=Disposition.FAILED_TERMINAL,
            )
        case outcomes.Systemic(code=code, conclusive=True):
            # Rule 6: the refusal is saved under the key for a day; the next
            # request after the top-up goes out under a fresh key.
            moved = sm.new_key_generation(t, now=now, refund=True)
            return _halt(moved, outcome, now=now)
        case outcomes.Systemic():
            # Ends nothing (rule 4); but should a look-up find nothing later,
            # the attempt was the platform's to lose, not the winner's.
            return _halt(t, outcome, now=now, platform_refused=True)
        case outcomes.Unknown(code=code, message=message, key_replays_error=True):
            # Only a look-up can decide now, and not before the margin.
            not_before = _sent_at(t) + timing.margin
            again = max(now + _delay(t, timing), not_before)
            retried = sm.retry(
                t,
                next_attempt_at=again,
                code=code,
                message=message,
                key_replays_error=True,
                now=now,
            )
            return _Outcome(updated=retried, book=False, disposition=Disposition.RETRIED)
        case (
            outcomes.Unknown(code=code, message=message)
            | outcomes.Transient(code=code, message=message)
        ):
            retried = sm.retry(
                t, next_attempt_at=now + _delay(t, timing), code=code, message=message, now=now
            )
            return _Outcome(updated=retried, book=False, disposition=Disposition.RETRIED)


def _after_lookup(
    t: models.PayoutTransfer,
    outcome: outcomes.LookupOutcome,
    *,
    now: datetime,
    timing: Timing,
) -> _Outcome:
    match outcome:
        case outcomes.Found(stripe_transfer_id=stripe_id):
            return _complete(t, stripe_id, now=now)
        case outcomes.NotFound():
            # Conclusive: the margin has passed, so no request with the key is
            # still running; the attempt under it created nothing. Refused last
            # for the platform's fault (a 401 outage), it is given back.
            moved = sm.new_key_generation(t, now=now, refund=t.platform_refused)
            last = f"{t.failure_code}: {t.failure_message}" if t.failure_code else "unknown"
            if moved.attempts_left <= 0:
                failed = sm.fail(
                    moved,
                    code=sm.MAX_ATTEMPTS_EXCEEDED,
                    message=f"{moved.attempt_count} attempt(s) failed (last: {last}); "
                    "no transfer exists at Stripe",
                    now=now,
                )
                return _Outcome(updated=failed, book=True, disposition=Disposition.FAILED_TERMINAL)
            retried = sm.retry(
                moved,
                next_attempt_at=now,
                code=t.failure_code or "not_found",
                message=f"attempt {moved.attempt_count} created nothing at Stripe (last: {last})",
                now=now,
            )
            return _Outcome(updated=retried, book=True, disposition=Disposition.RETRIED)
        case outcomes.Systemic():
            return _halt(t, outcome, now=now)
        case (
            outcomes.Transient(code=code, message=message)
            | outcomes.Unknown(code=code, message=message)
            | outcomes.Permanent(code=code, message=message)
        ):
            return _lookup_failed(t, code, message, now=now, timing=timing)


def _lookup_failed(
    t: models.PayoutTransfer, code: str, message: str, *, now: datetime, timing: Timing
) -> _Outcome:
    """Rule 7: a look-up that keeps failing ends with an operator, not forever."""
    if t.lookup_failures + 1 >= sm.LOOKUP_FAILURES_LIMIT:
        reason = (
            f"{t.lookup_failures + 1} look-ups at Stripe failed in a row "
            f"(last: {code}: {message}); a transfer may exist at Stripe"
        )
        waiting = sm.escalate(t, reason=reason, now=now, lookup_failed=True)
        return _Outcome(updated=waiting, book=False, disposition=Disposition.NEEDS_OPERATOR)
    retried = sm.retry(
        t,
        next_attempt_at=now + _delay(t, timing),
        code=code,
        message=f"look-up failed: {message}",
        lookup_failed=True,
        now=now,
    )
    return _Outcome(updated=retried, book=False, disposition=Disposition.RETRIED)


def _complete(t: models.PayoutTransfer, stripe_id: str, *, now: datetime) -> _Outcome:
    done = sm.complete(t, stripe_transfer_id=stripe_id, now=now)
    return _Outcome(updated=done, book=True, disposition=Disposition.COMPLETED)


def _halt(
    t: models.PayoutTransfer,
    systemic: outcomes.Systemic,
    *,
    now: datetime,
    platform_refused: bool = False,
) -> _Outcome:
    """The platform's fault: give the claim back, spend nothing, stop the tick."""
    released = sm.release(
        t,
        now=now,
        next_attempt_at=now,
        reason=systemic.code,
        message=systemic.message,
        platform_refused=platform_refused,
    )
    return _Outcome(
        updated=released,
        book=False,
        disposition=Disposition.RELEASED,
        systemic=systemic,
    )
