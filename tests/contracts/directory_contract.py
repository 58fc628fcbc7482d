"""The contract every :class:`payout_core.ports.AccountDirectory` keeps.

Run by ``tests/unit/test_memory_directory_inbox_contracts.py`` (in memory) and
``tests/integration/test_postgres_directory_inbox_contracts.py`` (PostgreSQL).
The port only reads; accounts are connected and disconnected by each adapter's
own means, which a subclass provides as fixtures:

* ``directory``: a fresh, empty directory;
* ``connect``: connect a user to an account, or move them (the adapter's
  ``set_account``, which keeps the core's account-id rule);
* ``disconnect``: the user disconnected (however the adapter's accounts go away).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payout_core import errors, ports

__all__ = ["Connect", "DirectoryContract", "Disconnect"]

Connect = Callable[[str, str], None]
Disconnect = Callable[[str], None]


class DirectoryContract:
    """Which Stripe connected account pays which user."""

    def test_a_user_who_connected_no_account_has_none(
        self, directory: ports.AccountDirectory
    ) -> None:
        assert directory.account_for("u-1") is None
        assert directory.accounts_for(["u-1"]) == {}

    def test_a_connected_user_is_paid_to_their_account(
        self, directory: ports.AccountDirectory, connect: Connect
    ) -> None:
        connect("u-1", "acct_1")

        assert directory.account_for("u-1") == "acct_1"
        assert directory.accounts_for(["u-1"]) == {"u-1": "acct_1"}

    def test_a_user_is_paid_to_the_account_last_connected(
        self, directory: ports.AccountDirectory, connect: Connect
    ) -> None:
        connect("u-1", "acct_first")
        connect("u-1", "acct_second")

        assert directory.account_for("u-1") == "acct_second"
        assert directory.accounts_for(["u-1"]) == {"u-1": "acct_second"}

    def test_many_users_at_once_gives_the_connected_ones_only(
        self, directory: ports.AccountDirectory, connect: Connect
    ) -> None:
        connect("u-1", "acct_1")
        connect("u-2", "acct_2")

        assert directory.accounts_for(["u-1", "u-3", "u-2"]) == {"u-1": "acct_1", "u-2": "acct_2"}
        assert directory.accounts_for(["u-1", "u-1"]) == {"u-1": "acct_1"}
        assert directory.accounts_for(["u-3"]) == {}
        assert directory.accounts_for([]) == {}

    def test_a_user_id_is_matched_exactly(
        self, directory: ports.AccountDirectory, connect: Connect
    ) -> None:
        connect("u-1", "acct_1")

        for other in ("U-1", "u-10", "u-", "u-1 ", " u-1"):
            assert directory.account_for(other) is None, other
        assert directory.accounts_for(["U-1", "u-10", "u-1"]) == {"u-1": "acct_1"}

    def test_a_disconnected_user_has_no_account_and_others_keep_theirs(
        self, directory: ports.AccountDirectory, connect: Connect, disconnect: Disconnect
    ) -> None:
        connect("u-1", "acct_1")
        connect("u-2", "acct_2")

        disconnect("u-1")
        disconnect("u-9")  # never connected: nothing to do

        assert directory.account_for("u-1") is None
        assert directory.account_for("u-2") == "acct_2"
        assert directory.accounts_for(["u-1", "u-2"]) == {"u-2": "acct_2"}

    def test_a_disconnected_user_may_connect_again(
        self, directory: ports.AccountDirectory, connect: Connect, disconnect: Disconnect
    ) -> None:
        connect("u-1", "acct_1")
        disconnect("u-1")

        connect("u-1", "acct_again")

        assert directory.account_for("u-1") == "acct_again"

    # -- the account-id rule (payout_core.validation.account_problems) ---------------

    @pytest.mark.parametrize(
        "account_id", ["tr_123", "acct_", "acct_ x", "ACCT_1", "", " acct_1", "acct_1\n"]
    )
    def test_only_an_acct_id_can_be_connected_and_nothing_is_written(
        self, directory: ports.AccountDirectory, connect: Connect, account_id: str
    ) -> None:
        connect("u-1", "acct_first")

        with pytest.raises(errors.InvalidAccount, match="account_id"):
            connect("u-1", account_id)
        with pytest.raises(errors.InvalidAccount, match="account_id"):
            connect("u-2", account_id)

        assert directory.account_for("u-1") == "acct_first"
        assert directory.accounts_for(["u-1", "u-2"]) == {"u-1": "acct_first"}

    @pytest.mark.parametrize("user_id", ["", " ", " u-1", "u-1\n", "u" * 201])
    def test_an_account_needs_a_user_id_and_nothing_is_written(
        self, directory: ports.AccountDirectory, connect: Connect, user_id: str
    ) -> None:
        with pytest.raises(errors.InvalidAccount, match="user_id"):
            connect(user_id, "acct_1")

        assert directory.account_for(user_id) is None
        assert directory.accounts_for([user_id]) == {}

    def test_an_invalid_account_is_also_a_value_error(self, connect: Connect) -> None:
        # What the directories raised before InvalidAccount existed: callers may catch either.
        with pytest.raises(ValueError, match="acct_"):
            connect("u-1", "tr_123")
