"""The in-memory store: the store contract, and what only the fake itself offers."""

from __future__ import annotations

import re
import textwrap
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest

import payout_adapters.memory
from payout_adapters.memory import InMemoryAccountDirectory, InMemoryStore, ManualClock
from payout_adapters.memory import store as memory_store
from payout_core import errors, ledger, models, ports
from payout_core import state_machine as sm
from tests.contracts import StoreContract
from tests.kit import builders as b
from tests.kit.times import LEASE, MARGIN, T0

S = models.TransferStatus


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self, clock: ManualClock) -> InMemoryStore:
        return InMemoryStore(clock=clock)


@pytest.fixture
def database_clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(database_clock: ManualClock) -> InMemoryStore:
    return InMemoryStore(clock=database_clock)


def _claim(store: InMemoryStore) -> list[models.PayoutTransfer]:
    return store.claim_due(limit=10, lease=LEASE, token="w-1")


def _resolve(store: InMemoryStore) -> bool:
    [pending] = store.transfers()
    waiting = attrs.evolve(pending, needs_operator="x", attempt_count=1)  # as if it were
    after, entry, action = b.resolution(waiting, found=True, now=T0)
    return store.resolve(before=waiting, after=after, ledger_entry=entry, action=action)


def _reissue(store: InMemoryStore) -> bool:
    [pending] = store.transfers()
    failed = attrs.evolve(pending, status=S.FAILED_TERMINAL, failure_code="x")  # as if it had
    reissued, action = b.reissue(failed, now=T0)
    return store.reissue(failed=failed, reissued=reissued, action=action)


def _paid_as_if(store: InMemoryStore) -> models.PayoutTransfer:
    [pending] = store.transfers()
    return attrs.evolve(pending, status=S.COMPLETED, stripe_transfer_id="tr_1")  # as if it were


def _settle(store: InMemoryStore) -> bool:
    asked = b.reversal(_paid_as_if(store), now=T0)
    failed = b.reversal_failed(asked, now=T0)
    return store.settle_reversal(before=asked, after=failed, ledger_entry=None, action=None)


def _book(store: InMemoryStore) -> bool:
    entry = ledger.reversal_entry(
        _paid_as_if(store), stripe_reversal_id="trr_1", amount_cents=1, now=T0
    )
    return store.book_reversal(entry)


# Each port operation, called with harmless arguments.
CALLS: dict[str, Callable[[InMemoryStore], object]] = {
    "schedule": lambda s: b.schedule(s, b.settlement("u-9", settlement_id="s-9"), now=T0),
    "claim_due": _claim,
    "record": lambda s: s.record(
        claimed=attrs.evolve(s.transfers()[0], claim_token="w"),
        updated=s.transfers()[0],
        ledger_entry=None,
        now=T0,
    ),
    "get_job": lambda s: s.get_job("j"),
    "find_job": lambda s: s.find_job("s-1"),
    "list_jobs": lambda s: s.list_jobs(),
    "get_transfer": lambda s: s.get_transfer("t"),
    "transfers_of": lambda s: s.transfers_of("j"),
    "ledger": lambda s: s.ledger(),
    "list_transfers": lambda s: s.list_transfers(),
    "queue_depth": lambda s: s.queue_depth(),
    "needing_operator": lambda s: s.needing_operator(),
    "write_intent": lambda s: s.write_intent(
        claimed=s.transfers()[0], destination="acct_1", margin=timedelta(seconds=60)
    ),
    "transfer_counts": lambda s: s.transfer_counts(),
    "record_run": lambda s: s.record_run(models.RunReport(id="r", started_at=T0)),
    "recent_runs": lambda s: s.recent_runs(),
    "jobs_after": lambda s: s.jobs_after(None, limit=10),
    "transfer_histories": lambda s: s.transfer_histories("j", after=None, limit=10),
    "resolve": _resolve,
    "reissue": _reissue,
    "reversals_of": lambda s: s.reversals_of("t"),
    "reversals_in_doubt": lambda s: s.reversals_in_doubt(limit=10),
    "reversal_intent": lambda s: s.reversal_intent(b.reversal(_paid_as_if(s), now=T0)),
    "settle_reversal": _settle,
    "book_reversal": _book,
}


def test_every_store_operation_can_be_made_to_fail() -> None:
    assert set(CALLS) == memory_store.OPERATIONS


# -- outages ----------------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(CALLS))
def test_an_unavailable_store_refuses_every_operation_and_writes_nothing(
    store: InMemoryStore, operation: str
) -> None:
    b.schedule(store, b.settlement("u-1"), now=T0)
    before = (store.jobs(), store.transfers(), store.runs())
    store.available = False

    with pytest.raises(errors.StoreUnavailable, match=f"cannot {operation}"):
        CALLS[operation](store)

    assert (store.jobs(), store.transfers(), store.runs()) == before
    assert store.available is False


def test_a_store_that_comes_back_carries_on_where_it_was(store: InMemoryStore) -> None:
    _, [t] = b.schedule(store, b.settlement("u-1"), now=T0)
    store.available = False
    with pytest.raises(errors.StoreUnavailable):
        _claim(store)

    store.available = True

    [claimed] = _claim(store)
    assert (claimed.id, claimed.claim_token) == (t.id, "w-1")


def test_fail_next_fails_that_many_operations_then_recovers(store: InMemoryStore) -> None:
    store.fail_next(2)

    for _ in range(2):
        with pytest.raises(errors.StoreUnavailable, match="simulated outage"):
            store.find_job("s-1")
    assert store.find_job("s-1") is None


def test_fail_next_can_target_some_operations_and_raise_a_given_error(
    store: InMemoryStore, database_clock: ManualClock
) -> None:
    _, [t] = b.schedule(store, b.settlement("u-1"), now=T0)
    store.fail_next(operations={"record"}, error=errors.StoreUnavailable("connection reset"))
    [claimed] = _claim(store)  # not a record: unaffected
    intent = store.write_intent(claimed=claimed, destination="acct_1", margin=MARGIN)
    assert isinstance(intent, models.PayoutTransfer)
    done = sm.complete(intent, stripe_transfer_id="tr_1", now=T0)

    with pytest.raises(errors.StoreUnavailable, match="connection reset"):
        b.record_outcome(store, intent, done, now=T0)

    # The outcome was lost: the intent stands, and the claim until its lease expires.
    assert store.get_transfer(t.id) == intent
    assert store.ledger() == []
    database_clock.advance(LEASE)
    [taken] = store.claim_due(limit=10, lease=LEASE, token="w-2")
    assert (taken.attempt_count, taken.outcome_uncertain) == (1, True)


def test_fail_next_refuses_what_it_cannot_mean(store: InMemoryStore) -> None:
    with pytest.raises(ValueError, match="times"):
        store.fail_next(0)
    with pytest.raises(ValueError, match="claim"):
        store.fail_next(operations={"claim"})  # the method is claim_due


def test_reset_forgets_everything_and_ends_outages(store: InMemoryStore) -> None:
    b.schedule(store, b.settlement("u-1"), now=T0)
    store.record_run(models.RunReport(id="r-1", started_at=T0))
    store.fail_next(5)
    store.available = False

    store.reset()

    assert store.available is True
    assert (store.jobs(), store.transfers(), store.runs(), store.ledger()) == ([], [], [], [])
    job, _ = b.schedule(store, b.settlement("u-1"), now=T0)  # the same winner, again
    assert store.find_job("s-1") == job


# -- views for tests ---------------------------------------------------------------


def test_views_list_everything_in_write_order_and_are_copies(store: InMemoryStore) -> None:
    job_b, transfers_b = b.schedule(store, b.settlement("u-2", "u-1", settlement_id="s-b"), now=T0)
    job_a, transfers_a = b.schedule(
        store, b.settlement("u-1", settlement_id="s-a", contest_id="c-a"), now=T0
    )
    run = models.RunReport(id="r-1", started_at=T0)
    store.record_run(run)

    jobs, transfers, ledger_rows = store.jobs(), store.transfers(), store.ledger()
    jobs.clear()
    transfers.clear()
    ledger_rows.append(ledger.entry_for(b.completed(_claim(store)[0], now=T0), now=T0))

    assert [j.id for j in store.jobs()] == [job_b.id, job_a.id]
    assert [t.id for t in store.transfers()] == [t.id for t in [*transfers_b, *transfers_a]]
    assert store.runs() == [run]
    assert store.ledger() == []


# -- what the database would refuse ----------------------------------------------


def test_transfers_that_are_not_the_jobs_are_refused_and_nothing_written(
    store: InMemoryStore,
) -> None:
    stl = b.settlement("u-1", "u-2")
    job = b.make_job(stl, now=T0)
    stray = b.make_transfers(b.make_job(stl, now=T0), stl, now=T0)

    with pytest.raises(errors.StoreRefused, match="not the job's"):
        store.schedule(job, stray)

    assert store.jobs() == []
    assert store.transfers() == []


def test_a_winner_twice_in_one_job_is_refused(store: InMemoryStore) -> None:
    stl = b.settlement("u-1", "u-2")
    job = b.make_job(stl, now=T0)
    one, two = b.make_transfers(job, stl, now=T0)

    with pytest.raises(errors.StoreRefused, match="'u-1' twice"):
        store.schedule(job, [one, attrs.evolve(two, user_id="u-1", amount_cents=1000)])

    assert store.jobs() == []


def test_an_outcome_the_schema_forbids_is_refused_and_nothing_written(
    store: InMemoryStore,
) -> None:
    b.schedule(store, b.settlement("u-1"), now=T0)
    [claimed] = _claim(store)
    # Completed, but nothing at Stripe to show for it.
    unpaid = attrs.evolve(b.completed(claimed, now=T0), stripe_transfer_id=None)

    with pytest.raises(errors.IllegalTransition, match="stripe_transfer_id"):
        store.record(claimed=claimed, updated=unpaid, ledger_entry=None, now=T0)

    assert store.get_transfer(claimed.id) == claimed


def test_an_outcome_is_recorded_only_over_its_own_transfer(store: InMemoryStore) -> None:
    b.schedule(store, b.settlement("u-1", "u-2"), now=T0)
    one, two = _claim(store)

    with pytest.raises(ValueError, match="over the claim of"):
        store.record(claimed=one, updated=b.completed(two, now=T0), ledger_entry=None, now=T0)


def test_a_transfer_is_not_due_before_it_was_created() -> None:
    # As in PostgreSQL, whose claim reads coalesce(next_attempt_at, created_at).
    database = ManualClock(T0 - timedelta(seconds=1))
    store = InMemoryStore(clock=database)
    b.schedule(store, b.settlement("u-1"), now=T0)

    assert _claim(store) == []
    assert store.queue_depth() == ports.QueueDepth(due=0, stuck=0)
    database.advance(1)
    assert len(_claim(store)) == 1


def test_the_store_decides_by_its_own_clock_whatever_the_callers_say() -> None:
    database = ManualClock(T0)
    store = InMemoryStore(clock=database)
    b.schedule(store, b.settlement("u-1"), now=T0)
    [claimed] = _claim(store)

    # A worker whose clock runs an hour ahead cannot take the live claim over:
    # the claim takes no time from its caller at all.
    assert store.claim_due(limit=10, lease=LEASE, token="w-fast") == []
    assert claimed.lease_expires_at == T0 + LEASE
    database.advance(LEASE)
    [taken] = store.claim_due(limit=10, lease=LEASE, token="w-2")
    assert taken.claim_token == "w-2"


# -- threads -------------------------------------------------------------------------


def _together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(n)`` in ``count`` threads released at once; their results."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait()
            results[n] = work(n)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    return results


def test_concurrent_scheduling_of_one_settlement_makes_one_job(store: InMemoryStore) -> None:
    stl = b.settlement("u-1", "u-2")

    def schedule(_: int) -> ports.ScheduleResult:
        job = b.make_job(stl, now=T0)
        return store.schedule(job, b.make_transfers(job, stl, now=T0))

    results: list[ports.ScheduleResult] = _together(8, schedule)

    assert sorted(r.created for r in results) == [False] * 7 + [True]
    assert {r.job for r in results} == set(store.jobs())
    assert len(store.transfers()) == 2


def test_concurrent_outcomes_of_one_job_are_all_counted(store: InMemoryStore) -> None:
    job, _ = b.schedule(store, b.settlement(*[f"u-{n}" for n in range(40)]), now=T0)
    claimed = store.claim_due(limit=40, lease=LEASE, token="w-1")

    def record(n: int) -> bool:
        outcome = b.completed if n % 4 else b.failed
        return all(b.record_outcome(store, t, outcome(t, now=T0), now=T0) for t in claimed[n::8])

    assert _together(8, record) == [True] * 8

    done = store.get_job(job.id)
    assert done is not None
    assert (done.status, done.completed_count, done.failed_count) == (
        models.JobStatus.COMPLETE,
        30,
        10,
    )
    assert len(store.ledger(job_id=job.id)) == 40


# -- documentation -------------------------------------------------------------------


def test_the_package_docstring_example_runs() -> None:
    doc = payout_adapters.memory.__doc__
    assert doc is not None
    [example] = re.findall(r"A test that .*?::\n\n(.*?)\n\n(?=\S)", doc, flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    code = compile(textwrap.dedent(example), "payout_adapters.memory docstring", "exec")
    exec(code, namespace)  # noqa: S102 - our own docstring, run to keep it true
    namespace["test_winners_are_paid_once"]()


def _the_adapters_fit_their_ports() -> None:
    """Never run: mypy checks each adapter against the port it implements."""
    store: ports.PayoutStore = InMemoryStore()
    directory: ports.AccountDirectory = InMemoryAccountDirectory()
    clock: ports.Clock = ManualClock(T0)
    del store, directory, clock
