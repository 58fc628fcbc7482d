"""A downstream service's code, as its author writes it from the README: only
payout-core's public names, fully typed. ``mypy --strict`` (CI) checks it with
no ignores: the front door, sync and async, and the in-memory world are typed
as a service uses them. Never run; it is checked."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import psycopg_pool

import payout_core
from payout_adapters import postgres
from payout_adapters.memory import InMemoryTransaction, PayoutWorld

SETTLEMENT: dict[str, object] = {
    "settlement_id": "contest-42-final",
    "contest_id": "contest-42",
    "currency": "usd",
    "winners": [{"user_id": "u_1", "amount_cents": 1500}],
}


def settle(url: str, contest_id: str) -> payout_core.Payout:
    with postgres.connect(url) as payouts, psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute("UPDATE contests SET settled = true WHERE id = %s", [contest_id])
            payout = payouts.enqueue(conn, SETTLEMENT)
        return payouts.wait(payout.id, timeout=timedelta(minutes=1))


def paid_cents(pool: psycopg_pool.ConnectionPool, settlement_id: str) -> int:
    payouts: payout_core.Payouts[postgres.Connection] = postgres.payouts(pool)
    payout = payouts.get_by_settlement(settlement_id)
    if payout is None:
        return 0
    return sum(t.amount_cents for t in payout.paid)


async def settle_async(url: str, contest_id: str) -> payout_core.JobStatus:
    async with postgres.connect_async(url) as payouts:
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await conn.execute("UPDATE contests SET settled = true WHERE id = %s", [contest_id])
            payout = await payouts.enqueue(conn, SETTLEMENT)
        try:
            done = await payouts.wait(payout.id, timeout=60)
        except payout_core.PayoutTimeout as timed_out:
            return timed_out.payout.status
        return done.status


def scheduled_in_a_test(payout_world: PayoutWorld) -> list[str]:
    payouts: payout_core.Payouts[InMemoryTransaction] = payout_world.payouts
    with payout_world.transaction() as tx:
        payout = payouts.enqueue(tx, SETTLEMENT)
    return [t.user_id for t in payouts.wait(payout.id, timeout=5).failed]
