"""Every SQL statement the PostgreSQL adapter runs, by name: ``sql/queries.sql``, loaded once.

::

    from payout_adapters.postgres.queries import QUERIES

    cursor.execute(QUERIES["claim_due"], params)

The file holds named statements (``-- name --``, a line saying what the
statement guarantees, then plain SQL with ``%(name)s`` parameters); its top
says how to read it. Loading it, at import, replaces each ``{{name}}`` once,
with text of the code's own and never a value: another entry of the file (a
fragment several statements share), or a column list of
:mod:`payout_adapters.postgres.rows` (:data:`COLUMN_LISTS`, derived from the
models' fields). Nothing here runs SQL: a synchronous or an asynchronous
connection runs the same text. The migrator's statements are its own
(:mod:`payout_adapters.postgres.migrator`); the migrations are the schema.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, LiteralString

import attrs

from payout_adapters.postgres import rows

__all__ = ["COLUMN_LISTS", "QUERIES", "QueryFileError", "load", "parse"]

# The column lists a statement names with {{...}}: the columns' names and
# parameters, which are the fields' names (code), never a value.
COLUMN_LISTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "job_columns": rows.JOBS.names(),
        "job_values": rows.JOBS.values(),
        "transfer_columns": rows.TRANSFERS.names(),
        "t.transfer_columns": rows.TRANSFERS.names(qualifier="t."),
        "transfer_arrays": rows.TRANSFERS.arrays(),
        "ledger_columns": rows.LEDGER.names(),
        "ledger_values": rows.LEDGER.values(prefix="ledger_", cast=True),
        "run_columns": rows.RUNS.names(),
        "run_values": rows.RUNS.values(),
        "reversal_columns": rows.REVERSALS.names(),
        "operator_action_columns": rows.OPERATOR_ACTIONS.names(),
        "pause_columns": rows.PAUSES.names(),
    }
)

_HEADER: Final = re.compile(r"-- (?P<name>[a-z_][a-z0-9_]*) --")
_PLACEHOLDER: Final = re.compile(r"\{\{(?P<name>[a-z_.]+)\}\}")
# A percent sign is a parameter or an escaped percent sign, nothing else: the
# text is never formatted, so no other use of % can be meant.
_PERCENT: Final = re.compile(r"%\(\w+\)s|%%|%")


class QueryFileError(ValueError):
    """The file of named queries is malformed (a bug of this package)."""


@attrs.frozen
class Entry:
    name: str
    summary: str  # the line saying what it does
    text: str  # the SQL, its full-line comments left out


def parse(source: str) -> dict[str, Entry]:
    """The entries of a query file, by name, as written (``{{...}}`` kept)."""
    entries: dict[str, Entry] = {}
    name: str | None = None
    body: list[str] = []

    def close() -> None:
        if name is None:
            return  # the file's preamble
        if not body or not body[0].startswith("-- "):
            raise QueryFileError(f"{name}: the line after its header must say what it does")
        sql = "\n".join(line for line in body if not line.lstrip().startswith("--")).strip()
        if not sql:
            raise QueryFileError(f"{name}: no SQL")
        if name in entries:
            raise QueryFileError(f"{name}: named twice")
        entries[name] = Entry(name=name, summary=body[0].removeprefix("-- "), text=sql)

    for line in source.splitlines():
        header = _HEADER.fullmatch(line)
        if header is None:
            body.append(line)
            continue
        close()
        name, body = header["name"], []
    close()
    return entries


def load(source: str, columns: Mapping[str, str] = COLUMN_LISTS) -> dict[str, LiteralString]:
    """The runnable statements of a query file (not its ``_fragments``), by name,
    every ``{{name}}`` replaced.

    Raises:
        QueryFileError: a name is unknown or includes itself, or a ``%`` is no parameter.
    """
    entries = parse(source)
    done: dict[str, str] = {}

    def expand(name: str, within: tuple[str, ...]) -> str:
        if name in done:
            return done[name]
        if name in within:
            raise QueryFileError(f"{' -> '.join((*within, name))}: includes itself")
        entry = entries.get(name)
        if entry is None:
            raise QueryFileError(f"{within[-1]}: no entry or column list named {{{{{name}}}}}")

        def replace(found: re.Match[str]) -> str:
            wanted = found["name"]
            if wanted in columns:
                return columns[wanted]
            return expand(wanted, (*within, name))

        done[name] = _PLACEHOLDER.sub(replace, entry.text)
        return done[name]

    loaded: dict[str, LiteralString] = {}
    for name in entries:
        text = expand(name, ())
        stray = [m.start() for m in _PERCENT.finditer(text) if m[0] == "%"]
        if stray:
            where = text[stray[0] :][:40]
            raise QueryFileError(f"{name}: a % that is no %(name)s parameter: {where!r}")
        if not name.startswith("_"):
            # LiteralString: the package's own file, never input, is literal
            # text as a constant in code is (mypy takes any str for it).
            loaded[name] = text
    return loaded


def _read() -> str:
    """``sql/queries.sql`` of this package, from a checkout or an installed wheel alike."""
    files = importlib.resources.files("payout_adapters.postgres")
    return (files / "sql" / "queries.sql").read_text(encoding="utf-8")


QUERIES: Final[Mapping[str, LiteralString]] = MappingProxyType(load(_read()))
