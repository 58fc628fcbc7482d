"""The store's side of operating the fleet: the pause, the operators' audit trail,
the runs of the ticks, and the counts a status page and /metrics read."""

from __future__ import annotations

import attrs

from payout_adapters.postgres import rows
from payout_adapters.postgres.queries import QUERIES
from payout_adapters.postgres.store_base import StorePart, operator_action_params
from payout_core import errors, models, ports

__all__ = ["Operating"]


class Operating(StorePart):
    def pause_state(self) -> models.PauseState:
        row = self._db.fetch_one("read the pause", QUERIES["pause_state"], {})
        return models.PauseState() if row is None else rows.PAUSES.from_row(row)

    def set_paused(self, action: models.OperatorAction) -> models.PauseState:
        if action.action not in (models.OperatorActionKind.PAUSE, models.OperatorActionKind.RESUME):
            raise ValueError(f"{action.action} neither pauses nor resumes")
        now = self._now()
        with self._db.transaction(f"{action.action.value} the fleet") as cursor:
            before = cursor.execute(QUERIES["pause_state_for_update"], {}).fetchone()
            if before is None:
                raise errors.StoreUnavailable(
                    "cannot pause or resume: payout_control has no row; run `payout-core migrate`"
                )
            params = {
                "now": now,
                "paused": action.action is models.OperatorActionKind.PAUSE,
                "actor": action.actor,
                "reason": action.reason,
            }
            after = cursor.execute(QUERIES["set_paused"], params).fetchone()
            if after is None:  # pragma: no cover - the row is locked above
                raise errors.StoreUnavailable("cannot pause or resume: payout_control vanished")
            state = rows.PAUSES.from_row(after)
            recorded = attrs.evolve(
                action,
                transfer_id=None,
                before=rows.PAUSES.from_row(before).as_dict(),
                after=state.as_dict(),
            )
            cursor.execute(
                QUERIES["insert_operator_action"], {"now": now, **operator_action_params(recorded)}
            )
        return state

    def operator_actions(
        self, limit: int = 20, *, transfer_id: str | None = None
    ) -> list[models.OperatorAction]:
        params = {"limit": max(limit, 0)}
        if transfer_id is None:
            found = self._db.fetch_all(
                "read the operator actions", QUERIES["operator_actions"], params
            )
        else:
            key = rows.as_uuid(transfer_id)
            if key is None:
                return []
            found = self._db.fetch_all(
                "read a transfer's operator actions",
                QUERIES["operator_actions_of_transfer"],
                {**params, "transfer_id": key},
            )
        return [rows.OPERATOR_ACTIONS.from_row(row) for row in found]

    def record_run(self, report: models.RunReport) -> None:
        with self._db.transaction("record a run") as cursor:
            cursor.execute(QUERIES["upsert_run"], rows.RUNS.params(report))

    def recent_runs(self, limit: int = 10) -> list[models.RunReport]:
        found = self._db.fetch_all("read recent runs", QUERIES["recent_runs"], {"limit": limit})
        return [rows.RUNS.from_row(row) for row in found]

    def queue_depth(self) -> ports.QueueDepth:
        row = self._db.fetch_one(
            "count due transfers", QUERIES["queue_depth"], {"now": self._now()}
        )
        if row is None:  # pragma: no cover - an aggregate always returns a row
            return ports.QueueDepth(due=0, stuck=0)
        return ports.QueueDepth(
            due=row["due"], stuck=row["stuck"], needs_operator=row["needs_operator"]
        )

    def needing_operator(self, limit: int = 100) -> list[models.PayoutTransfer]:
        found = self._db.fetch_all(
            "list transfers needing an operator", QUERIES["needing_operator"], {"limit": limit}
        )
        return [rows.TRANSFERS.from_row(row) for row in found]

    def transfer_counts(self) -> dict[models.TransferStatus, int]:
        counts = dict.fromkeys(models.TransferStatus, 0)
        for row in self._db.fetch_all("count transfers", QUERIES["transfer_counts"], {}):
            counts[models.TransferStatus(row["status"])] = row["n"]
        return counts
