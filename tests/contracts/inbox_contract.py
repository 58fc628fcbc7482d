"""The contract every :class:`payout_core.ports.SettlementInbox` keeps.

Run by ``tests/unit/test_memory_directory_inbox_contracts.py`` (in memory) and
``tests/integration/test_postgres_directory_inbox_contracts.py`` (PostgreSQL).
Rows are written by other services, not through the port, so a subclass
provides, besides ``inbox`` (a fresh, empty inbox):

* ``send``: insert a row as a sending service does, given its settlement id
  and its payload as JSON text; the row's id back. On PostgreSQL this is the
  README's ``INSERT INTO payout_settlement_inbox (settlement_id, payload)``;
* ``job_id``: the id of a job the store holds, for rows to become (PostgreSQL's
  inbox refers to ``payout_jobs``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

from payout_core import ports, validation
from tests.kit.times import T0

__all__ = ["InboxContract", "Send"]

Send = Callable[[str, str], int]

SETTLEMENT = {
    "settlement_id": "s-1",
    "contest_id": "c-1",
    "currency": "usd",
    "winners": [{"user_id": "u-1", "amount_cents": 1500}, {"user_id": "u-2", "amount_cents": 500}],
}


def _sent(send: Send, *settlement_ids: str) -> list[int]:
    return [send(s, json.dumps({**SETTLEMENT, "settlement_id": s})) for s in settlement_ids]


def _ids(items: list[ports.InboxItem]) -> list[int]:
    return [item.id for item in items]


class InboxContract:
    """Settlements other services hand over: taken oldest first, each taken once."""

    def test_an_empty_inbox_has_nothing_unprocessed(self, inbox: ports.SettlementInbox) -> None:
        assert inbox.unprocessed(limit=10) == []

    def test_unprocessed_rows_come_oldest_first_up_to_limit(
        self, inbox: ports.SettlementInbox, send: Send
    ) -> None:
        # Sending order, not the settlement ids' order; a settlement sent twice
        # (a retried transaction) is two rows.
        rows = _sent(send, "s-2", "s-1", "s-3", "s-1")

        assert len(set(rows)) == 4
        items = inbox.unprocessed(limit=10)
        assert _ids(items) == rows
        assert [item.settlement_id for item in items] == ["s-2", "s-1", "s-3", "s-1"]
        assert _ids(inbox.unprocessed(limit=2)) == rows[:2]
        assert inbox.unprocessed(limit=0) == []

    def test_an_accepted_row_is_no_longer_unprocessed(
        self, inbox: ports.SettlementInbox, send: Send, job_id: str
    ) -> None:
        first, second, third = _sent(send, "s-1", "s-2", "s-3")

        inbox.mark_accepted(second, job_id=job_id, now=T0)

        assert _ids(inbox.unprocessed(limit=10)) == [first, third]
        assert _ids(inbox.unprocessed(limit=1)) == [first]

    def test_a_rejected_row_is_no_longer_unprocessed(
        self, inbox: ports.SettlementInbox, send: Send
    ) -> None:
        first, second, third = _sent(send, "s-1", "s-2", "s-3")

        inbox.mark_rejected(first, reason="winners: must not be empty", now=T0)

        assert _ids(inbox.unprocessed(limit=10)) == [second, third]
        assert _ids(inbox.unprocessed(limit=1)) == [second]

    def test_taking_a_row_twice_is_harmless(
        self, inbox: ports.SettlementInbox, send: Send, job_id: str
    ) -> None:
        # Two runners may take one row: the first verdict stands, the second is no error.
        accepted, rejected, waiting = _sent(send, "s-1", "s-2", "s-3")

        inbox.mark_accepted(accepted, job_id=job_id, now=T0)
        inbox.mark_accepted(accepted, job_id=job_id, now=T0)
        inbox.mark_rejected(accepted, reason="too late", now=T0)
        inbox.mark_rejected(rejected, reason="contest_id: must not be empty", now=T0)
        inbox.mark_rejected(rejected, reason="again", now=T0)
        inbox.mark_accepted(rejected, job_id=job_id, now=T0)

        assert _ids(inbox.unprocessed(limit=10)) == [waiting]

    def test_marking_a_row_that_does_not_exist_is_harmless(
        self, inbox: ports.SettlementInbox, send: Send, job_id: str
    ) -> None:
        [row] = _sent(send, "s-1")
        unknown = row + 1000

        inbox.mark_accepted(unknown, job_id=job_id, now=T0)
        inbox.mark_rejected(unknown, reason="unknown", now=T0)

        assert _ids(inbox.unprocessed(limit=10)) == [row]

    # -- the payload ---------------------------------------------------------------

    def test_a_rows_payload_comes_back_parsed(
        self, inbox: ports.SettlementInbox, send: Send
    ) -> None:
        row = send("s-1", json.dumps(SETTLEMENT))

        [item] = inbox.unprocessed(limit=10)

        assert (item.id, item.settlement_id, item.payload) == (row, "s-1", SETTLEMENT)
        assert item.received_at.utcoffset() is not None

    def test_a_payload_is_handed_over_whatever_it_holds(
        self, inbox: ports.SettlementInbox, send: Send
    ) -> None:
        # Validation is the taker's job: the inbox hands over any JSON as it was sent.
        payloads: list[object] = [[1, 2], "a settlement", None, {}, {"winners": "u-1"}]
        for payload in payloads:
            send("s-1", json.dumps(payload))

        assert [item.payload for item in inbox.unprocessed(limit=10)] == payloads

    def test_a_payloads_numbers_are_exact_and_a_repeated_key_keeps_its_last_value(
        self, inbox: ports.SettlementInbox, send: Send
    ) -> None:
        send(
            "s-1",
            '{"a": 1500, "b": 1500.0, "c": 1.5e3, "d": 0.1, "e": 12345678901234567890123,'
            ' "f": 1, "f": 2}',
        )

        [item] = inbox.unprocessed(limit=10)

        assert item.payload == {
            "a": 1500,
            "b": Decimal(1500),
            "c": Decimal(1500),
            "d": Decimal("0.1"),  # never the float 0.1
            "e": 12345678901234567890123,
            "f": 2,
        }
        assert isinstance(item.payload, dict)
        assert not any(isinstance(v, float) for v in item.payload.values())

    def test_a_payload_too_deep_to_read_comes_back_unreadable_for_rejection(
        self, inbox: ports.SettlementInbox, send: Send
    ) -> None:
        # JSON a sender may write (jsonb holds it) but Python cannot parse must
        # not fail every tick: it is handed over as Unreadable, to be rejected.
        depth = 5000
        row = send("s-1", "[" * depth + "]" * depth)
        after = send("s-2", json.dumps(SETTLEMENT))

        items = inbox.unprocessed(limit=10)

        assert _ids(items) == [row, after]
        assert isinstance(items[0].payload, validation.Unreadable)
        assert items[1].payload == SETTLEMENT
