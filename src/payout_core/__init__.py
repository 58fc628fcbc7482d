"""payout-core: contest winnings paid to Stripe connected accounts exactly once.

The pure core: models, the transfer state machine, gateway outcomes, the retry
policy, settlement validation, the ports and the application services. It does
no I/O of its own; adapters (``payout_adapters``) plug into its ports.
"""

from payout_core.attempt import AttemptResult, Disposition
from payout_core.errors import (
    DuplicatePayout,
    IllegalTransition,
    InfrastructureError,
    InvalidSettlement,
    PayoutError,
    Problem,
    SettlementConflict,
    StoreUnavailable,
)
from payout_core.models import (
    JobStatus,
    LedgerDirection,
    LedgerEntry,
    LedgerEntryType,
    PayoutJob,
    PayoutTransfer,
    RunReport,
    Settlement,
    TransferStatus,
    Winner,
)
from payout_core.outcomes import (
    Found,
    GatewayOutcome,
    LookupOutcome,
    NotFound,
    Permanent,
    Succeeded,
    Systemic,
    TransferLookup,
    TransferRequest,
    Transient,
    Unknown,
)
from payout_core.ports import AccountDirectory, Clock, PaymentGateway, PayoutStore, ScheduleResult
from payout_core.retry import RetryPolicy
from payout_core.services.attempting import execute_transfer
from payout_core.services.execution import execute_claimed
from payout_core.services.scheduling import schedule_payout_for_settlement
from payout_core.services.tick import WorkerSettings, run_tick
from payout_core.validation import parse_settlement

__all__ = [
    "AccountDirectory",
    "AttemptResult",
    "Clock",
    "Disposition",
    "DuplicatePayout",
    "Found",
    "GatewayOutcome",
    "IllegalTransition",
    "InfrastructureError",
    "InvalidSettlement",
    "JobStatus",
    "LedgerDirection",
    "LedgerEntry",
    "LedgerEntryType",
    "LookupOutcome",
    "NotFound",
    "PaymentGateway",
    "PayoutError",
    "PayoutJob",
    "PayoutStore",
    "PayoutTransfer",
    "Permanent",
    "Problem",
    "RetryPolicy",
    "RunReport",
    "ScheduleResult",
    "Settlement",
    "SettlementConflict",
    "StoreUnavailable",
    "Succeeded",
    "Systemic",
    "TransferLookup",
    "TransferRequest",
    "TransferStatus",
    "Transient",
    "Unknown",
    "Winner",
    "WorkerSettings",
    "execute_claimed",
    "execute_transfer",
    "parse_settlement",
    "run_tick",
    "schedule_payout_for_settlement",
]
