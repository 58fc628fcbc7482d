"""How the commands show jobs, transfers and operator actions: as JSON
objects (``--json``) and as tables. ``status`` and ``transfers show`` share them."""

from __future__ import annotations

from typing import Any

import attrs
from rich.table import Table

from payout_cli import output
from payout_core import models

__all__ = [
    "action_dict",
    "actions_table",
    "job_dict",
    "reversal_dict",
    "reversals_table",
    "transfer_dict",
]


def job_dict(job: models.PayoutJob) -> dict[str, Any]:
    fields = attrs.asdict(job)
    fields.pop("settlement_fingerprint")
    return fields


def transfer_dict(t: models.PayoutTransfer) -> dict[str, Any]:
    keep = (
        "id", "job_id", "contest_id", "user_id", "amount_cents", "currency", "status",
        "attempt_count", "max_attempts", "next_attempt_at", "lease_expires_at",
        "destination_account", "stripe_transfer_id", "failure_code", "failure_message",
        "key_generation", "key_first_sent_at", "last_send_at", "outcome_uncertain",
        "needs_operator", "reissue_of",
    )  # fmt: skip
    fields = attrs.asdict(t)
    return {k: fields[k] for k in keep}


def reversal_dict(r: models.Reversal) -> dict[str, Any]:
    return {
        "id": r.id,
        "transfer_id": r.transfer_id,
        "key": r.idempotency_key,
        "amount_cents": r.amount_cents,
        "currency": r.currency,
        "status": r.status.value,
        "stripe_reversal_id": r.stripe_reversal_id,
        "failure_code": r.failure_code,
        "actor": r.actor,
        "reason": r.reason,
        "created_at": r.created_at.isoformat(),
    }


def reversals_table(title: str, reversals: list[dict[str, Any]]) -> Table:
    return output.table(
        title,
        ["when", "transfer", "key", "amount", "status", "stripe reversal", "by", "why"],
        [
            [
                r["created_at"], r["transfer_id"], r["key"], f"{r['amount_cents']} {r['currency']}",
                r["status"], r["stripe_reversal_id"] or r["failure_code"] or "", r["actor"],
                r["reason"],
            ]
            for r in reversals
        ],
    )  # fmt: skip


def action_dict(action: models.OperatorAction) -> dict[str, Any]:
    return {
        "action": action.action.value,
        "actor": action.actor,
        "reason": action.reason,
        "transfer_id": action.transfer_id,
        "before": action.before,
        "after": action.after,
        "created_at": action.created_at.isoformat(),
    }


def actions_table(title: str, actions: list[dict[str, Any]]) -> Table:
    return output.table(
        title,
        ["when", "action", "by", "why", "transfer"],
        [
            [a["created_at"], a["action"], a["actor"], a["reason"], a["transfer_id"] or ""]
            for a in actions
        ],
    )
