"""Connected Stripe accounts, in memory."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from payout_core import errors, validation

__all__ = ["InMemoryAccountDirectory"]


class InMemoryAccountDirectory:
    """:class:`payout_core.ports.AccountDirectory` for tests: which ``acct_...``
    pays which user. A user without an account is one the payout fails with
    ``stripe_account_not_connected``. Safe to share between threads.
    """

    def __init__(self, accounts: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}
        for user_id, account_id in (accounts or {}).items():
            self.set_account(user_id, account_id)

    def account_for(self, user_id: str) -> str | None:
        with self._lock:
            return self._accounts.get(user_id)

    def accounts_for(self, user_ids: Sequence[str]) -> dict[str, str]:
        with self._lock:
            return {u: self._accounts[u] for u in user_ids if u in self._accounts}

    def set_account(self, user_id: str, account_id: str) -> None:
        """Pay ``user_id`` to ``account_id`` from now on (connect, or move).

        Raises:
            InvalidAccount: ``account_id`` is not an ``acct_...`` id, or
                ``user_id`` is no user id (:func:`payout_core.validation.account_problems`;
                also a ``ValueError``).
        """
        problems = validation.account_problems(user_id, account_id)
        if problems:
            raise errors.InvalidAccount(problems)
        with self._lock:
            self._accounts[user_id] = account_id

    def remove_account(self, user_id: str) -> None:
        """The user disconnected: later payouts to them fail as not connected.
        Removing a user who has no account does nothing."""
        with self._lock:
            self._accounts.pop(user_id, None)

    def reset(self) -> None:
        """Forget every account."""
        with self._lock:
            self._accounts.clear()
