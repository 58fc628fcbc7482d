"""The simulation has teeth: with any one exactly-once rule taken out, the CI
seeds find a counterexample.

Each test patches one guard out (in the test only, never in the engine) and
runs seeds until the simulation reports a broken invariant. A simulation that
could not fail would prove nothing; these show it fails for the right reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

from payout_adapters.memory import InMemoryStore
from payout_adapters.memory.store import schema as memory_schema
from payout_core import attempt, models, outcomes
from payout_core import state_machine as sm
from tests.simulation import world

#: At most this many seeds per rule; each test stops at the first counterexample.
HUNT = 2000


PAID_TWICE = ("paid 2 times",)
MONEY = ("paid 2 times", "but Stripe paid", "does not match")
NEVER_ENDS = ("after the faults stopped",)


def hunt(
    expected: tuple[str, ...],
    make: Callable[[int], world.Simulation] = world.Simulation,
    *,
    seeds: int = HUNT,
) -> None:
    """Fail unless a seed's run breaks an invariant in the ``expected`` way (a
    message containing one of them); other violations are passed over."""
    for seed in range(seeds):
        try:
            make(seed).run()
        except world.Violation as found:
            if any(words in found.message for words in expected):
                return
    pytest.fail(f"no counterexample in {seeds} seeds: the simulation cannot see this rule")


def test_rule_1_a_store_deciding_by_the_workers_clocks_pays_twice() -> None:
    """Rule 1, database time: with leases and key ages judged by the calling
    worker's clock, a host a day ahead takes over live claims and trusts no key."""

    class WorkersTime(world.Simulation):
        def database_time(self) -> datetime:
            skew = self.acting.skew if self.acting is not None else timedelta(0)
            return self.now + skew

    hunt(MONEY, WorkersTime)


def test_rule_2_an_intent_kept_in_memory_pays_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 2, write-ahead intent: an intent that is not durable leaves a
    take-over blind to the send its dead worker made."""
    original = InMemoryStore.write_intent

    def volatile(self: InMemoryStore, **kwargs: Any) -> object:
        before = self.get_transfer(kwargs["claimed"].id)
        written = original(self, **kwargs)
        if isinstance(written, models.PayoutTransfer) and before is not None:
            self._transfers[before.id] = before  # forgotten: never made durable
        return written

    monkeypatch.setattr(InMemoryStore, "write_intent", volatile)

    hunt(MONEY)


def test_rule_2_a_send_long_after_its_intent_pays_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 2, the send starts right after the intent: a worker that stalled a
    day between the two sends a key Stripe has forgotten."""
    monkeypatch.setattr(attempt.Send, "too_late", lambda _self, _now: False)

    hunt(PAID_TWICE)


def test_rule_3_an_unpinned_destination_fails_a_paid_winner_or_pays_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule 3, the pinned destination: resending an uncertain key to the
    winner's new account gets ``idempotency_error``, and a look-up on the new
    account finds nothing."""
    refuse = sm.refuse_send

    def any_destination(transfer: models.PayoutTransfer, **kwargs: Any) -> object:
        refusal = refuse(transfer, **kwargs)
        return None if refusal is sm.IntentRefusal.DESTINATION_CHANGED else refusal

    monkeypatch.setattr(sm, "refuse_send", any_destination)
    monkeypatch.setattr(memory_schema, "pin_problems", lambda _stored, _written: [])

    class Unpinned(world.Simulation):
        def _step(self, worker: Any, epoch: int, task_id: int, op: Any) -> None:
            if isinstance(op, attempt.WriteIntent):
                current = self.directory.account_for(op.claimed.user_id)
                if current is not None:
                    op = attrs.evolve(op, destination=current)
            super()._step(worker, epoch, task_id, op)

    hunt(MONEY, Unpinned)


def test_rule_4_doubt_that_starts_at_the_answer_pays_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule 4, uncertainty starts at the intent: when only an answer makes a
    transfer uncertain, the take-over of a dead worker's send starts afresh."""
    send = sm.send

    def doubt_later(transfer: models.PayoutTransfer, **kwargs: Any) -> models.PayoutTransfer:
        return attrs.evolve(send(transfer, **kwargs), outcome_uncertain=transfer.outcome_uncertain)

    monkeypatch.setattr(sm, "send", doubt_later)
    monkeypatch.setattr(memory_schema, "row_problems", lambda _t: [])

    hunt(MONEY)


def test_rule_5_resending_a_key_stripe_forgot_pays_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 5, resend only while the key is trusted: after a day down, the
    same key creates a second transfer."""
    monkeypatch.setattr(
        sm, "key_trusted", lambda t, _now: not t.key_replays_error and t.key_first_sent_at
    )

    hunt(PAID_TWICE)


def test_rule_6_a_refusal_kept_under_the_key_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 6, a conclusive 4xx moves the key on: without it, the saved
    ``balance_insufficient`` is replayed after the top-up, for ever."""
    after_send = attempt._after_send

    def keep_key(t: models.PayoutTransfer, outcome: Any, **kwargs: Any) -> Any:
        if isinstance(outcome, outcomes.Systemic):
            outcome = attrs.evolve(outcome, conclusive=False)
        return after_send(t, outcome, **kwargs)

    monkeypatch.setattr(attempt, "_after_send", keep_key)

    hunt(NEVER_ENDS)


def test_rule_7_look_ups_that_fail_for_ever_never_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 7: a transfer whose look-ups keep failing (its destination was
    deleted at Stripe) waits for ever unless it is handed to an operator."""
    monkeypatch.setattr(sm, "LOOKUP_FAILURES_LIMIT", 10**9)

    hunt(NEVER_ENDS)


def test_rule_7_a_transfer_that_kills_its_workers_never_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule 7: a poison transfer is claimed again and again, killing a worker
    each time, unless it is handed to an operator."""
    monkeypatch.setattr(sm, "ABANDONED_CLAIMS_LIMIT", 10**9)

    hunt(NEVER_ENDS)
