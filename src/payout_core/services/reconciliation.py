"""Does Stripe agree with us? ``payout-core reconcile``, both ways (DESIGN 7).

First the store's own invariants (:mod:`payout_core.reconcile`), the job
counters recounted, job by job and page by page. Then Stripe's side: its
transfers listed by transfer group, for each contest the store knows, or every
one created since a time, each matched on ``metadata.payout_transfer_id``:

=====================  ===================================================================
finding                what it means
=====================  ===================================================================
``invariant``          the store disagrees with itself (a ledger row, a job's counts)
``unknown_at_stripe``  a Stripe transfer in a contest's group, or naming a payout
                       transfer, that belongs to no payout transfer payout-core holds
``paid_twice``         more than one Stripe transfer for one payout transfer
``failed_but_paid``    a ``failed_terminal`` winner whom Stripe paid
``unrecorded``         Stripe paid a transfer payout-core holds as unpaid with no doubt
                       about it, or one that waits for an operator (resolve it)
``mismatch``           amount, currency, destination or group differ from the record,
                       or the record names another Stripe transfer
``reversed``           Stripe's reversals of a transfer differ from the ledger's credits
``missing_at_stripe``  a completed transfer whose Stripe transfer does not exist
=====================  ===================================================================

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

import enum
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import attrs

from payout_core import errors, idempotency, ledger, models, outcomes, ports, reconcile

__all__ = [
    "CLOCK_SKEW",
    "Finding",
    "FindingKind",
    "Progress",
    "Reconciliation",
    "disagreements",
    "reconcile_all",
]

S = models.TransferStatus

#: How far Stripe's clock and the database's may disagree: with ``--since``, a
#: completed transfer is expected in the listing only when its key was first
#: sent at least this long after the start of the window.
CLOCK_SKEW = timedelta(minutes=5)
_JOBS_PAGE = 200
_TRANSFERS_PAGE = 1000


class FindingKind(enum.StrEnum):
    INVARIANT = "invariant"
    UNKNOWN_AT_STRIPE = "unknown_at_stripe"
    PAID_TWICE = "paid_twice"
    FAILED_BUT_PAID = "failed_but_paid"
    UNRECORDED = "unrecorded"
    MISMATCH = "mismatch"
    REVERSED = "reversed"
    MISSING_AT_STRIPE = "missing_at_stripe"


@attrs.frozen(kw_only=True)
class Finding:
    kind: FindingKind
    subject: str  # "transfer <id>", "job <id>" or "stripe <tr_...>"
    message: str
    transfer_id: str | None = None
    stripe_transfer_ids: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "message": self.message,
            "transfer_id": self.transfer_id,
            "stripe_transfer_ids": list(self.stripe_transfer_ids),
        }


@attrs.frozen(kw_only=True)
class Progress:
    """Where a reconciliation is: ``stage`` ``database`` counts transfers
    checked (of ``total``), ``stripe`` counts Stripe transfers read (``total``
    is the number of contests when listing by group, else ``None``) and
    ``groups`` the contests done."""

    stage: str
    done: int
    total: int | None = None
    groups: int = 0


@attrs.frozen(kw_only=True)
class Reconciliation:
    findings: tuple[Finding, ...]
    scope: str  # "database only", "by contest" or "since <iso time>"
    jobs: int
    transfers: int
    stripe_transfers: int = 0  # listed at Stripe and made by payout-core
    others: int = 0  # listed at Stripe, not made by payout-core (no contest group, no metadata)
    in_flight: int = 0  # at Stripe for a transfer still in flight

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "scope": self.scope,
            "jobs": self.jobs,
            "transfers": self.transfers,
            "stripe_transfers": self.stripe_transfers,
            "others": self.others,
            "in_flight": self.in_flight,
            "findings": [f.as_dict() for f in self.findings],
        }


@attrs.frozen
class _Known:
    """What Stripe's side is checked against, of one transfer (kept small)."""

    status: models.TransferStatus
    amount_cents: int
    currency: str
    contest_id: str
    destination: str | None
    stripe_transfer_id: str | None
    key_first_sent_at: datetime | None
    reversed_cents: int  # booked in the ledger as come back

    @classmethod
    def of(cls, t: models.PayoutTransfer, rows: Iterable[models.LedgerEntry]) -> _Known:
        return cls(
            t.status,
            t.amount_cents,
            t.currency,
            t.contest_id,
            t.destination_account,
            t.stripe_transfer_id,
            t.key_first_sent_at,
            ledger.booked_reversals(rows),
        )


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
    known: dict[str, _Known] = {}
    jobs = _check_store(store, findings, known, progress)
    if records is None:
        return Reconciliation(
            findings=tuple(findings), scope="database only", jobs=jobs, transfers=len(known)
        )
    side = _StripeSide(store=store, records=records, known=known, findings=findings)
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
    known: dict[str, _Known],
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
                    known[h.transfer.id] = _Known.of(h.transfer, h.ledger)
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


@attrs.define(kw_only=True)
class _StripeSide:
    store: ports.PayoutStore
    records: ports.TransferRecords
    known: dict[str, _Known]
    findings: list[Finding]
    listed: int = 0
    others: int = 0
    in_flight: int = 0
    seen: dict[str, list[str]] = attrs.field(factory=dict)  # payout transfer -> Stripe ids

    def read(
        self,
        listing: Iterable[outcomes.StripeTransfer],
        progress: Callable[[Progress], None],
        *,
        total: int | None = None,
    ) -> None:
        for remote in listing:
            self.listed += 1
            self._one(remote)
            if self.listed % 100 == 0:
                progress(Progress(stage="stripe", done=self.listed, total=total))

    def _report(
        self,
        kind: FindingKind,
        remote: outcomes.StripeTransfer,
        message: str,
        transfer_id: str | None = None,
    ) -> None:
        subject = f"transfer {transfer_id}" if transfer_id else f"stripe {remote.id}"
        self.findings.append(
            Finding(
                kind=kind,
                subject=subject,
                message=message,
                transfer_id=transfer_id,
                stripe_transfer_ids=(remote.id,),
            )
        )

    def _one(self, remote: outcomes.StripeTransfer) -> None:
        ours = remote.transfer_group is not None and remote.transfer_group.startswith(
            idempotency.transfer_group("")
        )
        pid = remote.payout_transfer_id
        if pid is None and not ours:
            self.others += 1
            return
        k = self.known.get(pid) if pid is not None else None
        current = None
        if pid is not None and (k is None or k.status is not S.COMPLETED):
            # The store's latest word: a transfer scheduled, reissued or paid
            # while the listing ran is matched as it is now.
            current = self.store.get_transfer(pid)
            k = (
                _Known.of(current, self.store.ledger(transfer_id=pid))
                if current is not None
                else None
            )
        if pid is None or k is None:
            named = "no metadata.payout_transfer_id" if pid is None else f"payout_transfer_id {pid}"
            self._report(
                FindingKind.UNKNOWN_AT_STRIPE,
                remote,
                f"{_describe(remote)} carries {named}, which names no payout transfer "
                "payout-core holds",
            )
            return
        self.known[pid] = k
        self.seen.setdefault(pid, []).append(remote.id)
        match k.status:
            case S.COMPLETED:
                if remote.id == k.stripe_transfer_id:
                    self._compare(pid, k, remote)
                # Another Stripe transfer for a completed one: paid twice (finish()).
            case S.FAILED_TERMINAL:
                self._report(
                    FindingKind.FAILED_BUT_PAID,
                    remote,
                    f"recorded as failed_terminal, but Stripe paid it: {_describe(remote)}",
                    pid,
                )
            case _:
                assert current is not None  # read just above: not completed
                self._in_flight_or_unrecorded(current, remote)

    def _in_flight_or_unrecorded(
        self, current: models.PayoutTransfer, remote: outcomes.StripeTransfer
    ) -> None:
        pid = current.id
        if current.needs_operator is not None:
            self._report(
                FindingKind.UNRECORDED,
                remote,
                f"needs an operator, and Stripe holds {_describe(remote)}: "
                f"payout-core transfers resolve {pid} --found {remote.id}",
                pid,
            )
        elif current.status is S.PROCESSING or current.outcome_uncertain:
            self.in_flight += 1
        else:
            self._report(
                FindingKind.UNRECORDED,
                remote,
                f"is {current.status} with no send in doubt, but Stripe holds {_describe(remote)}",
                pid,
            )

    def _compare(self, pid: str, k: _Known, remote: outcomes.StripeTransfer) -> None:
        for name, at_stripe, recorded in disagreements(
            remote,
            amount_cents=k.amount_cents,
            currency=k.currency,
            destination=k.destination,
            contest_id=k.contest_id,
        ):
            self._report(
                FindingKind.MISMATCH,
                remote,
                f"Stripe's {remote.id} has {name} {at_stripe!r}, payout-core recorded {recorded!r}",
                pid,
            )
        if remote.amount_reversed != k.reversed_cents:
            self._report(
                FindingKind.REVERSED,
                remote,
                f"Stripe reversed {remote.amount_reversed} of {remote.amount_cents} "
                f"{remote.currency} of {remote.id}, the ledger books {k.reversed_cents} "
                "(a missed webhook: `payout-core webhooks serve` books them as they come)",
                pid,
            )

    def finish(self, expected: Iterable[str]) -> None:
        """Report what only the whole listing shows: completed transfers whose
        Stripe transfer was not listed, and payout transfers paid more than once."""
        for pid in expected:
            k = self.known[pid]
            if k.stripe_transfer_id is None or k.stripe_transfer_id in self.seen.get(pid, ()):
                continue  # a completed transfer without an id is an invariant finding
            self._not_listed(pid, k, k.stripe_transfer_id)
        for pid, ids in sorted(self.seen.items()):
            if len(ids) > 1:
                self.findings.append(
                    Finding(
                        kind=FindingKind.PAID_TWICE,
                        subject=f"transfer {pid}",
                        message=f"{len(ids)} Stripe transfers pay it: {', '.join(sorted(ids))}",
                        transfer_id=pid,
                        stripe_transfer_ids=tuple(sorted(ids)),
                    )
                )

    def _not_listed(self, pid: str, k: _Known, stripe_id: str) -> None:
        """A completed transfer's Stripe transfer was not in the listing:
        retrieve it, to tell a missing transfer from one in another group."""
        found = self.records.retrieve_transfer(stripe_id)
        match found:
            case outcomes.StripeTransfer():
                if found.payout_transfer_id == pid:
                    self.seen.setdefault(pid, []).append(found.id)
                else:
                    self._report(
                        FindingKind.MISMATCH,
                        found,
                        f"recorded as paid by {stripe_id}, whose metadata.payout_transfer_id "
                        f"is {found.payout_transfer_id!r}",
                        pid,
                    )
                self._compare(pid, k, found)
            case outcomes.NotFound():
                others = self.seen.get(pid, [])
                held = f"; Stripe holds {', '.join(others)} for it" if others else ""
                self.findings.append(
                    Finding(
                        kind=FindingKind.MISMATCH if others else FindingKind.MISSING_AT_STRIPE,
                        subject=f"transfer {pid}",
                        message=f"recorded as paid by {stripe_id}, which Stripe does not hold"
                        + held,
                        transfer_id=pid,
                        stripe_transfer_ids=(stripe_id, *others),
                    )
                )
            case _:
                raise errors.GatewayUnavailable(found.code, found.message)


def disagreements(
    remote: outcomes.StripeTransfer,
    *,
    amount_cents: int,
    currency: str,
    destination: str | None,
    contest_id: str,
    payout_transfer_id: str | None = None,
) -> list[tuple[str, object, object]]:
    """Each field of Stripe's transfer that is not what payout-core recorded,
    as (name, at Stripe, recorded); ``metadata.payout_transfer_id`` too when given."""
    recorded: dict[str, tuple[object, object]] = {
        "amount": (remote.amount_cents, amount_cents),
        "currency": (remote.currency, currency),
        "destination": (remote.destination, destination),
        "transfer_group": (remote.transfer_group, idempotency.transfer_group(contest_id)),
    }
    if payout_transfer_id is not None:
        recorded["metadata.payout_transfer_id"] = (remote.payout_transfer_id, payout_transfer_id)
    return [(name, ours, theirs) for name, (ours, theirs) in recorded.items() if ours != theirs]


def _describe(remote: outcomes.StripeTransfer) -> str:
    return (
        f"{remote.id} ({remote.amount_cents} {remote.currency} to {remote.destination}, "
        f"group {remote.transfer_group})"
    )
