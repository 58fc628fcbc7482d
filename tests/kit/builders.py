"""Builders: settlements, the job and transfers they become, their outcomes.

Everything here goes through the core (the fingerprint, the state machine, the
ledger), so what a test writes is what the services would write, and any store
(in memory or PostgreSQL) accepts it. Ids are UUIDs, as the database requires,
except in :func:`transfer`, which no store ever sees.

One module, though over 350 lines: each builder is a short recipe over the core
and tests use them together, as ``b.settlement``, ``b.plan``, ``b.completed``;
split by record, a test would import the one vocabulary from several places.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from payout_core import idempotency, ledger, models, outcomes, ports
from payout_core import reversal as rules
from payout_core import state_machine as sm
from payout_core.services import scheduling
from tests.kit.times import LEASE, MARGIN, T0

__all__ = [
    "completed",
    "destination_of",
    "failed",
    "make_job",
    "make_transfers",
    "new_id",
    "operator_action",
    "paid",
    "plan",
    "record_outcome",
    "reissue",
    "released",
    "resolution",
    "retried",
    "reversal",
    "reversal_failed",
    "reversal_succeeded",
    "schedule",
    "sent",
    "settlement",
    "settlement_json",
    "transfer",
    "transfer_action",
]

Winner = str | tuple[str, int]


def new_id() -> str:
    return str(uuid.uuid4())


def settlement(
    *winners: Winner,
    settlement_id: str = "s-1",
    contest_id: str = "c-1",
    currency: str = "usd",
) -> models.Settlement:
    """A settlement paying each winner: ``"u-1"`` (1,000 cents) or ``("u-1", 1500)``."""
    return models.Settlement(
        settlement_id=settlement_id,
        contest_id=contest_id,
        currency=currency,
        winners=tuple(
            models.Winner(user_id=w, amount_cents=1000)
            if isinstance(w, str)
            else models.Winner(user_id=w[0], amount_cents=w[1])
            for w in winners
        ),
    )


def settlement_json(
    settlement_id: str,
    winners: Mapping[str, object],
    *,
    contest_id: str | None = None,
    currency: str = "usd",
) -> dict[str, object]:
    """A settlement as it arrives at a door (DESIGN 6), not yet validated:
    ``winners`` maps each user to an amount, whatever its type (a test of bad
    input sends ``15.5`` or ``"12.50"``)."""
    return {
        "settlement_id": settlement_id,
        "contest_id": contest_id or f"contest-of-{settlement_id}",
        "currency": currency,
        "winners": [{"user_id": u, "amount_cents": a} for u, a in winners.items()],
    }


def plan(
    of: models.Settlement,
    *,
    now: datetime = T0,
    max_attempts: int = 5,
    job_id: str | None = None,
    transfer_ids: Sequence[str] | None = None,
) -> tuple[models.PayoutJob, list[models.PayoutTransfer]]:
    """The job and transfers the scheduling service would make of ``of``
    (:func:`~payout_core.services.scheduling.plan_payout` itself), nothing
    written: with ``job_id`` and ``transfer_ids`` (one per winner, in the
    settlement's order) where given, fresh UUIDs otherwise.

    Unlike the service, this does not validate ``of``: a test may plan what
    the core would refuse, to show that a store refuses it too.
    """
    if transfer_ids is None:
        transfer_ids = [new_id() for _ in of.winners]
    assert len(transfer_ids) == len(of.winners), "one transfer id per winner"
    ids = iter([job_id or new_id(), *transfer_ids])
    job, transfers = scheduling.plan_payout(
        of, now=now, max_attempts=max_attempts, new_id=lambda: next(ids)
    )
    return job, transfers


def make_job(
    of: models.Settlement, *, now: datetime = T0, job_id: str | None = None
) -> models.PayoutJob:
    """The pending job the scheduling service would make of ``of``."""
    job, _ = plan(of, now=now, job_id=job_id)
    return job


def make_transfers(
    job: models.PayoutJob,
    of: models.Settlement,
    *,
    now: datetime = T0,
    max_attempts: int = 5,
    ids: Sequence[str] | None = None,
) -> list[models.PayoutTransfer]:
    """One pending transfer of ``job`` per winner, in the settlement's order."""
    _, transfers = plan(of, now=now, max_attempts=max_attempts, job_id=job.id, transfer_ids=ids)
    return transfers


def transfer(**changes: Any) -> models.PayoutTransfer:
    """One pending transfer of 1,500 cents to ``u-1`` (ids ``t-1``, ``j-1``, ``s-1``,
    ``c-1``), made at :data:`T0`, with ``changes``: for the core's pure rules,
    which need no job or store behind it."""
    base = models.PayoutTransfer(
        id="t-1",
        job_id="j-1",
        settlement_id="s-1",
        contest_id="c-1",
        user_id="u-1",
        amount_cents=1500,
        currency="usd",
        created_at=T0,
        updated_at=T0,
    )
    return attrs.evolve(base, **changes)


def schedule(
    store: ports.PayoutStore,
    of: models.Settlement,
    *,
    now: datetime,
    max_attempts: int = 5,
) -> tuple[models.PayoutJob, list[models.PayoutTransfer]]:
    """Schedule ``of`` as a new job; its job and transfers as written."""
    job, transfers = plan(of, now=now, max_attempts=max_attempts)
    result = store.schedule(job, transfers)
    assert result.created, f"settlement {of.settlement_id} was already scheduled"
    return result.job, transfers


# -- outcomes of a claimed transfer, as the execution service makes them ---------


def destination_of(transfer: models.PayoutTransfer) -> str:
    return transfer.destination_account or f"acct_{transfer.user_id.replace('-', '')}"


def sent(claimed: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    """``claimed`` after its send intent, as a store's ``write_intent`` makes it
    right after the claim (at ``now`` if the claim was written before then)."""
    when = min(now, claimed.updated_at) if claimed.lease_expires_at else now
    return sm.send(claimed, destination=destination_of(claimed), now=when, margin=MARGIN)


def completed(claimed: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    """Sent, and paid."""
    return sm.complete(sent(claimed, now=now), stripe_transfer_id=f"tr_{claimed.id[:8]}", now=now)


def failed(
    claimed: models.PayoutTransfer, *, now: datetime, code: str = "account_invalid"
) -> models.PayoutTransfer:
    """Sent, and declined: Stripe saved the refusal under the key."""
    refused = sm.key_refused(sent(claimed, now=now), now=now)
    return sm.fail(refused, code=code, message=f"declined: {code}", now=now)


def retried(
    claimed: models.PayoutTransfer,
    *,
    now: datetime,
    after: timedelta = timedelta(seconds=30),
    uncertain: bool = False,
) -> models.PayoutTransfer:
    """Sent, and to be tried again: ``uncertain``, the answer was lost; otherwise a
    look-up found that the key created nothing (the attempt ended, its key moved on)."""
    attempt = sent(claimed, now=now)
    if not uncertain:
        attempt = sm.new_key_generation(attempt, now=now)
    return sm.retry(
        attempt, next_attempt_at=now + after, code="timeout", message="no answer", now=now
    )


def released(claimed: models.PayoutTransfer, *, now: datetime) -> models.PayoutTransfer:
    """Given back unsent (a systemic halt before the send)."""
    return sm.release(claimed, now=now, reason="authentication_error")


def record_outcome(
    store: ports.PayoutStore,
    claimed: models.PayoutTransfer,
    updated: models.PayoutTransfer,
    *,
    now: datetime,
    book: bool = True,
) -> bool:
    """Record ``updated`` over ``claimed`` with its ledger row (``book``), as the service does."""
    entry = ledger.entry_for(updated, now=now) if book else None
    return store.record(claimed=claimed, updated=updated, ledger_entry=entry, now=now)


def operator_action(kind: str, now: datetime) -> models.OperatorAction:
    """A pause or resume by ``ops-1``, because ``why``."""
    return models.OperatorAction(
        action=models.OperatorActionKind(kind), actor="ops-1", reason="why", created_at=now
    )


def transfer_action(
    kind: models.OperatorActionKind,
    before: models.PayoutTransfer,
    after: models.PayoutTransfer,
    *,
    now: datetime,
) -> models.OperatorAction:
    """An action by ``ops-1`` on ``before``, recording it before and ``after``."""
    return models.OperatorAction(
        action=kind,
        actor="ops-1",
        reason="checked at Stripe",
        transfer_id=before.id,
        before=before.as_summary(),
        after=after.as_summary(),
        created_at=now,
    )


def resolution(
    waiting: models.PayoutTransfer, *, found: bool, now: datetime
) -> tuple[models.PayoutTransfer, models.LedgerEntry, models.OperatorAction]:
    """What ``transfers resolve`` writes for a transfer needing an operator:
    completed by ``tr_found`` (``found``), or failed for good; its ledger row;
    the action."""
    if found:
        after = sm.resolve_found(waiting, stripe_transfer_id="tr_found", now=now)
        kind = models.OperatorActionKind.RESOLVE_FOUND
    else:
        after = sm.resolve_absent(waiting, message="nothing at Stripe", now=now)
        kind = models.OperatorActionKind.RESOLVE_ABSENT
    action = transfer_action(kind, waiting, after, now=now)
    return after, ledger.entry_for(after, now=now), action


def reissue(
    failed: models.PayoutTransfer, *, now: datetime
) -> tuple[models.PayoutTransfer, models.OperatorAction]:
    """What ``transfers reissue`` writes for a failed transfer: the new one, the action."""
    reissued = sm.reissue(failed, new_id=new_id(), now=now)
    action = transfer_action(models.OperatorActionKind.REISSUE, failed, reissued, now=now)
    return reissued, action


# -- money that comes back (DESIGN 7, "Reversals") ------------------------------------


def paid(
    store: ports.PayoutStore, of: models.Settlement, *, now: datetime
) -> models.PayoutTransfer:
    """Schedule ``of`` (one winner, on a store with nothing else due) and pay it
    through the store's own steps: claim, send intent, recorded as completed."""
    schedule(store, of, now=now)
    [claimed] = store.claim_due(limit=1, lease=LEASE, token="w-paid")
    intent = store.write_intent(claimed=claimed, destination=destination_of(claimed), margin=MARGIN)
    assert isinstance(intent, models.PayoutTransfer)
    done = sm.complete(intent, stripe_transfer_id=f"tr_{claimed.id[:8]}", now=now)
    assert record_outcome(store, intent, done, now=now)
    return done


def reversal(
    transfer: models.PayoutTransfer,
    *,
    now: datetime,
    amount_cents: int | None = None,
    sequence: int = 1,
) -> models.Reversal:
    """The intent ``transfers reverse`` writes: the ``sequence``-th reversal of a
    paid ``transfer``, of all of it by default, asked by ``ops-1``."""
    return models.Reversal(
        id=new_id(),
        transfer_id=transfer.id,
        sequence=sequence,
        idempotency_key=idempotency.reversal_key(transfer.id, sequence),
        stripe_transfer_id=transfer.stripe_transfer_id or "",
        amount_cents=transfer.amount_cents if amount_cents is None else amount_cents,
        currency=transfer.currency,
        actor="ops-1",
        reason="chargeback on the winner's account",
        created_at=now,
        updated_at=now,
    )


def reversal_succeeded(
    transfer: models.PayoutTransfer,
    written: models.Reversal,
    *,
    now: datetime,
    stripe_reversal_id: str | None = None,
) -> tuple[models.Reversal, models.LedgerEntry, models.OperatorAction]:
    """Stripe reversed ``written``: the reversal completed, its credit row and the
    operator's action, as ``transfers reverse`` settles it."""
    trr = stripe_reversal_id or f"trr_{written.id[:8]}"
    after = rules.decide(
        written, outcomes.Reversed(stripe_reversal_id=trr), first_send=True, now=now
    )
    entry = ledger.reversal_entry(
        transfer, stripe_reversal_id=trr, amount_cents=written.amount_cents, now=now
    )
    action = models.OperatorAction(
        action=models.OperatorActionKind.REVERSE,
        actor=written.actor,
        reason=written.reason,
        transfer_id=transfer.id,
        before={"reversal_key": written.idempotency_key},
        after={"stripe_reversal_id": trr, "amount_cents": written.amount_cents},
        created_at=now,
    )
    return after, entry, action


def reversal_failed(written: models.Reversal, *, now: datetime) -> models.Reversal:
    """Stripe refused ``written`` for good: nothing came back."""
    refused = outcomes.Permanent(code="insufficient_funds", message="the account is empty")
    return rules.decide(written, refused, first_send=True, now=now)
