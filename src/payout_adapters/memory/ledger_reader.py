"""The ledger export's reader over an :class:`InMemoryStore`, for tests without a database.

It implements :class:`payout_core.services.ledger_export.LedgerReader` over
:meth:`InMemoryStore.ledger`, which copies the rows under the store's lock:
that copy is the export's snapshot, as one REPEATABLE READ transaction is the
PostgreSQL reader's.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from payout_adapters.memory.store import InMemoryStore
from payout_core import models

__all__ = ["InMemoryLedgerReader"]


class InMemoryLedgerReader:
    def __init__(self, store: InMemoryStore) -> None:
        self._store = store

    def entries(
        self, *, since: datetime, until: datetime, job_id: str | None = None
    ) -> Iterator[models.LedgerEntry]:
        """See :meth:`payout_core.services.ledger_export.LedgerReader.entries`.

        Raises:
            StoreUnavailable: the store is switched off (``available = False``,
                ``fail_next(operations={"ledger"})``): raised by this call, before
                any row is yielded.
        """
        rows = self._store.ledger(job_id=job_id)  # read now, not at the first next()
        return (e for e in rows if since <= e.created_at < until)
