"""Does Stripe agree with us? ``payout-core reconcile``, both ways (DESIGN 7).

First the store's own invariants (:mod:`payout_core.reconcile`), the job
counters recounted, job by job and page by page. Then Stripe's side: its
transfers listed by transfer group, for each contest the store knows, or every
one created since a time, each matched on ``metadata.payout_transfer_id``
(:mod:`payout_core.services.stripe_side`); what it can find is listed in
:mod:`payout_core.services.findings`.

A Stripe transfer for a transfer still in flight (claimed, or sent with its
outcome not yet known) is counted, not reported: the worker will record it.
Each Stripe transfer that looks wrong for a transfer not completed is checked
against the store once more, so that a payment recorded while the listing ran
is not reported.

Reads go through :class:`payout_core.ports.TransferRecords`, which paces them
on the fleet's read budget. The store side holds one small record per transfer,
so 100,000 transfers take tens of megabytes, never whole models.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from payout_core import idempotency, models, outcomes, ports, reconcile

# The report's names, importable from here too: the command line and the
# benchmarks read a reconciliation through this module.
from payout_core.services.findings import Finding, FindingKind, Progress, Reconciliation
from payout_core.services.stripe_side import Known, StripeSide

__all__ = [
    "CLOCK_SKEW",
    "Finding",
    "FindingKind",
    "Progress",
    "Reconciliation",
    "reconcile_all",
]

S = models.TransferStatus

#: How far Stripe's clock and the database's may disagree: with ``--since``, a
#: completed transfer is expected in the listing only when its key was first
#: sent at least this long after the start of the window.
CLOCK_SKEW = timedelta(minutes=5)
_JOBS_PAGE = 200
_TRANSFERS_PAGE = 1000


def _ignore(_progress: Progress) -> None:
    return None


def reconcile_all(
    store: ports.PayoutStore,
    records: ports.TransferRecords | None,
    *,
    since: datetime | None = None,
    progress: Callable[[Progress], None] = _ignore,
) -> Reconciliation:
    """Check the store, then (with ``records``) Stripe's side against it: by
    transfer group for every contest the store knows, or, with ``since``, every
    Stripe transfer created from then on.

    Raises:
        StoreUnavailable: the store could not be read.
        GatewayUnavailable: Stripe could not be read; nothing can be concluded.
    """
    findings: list[Finding] = []
    known: dict[str, Known] = {}
    jobs = _check_store(store, findings, known, progress)
    if records is None:
        return Reconciliation(
            findings=tuple(findings), scope="database only", jobs=jobs, transfers=len(known)
        )
    side = StripeSide(store=store, records=records, known=known, findings=findings)
    if since is None:
        contests = sorted({k.contest_id for k in known.values()})
        for number, contest in enumerate(contests, start=1):
            query = outcomes.TransferQuery(transfer_group=idempotency.transfer_group(contest))
            side.read(records.list_transfers(query), progress, total=len(contests))
            progress(Progress(stage="stripe", done=side.listed, total=len(contests), groups=number))
        expected = [i for i, k in known.items() if k.status is S.COMPLETED]
        scope = "by contest"
    else:
        side.read(records.list_transfers(outcomes.TransferQuery(created_since=since)), progress)
        expected = [
            i
            for i, k in known.items()
            if k.status is S.COMPLETED
            and k.key_first_sent_at is not None
            and k.key_first_sent_at >= since + CLOCK_SKEW
        ]
        scope = f"since {since.isoformat()}"
    side.finish(expected)
    return Reconciliation(
        findings=tuple(findings),
        scope=scope,
        jobs=jobs,
        transfers=len(known),
        stripe_transfers=side.listed - side.others,
        others=side.others,
        in_flight=side.in_flight,
    )


def _check_store(
    store: ports.PayoutStore,
    findings: list[Finding],
    known: dict[str, Known],
    progress: Callable[[Progress], None],
) -> int:
    """Every job's invariants, page by page; fills ``known``; the number of jobs."""
    total = sum(store.transfer_counts().values())
    jobs = 0
    after_job: str | None = None
    while page := store.jobs_after(after_job, limit=_JOBS_PAGE):
        for job in page:
            jobs += 1
            check = reconcile.JobCheck(job)
            after: str | None = None
            while histories := store.transfer_histories(job.id, after=after, limit=_TRANSFERS_PAGE):
                for h in histories:
                    check.add(h.transfer, h.ledger)
                    known[h.transfer.id] = Known.of(h.transfer, h.ledger)
                after = histories[-1].transfer.id
                progress(Progress(stage="database", done=len(known), total=total))
            findings.extend(
                Finding(
                    kind=FindingKind.INVARIANT,
                    subject=m.subject,
                    message=m.problem,
                    transfer_id=m.transfer_id,
                )
                for m in check.finish()
            )
        after_job = page[-1].id
    return jobs
