"""The pytest plugin, used exactly as an outside project uses it: a suite of
its own, in a directory of its own, run by pytest in a subprocess, importing
nothing but payout-core's public names (the plugin comes through the installed
package's ``pytest11`` entry point, not through a conftest)."""

from __future__ import annotations

import subprocess
import sys

import pytest

DOWNSTREAM_SUITE = """
import subprocess
import sys

import pytest

import payout_core

SETTLEMENT = {
    "settlement_id": "stl_9", "contest_id": "contest_9", "currency": "eur",
    "winners": [{"user_id": "ann", "amount_cents": 700}, {"user_id": "bob", "amount_cents": 300}],
}


def test_the_contest_is_paid(payout_world):
    payout_world.directory.set_account("ann", "acct_ann")
    payout = payout_world.payouts.schedule(SETTLEMENT)
    assert [t.user_id for t in payout_world.payouts.wait(payout.id, timeout=5).paid] == ["ann"]


def test_a_rolled_back_enqueue_pays_nothing(payout_world, payouts):
    with pytest.raises(ZeroDivisionError), payout_world.transaction() as tx:
        payouts.enqueue(tx, SETTLEMENT)
        1 / 0
    assert payouts.get_by_settlement("stl_9") is None


def test_each_test_gets_a_fresh_world(payouts):
    assert payouts.get_by_settlement("stl_9") is None


def test_bad_input_is_the_callers(payouts):
    with pytest.raises(payout_core.InvalidSettlement, match="currency"):
        payouts.schedule({**SETTLEMENT, "currency": "dollars"})
"""


def test_a_downstream_suite_pays_through_the_plugins_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_service=DOWNSTREAM_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4)


def test_the_plugin_offers_its_fixtures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*payout_world*", "*A fresh in-memory payout world, wired.*"])


def test_loading_the_plugin_imports_nothing_of_payout_core() -> None:
    # pytest loads plugins before coverage starts: what they import then is
    # never measured (a service's coverage of its own code included).
    probe = (
        "import sys, payout_adapters.pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith(('payout_core', 'payout_adapters.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "['payout_adapters.pytest_plugin']"
