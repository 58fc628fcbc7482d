"""Stripe's side of a reconciliation: each Stripe transfer listed, matched on
``metadata.payout_transfer_id`` against what the store recorded of it.

:class:`StripeSide` is fed the listing page by page and reports what one
Stripe transfer shows (unknown, failed but paid, unrecorded, a field that
differs, reversals the ledger has not booked); :meth:`StripeSide.finish`
reports what only the whole listing shows (a completed transfer's Stripe
transfer missing, a payout transfer paid twice). The store side is read
before (:func:`payout_core.services.reconciliation.reconcile_all`), into one
small :class:`Known` per transfer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import attrs

from payout_core import errors, idempotency, ledger, models, outcomes, ports
from payout_core.services.findings import Finding, FindingKind, Progress

__all__ = ["Known", "StripeSide", "describe", "disagreements"]

S = models.TransferStatus


@attrs.frozen
class Known:
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
    def of(cls, t: models.PayoutTransfer, rows: Iterable[models.LedgerEntry]) -> Known:
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


@attrs.define(kw_only=True)
class StripeSide:
    """The Stripe transfers read so far, and the findings they made."""

    store: ports.PayoutStore
    records: ports.TransferRecords
    known: dict[str, Known]
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
                Known.of(current, self.store.ledger(transfer_id=pid))
                if current is not None
                else None
            )
        if pid is None or k is None:
            named = "no metadata.payout_transfer_id" if pid is None else f"payout_transfer_id {pid}"
            self._report(
                FindingKind.UNKNOWN_AT_STRIPE,
                remote,
                f"{describe(remote)} carries {named}, which names no payout transfer "
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
                    f"recorded as failed_terminal, but Stripe paid it: {describe(remote)}",
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
                f"needs an operator, and Stripe holds {describe(remote)}: "
                f"payout-core transfers resolve {pid} --found {remote.id}",
                pid,
            )
        elif current.status is S.PROCESSING or current.outcome_uncertain:
            self.in_flight += 1
        else:
            self._report(
                FindingKind.UNRECORDED,
                remote,
                f"is {current.status} with no send in doubt, but Stripe holds {describe(remote)}",
                pid,
            )

    def _compare(self, pid: str, k: Known, remote: outcomes.StripeTransfer) -> None:
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

    def _not_listed(self, pid: str, k: Known, stripe_id: str) -> None:
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


def describe(remote: outcomes.StripeTransfer) -> str:
    """A Stripe transfer in a finding's message: its id, amount, destination, group."""
    return (
        f"{remote.id} ({remote.amount_cents} {remote.currency} to {remote.destination}, "
        f"group {remote.transfer_group})"
    )
