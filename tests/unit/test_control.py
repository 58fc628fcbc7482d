"""The fleet-wide pause as a service (payout_core.services.control), on the
in-memory store: an action without who or why is refused and writes nothing."""

from __future__ import annotations

import pytest

from payout_adapters.memory import InMemoryStore, ManualClock
from payout_core import errors
from payout_core.services import control
from tests.kit.times import T0


@pytest.mark.parametrize(
    ("actor", "reason", "problem"),
    [
        ("", "why", "actor: must not be empty"),
        ("ops", "  ", "reason: must not be empty"),
        ("o" * 201, "why", "actor: must be at most 200 characters"),
        ("ops", "why\x00", "reason: must not contain a NUL byte"),
    ],
)
def test_an_action_without_who_or_why_is_refused_and_writes_nothing(
    actor: str, reason: str, problem: str
) -> None:
    store = InMemoryStore(clock=ManualClock(T0))

    with pytest.raises(errors.InvalidOperatorAction, match=problem):
        control.pause(store, actor=actor, reason=reason, now=T0)

    assert store.operator_actions() == []
    assert store.pause_state().paused is False


def test_pause_then_resume_names_who_and_why() -> None:
    store = InMemoryStore(clock=ManualClock(T0))

    paused = control.pause(store, actor=" ops-1 ", reason="Stripe looks wrong", now=T0)
    resumed = control.resume(store, actor="ops-2", reason="checked with Stripe", now=T0)

    assert (paused.paused, paused.actor, paused.reason) == (True, "ops-1", "Stripe looks wrong")
    assert resumed.paused is False
    assert [(a.action.value, a.actor) for a in store.operator_actions()] == [
        ("resume", "ops-2"),
        ("pause", "ops-1"),
    ]
