"""The store's outcomes: an attempt's, and an operator's resolve or reissue.

Each is ONE guarded statement, with what hangs on it (the ledger row, the
job's counts, the operator's action): durable when it returns, and written
only if the stored transfer is still what the caller decided on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payout_adapters.postgres import rows
from payout_adapters.postgres.queries import QUERIES
from payout_adapters.postgres.store_base import (
    StorePart,
    ledger_params,
    operator_action_params,
    outcome_params,
)
from payout_core import models
from payout_core import state_machine as sm

__all__ = ["Outcomes"]


def _outcome_params(
    stored: models.PayoutTransfer,
    updated: models.PayoutTransfer,
    ledger_entry: models.LedgerEntry | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """What an outcome's statement writes: ``updated`` over ``stored``, the
    job's counts moved by it at ``now`` (_advance_job), and its ledger row."""
    params = {
        **outcome_params(stored, updated),  # its job_id is the job's, for _advance_job
        "job_now": now,
        "job_completed": int(updated.status is models.TransferStatus.COMPLETED),
        "job_failed": int(updated.status is models.TransferStatus.FAILED_TERMINAL),
    }
    if ledger_entry is not None:
        params |= ledger_params(ledger_entry)
    return params


class Outcomes(StorePart):
    def record(
        self,
        *,
        claimed: models.PayoutTransfer,
        updated: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry | None,
        now: datetime,
    ) -> bool:
        if updated.id != claimed.id:
            raise ValueError(f"cannot record transfer {updated.id} over the claim of {claimed.id}")
        if claimed.claim_token is None:
            return False  # not a claim: no stored transfer can match it
        params = _outcome_params(claimed, updated, ledger_entry, now=now)
        query = QUERIES["record_outcome_and_effects"]
        if ledger_entry is not None:
            query = QUERIES["record_outcome_with_ledger_entry"]
        # One statement, durable when it returns: no outcome counts before it is.
        # No row updated: the lease was taken over; the newer claim owns it.
        return self._write(
            "record an outcome", query, params, claimed, f"record {updated.status.value}"
        )

    def resolve(
        self,
        *,
        before: models.PayoutTransfer,
        after: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_resolution(before, after, action)
        if rows.as_uuid(before.id) is None:
            return False  # no stored transfer has this id
        params = {
            **_outcome_params(before, after, ledger_entry, now=after.updated_at),
            **operator_action_params(action),
            "now": self._now(),
            "stored_status": before.status.value,
            "stored_updated_at": before.updated_at,
        }
        # One statement, as record's: the verdict counts only once it is durable.
        return self._write(
            "resolve a transfer", QUERIES["resolve_transfer"], params, before, f"{action.action}"
        )

    def reissue(
        self,
        *,
        failed: models.PayoutTransfer,
        reissued: models.PayoutTransfer,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_reissue(failed, reissued, action)
        if rows.as_uuid(failed.id) is None:
            return False  # no stored transfer has this id
        params = {
            **rows.TRANSFERS.array_params([reissued]),
            **operator_action_params(action),
            "now": self._now(),
            "failed_id": rows.as_uuid(failed.id),
            "failed_job_id": rows.as_uuid(failed.job_id),
            "failed_user_id": failed.user_id,
            "job_now": reissued.updated_at,
        }
        return self._write(
            "reissue a transfer", QUERIES["reissue_transfer"], params, failed, "reissue"
        )
