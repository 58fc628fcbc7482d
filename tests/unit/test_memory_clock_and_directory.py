"""The manual clock, the system clock and the in-memory account directory."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from payout_adapters import clock as system_clock
from payout_adapters.memory import InMemoryAccountDirectory, ManualClock
from payout_core import ports
from tests.kit.times import T0

# -- ManualClock ---------------------------------------------------------------------


def test_a_manual_clock_stands_still_until_moved() -> None:
    clock = ManualClock(T0)

    assert clock.now() == T0
    assert clock.now() == T0


def test_a_manual_clock_advances_by_a_timedelta_or_seconds() -> None:
    clock = ManualClock(T0)

    assert clock.advance(timedelta(minutes=10)) == T0 + timedelta(minutes=10)
    assert clock.advance(1.5) == T0 + timedelta(minutes=10, seconds=1.5)
    assert clock.now() == T0 + timedelta(minutes=10, seconds=1.5)


def test_a_manual_clock_never_advances_backwards() -> None:
    clock = ManualClock(T0)

    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    assert clock.now() == T0


def test_a_manual_clock_can_be_set_anywhere_to_jump() -> None:
    clock = ManualClock(T0)

    clock.set(T0 - timedelta(hours=1))

    assert clock.now() == T0 - timedelta(hours=1)


def test_a_manual_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 3, 1))  # noqa: DTZ001 - the naive time is the point
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 3, 2))  # noqa: DTZ001
    assert clock.now() == T0


def test_a_manual_clock_loses_no_step_between_threads() -> None:
    clock = ManualClock(T0)

    def tick() -> None:
        for _ in range(1000):
            clock.advance(timedelta(microseconds=1))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert clock.now() == T0 + timedelta(microseconds=4000)


# -- SystemClock ---------------------------------------------------------------------


def test_the_system_clock_tells_timezone_aware_utc() -> None:
    now = system_clock.SystemClock().now()

    assert now.utcoffset() == timedelta(0)
    assert now.tzinfo is UTC


# -- InMemoryAccountDirectory ----------------------------------------------------------


def test_a_user_is_paid_to_the_account_last_connected() -> None:
    directory = InMemoryAccountDirectory()
    assert directory.account_for("u-1") is None

    directory.set_account("u-1", "acct_first")
    directory.set_account("u-1", "acct_second")

    assert directory.account_for("u-1") == "acct_second"


@pytest.mark.parametrize("account_id", ["tr_123", "acct_", "acct_ x", "ACCT_1", ""])
def test_only_an_acct_id_can_be_connected(account_id: str) -> None:
    directory = InMemoryAccountDirectory({"u-1": "acct_first"})

    with pytest.raises(ValueError, match="acct_"):
        directory.set_account("u-1", account_id)

    assert directory.account_for("u-1") == "acct_first"


def test_an_account_needs_a_user() -> None:
    with pytest.raises(ValueError, match="user_id"):
        InMemoryAccountDirectory({"": "acct_1"})


def test_a_removed_account_no_longer_pays_its_user() -> None:
    directory = InMemoryAccountDirectory({"u-1": "acct_1", "u-2": "acct_2"})

    directory.remove_account("u-1")
    directory.remove_account("u-9")  # never connected: nothing to do

    assert directory.account_for("u-1") is None
    assert directory.account_for("u-2") == "acct_2"


def test_reset_forgets_every_account() -> None:
    directory = InMemoryAccountDirectory({"u-1": "acct_1"})

    directory.reset()

    assert directory.account_for("u-1") is None


def _the_clocks_fit_their_port() -> None:
    """Never run: mypy checks each clock against the port."""
    manual: ports.Clock = ManualClock(T0)
    system: ports.Clock = system_clock.SystemClock()
    del manual, system
