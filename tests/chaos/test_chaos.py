"""The chaos suite (issue 12): a fleet of ``payout-core loop`` processes, its own
PostgreSQL and the fake Stripe through every fault at once, then every promise
checked (tests/chaos/run.py, docs/fault-model.md).

CI runs one seed at CI's size (about a minute). The seed is random unless
``PAYOUT_CHAOS_SEED`` is set, and printed, with the command that replays it,
whatever the outcome. ``PAYOUT_CHAOS_MINUTES`` makes it a long run.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

from tests.chaos import run
from tests.chaos.plan import Config

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

REPLAY = "PAYOUT_CHAOS_SEED={seed} pytest tests/chaos, or python -m tests.chaos --seed {seed}"


def test_a_fleet_under_every_fault_pays_every_winner_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("PAYOUT_CHAOS_SEED") or random.randrange(1_000_000))
    minutes = os.environ.get("PAYOUT_CHAOS_MINUTES")
    config = Config.ci(seed) if minutes is None else Config.long(seed, float(minutes))
    with capsys.disabled():
        sys.stdout.write(f"\nchaos seed {seed} (replay: {REPLAY.format(seed=seed)})\n")

    result = run.run(config, tmp_path, say=lambda _line: None)

    with capsys.disabled():
        sys.stdout.write(result.summary().splitlines()[0] + "\n")
    assert result.passed, result.summary() + "\n\n" + "\n".join(result.log)
