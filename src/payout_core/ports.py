"""The ports: what the core needs from the world, as ``typing.Protocol``.

One module, longer than most, on purpose: it is the one list of what the core
asks of an adapter, each method's contract in its docstring, so that an
adapter's author reads every port, and nothing else, here.

Adapters implement these without inheriting from anything; mypy checks the fit
(``tests/typing/``). Every store method is one atomic unit of work: it either
happens whole or not at all, which is what lets the PostgreSQL store make each
one a single short transaction and the in-memory store a single locked step.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from payout_core import models, outcomes, reversal
from payout_core import state_machine as sm

__all__ = [
    "AccountDirectory",
    "Budget",
    "Clock",
    "EventInbox",
    "InboxItem",
    "PaymentGateway",
    "PayoutStore",
    "QueueDepth",
    "RateLimiter",
    "ReversalGateway",
    "ReversalRefused",
    "ScheduleResult",
    "SettlementInbox",
    "StripeEvent",
    "TransferHistory",
    "TransferRecords",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class Budget(enum.StrEnum):
    """Stripe limits each endpoint on its own: one budget for Create Transfer,
    one for the reads (look-ups, lists, retrieves)."""

    CREATE = "create"
    READ = "read"


class RateLimiter(Protocol):
    """The pace of requests to Stripe, for the whole fleet (DESIGN 6).

    ``PAYOUT_STRIPE_RATE_LIMIT`` is one budget for every worker on every host:
    a fourth worker must not make the fleet send faster, and a 429 slows the
    fleet, not one process.
    """

    def acquire(self, budget: Budget, *, max_wait: float | None = None) -> float | None:
        """Wait until one more request of ``budget`` may leave; the seconds waited.

        With ``max_wait``, take no slot further away than that: ``None`` then
        says the budget is booked beyond it, and the request must not be sent
        now (a send must leave soon after its intent: DESIGN 3, rule 2).

        Raises:
            StoreUnavailable: the shared schedule could not be read.
        """
        ...

    def push_back(self, budget: Budget, retry_after: float | None) -> None:
        """Stripe answered 429: the whole fleet slows down.

        No request of ``budget`` leaves, anywhere in the fleet, for
        ``retry_after`` seconds when Stripe named them, or one slot otherwise;
        and the budget's pace is cut (:mod:`payout_core.pacing`), because
        Stripe allows less than configured.

        Raises:
            StoreUnavailable: the shared schedule could not be written.
        """
        ...

    def ready_within(self, budget: Budget, seconds: float) -> int:
        """How many requests of ``budget`` the schedule could let leave within
        ``seconds`` from now, if nobody else took a slot: what a worker may
        claim (:data:`payout_core.pacing.CLAIM_HORIZON_SECONDS`).

        Raises:
            StoreUnavailable: the shared schedule could not be read.
        """
        ...


class AccountDirectory(Protocol):
    def account_for(self, user_id: str) -> str | None:
        """The Stripe connected account (``acct_...``) that pays ``user_id``, or
        ``None`` when the user has connected none.

        Raises:
            StoreUnavailable: the directory could not be read.
        """
        ...

    def accounts_for(self, user_ids: Sequence[str]) -> dict[str, str]:
        """:meth:`account_for` of many users at once: the connected ones only.

        Raises:
            StoreUnavailable: the directory could not be read.
        """
        ...


class PaymentGateway(Protocol):
    def create_transfer(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        """Create one transfer under ``request.idempotency_key``.

        The same key with the same request must replay the first result, never
        create a second transfer. Every failure is returned as an outcome value.

        Raises:
            Nothing expected: a raised exception is a bug in the adapter.
        """
        ...

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        """Find the transfer created for ``lookup.payout_transfer_id``, under any key.

        ``Found`` and ``NotFound`` must be certain; when the gateway cannot tell,
        it returns the failure outcome instead.

        Raises:
            Nothing expected: a raised exception is a bug in the adapter.
        """
        ...


class TransferRecords(Protocol):
    """What the payment gateway holds, read only: for ``reconcile`` and the
    operator's commands, never for paying. Reads take the fleet's read budget
    when the gateway paces its requests."""

    def retrieve_transfer(self, stripe_transfer_id: str) -> outcomes.RetrieveOutcome:
        """The transfer ``stripe_transfer_id`` as the gateway holds it;
        ``NotFound`` only when the gateway says it has no such transfer.

        Raises:
            Nothing expected: a raised exception is a bug in the adapter.
        """
        ...

    def list_transfers(self, query: outcomes.TransferQuery) -> Iterator[outcomes.StripeTransfer]:
        """Every transfer ``query`` selects, newest first, page by page as the
        iteration goes (each page one request).

        Raises:
            GatewayUnavailable: a page could not be read; the listing is incomplete.
        """
        ...


class ReversalGateway(Protocol):
    """Money coming back: reversals of a transfer at the payment gateway
    (``payout-core transfers reverse``, DESIGN 7)."""

    def create_reversal(self, request: outcomes.ReversalRequest) -> outcomes.ReversalOutcome:
        """Reverse ``request.amount_cents`` of the transfer under
        ``request.idempotency_key``: the same key with the same request replays
        the first result, never reverses twice. Every failure is an outcome.

        Raises:
            Nothing expected: a raised exception is a bug in the adapter.
        """
        ...

    def list_reversals(self, stripe_transfer_id: str) -> Iterator[outcomes.StripeReversal]:
        """Every reversal of the transfer, newest first, page by page (each page
        one request, on the read budget).

        Raises:
            GatewayUnavailable: a page could not be read; the listing is incomplete.
        """
        ...


@attrs.frozen(kw_only=True)
class TransferHistory:
    """One transfer with its ledger rows, in write order (for ``reconcile``)."""

    transfer: models.PayoutTransfer
    ledger: tuple[models.LedgerEntry, ...]


@attrs.frozen(kw_only=True)
class ReversalRefused:
    """Why a reversal's intent was not written (nothing was): ``why`` says it
    for the operator; ``amounts`` are the transfer's when it was completed."""

    why: str
    amounts: reversal.Amounts | None = None


@attrs.frozen(kw_only=True)
class ScheduleResult:
    job: models.PayoutJob
    created: bool  # False: the settlement was already scheduled and this is its job


@attrs.frozen(kw_only=True)
class QueueDepth:
    due: int  # claimable now: pending, retryable and due, or stuck
    stuck: int  # processing with an expired lease
    needs_operator: int = 0  # never claimed again until an operator decides (rule 7)


class PayoutStore(Protocol):
    """Jobs, transfers, the ledger and the record of runs."""

    def schedule(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> ScheduleResult:
        """Write the job and all its transfers at once, unless a job for
        ``job.settlement_id`` exists: then return that job, untouched, with
        ``created=False``. Concurrent calls for one settlement make one job.
        ``job`` and ``transfers`` are the plan of a checked settlement
        (:func:`payout_core.services.scheduling.plan_payout`): a store writes
        them as they are and does not judge the settlement or the totals again.

        Raises:
            DuplicatePayout: another settlement already pays one of these winners
                in this contest (nothing was written).
            StoreRefused: a key or check of the schema refuses a row (the
                database's last line; nothing was written).
            StoreUnavailable: the store failed; nothing was written.
        """
        ...

    def claim_due(self, *, limit: int, lease: timedelta, token: str) -> list[models.PayoutTransfer]:
        """Claim up to ``limit`` due transfers, at the store's own time (the
        database's clock, never the caller's: rule 1), oldest due first,
        applying :func:`payout_core.state_machine.claim` with ``token``.

        Due means pending, retryable with ``next_attempt_at <= now``, or
        processing with an expired lease. An expired claim that is one too many
        in a row (:func:`~payout_core.state_machine.abandoned_too_often`) is
        escalated to an operator instead of claimed. Transfers claimed by a
        concurrent caller are skipped, never waited on. Their jobs move from
        pending to processing. Committed before returning. Each claimed
        transfer's ``updated_at`` is the store's time of the claim. While the
        fleet is paused (:meth:`set_paused`), nothing is claimed.

        Raises:
            StoreUnavailable: nothing was claimed.
        """
        ...

    def write_intent(
        self, *, claimed: models.PayoutTransfer, destination: str, margin: timedelta
    ) -> models.PayoutTransfer | sm.IntentRefusal:
        """The write-ahead send intent (rule 2): apply
        :func:`payout_core.state_machine.send` at the store's own time, only
        while the stored transfer is still the claim ``claimed`` describes and
        :func:`~payout_core.state_machine.refuse_send` finds nothing against
        it; durable before it returns. Nothing may be sent without it.

        Returns the transfer as the intent left it (``last_send_at`` is the
        store's time of the intent), or why it was refused (nothing written).

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...

    def record(
        self,
        *,
        claimed: models.PayoutTransfer,
        updated: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry | None,
        now: datetime,
    ) -> bool:
        """Record an attempt's outcome: write ``updated``, append ``ledger_entry``
        and bring the job's counts and status up to date, all at once.

        Only if the stored transfer is still the claim ``claimed`` describes
        (status processing, same ``claim_token`` and ``attempt_count``);
        otherwise nothing is written and the answer is ``False`` (the lease was
        taken over and the newer claim owns the transfer).

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...

    def get_job(self, job_id: str) -> models.PayoutJob | None: ...

    def find_job(self, settlement_id: str) -> models.PayoutJob | None: ...

    def list_jobs(
        self, *, status: models.JobStatus | None = None, limit: int = 100
    ) -> list[models.PayoutJob]:
        """Newest first."""
        ...

    def get_transfer(self, transfer_id: str) -> models.PayoutTransfer | None: ...

    def jobs_after(self, after: str | None, *, limit: int) -> list[models.PayoutJob]:
        """Up to ``limit`` jobs whose id sorts after ``after`` (from the first
        when ``None``), in id order: every job, page by page (``reconcile``)."""
        ...

    def transfer_histories(
        self, job_id: str, *, after: str | None, limit: int
    ) -> list[TransferHistory]:
        """Up to ``limit`` of the job's transfers whose id sorts after ``after``,
        in id order, each with its ledger rows: a job of any size, page by page."""
        ...

    def transfers_of(self, job_id: str) -> list[models.PayoutTransfer]:
        """The job's transfers, ordered by user id."""
        ...

    def ledger(
        self, *, job_id: str | None = None, transfer_id: str | None = None
    ) -> list[models.LedgerEntry]:
        """Ledger rows in the order they were written, optionally filtered."""
        ...

    def list_transfers(
        self, *, status: models.TransferStatus | None = None, limit: int = 100
    ) -> list[models.PayoutTransfer]:
        """Transfers, optionally of one status, most recently updated first."""
        ...

    def queue_depth(self) -> QueueDepth:
        """At the store's own time: how many transfers are due, how many are
        stuck (processing with an expired lease: their worker died), and how
        many need an operator."""
        ...

    def needing_operator(self, limit: int = 100) -> list[models.PayoutTransfer]:
        """The transfers that need an operator, longest waiting first."""
        ...

    def transfer_counts(self) -> dict[models.TransferStatus, int]:
        """How many transfers are in each status (every status present)."""
        ...

    def pause_state(self) -> models.PauseState:
        """Whether the fleet is paused, by whom and why.

        Raises:
            StoreUnavailable: the store could not be read.
        """
        ...

    def set_paused(self, action: models.OperatorAction) -> models.PauseState:
        """Pause (``action.action`` is ``pause``) or resume the fleet, and record
        ``action`` with the state before and after it, in one unit of work.
        From then on :meth:`claim_due` claims nothing while paused.

        Raises:
            StoreUnavailable: the store could not be written; nothing was.
        """
        ...

    def resolve(
        self,
        *,
        before: models.PayoutTransfer,
        after: models.PayoutTransfer,
        ledger_entry: models.LedgerEntry,
        action: models.OperatorAction,
    ) -> bool:
        """Close a transfer that needs an operator (``transfers resolve``): write
        ``after`` (completed or failed_terminal), append ``ledger_entry``, bring
        the job's counts and status up to date and record ``action``, all at once.

        Only if the stored transfer is still ``before`` (same status, still
        needing an operator, same ``updated_at``); otherwise nothing is written
        and the answer is ``False``.

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...

    def reissue(
        self,
        *,
        failed: models.PayoutTransfer,
        reissued: models.PayoutTransfer,
        action: models.OperatorAction,
    ) -> bool:
        """Pay a failed winner again (``transfers reissue``): insert ``reissued``
        (pending, ``reissue_of`` the failed one), reopen the job (one more
        transfer, its amount added, status processing, not complete) and record
        ``action``, all at once.

        Only if ``failed`` is still failed_terminal, was never reissued, and no
        other live or completed transfer pays this winner in this contest;
        otherwise nothing is written and the answer is ``False``.

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...

    def reversals_of(self, transfer_id: str) -> list[models.Reversal]:
        """The reversals payout-core asked for this transfer, first first."""
        ...

    def reversals_in_doubt(self, *, limit: int) -> list[models.Reversal]:
        """Up to ``limit`` reversals still ``sending`` (Stripe may have reversed
        them: an answer, ``transfers reverse`` again or Stripe's event settles
        each), the oldest intent first; what ``status`` shows an operator."""
        ...

    def reversal_intent(self, reversal: models.Reversal) -> models.Reversal | ReversalRefused:
        """The write-ahead intent of a reversal: write ``reversal`` (sending),
        at the store's own time, only if its transfer is completed, none of its
        reversals is in doubt, its sequence is the next, and its amount is no
        more than what is left (paid less every reversal booked in the ledger).
        Durable before it returns; nothing may be sent without it.

        Returns the reversal as written (``created_at``/``updated_at`` the
        store's time), or why it was refused (nothing written).

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...

    def settle_reversal(
        self,
        *,
        before: models.Reversal,
        after: models.Reversal,
        ledger_entry: models.LedgerEntry | None,
        action: models.OperatorAction | None,
    ) -> bool:
        """Record a reversal's conclusive answer: write ``after`` (completed or
        failed), and for a completed one append its credit ``ledger_entry``
        (unless a row with its key is booked already: a webhook may have seen it
        first) and record ``action``, all at once. Only while the stored
        reversal is still in doubt (``before``); otherwise nothing is written
        and the answer is ``False``.

        Raises:
            IllegalTransition: the ledger refused the row (more back than paid).
            StoreUnavailable: nothing was written.
        """
        ...

    def book_reversal(self, entry: models.LedgerEntry) -> bool:
        """Append the credit row of a reversal payout-core did not ask for (made
        in Stripe's dashboard), unless its key is booked already: ``True`` when
        this call booked it.

        Raises:
            IllegalTransition: the ledger refused the row (more back than paid).
            StoreUnavailable: nothing was written.
        """
        ...

    def operator_actions(
        self, limit: int = 20, *, transfer_id: str | None = None
    ) -> list[models.OperatorAction]:
        """The latest operator actions, newest first; only those on
        ``transfer_id`` when given."""
        ...

    def record_run(self, report: models.RunReport) -> None:
        """Insert or update the run ``report.id``."""
        ...

    def recent_runs(self, limit: int = 10) -> list[models.RunReport]:
        """Newest first."""
        ...


@attrs.frozen(kw_only=True)
class InboxItem:
    """A settlement another service wrote into the inbox, not yet taken."""

    id: int
    settlement_id: str
    payload: object  # the settlement JSON, parsed; validated only when taken
    received_at: datetime


class SettlementInbox(Protocol):
    """Settlements written by other services (in any language) in their own
    transactions, taken by the runner. Taking is idempotent: scheduling is
    idempotent on ``settlement_id``, so a row taken twice makes one job."""

    def unprocessed(self, *, limit: int) -> list[InboxItem]:
        """Up to ``limit`` rows neither accepted nor rejected, oldest first.

        Raises:
            StoreUnavailable: the inbox could not be read.
        """
        ...

    def mark_accepted(self, item_id: int, *, job_id: str, now: datetime) -> None:
        """The row became (or already was) job ``job_id``.

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...

    def mark_rejected(self, item_id: int, *, reason: str, now: datetime) -> None:
        """The row can never become a job; ``reason`` says why, for the sender.

        Raises:
            StoreUnavailable: nothing was written.
        """
        ...


@attrs.frozen(kw_only=True)
class StripeEvent:
    """An event Stripe delivered to the webhook endpoint, signature verified."""

    id: str  # evt_...
    type: str  # transfer.reversed, ...
    payload: str  # the event's JSON as Stripe sent it
    received_at: datetime


class EventInbox(Protocol):
    """Stripe's events, stored before they are acknowledged, applied after:
    Stripe never waits for the work, and an event delivered twice (or out of
    order) is applied once."""

    def accept(self, event: StripeEvent) -> bool:
        """Store ``event`` durably unless its id is known: ``True`` when new.

        Raises:
            StoreUnavailable: nothing was stored (answer Stripe with a 5xx).
        """
        ...

    def unprocessed(self, *, limit: int) -> list[StripeEvent]:
        """Up to ``limit`` events not yet applied, in the order they arrived."""
        ...

    def mark_processed(self, event_id: str, *, outcome: str, now: datetime) -> None:
        """The event was applied; ``outcome`` says what it did (or why not)."""
        ...
