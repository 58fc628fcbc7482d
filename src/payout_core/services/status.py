"""What ``payout-core status`` shows, computed over the store's port.

The command line renders it (a table on a terminal, JSON with ``--json``); a
service embedding payout-core can show the same. Every list is bounded: the
store holds the whole history, a status shows what needs attention.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from payout_core import models, ports

__all__ = ["Status", "status"]

S = models.TransferStatus


@attrs.frozen(kw_only=True)
class Status:
    pause: models.PauseState
    counts: dict[models.TransferStatus, int]
    depth: ports.QueueDepth
    jobs: list[models.PayoutJob]  # newest first
    needs_operator: list[models.PayoutTransfer]
    failed: list[models.PayoutTransfer]
    retrying: list[models.PayoutTransfer]  # those that need no operator
    stuck: list[models.PayoutTransfer]  # held by a claim whose lease expired
    reversals_in_doubt: list[models.Reversal]  # sending: Stripe may have reversed them
    runs: list[models.RunReport]  # newest first
    actions: list[models.OperatorAction]  # newest first


def status(store: ports.PayoutStore, *, now: datetime, limit: int = 50) -> Status:
    """The fleet's state at ``now``: paused or not, counts, what needs attention.

    Raises:
        StoreUnavailable: the store could not be read.
    """
    processing = store.list_transfers(status=S.PROCESSING, limit=4 * limit)
    return Status(
        pause=store.pause_state(),
        counts=store.transfer_counts(),
        depth=store.queue_depth(),
        jobs=store.list_jobs(limit=20),
        needs_operator=store.needing_operator(limit=limit),
        failed=store.list_transfers(status=S.FAILED_TERMINAL, limit=limit),
        retrying=[
            t
            for t in store.list_transfers(status=S.RETRYABLE, limit=limit)
            if t.needs_operator is None  # listed with those that need an operator
        ],
        stuck=[t for t in processing if t.lease_expires_at and t.lease_expires_at <= now],
        reversals_in_doubt=store.reversals_in_doubt(limit=limit),
        runs=store.recent_runs(5),
        actions=store.operator_actions(limit=10),
    )
