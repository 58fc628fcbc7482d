"""payout-core: contest winnings paid to Stripe connected accounts exactly once.

For a service, the way in is :class:`Payouts` (built by an adapter:
``payout_adapters.postgres.connect(url)``, ``payout_adapters.postgres.connect_async(url)``,
or ``payout_adapters.memory.PayoutWorld`` in tests): schedule a settlement, or
enqueue it in your own transaction; look a payout up; wait for it. The names
listed in ``__all__`` are the public API, versioned as ``docs/library.md`` says.

The engine (the tick, the execution of attempts, the ports, the gateway's
outcomes) lives in its own modules (:mod:`payout_core.services.tick`,
:mod:`payout_core.ports`, ...), importable for the adapters, the command line
and the engine's own tests, without the public API's promise.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Final

from payout_core.errors import (
    DuplicatePayout,
    InfrastructureError,
    InvalidInput,
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
from payout_core.payouts import Payout, Payouts, PayoutTimeout, UnknownPayout
from payout_core.validation import parse_settlement

__all__ = [
    "DuplicatePayout",
    "InfrastructureError",
    "InvalidInput",
    "InvalidSettlement",
    "JobStatus",
    "LedgerDirection",
    "LedgerEntry",
    "LedgerEntryType",
    "Payout",
    "PayoutError",
    "PayoutJob",
    "PayoutTimeout",
    "PayoutTransfer",
    "Payouts",
    "Problem",
    "RunReport",
    "Settlement",
    "SettlementConflict",
    "StoreUnavailable",
    "TransferStatus",
    "UnknownPayout",
    "Winner",
    "parse_settlement",
]

# Engine names 0.1.0 exported from here, deprecated in 0.2.0 and gone in 0.4.0
# (docs/library.md, "Versioning"): each still works, with a DeprecationWarning
# naming the module it lives in.
_DEPRECATED_SINCE: Final = "0.2.0"
_REMOVED_IN: Final = "0.4.0"
_DEPRECATED: Final = {
    "AccountDirectory": "payout_core.ports",
    "AttemptResult": "payout_core.attempt",
    "Clock": "payout_core.ports",
    "Disposition": "payout_core.attempt",
    "Found": "payout_core.outcomes",
    "GatewayOutcome": "payout_core.outcomes",
    "IllegalTransition": "payout_core.errors",
    "LookupOutcome": "payout_core.outcomes",
    "NotFound": "payout_core.outcomes",
    "PaymentGateway": "payout_core.ports",
    "PayoutStore": "payout_core.ports",
    "Permanent": "payout_core.outcomes",
    "RetryPolicy": "payout_core.retry",
    "ScheduleResult": "payout_core.ports",
    "Succeeded": "payout_core.outcomes",
    "Systemic": "payout_core.outcomes",
    "TransferLookup": "payout_core.outcomes",
    "TransferRequest": "payout_core.outcomes",
    "Transient": "payout_core.outcomes",
    "Unknown": "payout_core.outcomes",
    "WorkerSettings": "payout_core.services.tick",
    "execute_claimed": "payout_core.services.execution",
    "execute_transfer": "payout_core.services.attempting",
    "run_tick": "payout_core.services.tick",
    "schedule_payout_for_settlement": "payout_core.services.scheduling",
}


def __getattr__(name: str) -> object:
    module = _DEPRECATED.get(name)
    if module is None:
        raise AttributeError(f"module 'payout_core' has no attribute {name!r}")
    warnings.warn(
        f"payout_core.{name} is deprecated since {_DEPRECATED_SINCE} and goes in "
        f"{_REMOVED_IN}: import it from {module} (the engine), or use payout_core.Payouts",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)
