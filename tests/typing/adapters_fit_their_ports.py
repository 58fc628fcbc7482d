"""Checked by mypy, never run by pytest: each adapter still fits its port.

If an adapter drifts from a ``payout_core.ports`` Protocol (a renamed method, a
changed signature), the assignment below stops type-checking.
"""

from __future__ import annotations

import psycopg_pool

from payout_adapters import clock, postgres
from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryStore,
    ManualClock,
    SimulatedGateway,
)
from payout_adapters.stripe import StripeGateway
from payout_cli import metrics
from payout_core import ports


def memory_adapters() -> None:
    store: ports.PayoutStore = InMemoryStore()
    directory: ports.AccountDirectory = InMemoryAccountDirectory()
    gateway: ports.PaymentGateway = SimulatedGateway()
    records: ports.TransferRecords = SimulatedGateway()
    manual: ports.Clock = ManualClock.__new__(ManualClock)
    del store, directory, gateway, records, manual


def production_adapters(pool: psycopg_pool.ConnectionPool) -> None:
    store: ports.PayoutStore = postgres.PostgresStore(pool)
    directory: ports.AccountDirectory = postgres.PostgresAccountDirectory(pool)
    inbox: ports.SettlementInbox = postgres.PostgresInbox(pool)
    gateway: ports.PaymentGateway = StripeGateway(api_key="sk_test_typing")
    records: ports.TransferRecords = StripeGateway(api_key="sk_test_typing")
    instrumented: ports.PaymentGateway = metrics.InstrumentedGateway(gateway, metrics.Metrics())
    system: ports.Clock = clock.SystemClock()
    del store, directory, inbox, gateway, records, instrumented, system
