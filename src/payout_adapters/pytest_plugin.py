"""payout-core's pytest plugin: a wired in-memory payout world for a service's tests.

Installed with payout-core and registered through the ``pytest11`` entry point,
so a service's test suite has these fixtures without importing anything:

- ``payout_world``: a fresh :class:`~payout_adapters.memory.world.PayoutWorld`
  per test: store, account directory, simulated Stripe, manual clock, a worker,
  and ``payout_world.payouts``, the same front door as production;
- ``payouts``: that front door alone;
- ``payout_start``: where the world's clock starts (override it to move it).

Paying a settlement takes three lines::

    def test_the_winner_is_paid(payout_world):
        payout_world.directory.set_account("u_1", "acct_1")
        payout = payout_world.payouts.schedule(SETTLEMENT)
        assert payout_world.payouts.wait(payout.id, timeout=5).paid

Nothing of payout-core is imported until a test asks for a fixture: pytest
loads plugins before coverage starts measuring, and a service's suite that
never pays anything should not pay for the import.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from payout_adapters.memory.world import InMemoryTransaction, PayoutWorld
    from payout_core.payouts import Payouts

__all__ = ["payout_start", "payout_world", "payouts"]


@pytest.fixture
def payout_start() -> datetime:
    """Where ``payout_world``'s clock starts."""
    return datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def payout_world(payout_start: datetime) -> PayoutWorld:
    """A fresh in-memory payout world, wired."""
    from payout_adapters.memory.world import PayoutWorld  # noqa: PLC0415 - see the docstring

    return PayoutWorld.create(start=payout_start)


@pytest.fixture
def payouts(payout_world: PayoutWorld) -> Payouts[InMemoryTransaction]:
    """The in-memory world's front door."""
    return payout_world.payouts
