"""The fleet's pace (payout_core.pacing): what a 429 does to it, and what a
worker may claim. The limiters that use these are tested with their stores in
tests/integration/test_stripe_rate_limit.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_core import pacing


def test_a_429_cuts_the_pace_in_force_once_per_cooldown() -> None:
    assert pacing.factor_after_429(1.0, None) == pytest.approx(pacing.CUT)
    # The requests in flight with the first 429 answer 429 too: no second cut.
    assert pacing.factor_after_429(pacing.CUT, pacing.COOLDOWN_SECONDS / 2) is None
    # After the cooldown, the cut applies to the pace grown back since.
    grown = pacing.factor_now(0.5, 10.0)
    assert grown == pytest.approx(0.5 + 10 * pacing.RECOVERY_PER_SECOND)
    assert pacing.factor_after_429(0.5, 10.0) == pytest.approx(grown * pacing.CUT)


def test_the_pace_grows_back_to_the_configured_rate_and_never_past_it() -> None:
    assert pacing.factor_now(0.5, None) == 0.5
    assert pacing.factor_now(0.5, 1e9) == 1.0


def test_the_pace_is_never_cut_below_its_floor() -> None:
    assert pacing.factor_after_429(pacing.FLOOR, pacing.COOLDOWN_SECONDS) == pacing.FLOOR


def test_what_is_ready_within_a_horizon() -> None:
    assert pacing.ready_within(1.0, backlog=0.0, interval=0.1) == 11
    assert pacing.ready_within(1.0, backlog=0.5, interval=0.1) == 6
    assert pacing.ready_within(1.0, backlog=-3.0, interval=0.1) == 11  # a slot in the past
    assert pacing.ready_within(1.0, backlog=1.5, interval=0.1) == 0


@given(
    seconds=st.floats(0, 10),
    backlog=st.floats(-10, 10),
    interval=st.floats(0.001, 5),
    more=st.floats(0, 10),
)
def test_more_time_never_grants_less(
    seconds: float, backlog: float, interval: float, more: float
) -> None:
    now = pacing.ready_within(seconds, backlog=backlog, interval=interval)
    later = pacing.ready_within(seconds + more, backlog=backlog, interval=interval)
    assert 0 <= now <= later
