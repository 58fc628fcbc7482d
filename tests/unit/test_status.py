"""What ``status`` shows, as a core service over the in-memory store."""

from __future__ import annotations

from payout_adapters.memory import InMemoryStore, ManualClock
from payout_core import models
from payout_core.services import control
from payout_core.services import status as status_
from tests.kit import builders as b
from tests.kit.times import LEASE, T0

S = models.TransferStatus


def test_status_shows_the_pause_and_what_needs_attention(clock: ManualClock) -> None:
    store = InMemoryStore(clock=clock)
    b.schedule(store, b.settlement("u-1", "u-2", "u-3", "u-4"), now=T0)
    first, second, third, fourth = store.claim_due(limit=4, lease=LEASE, token="w-1")
    b.record_outcome(store, first, b.completed(first, now=T0), now=T0)
    b.record_outcome(store, second, b.failed(second, now=T0), now=T0)
    b.record_outcome(store, third, b.retried(third, now=T0), now=T0)
    # The fourth's worker dies holding it.
    store.record_run(models.RunReport(id=b.new_id(), started_at=T0, claimed=4))
    control.pause(store, actor="ops-1", reason="looks odd", now=T0)
    clock.advance(LEASE)

    shown = status_.status(store, now=clock.now())

    assert (shown.pause.paused, shown.pause.actor, shown.pause.reason) == (
        True,
        "ops-1",
        "looks odd",
    )
    assert shown.counts[S.COMPLETED] == 1
    assert shown.counts[S.FAILED_TERMINAL] == 1
    assert [t.id for t in shown.failed] == [second.id]
    assert [t.id for t in shown.retrying] == [third.id]
    assert [t.id for t in shown.stuck] == [fourth.id]
    assert shown.depth.stuck == 1
    assert [j.settlement_id for j in shown.jobs] == ["s-1"]
    assert [r.claimed for r in shown.runs] == [4]
    assert [(a.action, a.actor) for a in shown.actions] == [
        (models.OperatorActionKind.PAUSE, "ops-1")
    ]


def test_a_transfer_under_a_running_lease_is_not_stuck() -> None:
    store = InMemoryStore(clock=ManualClock(T0))
    b.schedule(store, b.settlement("u-1"), now=T0)
    store.claim_due(limit=1, lease=LEASE, token="w-1")

    shown = status_.status(store, now=T0)

    assert shown.stuck == []
    assert shown.pause == models.PauseState()
