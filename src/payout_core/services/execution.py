"""Executing claimed transfers: one attempt each, outcome recorded with its ledger row.

No lock, transaction or connection is held while the gateway is called: the
claim was committed before, and the outcome is recorded after, each in its own
short unit of work. The deterministic idempotency key makes that split safe.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import attrs

from payout_core import errors, idempotency, ledger, models, outcomes, ports, retry
from payout_core import state_machine as sm

__all__ = ["AttemptResult", "Disposition", "execute_claimed", "execute_transfer"]

log = logging.getLogger("payout.transfer")

# Stripe prunes idempotency keys after about 24 hours; look up before trusting
# a key that old to replay.
KEY_TRUST_WINDOW = timedelta(hours=23)


class Disposition(enum.StrEnum):
    COMPLETED = "completed"
    RETRIED = "retried"  # retryable again, including "awaiting a resolving look-up"
    FAILED_TERMINAL = "failed_terminal"
    RELEASED = "released"  # handed back without spending the attempt
    STALE = "stale"  # the lease was taken over; the newer claim owns the transfer
    ERROR = "error"  # an infrastructure failure; the lease will expire and be taken over


@attrs.frozen(kw_only=True)
class AttemptResult:
    transfer: models.PayoutTransfer
    disposition: Disposition
    systemic: outcomes.Systemic | None = None


@attrs.frozen(kw_only=True)
class _Decision:
    transfer: models.PayoutTransfer
    book: bool  # whether this attempt's outcome is final enough for a ledger row
    systemic: outcomes.Systemic | None = None
    lease_lost: bool = False  # nothing was sent and nothing may be recorded


@attrs.frozen(kw_only=True)
class _Attempt:
    """One attempt of one claimed transfer, from look-up to decision."""

    directory: ports.AccountDirectory
    gateway: ports.PaymentGateway
    clock: ports.Clock
    policy: retry.RetryPolicy

    def decide(self, claimed: models.PayoutTransfer) -> _Decision:
        t = claimed
        destination = t.destination_account or self.directory.account_for(t.user_id)
        if not t.claim_counted:
            # Every attempt is spent and one may have reached Stripe: only a
            # look-up may end this transfer.
            return self._resolve(t, destination)
        if destination is None:
            if t.outcome_uncertain:
                return self._resolve(t, None)
            return self._fail(t, sm.ACCOUNT_NOT_CONNECTED, "the user has no connected account")
        checked = self._check_key(t, destination)
        if isinstance(checked, _Decision):
            return checked
        now = self.clock.now()
        if t.lease_expires_at is None or now >= t.lease_expires_at:
            # This worker was too slow: another may have taken the claim over
            # and moved to a newer key. Sending now could pay twice.
            return _Decision(transfer=claimed, book=False, lease_lost=True)
        t = sm.send(checked, destination=destination, now=now)
        return self._apply(
            t,
            destination,
            self.gateway.create_transfer(idempotency.transfer_request(t, destination)),
        )

    def _check_key(
        self, t: models.PayoutTransfer, destination: str
    ) -> models.PayoutTransfer | _Decision:
        """Look up first when the key would replay a saved 5xx or Stripe may
        have forgotten it; move to a new key only when nothing exists there."""
        now = self.clock.now()
        key_may_be_pruned = (
            t.key_first_sent_at is not None and now - t.key_first_sent_at >= KEY_TRUST_WINDOW
        )
        if not (t.key_replays_error or (t.outcome_uncertain and key_may_be_pruned)):
            return t
        found = self.gateway.find_transfer(idempotency.transfer_lookup(t, destination))
        match found:
            case outcomes.Found(stripe_transfer_id=stripe_id):
                return self._complete(t, stripe_id)
            case outcomes.NotFound():
                return sm.new_key_generation(t, now=self.clock.now())
            case outcomes.Systemic():
                return self._release(t, found)
            case _:
                return self._retry_or_park(t, found.code, f"look-up failed: {found.message}")

    def _apply(
        self, t: models.PayoutTransfer, destination: str, outcome: outcomes.GatewayOutcome
    ) -> _Decision:
        match outcome:
            case outcomes.Succeeded(stripe_transfer_id=stripe_id):
                return self._complete(t, stripe_id)
            case outcomes.Systemic():
                return self._release(t, outcome)
            case outcomes.Permanent(code=code, message=message):
                if t.outcome_uncertain:
                    return self._resolve(t, destination, code=code, message=message)
                return self._fail(t, code, message)
            case outcomes.Transient(code=code, message=message):
                return self._retry_or_park(t, code, message)
            case outcomes.Unknown(code=code, message=message):
                return self._retry_or_park(
                    t, code, message, uncertain=True, key_replays_error=outcome.key_replays_error
                )

    def _resolve(
        self,
        t: models.PayoutTransfer,
        destination: str | None,
        *,
        code: str | None = None,
        message: str | None = None,
    ) -> _Decision:
        """Look the transfer up at Stripe; fail it only when it is certainly absent.

        ``code`` is the failure to record when absent; by default the one that
        fits (no account, or no attempts left).
        """
        found = self.gateway.find_transfer(idempotency.transfer_lookup(t, destination))
        match found:
            case outcomes.Found(stripe_transfer_id=stripe_id):
                return self._complete(t, stripe_id)
            case outcomes.NotFound():
                t = sm.new_key_generation(t, now=self.clock.now())
                if code is not None:
                    return self._fail(t, code, message or code)
                if destination is None:
                    return self._fail(
                        t, sm.ACCOUNT_NOT_CONNECTED, "the user has no connected account"
                    )
                last = f"{t.failure_code}: {t.failure_message}" if t.failure_code else "unknown"
                return self._fail(
                    t,
                    sm.MAX_ATTEMPTS_EXCEEDED,
                    f"{t.attempt_count} attempt(s) failed (last: {last}); "
                    "no transfer exists at Stripe",
                )
            case outcomes.Systemic():
                return self._release(t, found)
            case _:
                return self._retry_or_park(t, found.code, f"look-up failed: {found.message}")

    def _complete(self, t: models.PayoutTransfer, stripe_id: str) -> _Decision:
        return _Decision(
            transfer=sm.complete(t, stripe_transfer_id=stripe_id, now=self.clock.now()), book=True
        )

    def _fail(self, t: models.PayoutTransfer, code: str, message: str) -> _Decision:
        return _Decision(
            transfer=sm.fail(t, code=code, message=message, now=self.clock.now()), book=True
        )

    def _release(self, t: models.PayoutTransfer, systemic: outcomes.Systemic) -> _Decision:
        now = self.clock.now()
        return _Decision(
            transfer=sm.release(t, now=now, reason=systemic.code), book=False, systemic=systemic
        )

    def _retry_or_park(
        self,
        t: models.PayoutTransfer,
        code: str,
        message: str,
        *,
        uncertain: bool = False,
        key_replays_error: bool = False,
    ) -> _Decision:
        """Retry with backoff while attempts are left. With none left, fail,
        unless a transfer may exist at Stripe: then park the transfer for a
        look-up after the backoff (the request may still be running there)."""
        now = self.clock.now()
        uncertain = uncertain or t.outcome_uncertain
        if t.attempts_left <= 0 and not uncertain:
            return self._fail(
                t,
                sm.MAX_ATTEMPTS_EXCEEDED,
                f"{t.attempt_count} attempt(s) failed (last: {code}: {message})",
            )
        retried = sm.retry(
            t,
            next_attempt_at=now + self.policy.delay(t.attempt_count, uncertain=uncertain),
            code=code,
            message=message,
            uncertain=uncertain,
            # A failed look-up leaves the key as it was: still replaying its 5xx.
            key_replays_error=key_replays_error or t.key_replays_error,
            now=now,
        )
        # A parked last attempt is booked when its look-up resolves it, so the
        # ledger holds one row per attempt.
        return _Decision(transfer=retried, book=t.attempts_left > 0 and t.claim_counted)


def _book(decision: _Decision, now: datetime) -> models.LedgerEntry | None:
    return ledger.entry_for(decision.transfer, now=now) if decision.book else None


def execute_transfer(
    *,
    transfer: models.PayoutTransfer,
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
    policy: retry.RetryPolicy,
) -> AttemptResult:
    """Run one attempt of a claimed transfer and record its outcome.

    Raises:
        IllegalTransition: ``transfer`` is not a claimed (processing) transfer.
        InfrastructureError: the store failed; the claim stays until its lease expires.
    """
    if transfer.status is not models.TransferStatus.PROCESSING or transfer.claim_token is None:
        raise errors.IllegalTransition(transfer.id, transfer.status.value, "execute unclaimed")
    attempt = _Attempt(directory=directory, gateway=gateway, clock=clock, policy=policy)
    decision = attempt.decide(transfer)
    ids = {"transfer_id": transfer.id, "job_id": transfer.job_id, "attempt": transfer.attempt_count}
    if decision.lease_lost:
        log.warning("payout.transfer.lease_expired_before_sending", extra=ids)
        return AttemptResult(transfer=transfer, disposition=Disposition.STALE)
    now = clock.now()
    recorded = store.record(
        claimed=transfer, updated=decision.transfer, ledger_entry=_book(decision, now), now=now
    )
    if not recorded:
        log.warning("payout.transfer.stale_claim", extra=ids)
        return AttemptResult(transfer=transfer, disposition=Disposition.STALE)
    updated = decision.transfer
    if decision.systemic is not None:
        log.error(
            "payout.transfer.systemic",
            extra={**ids, "code": decision.systemic.code, "reason": decision.systemic.message},
        )
        return AttemptResult(
            transfer=updated, disposition=Disposition.RELEASED, systemic=decision.systemic
        )
    disposition = _DISPOSITIONS[updated.status]
    log.log(
        logging.WARNING if disposition is Disposition.FAILED_TERMINAL else logging.INFO,
        f"payout.transfer.{disposition.value}",
        extra={
            **ids,
            "code": updated.failure_code,
            "stripe_transfer_id": updated.stripe_transfer_id,
            "next_attempt_at": updated.next_attempt_at,
        },
    )
    return AttemptResult(transfer=updated, disposition=disposition)


_DISPOSITIONS = {
    models.TransferStatus.COMPLETED: Disposition.COMPLETED,
    models.TransferStatus.FAILED_TERMINAL: Disposition.FAILED_TERMINAL,
    models.TransferStatus.RETRYABLE: Disposition.RETRIED,
}


def _give_back(
    transfer: models.PayoutTransfer, store: ports.PayoutStore, clock: ports.Clock
) -> AttemptResult:
    """Release a claimed transfer that will not be attempted (halt or shutdown)."""
    now = clock.now()
    released = sm.release(transfer, now=now)
    recorded = store.record(claimed=transfer, updated=released, ledger_entry=None, now=now)
    return AttemptResult(
        transfer=released if recorded else transfer,
        disposition=Disposition.RELEASED if recorded else Disposition.STALE,
    )


def execute_claimed(
    *,
    transfers: Sequence[models.PayoutTransfer],
    store: ports.PayoutStore,
    directory: ports.AccountDirectory,
    gateway: ports.PaymentGateway,
    clock: ports.Clock,
    policy: retry.RetryPolicy,
    concurrency: int,
    stop: threading.Event | None = None,
) -> list[AttemptResult]:
    """Execute claimed transfers, at most ``concurrency`` at a time.

    One failing transfer never stops the others. A systemic outcome, or
    ``stop`` being set, stops new attempts: the transfers not yet started are
    released without spending an attempt, and those in flight finish.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    halted = threading.Event()

    def run_one(transfer: models.PayoutTransfer) -> AttemptResult:
        try:
            if halted.is_set() or (stop is not None and stop.is_set()):
                return _give_back(transfer, store, clock)
            result = execute_transfer(
                transfer=transfer,
                store=store,
                directory=directory,
                gateway=gateway,
                clock=clock,
                policy=policy,
            )
        except Exception:
            # A store outage or a bug in an adapter: this transfer's claim stays
            # until its lease expires and another worker takes it over with the
            # same key. The other transfers carry on.
            log.exception("payout.transfer.error", extra={"transfer_id": transfer.id})
            return AttemptResult(transfer=transfer, disposition=Disposition.ERROR)
        if result.systemic is not None:
            halted.set()
        return result

    if concurrency == 1 or len(transfers) <= 1:
        return [run_one(t) for t in transfers]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payout") as pool:
        return list(pool.map(run_one, transfers))
