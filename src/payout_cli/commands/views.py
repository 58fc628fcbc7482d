"""How the commands show jobs, transfers and operator actions: as JSON
objects (``--json``) and as tables. ``status`` and ``transfers show`` share them."""

from __future__ import annotations

from typing import Any

import attrs
from rich.table import Table

from payout_cli import output
from payout_core import models

__all__ = ["action_dict", "actions_table", "job_dict", "transfer_dict"]


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
