"""The chaos plan and the checks' own pieces: what a seed draws, and that the
secret scan finds what it must without repeating it."""

from __future__ import annotations

import collections

import attrs
import pytest

from tests.chaos import checks
from tests.chaos.plan import Config, Kind, Plan, Via

TICK_SECONDS = 0.5  # PAYOUT_INTERVAL_SECONDS of the run


def test_a_seed_draws_one_plan() -> None:
    assert Plan.draw(Config.ci(7)) == Plan.draw(Config.ci(7))
    assert Plan.draw(Config.ci(7)) != Plan.draw(Config.ci(8))


@pytest.mark.parametrize("seed", range(20))
def test_the_ci_plan_meets_every_fault(seed: int) -> None:
    plan = Plan.draw(Config.ci(seed))
    kinds = collections.Counter(e.kind for e in plan.episodes)

    assert set(kinds) == set(Kind)
    assert kinds[Kind.KILL] >= 2
    outage = next(e for e in plan.episodes if e.kind is Kind.PG_OUTAGE)
    assert outage.seconds > 4 * TICK_SECONDS  # down for several ticks
    for one, after in zip(plan.episodes, plan.episodes[1:], strict=False):
        assert one.at + one.seconds < after.at  # one at a time
    assert plan.chaos_seconds < 60  # CI's budget


@pytest.mark.parametrize("seed", range(20))
def test_settlements_arrive_throughout_through_both_doors(seed: int) -> None:
    plan = Plan.draw(Config.ci(seed))
    times = [a.at for a in plan.arrivals]

    assert min(times) < plan.chaos_seconds / 4
    assert max(times) > plan.chaos_seconds * 3 / 4
    assert {a.via for a in plan.arrivals} == set(Via)
    assert sum(a.malformed for a in plan.arrivals) == 1
    ids = [a.settlement["settlement_id"] for a in plan.arrivals if not a.duplicate]
    assert len(ids) == len(set(ids))


def test_some_winners_cannot_be_paid_for_each_reason() -> None:
    winners = Plan.draw(Config.ci(3)).winners

    assert any(w.account is None for w in winners)
    assert any(w.closed_at_stripe for w in winners)
    assert any(w.connect_with_cli for w in winners)
    assert sum(w.payable for w in winners) > len(winners) * 3 / 4


def test_a_long_run_plays_more_rounds() -> None:
    ten = Plan.draw(Config.long(1, minutes=10))
    kinds = collections.Counter(e.kind for e in ten.episodes)

    assert ten.config.rounds == 15
    assert kinds[Kind.PG_OUTAGE] == 15
    assert kinds[Kind.KILL] == 30
    assert ten.chaos_seconds > 8 * 60
    assert ten.config.command() == "python -m tests.chaos --seed 1 --rounds 15 --users 200"
    assert Config.ci(4).command() == "python -m tests.chaos --seed 4"
    assert attrs.evolve(Config.ci(4), workers=5).command().endswith("--seed 4 --workers 5")


def test_a_secret_is_found_wherever_it_shows_and_never_repeated() -> None:
    hidden = {"Stripe API key": "sk_test_abc123", "database password": "hunter2hunter2"}
    texts = [
        ("w0 stderr", "connecting to postgresql://payout:hunter2hunter2@127.0.0.1/payout"),
        ("status", "all is well"),
        ("/metrics", "key=sk_test_abc123 and again hunter2hunter2"),
    ]

    found = checks.leaks(texts, hidden)

    assert len(found) == 3
    assert found[0].startswith("the database password shows in w0 stderr: ")
    assert not any(secret in line for line in found for secret in hidden.values())
    assert checks.leaks([("status", "sk_test_*** masked")], hidden) == []


def test_the_exception_a_logged_traceback_ends_with_is_read_past_a_multiline_message() -> None:
    logged = (
        "Traceback (most recent call last):\n  File a\n"
        "psycopg.OperationalError: server closed the connection unexpectedly\n"
        "\tThis probably means the server terminated abnormally\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "Traceback (most recent call last):\n  File b\n"
        "payout_core.errors.StoreUnavailable: cannot claim: the database failed: closed\n"
        "\tbefore or while processing the request."
    )

    assert checks.exception_of(logged) == "payout_core.errors.StoreUnavailable"
    assert checks.EXPECTED_EXCEPTIONS.match(checks.exception_of(logged))
    assert checks.exception_of("Traceback (most recent call last):\n  File c\nKeyError\n") == (
        "KeyError"
    )
    assert not checks.EXPECTED_EXCEPTIONS.match("KeyError")
