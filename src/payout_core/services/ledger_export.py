"""The ledger for the accounting team: ``payout-core ledger export`` (DESIGN 7).

Every ledger row written in a window (``since <= created_at < until``),
optionally of one job, in the ledger's write order, each as one flat record,
and per currency the totals of what moved: debits (``payout_completed``, money
that left the platform), credits (``payout_reversed``, money that came back)
and their net, debits minus credits. Memo rows (``payout_attempt_failed``,
``payout_failed``) are listed and counted but move no money.

Rows are streamed: :func:`export_ledger` hands each record to its writer as the
reader yields it, and the totals grow as rows go by, one sum per currency, so
a million-row export holds no more than a ten-row one. Nothing here does I/O;
the reader is a port (:class:`LedgerReader`) and the writer a callable.

The columns of a record (:data:`ENTRY_COLUMNS`, in order):

=====================  ==================================================================
``entry_key``          the row's unique key in the ledger: ``ledger:payout:<transfer>:<n>``
                       for attempt n, ``ledger:reversal:<trr_...>`` for a reversal
``created_at``         when it was booked, ISO 8601 in UTC (``...T12:00:00.000000Z``)
``entry_type``         ``payout_completed``, ``payout_reversed``, ``payout_attempt_failed``,
                       ``payout_failed``
``direction``          ``debit``, ``credit`` or ``memo``
``amount_cents``       the amount as booked, in integer minor units of ``currency``
                       (for a memo, the amount that was attempted)
``currency``           ISO 4217, lowercase
``debit_cents``        ``amount_cents`` on a debit row, else 0
``credit_cents``       ``amount_cents`` on a credit row, else 0
``net_cents``          ``debit_cents - credit_cents``
``running_net_cents``  the sum of ``net_cents`` of this currency's rows so far in this
                       export, this row included (it starts at 0 at ``since``)
``job_id`` ...         the job, transfer, contest and winner; the attempt; Stripe's
                       transfer (``tr_...``) and reversal (``trr_...``) ids; the failure code
=====================  ==================================================================

How the totals reconcile with the jobs: a transfer is paid once, and its one
``payout_completed`` row books its amount. So for a job exported over its
whole life (``--job ID`` with a window from before its creation to after its
last outcome), ``debit_count`` is the job's ``completed_count`` and
``debit_cents`` the sum of ``amount_cents`` over its ``completed`` transfers;
over any window, the debits are the transfers completed in it. Reversals do
not change a transfer's status: they show as credits, so ``net_cents`` is what
the platform is out by after the money that came back.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import Final, Protocol

import attrs

from payout_core import models

__all__ = [
    "ENTRY_COLUMNS",
    "CurrencyTotal",
    "ExportWindow",
    "LedgerReader",
    "Record",
    "Totals",
    "entry_record",
    "export_ledger",
    "iso_utc",
    "total_record",
]

#: One exported row: column name to an integer (money, counts), a string, or
#: ``None`` where the row has no value (a CSV writes an empty field).
Record = dict[str, str | int | None]

ENTRY_COLUMNS: Final = (
    "entry_key",
    "created_at",
    "entry_type",
    "direction",
    "amount_cents",
    "currency",
    "debit_cents",
    "credit_cents",
    "net_cents",
    "running_net_cents",
    "job_id",
    "transfer_id",
    "contest_id",
    "user_id",
    "attempt_number",
    "stripe_transfer_id",
    "stripe_reversal_id",
    "failure_code",
)


class LedgerReader(Protocol):
    """The ledger, read for an export: one consistent snapshot, row by row."""

    def entries(
        self, *, since: datetime, until: datetime, job_id: str | None = None
    ) -> Iterator[models.LedgerEntry]:
        """Every row with ``since <= created_at < until`` (of the job ``job_id``
        only, when given; a job id no row has gives none), in write order, one
        at a time. The rows are those of one moment: a row committed while the
        iteration runs is not among them. The reader holds no more than a
        batch of rows at once, whatever the window holds.

        Raises:
            StoreUnavailable: the ledger could not be read, at the start or
                part-way (then the rows already yielded are not the whole window).
        """
        ...


def _aware(_instance: object, attribute: attrs.Attribute[datetime], value: datetime) -> None:
    if value.utcoffset() is None:
        raise ValueError(f"{attribute.name} must have a UTC offset, got {value.isoformat()}")


@attrs.frozen(kw_only=True)
class ExportWindow:
    """Which rows to export: ``since <= created_at < until``, of one job or all.

    Raises (on construction):
        ValueError: a time without an offset, or ``since`` not before ``until``.
    """

    since: datetime = attrs.field(validator=_aware)
    until: datetime = attrs.field(validator=_aware)
    job_id: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.since >= self.until:
            raise ValueError(
                f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()})"
            )


@attrs.frozen(kw_only=True)
class CurrencyTotal:
    """What the exported rows of one currency add up to."""

    currency: str
    rows: int = 0
    debit_count: int = 0
    debit_cents: int = 0
    credit_count: int = 0
    credit_cents: int = 0

    @property
    def memo_count(self) -> int:
        return self.rows - self.debit_count - self.credit_count

    @property
    def net_cents(self) -> int:
        """Debits minus credits: what the platform is out by, in these rows."""
        return self.debit_cents - self.credit_cents

    def as_dict(self) -> dict[str, str | int]:
        return {
            "currency": self.currency,
            "rows": self.rows,
            "debit_count": self.debit_count,
            "debit_cents": self.debit_cents,
            "credit_count": self.credit_count,
            "credit_cents": self.credit_cents,
            "memo_count": self.memo_count,
            "net_cents": self.net_cents,
        }


_NOTHING: Final = CurrencyTotal(currency="")


class Totals:
    """The totals per currency, accumulated one row at a time (the only
    mutable thing here: one small value per currency, replaced on each row)."""

    def __init__(self) -> None:
        self._by_currency: dict[str, CurrencyTotal] = {}

    def add(self, entry: models.LedgerEntry) -> CurrencyTotal:
        """Count ``entry``; return its currency's totals so far, ``entry`` included."""
        was = self._by_currency.get(entry.currency, _NOTHING)
        debit = entry.direction is models.LedgerDirection.DEBIT
        credit = entry.direction is models.LedgerDirection.CREDIT
        now = CurrencyTotal(
            currency=entry.currency,
            rows=was.rows + 1,
            debit_count=was.debit_count + debit,
            debit_cents=was.debit_cents + (entry.amount_cents if debit else 0),
            credit_count=was.credit_count + credit,
            credit_cents=was.credit_cents + (entry.amount_cents if credit else 0),
        )
        self._by_currency[entry.currency] = now
        return now

    def result(self) -> tuple[CurrencyTotal, ...]:
        """Every currency seen, in currency order."""
        return tuple(self._by_currency[c] for c in sorted(self._by_currency))


def iso_utc(when: datetime) -> str:
    """``when`` in UTC, ISO 8601 with microseconds and ``Z``: one fixed width,
    so the column sorts as text in time order."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")[: -len("+00:00")] + "Z"


def entry_record(entry: models.LedgerEntry, *, so_far: CurrencyTotal) -> Record:
    """One ledger row, flat (:data:`ENTRY_COLUMNS`); ``so_far`` is its
    currency's totals with this row counted (:meth:`Totals.add`)."""
    debit = entry.amount_cents if entry.direction is models.LedgerDirection.DEBIT else 0
    credit = entry.amount_cents if entry.direction is models.LedgerDirection.CREDIT else 0
    return {
        "entry_key": entry.idempotency_key,
        "created_at": iso_utc(entry.created_at),
        "entry_type": entry.entry_type.value,
        "direction": entry.direction.value,
        "amount_cents": entry.amount_cents,
        "currency": entry.currency,
        "debit_cents": debit,
        "credit_cents": credit,
        "net_cents": debit - credit,
        "running_net_cents": so_far.net_cents,
        "job_id": entry.job_id,
        "transfer_id": entry.transfer_id,
        "contest_id": entry.contest_id,
        "user_id": entry.user_id,
        "attempt_number": entry.attempt_number,
        "stripe_transfer_id": entry.stripe_transfer_id,
        "stripe_reversal_id": entry.stripe_reversal_id,
        "failure_code": entry.failure_code,
    }


def total_record(total: CurrencyTotal) -> Record:
    """A currency's totals in the columns of a row (for a table that ends with
    them): its money columns hold the sums, ``running_net_cents`` the net at
    the end; the columns that describe one row are empty."""
    record: Record = dict.fromkeys(ENTRY_COLUMNS)
    record.update(
        currency=total.currency,
        debit_cents=total.debit_cents,
        credit_cents=total.credit_cents,
        net_cents=total.net_cents,
        running_net_cents=total.net_cents,
    )
    return record


def export_ledger(
    *, reader: LedgerReader, window: ExportWindow, write: Callable[[Record], None]
) -> tuple[CurrencyTotal, ...]:
    """Hand every row of ``window`` to ``write`` as it is read, in write order;
    return the totals per currency, once the last row was written.

    Raises:
        StoreUnavailable: the ledger could not be read (``write`` may have had
            some rows already: the caller discards what it wrote).
    """
    totals = Totals()
    entries = reader.entries(since=window.since, until=window.until, job_id=window.job_id)
    try:
        for entry in entries:
            write(entry_record(entry, so_far=totals.add(entry)))
    finally:
        if isinstance(entries, Generator):
            # A writer that failed leaves the reader's snapshot (a pooled
            # connection, a transaction) to be closed now, not when collected.
            entries.close()
    return totals.result()
