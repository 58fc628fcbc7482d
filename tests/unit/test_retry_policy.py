"""Exponential backoff with full jitter, capped, reproducible."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_core import retry


def test_the_ceiling_doubles_per_attempt_up_to_the_cap() -> None:
    policy = retry.RetryPolicy(base_seconds=30, max_seconds=3600)
    assert [policy.ceiling(n) for n in range(1, 10)] == [
        30, 60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    draw=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_every_delay_lies_between_zero_and_the_ceiling(attempt: int, draw: float) -> None:
    policy = retry.RetryPolicy(base_seconds=30, max_seconds=3600, uniform=lambda: draw)
    assert timedelta(0) <= policy.delay(attempt) <= timedelta(seconds=policy.ceiling(attempt))


def test_the_same_seed_gives_the_same_delays() -> None:
    def delays(seed: int) -> list[timedelta]:
        policy = retry.RetryPolicy(uniform=random.Random(seed).random)
        return [policy.delay(n) for n in range(1, 8)]

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)


def test_full_jitter_spreads_the_delays() -> None:
    policy = retry.RetryPolicy(base_seconds=30, uniform=random.Random(1).random)
    assert len({policy.delay(5) for _ in range(50)}) == 50


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        retry.RetryPolicy().delay(attempt)


def test_a_non_positive_base_is_refused() -> None:
    with pytest.raises(ValueError, match="base_seconds"):
        retry.RetryPolicy(base_seconds=0)


def test_a_non_positive_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_seconds"):
        retry.RetryPolicy(max_seconds=-1)


@given(attempt=st.integers(min_value=1, max_value=50))
def test_a_zero_draw_waits_nothing_whatever_the_attempt(attempt: int) -> None:
    # No floor of its own: the wait before a look-up after an uncertain send
    # (the send margin) is the attempt's business (payout_core.attempt).
    policy = retry.RetryPolicy(base_seconds=1, max_seconds=3600, uniform=lambda: 0.0)
    assert policy.delay(attempt) == timedelta(0)


def test_the_largest_draw_stays_below_the_cap() -> None:
    policy = retry.RetryPolicy(base_seconds=30, max_seconds=3600, uniform=lambda: 0.999)
    assert policy.delay(100) < timedelta(seconds=3600)
    assert policy.delay(1) == timedelta(seconds=0.999 * 30)
