"""What an operator does through the store: resolve a transfer that needs
one, reissue a failed one, pause and resume the fleet; each recorded as an
operator action, at the store's time, with the change it made.
"""

from __future__ import annotations

import attrs

from payout_adapters.memory.store import schema
from payout_adapters.memory.store.tables import Tables
from payout_core import completion, errors, models
from payout_core import state_machine as sm

__all__ = ["Operator"]

S = models.TransferStatus


class Operator(Tables):
    """Operator actions: resolve, reissue, pause, resume, and their log."""

    def resolve(
        self,
        *,
        before: models.PayoutTransfer,
        after: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_resolution(before, after, action)
        with self._operation("resolve"):
            stored = self._transfers.get(before.id)
            if (
                stored is None
                or stored.status is not before.status
                or stored.needs_operator is None
                or stored.updated_at != before.updated_at
            ):
                return False  # changed since the operator decided, or needs no operator
            self._write_outcome(
                stored,
                after,
                ledger_entry,
                now=after.updated_at,
                event=action.action,
                also_refused=self._action_problems(action),
            )
            self._act(action)
            return True

    def reissue(
        self,
        *,
        failed: models.PayoutTransfer,
        reissued: models.PayoutTransfer,
        action: models.OperatorAction,
    ) -> bool:
        sm.check_reissue(failed, reissued, action)
        with self._operation("reissue"):
            stored = self._transfers.get(failed.id)
            if (
                stored is None
                or stored.status is not S.FAILED_TERMINAL
                or (stored.job_id, stored.user_id) != (failed.job_id, failed.user_id)
            ):
                return False  # nothing of this winner failed for good to pay again
            # In the order PostgreSQL meets them: the row's checks, the unique
            # indexes (then nothing is inserted), the action's checks.
            refused = schema.row_problems(reissued)
            if not refused and (
                failed.id in self._reissued
                or self._paid(reissued.contest_id, reissued.user_id)
                or reissued.id in self._transfers
            ):
                return False  # reissued already, or a live or completed transfer pays them
            refused = refused or self._action_problems(action, new=reissued.id)
            if refused:
                raise errors.IllegalTransition(
                    failed.id, stored.status.value, f"reissue: {refused[0]}"
                )
            self._insert(reissued)
            self._reissued.add(failed.id)
            job = self._jobs[reissued.job_id]
            self._jobs[job.id] = completion.reopen(
                job, amount_cents=reissued.amount_cents, now=reissued.updated_at
            )
            self._act(action)
            return True

    def pause_state(self) -> models.PauseState:
        with self._operation("pause_state"):
            return self._pause

    def set_paused(self, action: models.OperatorAction) -> models.PauseState:
        with self._operation("set_paused"):
            before = self._pause
            if action.action is models.OperatorActionKind.PAUSE:
                after = models.PauseState(
                    paused=True, actor=action.actor, reason=action.reason, since=self._clock.now()
                )
            elif action.action is models.OperatorActionKind.RESUME:
                after = models.PauseState()
            else:
                raise ValueError(f"{action.action} neither pauses nor resumes")
            self._act(
                attrs.evolve(
                    action, transfer_id=None, before=before.as_dict(), after=after.as_dict()
                )
            )
            self._pause = after
            return after

    def operator_actions(
        self, limit: int = 20, *, transfer_id: str | None = None
    ) -> list[models.OperatorAction]:
        with self._operation("operator_actions"):
            found = [a for a in self._actions if transfer_id in (None, a.transfer_id)]
            return list(reversed(found))[: max(limit, 0)]
