"""``payout-core ledger export``: the ledger for the accounting team (DESIGN 7).

Every ledger row booked in ``[--since, --until)``, optionally of one job, in
write order, then the totals per currency (debits, credits, net); the columns
and how the totals reconcile with the jobs are in
:mod:`payout_core.services.ledger_export`. Rows are written as they are read
from one snapshot of the database, so memory stays flat on any number of rows.

The two formats, and why they look as they do:

* ``csv`` (RFC 4180: a header row, commas, CRLF, UTF-8 without a BOM): one
  rectangular table. Its first column, ``record``, is ``entry`` for a ledger
  row and ``total`` for the one summary row per currency that ends the file,
  in the same columns (``debit_cents``, ``credit_cents``, ``net_cents`` hold
  the sums). Accounting tools and spreadsheets import one table with one
  header as is; a second section with its own header, or a footer in another
  shape, breaks their column mapping, while rows marked ``total`` are one
  filter away (and summing ``entry`` rows gives them back). Money is integer
  minor units beside its currency; times are ISO 8601 UTC. A text value that
  begins with ``=``, ``+``, ``-``, ``@``, a tab or a CR is written with a
  leading ``'`` so that a spreadsheet shows it instead of running it as a
  formula (the JSON keeps every value exact).
* ``json``: ONE document, ``{"since", "until", "job_id", "rows": [...],
  "totals": [...]}``, written piece by piece (a row per line). Rather than
  JSON lines, because ``--format json`` then promises what any JSON parser
  reads, the window travels with the rows, and an export cut short fails to
  parse instead of looking complete without its totals. Consumers of very
  large exports stream it with ``jq --stream`` or ijson.

``--output FILE`` writes a temporary file beside FILE (readable by its owner
only: it says who was paid what) and renames it over FILE once the last row
and the totals are written, so FILE is the whole export or untouched. An
existing FILE that is not a regular file (``/dev/null``, a FIFO) is written
in place. Without it the export goes to standard output.
"""

from __future__ import annotations

import contextlib
import csv
import enum
import json
import operator
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Final, TextIO

import typer

from payout_cli import bootstrap, conventions, output
from payout_core.services import ledger_export

__all__ = ["export"]


class Format(enum.StrEnum):
    CSV = "csv"
    JSON = "json"


def _parse_job(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError(f"--job {text!r} is not a job id (a UUID)") from None


def _parse_format(text: str) -> Format:
    try:
        return Format(text)
    except ValueError:
        raise ValueError(
            f"--format {text!r} is not one of {', '.join(f.value for f in Format)}"
        ) from None


def _parse_output(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"--output {text!r} is a directory; name a file")
    if not path.parent.is_dir():
        raise ValueError(f"--output {text!r}: the directory {str(path.parent)!r} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"--output {text!r}: the directory {str(path.parent)!r} is not writable")
    return path


# -- writers -------------------------------------------------------------------------------------

# What a spreadsheet would run as a formula, in the columns whose text comes
# from outside (a settlement's ids, Stripe's codes); the others are our ids,
# numbers and fixed words.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_FREE_TEXT: Final = tuple(
    ledger_export.ENTRY_COLUMNS.index(c) for c in ("contest_id", "user_id", "failure_code")
)
_values_of = operator.itemgetter(*ledger_export.ENTRY_COLUMNS)


class _CsvWriter:
    def __init__(self, stream: TextIO) -> None:
        self._csv = csv.writer(stream)  # None is written as an empty field
        self._csv.writerow(("record", *ledger_export.ENTRY_COLUMNS))

    def _write(self, record_kind: str, record: ledger_export.Record) -> None:
        values = list(_values_of(record))
        for index in _FREE_TEXT:
            value = values[index]
            if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
                values[index] = "'" + value
        self._csv.writerow([record_kind, *values])

    def row(self, record: ledger_export.Record) -> None:
        self._write("entry", record)

    def finish(self, totals: tuple[ledger_export.CurrencyTotal, ...]) -> None:
        for total in totals:
            self._write("total", ledger_export.total_record(total))


class _JsonWriter:
    def __init__(self, stream: TextIO, window: ledger_export.ExportWindow) -> None:
        self._stream = stream
        self._separator = "\n"
        since, until = (ledger_export.iso_utc(t) for t in (window.since, window.until))
        stream.write(
            f'{{"since": "{since}", "until": "{until}", "job_id": {json.dumps(window.job_id)}, '
            '"rows": ['
        )

    def row(self, record: ledger_export.Record) -> None:
        self._stream.write(self._separator + json.dumps(record))
        self._separator = ",\n"

    def finish(self, totals: tuple[ledger_export.CurrencyTotal, ...]) -> None:
        self._stream.write(f'\n],\n"totals": {json.dumps([t.as_dict() for t in totals])}}}\n')


@contextlib.contextmanager
def _destination(path: Path | None) -> Iterator[TextIO]:
    """Where the export goes: standard output, or ``path`` whole or not at all."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    if path.exists() and not path.is_file():  # a device or a FIFO: nothing to rename over
        with path.open("w", encoding="utf-8", newline="") as stream:
            yield stream
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# -- the command ---------------------------------------------------------------------------------


def export(
    *,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Rows booked from this time on (ISO 8601 with an offset, e.g. "
            "2026-11-01T00:00:00Z).",
            show_default=False,
        ),
    ],
    until: Annotated[
        str,
        typer.Option("--until", help="...and before this time (excluded).", show_default=False),
    ],
    job: Annotated[str | None, typer.Option("--job", help="Only this job's rows (its id).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output_path: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="Write here, whole or not at all (temporary file, then rename); "
            "default: standard output.",
            show_default=False,
        ),
    ] = None,
    database_url: conventions.DatabaseUrl = None,
) -> None:
    """The ledger rows booked in [--since, --until), then totals per currency.

    Rows in write order, from one snapshot of the database; totals of debits,
    credits and net (debits - credits) that reconcile with the jobs: see the
    README, "For accountants". Bad input exits 2 and writes nothing.
    """
    with conventions.exit_codes():
        start = conventions.parse_time("--since", since)
        end = conventions.parse_time("--until", until)
        try:
            job_id = None if job is None else _parse_job(job)
            kind = _parse_format(fmt)
            path = None if output_path is None else _parse_output(output_path)
        except ValueError as exc:
            raise conventions.BadInput(str(exc)) from None
        try:
            window = ledger_export.ExportWindow(since=start, until=end, job_id=job_id)
        except ValueError as exc:
            raise conventions.BadInput(f"--since and --until: {exc}") from None
        settings = conventions.settings_from(database_url=database_url)
        with bootstrap.open_database(settings, max_size=2) as db:
            if window.job_id is not None and db.store.get_job(window.job_id) is None:
                raise conventions.BadInput(f"--job {window.job_id}: no such payout job")
            totals = _write(db.ledger, window, kind, path)
    _summarise(totals, path)


def _write(
    reader: ledger_export.LedgerReader,
    window: ledger_export.ExportWindow,
    kind: Format,
    path: Path | None,
) -> tuple[ledger_export.CurrencyTotal, ...]:
    try:
        with _destination(path) as stream:
            writer = _CsvWriter(stream) if kind is Format.CSV else _JsonWriter(stream, window)
            totals = ledger_export.export_ledger(reader=reader, window=window, write=writer.row)
            writer.finish(totals)
    except BrokenPipeError:
        # The reader of standard output went away (`| head`): stop quietly, and
        # keep Python from failing again on flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(conventions.EXIT_FAILURE) from None
    except OSError as exc:
        where = "standard output" if path is None else str(path)
        output.error(f"cannot write {where}: {exc.strerror or exc}")
        raise typer.Exit(conventions.EXIT_FAILURE) from None
    return totals


def _summarise(totals: tuple[ledger_export.CurrencyTotal, ...], path: Path | None) -> None:
    rows = sum(t.rows for t in totals)
    where = "" if path is None else f" to {path}"
    output.note(f"exported {rows} ledger row(s){where}")
    for t in totals:
        output.note(
            f"  {t.currency}: {t.debit_count} debit(s) {t.debit_cents}, {t.credit_count} "
            f"credit(s) {t.credit_cents}, net {t.net_cents} (minor units); "
            f"{t.memo_count} memo(s)"
        )
