"""The token bucket every Stripe request of a process takes from.

Pure unit tests (no server): a frozen clock and a recording sleep make every
wait the bucket hands out visible, with no real waiting and no timing.
"""

from __future__ import annotations

import threading

import attrs
import pytest

from payout_adapters.stripe import TokenBucket


@attrs.define
class FakeTime:
    now: float = 0.0
    advance_when_sleeping: bool = True
    slept: list[float] = attrs.Factory(list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.advance_when_sleeping:
            self.now += seconds


def bucket(time: FakeTime, rate: float = 10, burst: float | None = None) -> TokenBucket:
    return TokenBucket(rate=rate, burst=burst, clock=time.clock, sleep=time.sleep)


def test_a_new_bucket_lets_one_seconds_worth_through_then_spaces_requests_out() -> None:
    time = FakeTime(advance_when_sleeping=False)
    limiter = bucket(time, rate=10)

    waits = [limiter.acquire() for _ in range(13)]

    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1, 0.2, 0.3])
    assert limiter.taken == 13


def test_tokens_come_back_with_time_but_never_beyond_the_burst() -> None:
    time = FakeTime()
    limiter = bucket(time, rate=10, burst=2)
    limiter.acquire()
    limiter.acquire()

    time.now += 3600  # an idle hour saves up only `burst` tokens
    waits = [limiter.acquire() for _ in range(3)]

    assert waits == pytest.approx([0.0, 0.0, 0.1])


def test_a_steady_caller_is_held_to_the_rate() -> None:
    time = FakeTime()  # sleeping moves the clock on
    limiter = bucket(time, rate=20, burst=1)

    for _ in range(101):
        limiter.acquire()

    assert time.now == pytest.approx(100 / 20)


def test_a_penalty_makes_the_next_request_wait_and_penalties_do_not_add_up() -> None:
    time = FakeTime(advance_when_sleeping=False)
    limiter = bucket(time, rate=10)

    limiter.penalize(1.0)
    limiter.penalize(1.0)  # many 429s at once cost one pause

    assert limiter.acquire() == pytest.approx(1.1)


def test_threads_share_the_bucket_and_each_slot_is_given_once() -> None:
    time = FakeTime(advance_when_sleeping=False)
    limiter = bucket(time, rate=50)
    start = threading.Barrier(16)
    waits: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        start.wait()
        for _ in range(50):
            wait = limiter.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert limiter.taken == 800
    assert sorted(round(w * 50) for w in waits) == [0] * 50 + list(range(1, 751))


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (10, 0), (10, -2)])
def test_a_bucket_refuses_a_rate_or_burst_that_is_not_positive(
    rate: float, burst: float | None
) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        TokenBucket(rate=rate, burst=burst)


def test_a_rate_below_one_per_second_still_holds_one_token() -> None:
    time = FakeTime(advance_when_sleeping=False)
    limiter = bucket(time, rate=0.5)

    assert [limiter.acquire(), limiter.acquire()] == [0.0, 2.0]
