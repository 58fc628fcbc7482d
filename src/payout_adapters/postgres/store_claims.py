"""The store's claims and send intents: a worker takes due transfers and says what it will send."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg.rows import DictRow, dict_row

from payout_adapters.postgres import rows
from payout_adapters.postgres.queries import QUERIES
from payout_adapters.postgres.store_base import StorePart, outcome_params
from payout_core import models
from payout_core import state_machine as sm

__all__ = ["Claims"]


class Claims(StorePart):
    def claim_due(self, *, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        if limit < 1:
            return []
        now = self._now()
        params = {
            "now": now,
            "limit": limit,
            "token": token,
            "lease": lease,
            "abandoned_limit": sm.ABANDONED_CLAIMS_LIMIT,
        }
        # Two statements in one round trip (pipeline), each its own unit of work:
        # the claim never takes over what the first finds to escalate.
        with self._db.statements("claim due transfers") as cursor:
            with cursor.connection.pipeline():
                abandoned = cursor.connection.cursor(row_factory=dict_row)
                abandoned.execute(
                    QUERIES["abandoned_too_often"],
                    {"now": now, "limit": sm.ABANDONED_CLAIMS_LIMIT},
                )
                cursor.execute(QUERIES["claim_due"], params)
            claimed = cursor.fetchall()
            self._escalate(cursor, abandoned.fetchall())
        return [rows.TRANSFERS.from_row(row) for row in claimed]

    def _escalate(self, cursor: psycopg.Cursor[DictRow], abandoned: list[DictRow]) -> None:
        """Rule 7: a claim that expired one time too many in a row goes to an
        operator instead of to another worker to kill (state_machine.escalate,
        written with the guarded record_outcome)."""
        for row in abandoned:
            stored = rows.TRANSFERS.from_row(row)
            escalated = sm.escalate(stored, reason=sm.abandoned_reason(stored), now=row["db_now"])
            cursor.execute(QUERIES["record_outcome"], outcome_params(stored, escalated))

    def write_intent(
        self, *, claimed: models.PayoutTransfer, destination: str, margin: timedelta
    ) -> models.PayoutTransfer | sm.IntentRefusal:
        key = rows.as_uuid(claimed.id)
        if key is None or claimed.claim_token is None:
            return sm.IntentRefusal.STALE_CLAIM
        params = {
            "now": self._now(),
            "id": key,
            "token": claimed.claim_token,
            "attempt_count": claimed.attempt_count,
            "destination": destination,
            "margin": margin,
            "trust_window": sm.KEY_TRUST_WINDOW,
        }
        # One UPDATE, durable when it returns: the intent is written before any send.
        with self._db.statements("write a send intent") as cursor:
            row = cursor.execute(QUERIES["write_intent"], params).fetchone()
            if row is not None:
                return rows.TRANSFERS.from_row(row)
            # Refused: say why, with the rule the SQL repeats.
            row = cursor.execute(QUERIES["transfer_and_now"], params).fetchone()
        if row is None:
            return sm.IntentRefusal.STALE_CLAIM
        stored = rows.TRANSFERS.from_row(row)
        if stored.attempt_count != claimed.attempt_count:
            return sm.IntentRefusal.STALE_CLAIM
        refusal = sm.refuse_send(
            stored,
            token=claimed.claim_token,
            destination=destination,
            now=row["db_now"],
            margin=margin,
        )
        # None: the row changed between the two statements; whatever changed it owns it.
        return refusal or sm.IntentRefusal.STALE_CLAIM
