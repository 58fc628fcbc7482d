"""Progress of a long command (``reconcile``), shown on a terminal only.

On a terminal, stderr carries a live line (transfers checked, Stripe transfers
read); piped or in CI, nothing is drawn and stdout stays the command's output.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from payout_core.services import reconciliation

__all__ = ["shown_on_terminal"]

_LABELS = {"database": "database: transfers checked", "stripe": "Stripe: transfers read"}


@contextlib.contextmanager
def shown_on_terminal() -> Iterator[Callable[[reconciliation.Progress], None]]:
    """A progress callback: drawn on stderr when it is a terminal, else silent."""
    if not sys.stderr.isatty():
        yield lambda _progress: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def show(progress: reconciliation.Progress) -> None:
            if progress.stage not in tasks:
                tasks[progress.stage] = bars.add_task(
                    _LABELS.get(progress.stage, progress.stage), total=progress.total, detail=""
                )
            detail = (
                f"contest {progress.groups} of {progress.total}"
                if progress.stage == "stripe" and progress.total
                else ""
            )
            total = None if progress.stage == "stripe" else progress.total
            bars.update(tasks[progress.stage], completed=progress.done, total=total, detail=detail)

        yield show
