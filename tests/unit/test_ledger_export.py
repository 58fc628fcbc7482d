"""The ledger export's core: flat records, totals that reconcile, streaming; and
the in-memory reader, which the PostgreSQL one is held to in
``tests/integration/test_cli_ledger_export.py``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from payout_adapters.memory import InMemoryStore, ManualClock
from payout_adapters.memory.ledger_reader import InMemoryLedgerReader
from payout_core import errors, models
from payout_core.services import ledger_export as lx
from tests.kit import builders as b
from tests.kit.times import LEASE, T0

D = models.LedgerDirection
E = models.LedgerEntryType
MINUTE = timedelta(minutes=1)
FOREVER = lx.ExportWindow(since=T0 - timedelta(days=1), until=T0 + timedelta(days=1))


def entry(
    amount: int,
    direction: models.LedgerDirection = D.DEBIT,
    *,
    currency: str = "usd",
    at: datetime = T0,
    key: str | None = None,
) -> models.LedgerEntry:
    kind = {D.DEBIT: E.PAYOUT_COMPLETED, D.CREDIT: E.PAYOUT_REVERSED, D.MEMO: E.PAYOUT_FAILED}
    return models.LedgerEntry(
        idempotency_key=key or f"ledger:test:{b.new_id()}",
        entry_type=kind[direction],
        direction=direction,
        amount_cents=amount,
        currency=currency,
        transfer_id="t-1",
        job_id="j-1",
        contest_id="c-1",
        user_id="u-1",
        attempt_number=1,
        stripe_transfer_id="tr_1" if direction is not D.MEMO else None,
        stripe_reversal_id="trr_1" if direction is D.CREDIT else None,
        failure_code="account_invalid" if direction is D.MEMO else None,
        created_at=at,
    )


class ListReader:
    """A reader over a list, logging when each row is read."""

    def __init__(self, rows: list[models.LedgerEntry], log: list[str]) -> None:
        self.rows, self.log, self.closed = rows, log, False

    def entries(
        self, *, since: datetime, until: datetime, job_id: str | None = None
    ) -> Iterator[models.LedgerEntry]:
        try:
            for n, row in enumerate(self.rows):
                self.log.append(f"read {n}")
                yield row
        finally:
            self.closed = True


# -- records and totals --------------------------------------------------------------------------


def test_a_record_has_every_column_in_order_with_money_split_by_direction() -> None:
    at = datetime(2026, 3, 1, 14, 30, 5, 120, tzinfo=timezone(timedelta(hours=2)))
    debit = entry(1500, at=at, key="ledger:payout:t-1:1")
    so_far = lx.Totals().add(debit)

    record = lx.entry_record(debit, so_far=so_far)

    assert tuple(record) == lx.ENTRY_COLUMNS
    assert record == {
        "entry_key": "ledger:payout:t-1:1",
        "created_at": "2026-03-01T12:30:05.000120Z",  # in UTC, whatever the offset given
        "entry_type": "payout_completed",
        "direction": "debit",
        "amount_cents": 1500,
        "currency": "usd",
        "debit_cents": 1500,
        "credit_cents": 0,
        "net_cents": 1500,
        "running_net_cents": 1500,
        "job_id": "j-1",
        "transfer_id": "t-1",
        "contest_id": "c-1",
        "user_id": "u-1",
        "attempt_number": 1,
        "stripe_transfer_id": "tr_1",
        "stripe_reversal_id": None,
        "failure_code": None,
    }


@pytest.mark.parametrize(
    ("direction", "debit", "credit", "net"),
    [(D.DEBIT, 700, 0, 700), (D.CREDIT, 0, 700, -700), (D.MEMO, 0, 0, 0)],
)
def test_only_debits_and_credits_move_money(
    direction: models.LedgerDirection, debit: int, credit: int, net: int
) -> None:
    row = entry(700, direction)

    record = lx.entry_record(row, so_far=lx.Totals().add(row))

    assert (record["amount_cents"], record["debit_cents"], record["credit_cents"]) == (
        700,
        debit,
        credit,
    )
    assert record["net_cents"] == record["running_net_cents"] == net


def test_totals_accumulate_per_currency_and_the_running_net_follows_each_currency() -> None:
    rows = [
        entry(1500),
        entry(900, currency="eur"),
        entry(700),
        entry(1500, D.MEMO),
        entry(500, D.CREDIT),
        entry(100, D.CREDIT, currency="eur"),
    ]
    totals = lx.Totals()

    running = [lx.entry_record(r, so_far=totals.add(r))["running_net_cents"] for r in rows]

    assert running == [1500, 900, 2200, 2200, 1700, 800]
    eur, usd = totals.result()  # in currency order
    assert usd == lx.CurrencyTotal(
        currency="usd", rows=4, debit_count=2, debit_cents=2200, credit_count=1, credit_cents=500
    )
    assert (usd.memo_count, usd.net_cents) == (1, 1700)
    assert eur.as_dict() == {
        "currency": "eur",
        "rows": 2,
        "debit_count": 1,
        "debit_cents": 900,
        "credit_count": 1,
        "credit_cents": 100,
        "memo_count": 0,
        "net_cents": 800,
    }


def test_a_total_record_fills_only_the_currency_and_the_sums() -> None:
    total = lx.CurrencyTotal(
        currency="usd", rows=3, debit_count=2, debit_cents=2200, credit_count=1, credit_cents=500
    )

    record = lx.total_record(total)

    assert tuple(record) == lx.ENTRY_COLUMNS
    assert {k: v for k, v in record.items() if v is not None} == {
        "currency": "usd",
        "debit_cents": 2200,
        "credit_cents": 500,
        "net_cents": 1700,
        "running_net_cents": 1700,
    }


def test_a_window_needs_offsets_and_a_start_before_its_end() -> None:
    with pytest.raises(ValueError, match="since must have a UTC offset"):
        lx.ExportWindow(since=T0.replace(tzinfo=None), until=T0 + MINUTE)
    with pytest.raises(ValueError, match="must be before until"):
        lx.ExportWindow(since=T0, until=T0)
    with pytest.raises(ValueError, match="must be before until"):
        lx.ExportWindow(since=T0 + MINUTE, until=T0)


# -- the service -----------------------------------------------------------------------------------


def test_each_row_is_written_as_it_is_read_and_the_totals_come_last() -> None:
    log: list[str] = []
    reader = ListReader([entry(100), entry(200), entry(50, D.CREDIT)], log)
    written: list[lx.Record] = []

    def write(record: lx.Record) -> None:
        log.append(f"wrote {len(written)}")
        written.append(record)

    totals = lx.export_ledger(reader=reader, window=FOREVER, write=write)

    assert log == ["read 0", "wrote 0", "read 1", "wrote 1", "read 2", "wrote 2"]
    assert [r["running_net_cents"] for r in written] == [100, 300, 250]
    assert [(t.currency, t.debit_cents, t.credit_cents, t.net_cents) for t in totals] == [
        ("usd", 300, 50, 250)
    ]
    assert reader.closed


def test_a_writer_that_fails_closes_the_readers_snapshot_at_once() -> None:
    reader = ListReader([entry(100), entry(200)], [])

    def write(_record: lx.Record) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        lx.export_ledger(reader=reader, window=FOREVER, write=write)

    assert reader.closed


# -- the in-memory reader, over a ledger the services' builders write ------------------------------


def pay(
    store: InMemoryStore, clock: ManualClock, settlement: models.Settlement
) -> tuple[models.PayoutJob, list[models.LedgerEntry]]:
    """Schedule ``settlement``; pay its winners one a minute, but fail the last
    one's account; the job and its ledger rows."""
    job, _ = b.schedule(store, settlement, now=clock.now())
    claimed = store.claim_due(limit=len(settlement.winners), lease=LEASE, token="w-1")
    claimed.sort(key=lambda t: t.user_id)
    for n, transfer in enumerate(claimed):
        clock.advance(MINUTE)
        last = n == len(claimed) - 1
        outcome = b.failed if last else b.completed
        b.record_outcome(store, transfer, outcome(transfer, now=clock.now()), now=clock.now())
    return job, store.ledger(job_id=job.id)


@pytest.fixture
def paid(
    clock: ManualClock,
) -> tuple[InMemoryStore, list[models.PayoutJob], list[models.LedgerEntry]]:
    store = InMemoryStore(clock=clock)
    first, first_rows = pay(
        store, clock, b.settlement(("u-1", 1500), ("u-2", 700), ("u-3", 250), settlement_id="s-1")
    )
    second, second_rows = pay(
        store,
        clock,
        b.settlement(("u-4", 900), ("u-5", 90), settlement_id="s-2", contest_id="c-2"),
    )
    return store, [first, second], first_rows + second_rows


def all_of(reader: lx.LedgerReader, *, job_id: str) -> list[models.LedgerEntry]:
    return list(reader.entries(since=FOREVER.since, until=FOREVER.until, job_id=job_id))


def test_the_in_memory_reader_fits_the_port() -> None:
    reader: lx.LedgerReader = InMemoryLedgerReader(InMemoryStore())
    del reader


def test_the_in_memory_reader_gives_the_window_in_write_order(
    paid: tuple[InMemoryStore, list[models.PayoutJob], list[models.LedgerEntry]],
) -> None:
    store, _, rows = paid
    reader = InMemoryLedgerReader(store)
    times = [r.created_at for r in rows]
    assert times == sorted(times)
    assert len(set(times)) == len(times) == 5

    everything = list(reader.entries(since=T0, until=times[-1] + MINUTE))
    # since is included, until is not.
    middle = list(reader.entries(since=times[1], until=times[3]))

    assert everything == rows == store.ledger()
    assert middle == rows[1:3]
    assert list(reader.entries(since=times[-1] + MINUTE, until=times[-1] + 2 * MINUTE)) == []


def test_the_in_memory_reader_gives_one_jobs_rows_and_none_for_an_unknown_job(
    paid: tuple[InMemoryStore, list[models.PayoutJob], list[models.LedgerEntry]],
) -> None:
    store, (first, second), rows = paid
    reader = InMemoryLedgerReader(store)

    of_second = all_of(reader, job_id=second.id)

    assert of_second == [r for r in rows if r.job_id == second.id] == rows[3:]
    assert all_of(reader, job_id=b.new_id()) == []
    assert all_of(reader, job_id="not-a-uuid") == []
    assert first.id != second.id


def test_the_in_memory_reader_fails_like_the_store(
    paid: tuple[InMemoryStore, list[models.PayoutJob], list[models.LedgerEntry]],
) -> None:
    store, _, _ = paid
    store.available = False

    with pytest.raises(errors.StoreUnavailable):
        InMemoryLedgerReader(store).entries(since=FOREVER.since, until=FOREVER.until)


def test_a_jobs_debits_are_its_completed_transfers(
    paid: tuple[InMemoryStore, list[models.PayoutJob], list[models.LedgerEntry]],
) -> None:
    store, jobs, _ = paid
    reader = InMemoryLedgerReader(store)

    for job in jobs:
        window = lx.ExportWindow(since=FOREVER.since, until=FOREVER.until, job_id=job.id)
        written: list[lx.Record] = []
        [total] = lx.export_ledger(reader=reader, window=window, write=written.append)

        done = [
            t for t in store.transfers_of(job.id) if t.status is models.TransferStatus.COMPLETED
        ]
        now = store.get_job(job.id)
        assert now is not None
        assert total.debit_count == len(done) == now.completed_count
        assert total.debit_cents == sum(t.amount_cents for t in done)
        assert total.memo_count == now.failed_count  # one payout_failed memo each
        assert total.net_cents == total.debit_cents
        assert {r["job_id"] for r in written} == {job.id}
