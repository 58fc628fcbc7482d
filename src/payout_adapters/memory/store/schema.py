"""The schema's checks on one row, for the in-memory store: what PostgreSQL's
CHECK constraints and triggers refuse, worded as the PostgreSQL store words it.

Each is a function of the rows alone (the checks that need the rest of the
store, keys and the ledger's trigger, are :mod:`.tables`'s). The store calls
them through this module, so that a test can take one away
(``tests/simulation/test_teeth.py`` shows the simulation finds the loss).
"""

from __future__ import annotations

from typing import Final

from payout_core import idempotency, models, validation

__all__ = ["DIRECTION", "pin_problems", "reversal_problems", "row_problems", "row_refusals"]

S = models.TransferStatus
R = models.ReversalStatus
E = models.LedgerEntryType


def row_refusals(transfer: models.PayoutTransfer) -> list[tuple[str, str]]:
    """The schema's checks on a transfer row (migrations/0001, 0004, 0008) that
    ``transfer`` breaks: (the constraint's name, what it says)."""
    t = transfer
    checks = (
        (
            "payout_transfers_attempts_check",
            0 <= t.attempt_count <= t.max_attempts and t.max_attempts >= 1,
            f"attempt_count {t.attempt_count} is outside 0..{t.max_attempts}",
        ),
        (
            "payout_transfers_stripe_transfer_id_check",
            (t.stripe_transfer_id is not None) == (t.status is S.COMPLETED),
            "stripe_transfer_id must be set if and only if the status is completed",
        ),
        (
            "payout_transfers_claim_check",
            t.status is not S.PROCESSING
            or (t.lease_expires_at is not None and t.claim_token is not None),
            "a processing transfer needs a lease and a claim token",
        ),
        (
            "payout_transfers_failure_code_check",
            t.status is not S.FAILED_TERMINAL or t.failure_code is not None,
            "a failed transfer needs a failure_code",
        ),
        (
            "payout_transfers_destination_account_check",
            t.destination_account is None or validation.is_account_id(t.destination_account),
            f"destination_account {t.destination_account!r} is not acct_...",
        ),
        (
            "payout_transfers_amount_cents_check",
            0 < t.amount_cents <= validation.MAX_AMOUNT_CENTS,
            f"amount_cents {t.amount_cents} is outside 1..{validation.MAX_AMOUNT_CENTS}",
        ),
        (
            "payout_transfers_key_generation_check",
            t.key_generation >= 0,
            "key_generation must be >= 0",
        ),
        (
            "payout_transfers_uncertain_check",
            not t.outcome_uncertain
            or (t.key_first_sent_at is not None and t.last_send_at is not None),
            "an uncertain transfer needs the time of its key's first and last send",
        ),
        (
            "payout_transfers_attempts_left_check",
            t.status.is_terminal or t.outcome_uncertain or t.attempt_count < t.max_attempts,
            "a transfer with every attempt spent is terminal or uncertain",
        ),
        (
            "payout_transfers_counters_check",
            min(t.key_sends, t.lookup_failures, t.abandoned_claims) >= 0,
            "key_sends, lookup_failures and abandoned_claims must be >= 0",
        ),
        (
            "payout_transfers_needs_operator_check",
            not (t.status.is_terminal and t.needs_operator is not None),
            "a terminal transfer needs no operator",
        ),
        (
            "payout_transfers_reissue_of_check",
            t.reissue_of != t.id,
            "a transfer cannot be a reissue of itself",
        ),
    )
    return [(name, said) for name, holds, said in checks if not holds]


def row_problems(transfer: models.PayoutTransfer) -> list[str]:
    """:func:`row_refusals` as messages naming their constraint."""
    return [f"{name}: {said}" for name, said in row_refusals(transfer)]


def reversal_problems(reversal: models.Reversal) -> list[str]:
    """The schema's checks on a reversal row (migrations/0009), as messages."""
    problems = []
    if reversal.sequence < 1 or reversal.idempotency_key != idempotency.reversal_key(
        reversal.transfer_id, reversal.sequence
    ):
        problems.append(f"idempotency_key {reversal.idempotency_key!r} is not the sequence's")
    if not 0 < reversal.amount_cents <= validation.MAX_AMOUNT_CENTS:
        problems.append(
            f"amount_cents {reversal.amount_cents} is outside 1..{validation.MAX_AMOUNT_CENTS}"
        )
    if not reversal.actor.strip() or len(reversal.actor) > 200:
        problems.append("a reversal names who asked for it (200 characters at most)")
    if not reversal.reason.strip() or len(reversal.reason) > 2000:
        problems.append("a reversal says why (2000 characters at most)")
    if (reversal.status is R.COMPLETED) != (reversal.stripe_reversal_id is not None):
        problems.append("stripe_reversal_id must be set if and only if it is completed")
    if (reversal.status is R.FAILED) != (reversal.failure_code is not None):
        problems.append("failure_code must be set if and only if it failed")
    return problems


# The direction of each kind of ledger row: a payment, a reversal, or a memo.
DIRECTION: Final = {
    E.PAYOUT_COMPLETED: models.LedgerDirection.DEBIT,
    E.PAYOUT_REVERSED: models.LedgerDirection.CREDIT,
}


def pin_problems(stored: models.PayoutTransfer, written: models.PayoutTransfer) -> list[str]:
    """The schema's trigger: a pinned destination never changes (rule 3)."""
    if stored.destination_account not in (None, written.destination_account):
        return [f"destination_account is pinned to {stored.destination_account}"]
    return []
