"""Connected accounts on PostgreSQL: who is paid to which Stripe account.

The table is ``user_stripe_accounts``; ``accounts set`` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg_pool

from payout_adapters.postgres.database import Database
from payout_adapters.postgres.queries import QUERIES
from payout_core import errors, validation

__all__ = ["PostgresAccountDirectory"]


class PostgresAccountDirectory:
    """:class:`payout_core.ports.AccountDirectory` on ``user_stripe_accounts``."""

    def __init__(self, pool: psycopg_pool.ConnectionPool) -> None:
        self._db = Database(pool)

    def account_for(self, user_id: str) -> str | None:
        row = self._db.fetch_one(
            "read a connected account", QUERIES["account_for"], {"user_id": user_id}
        )
        return None if row is None else str(row["stripe_account_id"])

    def accounts_for(self, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        found = self._db.fetch_all(
            "read connected accounts", QUERIES["accounts_for"], {"user_ids": list(user_ids)}
        )
        return {str(row["user_id"]): str(row["stripe_account_id"]) for row in found}

    def set_account(self, user_id: str, account_id: str) -> None:
        """Pay ``user_id`` to ``account_id`` from now on (connect, or move).

        Raises:
            InvalidAccount: ``account_id`` is not an ``acct_...`` id, or
                ``user_id`` is no user id (:func:`payout_core.validation.account_problems`).
            StoreRefused: the schema refused what the core's rule accepts.
            StoreUnavailable: nothing was written.
        """
        problems = validation.account_problems(user_id, account_id)
        if problems:
            raise errors.InvalidAccount(problems)
        params = {"user_id": user_id, "stripe_account_id": account_id}
        # A constraint's refusal becomes StoreRefused in translate.unavailable.
        with self._db.transaction("connect an account") as cursor:
            cursor.execute(QUERIES["set_account"], params)
