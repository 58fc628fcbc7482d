"""Checked by mypy, never run by pytest: each adapter still fits its port.

If an adapter drifts from a ``payout_core.ports`` Protocol (a renamed method, a
changed signature), the assignment below stops type-checking.
"""

from __future__ import annotations

import psycopg_pool

from payout_adapters import clock, postgres
from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryEventInbox,
    InMemoryInbox,
    InMemoryStore,
    ManualClock,
    SimulatedGateway,
)
from payout_adapters.memory import ledger_reader as memory_ledger
from payout_adapters.postgres import ledger_reader as postgres_ledger
from payout_adapters.stripe import StripeGateway
from payout_cli import metrics
from payout_core import ports
from payout_core.services import ledger_export


def memory_adapters() -> None:
    store: ports.PayoutStore = InMemoryStore()
    events: ports.EventInbox = InMemoryEventInbox()
    settlements: ports.SettlementInbox = InMemoryInbox()
    ledger: ledger_export.LedgerReader = memory_ledger.InMemoryLedgerReader(InMemoryStore())
    del events, ledger, settlements
    directory: ports.AccountDirectory = InMemoryAccountDirectory()
    gateway: ports.PaymentGateway = SimulatedGateway()
    records: ports.TransferRecords = SimulatedGateway()
    reversals: ports.ReversalGateway = SimulatedGateway()
    manual: ports.Clock = ManualClock.__new__(ManualClock)
    del store, directory, gateway, records, reversals, manual


def production_adapters(pool: psycopg_pool.ConnectionPool) -> None:
    store: ports.PayoutStore = postgres.PostgresStore(pool)
    pg_events: ports.EventInbox = postgres.PostgresEventInbox(pool)
    pg_ledger: ledger_export.LedgerReader = postgres_ledger.PostgresLedgerReader(pool)
    del pg_events, pg_ledger
    directory: ports.AccountDirectory = postgres.PostgresAccountDirectory(pool)
    inbox: ports.SettlementInbox = postgres.PostgresInbox(pool)
    gateway: ports.PaymentGateway = StripeGateway(api_key="sk_test_typing")
    records: ports.TransferRecords = StripeGateway(api_key="sk_test_typing")
    reversals: ports.ReversalGateway = StripeGateway(api_key="sk_test_typing")
    instrumented: ports.PaymentGateway = metrics.InstrumentedGateway(gateway, metrics.Metrics())
    system: ports.Clock = clock.SystemClock()
    del store, directory, inbox, gateway, records, reversals, instrumented, system
