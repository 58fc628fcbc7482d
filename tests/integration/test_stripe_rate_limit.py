"""The pace of Stripe requests: the same GCRA schedule in one process
(``LocalRateLimiter``) and across a fleet through PostgreSQL
(``PostgresRateLimiter``).

The in-process tests use a frozen clock and a recording sleep: every wait the
schedule hands out is visible, with no real waiting and no timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg_pool
import pytest

from payout_adapters import postgres
from payout_adapters.stripe import LocalRateLimiter
from payout_core import pacing, ports
from tests.kit.clocks import FakeTime

CREATE, READ = ports.Budget.CREATE, ports.Budget.READ


def paced(rate: float) -> float:
    """The configured rate whose schedule spaces requests at ``rate`` per
    second (the schedule keeps pacing.HEADROOM below what it is given)."""
    return rate / pacing.HEADROOM


def local(time: FakeTime, rate: float = 10) -> LocalRateLimiter:
    """A limiter spacing requests 1 / ``rate`` apart."""
    return LocalRateLimiter.at(paced(rate), clock=time.clock, sleep=time.sleep)


def take(limiter: ports.RateLimiter, budget: ports.Budget = CREATE) -> float:
    """A slot with no limit on the wait: there always is one."""
    wait = limiter.acquire(budget)
    assert wait is not None
    return wait


def test_requests_leave_evenly_spaced_never_more_than_the_rate_in_a_second() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)

    waits = [take(limiter) for _ in range(13)]

    assert waits == pytest.approx([k / 10 for k in range(13)])
    assert limiter.taken(CREATE) == 13


def test_an_idle_hour_saves_up_no_burst() -> None:
    time = FakeTime(advance_when_sleeping=True)
    limiter = local(time, rate=10)
    limiter.acquire(CREATE)

    time.now += 3600
    waits = [take(limiter) for _ in range(3)]

    # Stripe counts requests per second: a saved-up burst would exceed it.
    assert waits == pytest.approx([0.0, 0.1, 0.1])


def test_each_budget_keeps_its_own_pace() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)

    assert [limiter.acquire(CREATE), limiter.acquire(READ), limiter.acquire(CREATE)] == (
        pytest.approx([0.0, 0.0, 0.1])
    )


def test_a_push_back_holds_every_caller_of_the_budget_until_it_ends() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)
    limiter.acquire(CREATE)

    limiter.push_back(CREATE, 5.0)

    assert limiter.acquire(CREATE) == pytest.approx(5.0)
    # ... and the pace is cut: slots 1 / (10 * CUT) apart.
    assert limiter.acquire(CREATE) == pytest.approx(5.0 + 0.1 / pacing.CUT)
    assert limiter.acquire(READ) == 0.0  # another endpoint, another budget
    time.now += 1.0
    limiter.push_back(CREATE, 1.0)  # shorter than what is already owed: no later slot
    assert limiter.acquire(CREATE) == pytest.approx(5.0 + 2 * 0.1 / pacing.CUT - 1.0)


def test_a_429_cuts_the_pace_once_per_cooldown_and_it_grows_back() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)

    limiter.push_back(CREATE, None)
    # The requests in flight with the first meet 429s too: one cut for them all.
    limiter.push_back(CREATE, None)
    assert limiter.pace(CREATE) == pytest.approx(10 * pacing.CUT)

    time.now += pacing.COOLDOWN_SECONDS
    limiter.push_back(CREATE, None)
    assert limiter.pace(CREATE) == pytest.approx(10 * pacing.CUT**2, rel=0.01)

    time.now += 10.0  # the pace grows back by RECOVERY_PER_SECOND of the rate per second
    assert limiter.pace(CREATE) == pytest.approx(
        10 * (pacing.CUT**2 + 10 * pacing.RECOVERY_PER_SECOND), rel=0.01
    )
    time.now += 3600.0  # ... up to the configured rate, never beyond
    assert limiter.pace(CREATE) == pytest.approx(10)
    assert limiter.pace(READ) == pytest.approx(10)  # never cut


def test_a_429_without_retry_after_holds_the_budget_for_one_slot() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)

    limiter.push_back(CREATE, None)

    assert limiter.acquire(CREATE) == pytest.approx(0.1 / pacing.CUT)


def test_the_pace_is_never_cut_below_its_floor() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)
    for _ in range(100):
        limiter.push_back(CREATE, None)
        time.now += pacing.COOLDOWN_SECONDS

    assert limiter.pace(CREATE) == pytest.approx(10 * pacing.FLOOR, rel=0.2)


def test_what_is_ready_within_a_horizon_counts_the_backlog() -> None:
    time = FakeTime()
    limiter = local(time, rate=10)

    assert limiter.ready_within(CREATE, 1.0) == 11  # now, and every 0.1 s up to 1 s
    for _ in range(5):
        take(limiter)
    assert limiter.ready_within(CREATE, 1.0) == 6
    limiter.push_back(CREATE, 30.0)
    assert limiter.ready_within(CREATE, 1.0) == 0
    assert limiter.ready_within(READ, 1.0) == 11


def test_the_schedule_keeps_its_headroom_below_the_configured_rate() -> None:
    time = FakeTime()
    limiter = LocalRateLimiter.at(20, clock=time.clock, sleep=time.sleep)

    waits = [take(limiter) for _ in range(21)]

    # 21 requests take more than a second: Stripe's window never sees 21.
    assert waits[-1] == pytest.approx(1 / pacing.HEADROOM)
    assert limiter.pace(CREATE) == pytest.approx(20 * pacing.HEADROOM)


def test_threads_take_distinct_slots() -> None:
    time = FakeTime()
    limiter = local(time, rate=100)
    waits: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        wait = take(limiter)
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(waits) == pytest.approx([k / 100 for k in range(50)])


def test_a_slot_further_than_the_caller_may_wait_is_not_taken() -> None:
    time = FakeTime()
    limiter = local(time, rate=1)
    take(limiter)
    take(limiter)  # the next slot is now 2 s away

    assert limiter.acquire(CREATE, max_wait=1.5) is None
    assert limiter.taken(CREATE) == 2
    assert limiter.acquire(CREATE, max_wait=2.0) == pytest.approx(2.0)


def test_a_budget_without_a_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="no rate"):
        LocalRateLimiter({CREATE: 10})
    with pytest.raises(ValueError, match="must be > 0"):
        LocalRateLimiter({CREATE: 10, READ: 0})


# -- the fleet's schedule, in PostgreSQL -------------------------------------------------------


def recording() -> tuple[list[float], Callable[[float], None]]:
    slept: list[float] = []
    return slept, slept.append


def test_workers_of_a_fleet_share_one_schedule(pool: psycopg_pool.ConnectionPool) -> None:
    rates = {CREATE: paced(20), READ: paced(20)}
    slept_a, sleep_a = recording()
    slept_b, sleep_b = recording()
    # Two workers, as two processes would: each its own limiter, one table.
    worker_a = postgres.PostgresRateLimiter(pool, rates, sleep=sleep_a)
    worker_b = postgres.PostgresRateLimiter(pool, rates, sleep=sleep_b)

    waits = []
    for _ in range(10):
        waits.append(take(worker_a))
        waits.append(take(worker_b))

    # Nobody slept for real, so the database's clock hardly moved: the 20
    # requests were given 20 slots 50 ms apart, whichever worker asked.
    assert sorted(waits) == pytest.approx([k / 20 for k in range(20)], abs=0.03)
    assert sorted(slept_a + slept_b) == sorted(w for w in waits if w > 0)


def test_a_429_one_worker_meets_slows_the_whole_fleet(pool: psycopg_pool.ConnectionPool) -> None:
    rates = {CREATE: paced(20), READ: paced(20)}
    worker_a = postgres.PostgresRateLimiter(pool, rates, sleep=lambda _s: None)
    worker_b = postgres.PostgresRateLimiter(pool, rates, sleep=lambda _s: None)

    worker_a.push_back(CREATE, 30.0)

    assert take(worker_b) == pytest.approx(30.0, abs=0.5)
    assert take(worker_b, READ) < 0.5  # the other budget is not pushed back


def test_the_fleet_takes_no_slot_further_than_the_caller_may_wait(
    pool: psycopg_pool.ConnectionPool,
) -> None:
    limiter = postgres.PostgresRateLimiter(
        pool, {CREATE: paced(1), READ: paced(1)}, sleep=lambda _s: None
    )
    take(limiter)
    take(limiter)  # the next slot is about 2 s away

    assert limiter.acquire(CREATE, max_wait=1.5) is None
    assert limiter.acquire(CREATE, max_wait=2.5) == pytest.approx(2.0, abs=0.3)


def test_a_fleet_limiter_needs_every_budget(pool: psycopg_pool.ConnectionPool) -> None:
    with pytest.raises(ValueError, match="every budget"):
        postgres.PostgresRateLimiter(pool, {CREATE: 20.0})


def test_a_429_cuts_the_fleets_pace_once_per_cooldown(pool: psycopg_pool.ConnectionPool) -> None:
    rates = {CREATE: paced(20), READ: paced(20)}
    worker_a = postgres.PostgresRateLimiter(pool, rates, sleep=lambda _s: None)
    worker_b = postgres.PostgresRateLimiter(pool, rates, sleep=lambda _s: None)

    worker_a.push_back(CREATE, None)
    worker_a.push_back(CREATE, None)  # within the cooldown: no second cut
    waits = [take(worker_b) for _ in range(5)]

    # One slot's pause at the cut pace, then slots 1 / (20 * CUT) apart.
    spacing = 1 / (20 * pacing.CUT)
    assert waits == pytest.approx([spacing * (k + 1) for k in range(5)], abs=0.02)
    assert take(worker_b, READ) < 0.02  # the other budget keeps its pace


def test_the_fleet_says_how_much_is_ready_within_a_horizon(
    pool: psycopg_pool.ConnectionPool,
) -> None:
    limiter = postgres.PostgresRateLimiter(
        pool, {CREATE: paced(10), READ: paced(10)}, sleep=lambda _s: None
    )

    assert limiter.ready_within(CREATE, 1.0) == 11  # no schedule yet: all of it
    for _ in range(5):
        take(limiter)
    assert limiter.ready_within(CREATE, 1.0) in (5, 6)  # the database's clock moved a little
    limiter.push_back(CREATE, 30.0)
    assert limiter.ready_within(CREATE, 1.0) == 0
