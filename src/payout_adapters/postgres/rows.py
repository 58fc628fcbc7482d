"""Rows to models and models to parameters: the only place that knows column names.

The core's ids are strings; the columns are ``uuid``. Ids are converted here,
on the way in and out, so the core never sees a ``uuid.UUID``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from psycopg.types.json import Jsonb

from payout_core import models, ports

__all__ = [
    "as_uuid",
    "event_from_row",
    "event_params",
    "job_from_row",
    "job_params",
    "ledger_entry_from_row",
    "ledger_params",
    "operator_action_from_row",
    "operator_action_params",
    "outcome_params",
    "pause_from_row",
    "reversal_from_row",
    "reversal_params",
    "run_from_row",
    "run_params",
    "settlement_params",
    "transfer_from_row",
    "transfers_params",
]

Row = Mapping[str, Any]


def as_uuid(value: str) -> uuid.UUID | None:
    """``value`` as a UUID, or ``None`` when it is not one (then no row can have it)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def _uuid(value: str, what: str) -> uuid.UUID:
    parsed = as_uuid(value)
    if parsed is None:
        raise ValueError(f"{what} must be a UUID, got {value!r}")
    return parsed


def _text(value: object) -> str:
    return str(value)


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def job_from_row(row: Row) -> models.PayoutJob:
    return models.PayoutJob(
        id=_text(row["id"]),
        settlement_id=row["settlement_id"],
        contest_id=row["contest_id"],
        currency=row["currency"],
        status=models.JobStatus(row["status"]),
        total_transfers=row["total_transfers"],
        total_amount_cents=row["total_amount_cents"],
        completed_count=row["completed_count"],
        failed_count=row["failed_count"],
        settlement_fingerprint=row["settlement_fingerprint"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
    )


def job_params(job: models.PayoutJob) -> dict[str, Any]:
    return {
        "id": _uuid(job.id, "job id"),
        "settlement_id": job.settlement_id,
        "contest_id": job.contest_id,
        "currency": job.currency,
        "status": job.status.value,
        "total_transfers": job.total_transfers,
        "total_amount_cents": job.total_amount_cents,
        "completed_count": job.completed_count,
        "failed_count": job.failed_count,
        "settlement_fingerprint": job.settlement_fingerprint,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "completed_at": job.completed_at,
    }


def transfer_from_row(row: Row) -> models.PayoutTransfer:
    return models.PayoutTransfer(
        id=_text(row["id"]),
        job_id=_text(row["job_id"]),
        settlement_id=row["settlement_id"],
        contest_id=row["contest_id"],
        user_id=row["user_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        status=models.TransferStatus(row["status"]),
        attempt_count=row["attempt_count"],
        max_attempts=row["max_attempts"],
        next_attempt_at=row["next_attempt_at"],
        lease_expires_at=row["lease_expires_at"],
        claim_token=row["claim_token"],
        destination_account=row["destination_account"],
        stripe_transfer_id=row["stripe_transfer_id"],
        failure_code=row["failure_code"],
        failure_message=row["failure_message"],
        key_generation=row["key_generation"],
        key_first_sent_at=row["key_first_sent_at"],
        last_send_at=row["last_send_at"],
        key_sends=row["key_sends"],
        outcome_uncertain=row["outcome_uncertain"],
        key_replays_error=row["key_replays_error"],
        platform_refused=row["platform_refused"],
        lookup_failures=row["lookup_failures"],
        abandoned_claims=row["abandoned_claims"],
        needs_operator=row["needs_operator"],
        reissue_of=_optional_text(row["reissue_of"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _column(transfers: Sequence[models.PayoutTransfer], name: str) -> list[Any]:
    values: list[Any] = [getattr(t, name) for t in transfers]
    return values


def transfers_params(transfers: Sequence[models.PayoutTransfer]) -> dict[str, list[Any]]:
    """One array per column, for ``INSERT ... SELECT * FROM unnest(...)``.

    Rows go in user order, so that two settlements of one contest that share
    winners lock them in the same order and wait for each other instead of
    deadlocking.
    """
    transfers = sorted(transfers, key=lambda t: t.user_id)
    params = {
        name: _column(transfers, name)
        for name in (
            "settlement_id", "contest_id", "user_id", "amount_cents", "currency",
            "attempt_count", "max_attempts", "next_attempt_at", "lease_expires_at",
            "claim_token", "destination_account", "stripe_transfer_id",
            "failure_code", "failure_message", "key_generation", "key_first_sent_at",
            "last_send_at", "key_sends", "outcome_uncertain", "key_replays_error",
            "platform_refused", "lookup_failures", "abandoned_claims", "needs_operator",
            "created_at", "updated_at",
        )
    }  # fmt: skip
    params["id"] = [_uuid(t.id, "transfer id") for t in transfers]
    params["job_id"] = [_uuid(t.job_id, "job id") for t in transfers]
    params["reissue_of"] = [
        None if t.reissue_of is None else _uuid(t.reissue_of, "reissue_of") for t in transfers
    ]
    params["status"] = [t.status.value for t in transfers]
    return params


def outcome_params(
    claimed: models.PayoutTransfer, updated: models.PayoutTransfer
) -> dict[str, Any]:
    """What RECORD_OUTCOME writes (``updated``) and the claim it must still match."""
    return {
        "id": _uuid(claimed.id, "transfer id"),
        "claimed_token": claimed.claim_token,
        "claimed_attempt_count": claimed.attempt_count,
        "status": updated.status.value,
        "attempt_count": updated.attempt_count,
        "claim_token": updated.claim_token,
        "next_attempt_at": updated.next_attempt_at,
        "lease_expires_at": updated.lease_expires_at,
        "destination_account": updated.destination_account,
        "stripe_transfer_id": updated.stripe_transfer_id,
        "failure_code": updated.failure_code,
        "failure_message": updated.failure_message,
        "key_generation": updated.key_generation,
        "key_first_sent_at": updated.key_first_sent_at,
        "last_send_at": updated.last_send_at,
        "key_sends": updated.key_sends,
        "outcome_uncertain": updated.outcome_uncertain,
        "key_replays_error": updated.key_replays_error,
        "platform_refused": updated.platform_refused,
        "lookup_failures": updated.lookup_failures,
        "abandoned_claims": updated.abandoned_claims,
        "needs_operator": updated.needs_operator,
        "updated_at": updated.updated_at,
    }


def ledger_entry_from_row(row: Row) -> models.LedgerEntry:
    return models.LedgerEntry(
        idempotency_key=row["idempotency_key"],
        entry_type=models.LedgerEntryType(row["entry_type"]),
        direction=models.LedgerDirection(row["direction"]),
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        transfer_id=_text(row["transfer_id"]),
        job_id=_text(row["job_id"]),
        contest_id=row["contest_id"],
        user_id=row["user_id"],
        attempt_number=row["attempt_number"],
        stripe_transfer_id=row["stripe_transfer_id"],
        failure_code=row["failure_code"],
        stripe_reversal_id=row["stripe_reversal_id"],
        created_at=row["created_at"],
    )


def ledger_params(entry: models.LedgerEntry) -> dict[str, Any]:
    return {
        "idempotency_key": entry.idempotency_key,
        "entry_type": entry.entry_type.value,
        "direction": entry.direction.value,
        "amount_cents": entry.amount_cents,
        "currency": entry.currency,
        "transfer_id": _uuid(entry.transfer_id, "ledger transfer id"),
        "job_id": _uuid(entry.job_id, "ledger job id"),
        "contest_id": entry.contest_id,
        "user_id": entry.user_id,
        "attempt_number": entry.attempt_number,
        "stripe_transfer_id": entry.stripe_transfer_id,
        "failure_code": entry.failure_code,
        "stripe_reversal_id": entry.stripe_reversal_id,
        "created_at": entry.created_at,
    }


def run_from_row(row: Row) -> models.RunReport:
    return models.RunReport(
        id=_text(row["id"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        settlements_accepted=row["settlements_accepted"],
        settlements_rejected=row["settlements_rejected"],
        claimed=row["claimed"],
        completed=row["completed"],
        retried=row["retried"],
        failed_terminal=row["failed_terminal"],
        released=row["released"],
        stale=row["stale"],
        halted_reason=row["halted_reason"],
        error=row["error"],
    )


def run_params(report: models.RunReport) -> dict[str, Any]:
    return {
        "id": _uuid(report.id, "run id"),
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "settlements_accepted": report.settlements_accepted,
        "settlements_rejected": report.settlements_rejected,
        "claimed": report.claimed,
        "completed": report.completed,
        "retried": report.retried,
        "failed_terminal": report.failed_terminal,
        "released": report.released,
        "stale": report.stale,
        "halted_reason": report.halted_reason,
        "error": report.error,
    }


def pause_from_row(row: Row) -> models.PauseState:
    return models.PauseState(
        paused=row["paused"],
        actor=row["paused_by"],
        reason=row["paused_reason"],
        since=row["paused_at"],
    )


def operator_action_from_row(row: Row) -> models.OperatorAction:
    return models.OperatorAction(
        action=models.OperatorActionKind(row["action"]),
        actor=row["actor"],
        reason=row["reason"],
        transfer_id=_optional_text(row["transfer_id"]),
        before=row["before"],
        after=row["after"],
        created_at=row["created_at"],
    )


def operator_action_params(action: models.OperatorAction) -> dict[str, Any]:
    """What INSERT_OPERATOR_ACTION writes (its time is the database's)."""
    return {
        "action": action.action.value,
        "actor": action.actor,
        "reason": action.reason,
        "transfer_id": None
        if action.transfer_id is None
        else _uuid(action.transfer_id, "operator action transfer id"),
        "before": None if action.before is None else Jsonb(action.before),
        "after": None if action.after is None else Jsonb(action.after),
    }


def reversal_from_row(row: Row) -> models.Reversal:
    values = {f.name: row[f.name] for f in attrs.fields(models.Reversal)}
    return models.Reversal(
        **values
        | {
            "id": _text(row["id"]),
            "transfer_id": _text(row["transfer_id"]),
            "status": models.ReversalStatus(row["status"]),
        }
    )


def reversal_params(reversal: models.Reversal) -> dict[str, Any]:
    """Every column of ``reversal``, as WRITE_REVERSAL_INTENT and _SETTLE_REVERSAL take them."""
    values = {f.name: getattr(reversal, f.name) for f in attrs.fields(models.Reversal)}
    return values | {
        "id": _uuid(reversal.id, "reversal id"),
        "transfer_id": _uuid(reversal.transfer_id, "reversal transfer id"),
        "status": reversal.status.value,
    }


def settlement_params(after: models.Reversal) -> dict[str, Any]:
    """What _SETTLE_REVERSAL writes: a reversal's answer (what was asked never changes)."""
    return {
        "id": _uuid(after.id, "reversal id"),
        "status": after.status.value,
        "stripe_reversal_id": after.stripe_reversal_id,
        "failure_code": after.failure_code,
        "failure_message": after.failure_message,
        "updated_at": after.updated_at,
    }


def event_from_row(row: Row) -> ports.StripeEvent:
    return ports.StripeEvent(
        id=row["id"], type=row["type"], payload=row["payload"], received_at=row["received_at"]
    )


def event_params(event: ports.StripeEvent) -> dict[str, Any]:
    """What ACCEPT_EVENT writes: every field, the payload as its JSON text."""
    return {f.name: getattr(event, f.name) for f in attrs.fields(ports.StripeEvent)}
