"""What a reconciliation reports: its findings, its progress, its summary.

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
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["Finding", "FindingKind", "Progress", "Reconciliation"]


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
