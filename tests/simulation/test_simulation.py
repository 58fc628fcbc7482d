"""The deterministic simulation, run over many seeds: every exactly-once
invariant holds under every fault (see :mod:`tests.simulation.world`).

``PAYOUT_SIM_SEEDS`` sets how many seeds (2,000 in CI, 200 by default on a
laptop); ``python -m tests.simulation --seeds 100000`` runs a long hunt by hand.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from tests.simulation import world

SEEDS = int(os.environ.get("PAYOUT_SIM_SEEDS", "2000" if os.environ.get("CI") else "200"))


def test_every_seed_keeps_every_invariant() -> None:
    seen: Counter[str] = Counter()
    for seed in range(SEEDS):
        simulation = world.Simulation(seed)
        try:
            simulation.run()
        except world.Violation as violation:
            pytest.fail(str(violation), pytrace=False)
        seen.update(simulation.stats)
    # The seeds must have met every fault, and the engine every way out of one:
    # a simulation that quietly stopped injecting faults would prove nothing.
    expected = {
        "worker crashed",
        "worker stalled past its lease",
        "worker stalled a day",
        "database gone during a record",
        "fleet down for a day",
        "worker clock a day off",
        "winner moved to another account",
        "window of low balance",
        "destination deleted at stripe",
        "poison transfer",
        "stripe: lost response",
        "stripe: 500 saved under the key",
        "stripe: 429",
        "stripe: 409",
        "stripe: request finished after the client gave up",
        "stripe: look-up failed",
        "send given up: too late after its intent",
        "ended completed",
        "ended failed_terminal",
        "needs operator",
        "paid under a later key",
    }
    missing = {name for name in expected if seen[name] == 0}
    assert not missing, f"in {SEEDS} seeds these never happened: {sorted(missing)}"


def test_a_seed_replays_exactly() -> None:
    first, second = world.Simulation(7), world.Simulation(7)

    assert first.run() == second.run()
    assert first.store.transfers() == second.store.transfers()
    assert first.store.ledger() == second.store.ledger()
    assert first.gateway.created_transfers() == second.gateway.created_transfers()
    assert first.stats == second.stats
