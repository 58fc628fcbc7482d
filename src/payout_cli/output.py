"""How commands print: tables for people, JSON for scripts, errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from payout_cli import logs

__all__ = ["console", "error", "print_json", "table"]

# Wide when piped, so that tables in a log or a CI transcript keep their columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """Print a refusal or failure for a person; secrets are scrubbed on the way out."""
    _stderr.print(f"[bold red]error:[/] {logs.scrub(message)}", markup=True)


def note(message: str) -> None:
    _stderr.print(logs.scrub(message), markup=False)


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(logs.scrub(json.dumps(data, indent=2, default=_default)) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if v is None else logs.scrub(str(v)) for v in row))
    return t
