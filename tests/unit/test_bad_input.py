"""The bad-input table (docs/bad-input.md), for the core and the library API.

Every door takes the same rules from :mod:`payout_core.validation`: the same
settlement text is refused, naming the same problem, by ``parse_settlement``,
by the inbox (its row rejected with the reason, the rows behind it taken), and
by ``schedule_payout_for_settlement``, and nothing is written. The tables here
are the ones the command-line tests (tests/integration/test_bad_input_cli.py)
send through the installed command and PostgreSQL.

A refusal by the store is never the caller's invalid input (StoreRefused, exit
1), and only the caller's refusals exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest
import typer

from payout_adapters import postgres
from payout_adapters.memory import (
    InMemoryAccountDirectory,
    InMemoryInbox,
    InMemoryStore,
    SimulatedGateway,
)
from payout_adapters.memory.inbox import InboxStatus
from payout_cli import conventions
from payout_cli import settings as settings_
from payout_core import errors, idempotency, models, ports, validation
from payout_core.services import control, intake, reversals, scheduling, transfer_actions
from tests.kit import builders as b
from tests.kit.times import MARGIN, T0

GOOD: dict[str, Any] = {
    "settlement_id": "stl-bad",
    "contest_id": "contest-bad",
    "currency": "usd",
    "winners": [{"user_id": "u-1", "amount_cents": 1500}],
}


def with_(**fields: object) -> str:
    """The good settlement's JSON with ``fields`` replaced."""
    return json.dumps({**GOOD, **fields})


def with_winners(*winners: object) -> str:
    return with_(winners=list(winners))


def with_amount(literal: str) -> str:
    """The good settlement with its amount written as ``literal``, as a sender
    in another language might (JSON text, not a Python value)."""
    return with_winners({"user_id": "u-1", "amount_cents": 0}).replace(
        '"amount_cents": 0', f'"amount_cents": {literal}'
    )


# -- the table -----------------------------------------------------------------------------------

#: (case, settlement JSON text, the problem's field, what its message says).
#: Each is refused by every door; see docs/bad-input.md.
REFUSED: list[tuple[str, str, str, str]] = [
    ("not an object", "[]", "settlement", "must be a JSON object"),
    ("a JSON string", '"stl-1"', "settlement", "must be a JSON object"),
    ("missing fields", "{}", "settlement_id", "is required"),
    (
        "missing winners",
        json.dumps({k: GOOD[k] for k in GOOD if k != "winners"}),
        "winners",
        "is required",
    ),
    ("missing amount", with_winners({"user_id": "u-1"}), "winners[0].amount_cents", "is required"),
    ("missing user", with_winners({"amount_cents": 1}), "winners[0].user_id", "is required"),
    ("unknown field", with_(paid=True), "paid", "is not a known field"),
    (
        "unknown winner field",
        with_winners({"user_id": "u-1", "amount_cents": 1, "bonus": 2}),
        "winners[0].bonus",
        "is not a known field",
    ),
    ("id of the wrong type", with_(settlement_id=7), "settlement_id", "must be a string, got int"),
    ("null id", with_(contest_id=None), "contest_id", "must be a string, got JSON null"),
    ("winners not a list", with_(winners="u-1"), "winners", "must be a list, got str"),
    ("winner not an object", with_winners(1500), "winners[0]", "must be an object, got int"),
    ("empty winners", with_(winners=[]), "winners", "must not be empty"),
    (
        "duplicate winners",
        with_winners({"user_id": "u-1", "amount_cents": 1}, {"user_id": "u-1", "amount_cents": 2}),
        "winners[1].user_id",
        "duplicate user 'u-1' (also winners[0])",
    ),
    (
        "string amount",
        with_amount('"1500"'),
        "winners[0].amount_cents",
        "integer number of minor units, got str '1500'",
    ),
    (
        "boolean amount",
        with_amount("true"),
        "winners[0].amount_cents",
        "integer number of minor units, got bool",
    ),
    (
        "null amount",
        with_amount("null"),
        "winners[0].amount_cents",
        "integer number of minor units, got JSON null",
    ),
    (
        "fractional amount",
        with_amount("1500.5"),
        "winners[0].amount_cents",
        "integer number of minor units, got float 1500.5",
    ),
    (
        "fraction in an exponent",
        with_amount("1e-2"),
        "winners[0].amount_cents",
        "integer number of minor units, got float 0.01",
    ),
    (
        "negative amount",
        with_amount("-1"),
        "winners[0].amount_cents",
        "must be greater than 0, got -1",
    ),
    ("zero amount", with_amount("0"), "winners[0].amount_cents", "must be greater than 0, got 0"),
    ("negative zero", with_amount("-0.0"), "winners[0].amount_cents", "must be greater than 0"),
    (
        "past Stripe's maximum",
        with_amount("100000000"),
        "winners[0].amount_cents",
        "at most 99999999 minor units (Stripe's most per transfer), got 100000000",
    ),
    (
        "past 64 bits",
        with_amount("18446744073709551616"),
        "winners[0].amount_cents",
        "at most 99999999",
    ),
    (
        "past Python's 4300 digits",
        with_amount("9" * 5000),
        "winners[0].amount_cents",
        "at most 99999999",
    ),
    ("a huge exponent", with_amount("1e400"), "winners[0].amount_cents", "got 1.000E+400"),
    ("unknown currency", with_(currency="xyz"), "currency", "must be an ISO 4217 code"),
    ("upper-case currency", with_(currency="USD"), "currency", "(did you mean 'usd'?)"),
    ("a metal, no money", with_(currency="xau"), "currency", "must be an ISO 4217 code"),
    ("currency of the wrong type", with_(currency=840), "currency", "got 840"),
    ("empty id", with_(settlement_id=""), "settlement_id", "must not be empty"),
    ("blank id", with_(contest_id="   "), "contest_id", "must not be empty"),
    (
        "padded id",
        with_winners({"user_id": " u-1", "amount_cents": 1}),
        "winners[0].user_id",
        "must not start or end with white space",
    ),
    (
        "id of 201 characters",
        with_(settlement_id="s" * 201),
        "settlement_id",
        "at most 200 characters, got 201",
    ),
    (
        "id of 100,000 characters",
        with_winners({"user_id": "u" * 100_000, "amount_cents": 1}),
        "winners[0].user_id",
        "at most 200 characters, got 100000",
    ),
    (
        "NUL byte in an id",
        with_(settlement_id="stl\x00bad"),
        "settlement_id",
        "must not contain control characters",
    ),
    (
        "line break in an id",
        with_winners({"user_id": "u\n1", "amount_cents": 1}),
        "winners[0].user_id",
        "must not contain control characters",
    ),
    (
        "terminal escape in an id",
        with_(contest_id="c\x1b[2J"),
        "contest_id",
        "must not contain control characters",
    ),
]

#: Refused before they are a settlement: what the command line says "is not
#: valid JSON" about, and jsonb refuses at the sender's INSERT.
NOT_JSON: list[tuple[str, str, str]] = [
    ("malformed JSON", '{"settlement_id": "stl-1",', "at line 1"),
    ("NaN amount", with_amount("NaN"), "NaN is not a JSON number"),
    ("Infinity amount", with_amount("Infinity"), "Infinity is not a JSON number"),
    ("empty text", "", "Expecting value"),
]

#: Deeper than Python reads JSON: refused by the command line, held by jsonb,
#: rejected when the inbox row is taken.
TOO_DEEP = "[" * 5000 + "]" * 5000

#: JSON spellings of the amount 100: JSON has one kind of number and jsonb keeps
#: its value, not its spelling (it stores 1e2 as 100), so every door takes each
#: of them as 100 (validation's module docstring says why).
AMOUNT_100_FORMS = ["100", "1e2", "1E2", "1E+2", "100.0", "1.00e2", "100.000", "10000e-2"]

#: Ids that look like something else and are ids all the same: parameterised
#: statements store them as they are, and messages show them as text.
ACCEPTED_IDS = [
    "'; DROP TABLE payout_jobs; --",
    "robert'); DELETE FROM payout_ledger;--",
    "[/red] [bold]not markup[/bold]",
    "üser-ß-名前-🏆",
    "x" * 200,
]

#: (user id, account id, what the refusal says, or None when connected). The
#: one account-id rule: acct_ and up to 250 printable characters, no spaces.
ACCOUNTS: list[tuple[str, str, str | None]] = [
    ("u-1", "acct_1Nv0FGQ9RKHgCVdK", None),
    ("u-1", "acct_never_added", None),
    ("u-1", "acct_" + "a" * 250, None),
    ("u-1", "acct_ü", None),
    ("u-1", "acct_';DROP--", None),
    ("u-1", "nope", "is not a Stripe connected account id"),
    ("u-1", "tr_123", "is not a Stripe connected account id"),
    ("u-1", "acct_", "is not a Stripe connected account id"),
    ("u-1", "ACCT_1", "is not a Stripe connected account id"),
    ("u-1", "acct_a b", "is not a Stripe connected account id"),
    ("u-1", "acct_a\tb", "is not a Stripe connected account id"),
    ("u-1", "acct_a\x1bb", "is not a Stripe connected account id"),
    ("u-1", "acct_a\u00a0b", "is not a Stripe connected account id"),
    ("u-1", "acct_" + "a" * 251, "at most 255 characters (Stripe's longest id), got 256"),
    ("u-1", "", "is not a Stripe connected account id"),
    ("", "acct_1", "must not be empty"),
    ("u" * 201, "acct_1", "at most 200 characters"),
    (" u-1", "acct_1", "must not start or end with white space"),
    ("u\x1b1", "acct_1", "must not contain control characters"),
]

#: (actor, reason, the problem's field, what it says) for every operator command.
OPERATOR_ARGUMENTS: list[tuple[str, str, str, str]] = [
    ("", "why", "actor", "must not be empty"),
    ("   ", "why", "actor", "must not be empty"),
    ("ops", "", "reason", "must not be empty"),
    ("o" * 201, "why", "actor", "at most 200 characters, got 201"),
    ("ops", "r" * 2001, "reason", "at most 2000 characters, got 2001"),
    ("ops\x00", "why", "actor", "must not contain a NUL byte"),
    ("ops", "line one\nline two", "reason", "must not contain control characters"),
    ("ops\x1b[2J", "why", "actor", "must not contain control characters"),
]

#: Transfer ids of the transfers commands: a payout transfer's id is a UUID.
BAD_TRANSFER_IDS = ["not-a-uuid", "", "x" * 10_000, "'; DROP TABLE payout_transfers; --"]

#: ``transfers reverse --amount``: the same amount rule, from text.
REVERSE_AMOUNTS: list[tuple[str, str]] = [
    ("0", "must be greater than 0"),
    ("-5", "must be greater than 0"),
    ("1.5", "integer number of minor units, got float 1.5"),
    ("abc", "integer number of minor units, got str 'abc'"),
    ("100000000", "at most 99999999"),
    ("18446744073709551616", "at most 99999999"),
    ("NaN", "integer number of minor units, got str 'NaN'"),
]


# -- settlements, by every door ------------------------------------------------------------------


def the_problem(problems: tuple[errors.Problem, ...] | list[errors.Problem], field: str) -> str:
    messages = [p.message for p in problems if p.field == field]
    assert messages, f"no problem named {field!r} in {problems}"
    return messages[0]


def said_in(message: str, field: str, says: str) -> bool:
    """Whether ``message`` (an error's text) names ``field`` with what ``says``."""
    return any(
        line.strip().removeprefix("- ").startswith(f"{field}: ") and says in line
        for line in message.splitlines()
    )


@pytest.mark.parametrize(
    ("text", "field", "says"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_parse_settlement_refuses_each_bad_settlement_naming_the_problem(
    text: str, field: str, says: str
) -> None:
    with pytest.raises(errors.InvalidSettlement) as refused:
        validation.parse_settlement(validation.loads(text))

    assert says in the_problem(refused.value.problems, field)
    message = str(refused.value)
    # What a terminal, a log line and the inbox's rejected_reason can show as it is.
    assert all(c.isprintable() or c == "\n" for c in message)
    assert len(message) < 2_000


@pytest.mark.parametrize(
    ("text", "field", "says"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_the_inbox_rejects_each_bad_row_with_its_reason_and_takes_the_rows_behind_it(
    text: str, field: str, says: str
) -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    if "\\u0000" in text:  # jsonb cannot hold it: the sender's INSERT fails, as here
        with pytest.raises(ValueError, match="u0000"):
            inbox.put_json("stl-bad", text, received_at=T0)
        return
    bad = inbox.put_json("stl-bad", text, received_at=T0)
    behind = inbox.put("stl-good", {**GOOD, "settlement_id": "stl-good"}, received_at=T0)

    taken = intake.take_settlements(inbox=inbox, store=store, now=T0)

    assert (taken.accepted, taken.rejected) == (1, 1)
    rows = {r.id: r for r in inbox.rows()}
    assert rows[bad].status is InboxStatus.REJECTED
    assert said_in(rows[bad].rejected_reason or "", field, says)
    assert rows[behind].status is InboxStatus.ACCEPTED
    assert [j.settlement_id for j in store.jobs()] == ["stl-good"]


@pytest.mark.parametrize(("text", "says"), [c[1:] for c in NOT_JSON], ids=[c[0] for c in NOT_JSON])
def test_text_that_is_no_json_is_refused_by_the_reader_and_by_the_inbox(
    text: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        validation.loads(text)
    with pytest.raises(ValueError, match=says):
        InMemoryInbox().put_json("stl-bad", text, received_at=T0)


def test_json_nested_deeper_than_python_reads_is_refused_without_a_crash() -> None:
    with pytest.raises(ValueError, match="nests arrays or objects too deeply"):
        validation.loads(TOO_DEEP)
    # What PostgresInbox hands on for such a jsonb row: a settlement problem.
    read = validation.payload_from_json(TOO_DEEP)
    assert isinstance(read, validation.Unreadable)
    (problem,) = validation.problems_in(read)
    assert problem == errors.Problem(
        "settlement", "is not JSON payout-core can read: nests arrays or objects too deeply"
    )


@pytest.mark.parametrize("literal", AMOUNT_100_FORMS)
def test_every_json_spelling_of_an_integral_amount_is_that_amount(literal: str) -> None:
    settlement = validation.parse_settlement(validation.loads(with_amount(literal)))

    assert settlement.winners[0].amount_cents == 100
    assert type(settlement.winners[0].amount_cents) is int
    plain = validation.parse_settlement(validation.loads(with_amount("100")))
    assert idempotency.settlement_fingerprint(settlement) == idempotency.settlement_fingerprint(
        plain
    )


@pytest.mark.parametrize("literal", AMOUNT_100_FORMS)
def test_the_inbox_takes_any_spelling_of_an_amount_as_the_job_the_command_line_made(
    literal: str,
) -> None:
    inbox, store = InMemoryInbox(), InMemoryStore()
    # The command line's door: its reader, then the service.
    from_the_command_line = scheduling.schedule_payout_for_settlement(
        store=store,
        settlement=validation.parse_settlement(validation.loads(with_amount(literal))),
        now=T0,
    )
    row = inbox.put_json("stl-bad", with_amount(literal), received_at=T0)

    assert intake.take_settlements(inbox=inbox, store=store, now=T0).accepted == 1
    (taken,) = inbox.rows()
    assert (taken.id, taken.job_id) == (row, from_the_command_line.job.id)
    assert [t.amount_cents for t in store.transfers()] == [100]


@pytest.mark.parametrize("identifier", ACCEPTED_IDS)
def test_ids_that_look_like_sql_or_markup_are_ids_like_any_other(identifier: str) -> None:
    text = with_(settlement_id=identifier, contest_id=identifier)
    settlement = validation.parse_settlement(validation.loads(text))

    store = InMemoryStore()
    scheduling.schedule_payout_for_settlement(store=store, settlement=settlement, now=T0)
    (job,) = store.jobs()
    assert (job.settlement_id, job.contest_id) == (identifier, identifier)


# -- the library API: Python values ------------------------------------------------------------


def settlement_paying(amount: Any, user_id: str = "u-1") -> models.Settlement:
    return models.Settlement(
        settlement_id="stl-lib",
        contest_id="contest-lib",
        currency="usd",
        winners=(models.Winner(user_id=user_id, amount_cents=amount),),
    )


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        (15.0, "got float 15.0 (a float is inexact: give an int)"),
        (True, "got bool True"),
        (Decimal("15.5"), "got float 15.5"),
        (Decimal("NaN"), "got NaN"),
        (2**70_000, "got an integer of 70001 bits"),
        (-(2**64), "must be greater than 0"),
        ("15", "got str '15'"),
    ],
    ids=["float", "bool", "fraction", "NaN", "70,000 bits", "-2**64", "str"],
)
def test_schedule_payout_refuses_a_bad_amount_and_writes_nothing(amount: Any, says: str) -> None:
    store = InMemoryStore()

    with pytest.raises(errors.InvalidSettlement) as refused:
        scheduling.schedule_payout_for_settlement(
            store=store, settlement=settlement_paying(amount), now=T0
        )

    assert says in the_problem(refused.value.problems, "winners[0].amount_cents")
    assert (store.jobs(), store.transfers()) == ([], [])


def test_an_exact_decimal_amount_is_the_integer_it_is() -> None:
    store = InMemoryStore()
    scheduling.schedule_payout_for_settlement(
        store=store, settlement=settlement_paying(Decimal("1.5e3")), now=T0
    )
    assert [t.amount_cents for t in store.transfers()] == [1500]


def test_schedule_payout_refuses_a_bad_id_in_a_model_and_writes_nothing() -> None:
    store = InMemoryStore()

    with pytest.raises(errors.InvalidSettlement) as refused:
        scheduling.schedule_payout_for_settlement(
            store=store, settlement=settlement_paying(100, user_id="u\x00-1"), now=T0
        )

    assert "control characters" in the_problem(refused.value.problems, "winners[0].user_id")
    assert (store.jobs(), store.transfers()) == ([], [])


def test_a_settlement_of_100000_winners_is_scheduled() -> None:
    """No limit of ours below the store's: DESIGN 3 expects 200,000-winner
    contests (the command line and the inbox are tested with 100,000 too)."""
    winners = [{"user_id": f"u-{n}", "amount_cents": 100} for n in range(100_000)]
    store = InMemoryStore()

    result = scheduling.schedule_payout_for_settlement(
        store=store, settlement=validation.parse_settlement({**GOOD, "winners": winners}), now=T0
    )

    assert (result.job.total_transfers, result.job.total_amount_cents) == (100_000, 10_000_000)


def test_100000_bad_winners_are_all_reported_in_a_message_of_bounded_size() -> None:
    winners = [{"user_id": f"u-{n}", "amount_cents": 0} for n in range(100_000)]

    with pytest.raises(errors.InvalidSettlement) as refused:
        validation.parse_settlement({**GOOD, "winners": winners})

    assert len(refused.value.problems) == 100_000
    message = str(refused.value)
    assert "invalid settlement (100000 problem(s))" in message
    assert f"... and {100_000 - errors.PROBLEMS_SHOWN} more problem(s)" in message
    assert len(message) < 20_000


def test_an_unknown_field_named_with_control_characters_is_shown_escaped() -> None:
    (problem,) = validation.problems_in({**GOOD, "\x1b[2Jx": 1})
    assert problem.field == repr("\x1b[2Jx")
    assert problem.field.isprintable()


# -- accounts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("user_id", "account_id", "says"), ACCOUNTS)
def test_the_directory_keeps_the_one_account_id_rule(
    user_id: str, account_id: str, says: str | None
) -> None:
    directory = InMemoryAccountDirectory({"u-0": "acct_0"})

    if says is None:
        directory.set_account(user_id, account_id)
        assert directory.account_for(user_id) == account_id
        assert validation.is_account_id(account_id)
        return
    with pytest.raises(errors.InvalidAccount) as refused:
        directory.set_account(user_id, account_id)
    assert isinstance(refused.value, ValueError)  # as before there was a type for it
    assert says in str(refused.value)
    assert directory.accounts_for([user_id, "u-0"]) == {"u-0": "acct_0"}


# -- operator commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "reason", "field", "says"), OPERATOR_ARGUMENTS)
def test_pause_refuses_who_and_why_it_cannot_record_and_writes_nothing(
    actor: str, reason: str, field: str, says: str
) -> None:
    store = InMemoryStore()

    with pytest.raises(errors.InvalidOperatorAction) as refused:
        control.pause(store, actor=actor, reason=reason, now=T0)

    assert says in the_problem(refused.value.problems, field)
    assert not store.pause_state().paused
    assert store.operator_actions() == []


@pytest.mark.parametrize("transfer_id", BAD_TRANSFER_IDS)
def test_the_transfer_actions_refuse_what_is_no_transfer_id_before_any_look_up(
    transfer_id: str,
) -> None:
    store, stripe = InMemoryStore(), SimulatedGateway()
    acts: list[Callable[[], object]] = [
        lambda: transfer_actions.resolve_found(
            store, stripe, transfer_id, "tr_1", actor="ops", reason="r", now=T0
        ),
        lambda: transfer_actions.resolve_absent(
            store, stripe, transfer_id, actor="ops", reason="r", now=T0, margin=MARGIN
        ),
        lambda: transfer_actions.reissue(
            store, stripe, transfer_id, actor="ops", reason="r", now=T0, new_id=b.new_id
        ),
    ]
    for act in acts:
        with pytest.raises(errors.InvalidOperatorAction, match="a payout transfer id is a UUID"):
            act()
    assert store.operator_actions() == []


@pytest.mark.parametrize(("text", "says"), REVERSE_AMOUNTS)
def test_a_reversal_amount_keeps_the_one_amount_rule(text: str, says: str) -> None:
    with pytest.raises(errors.InvalidOperatorAction) as refused:
        validation.parse_amount(text, "--amount")
    assert says in the_problem(refused.value.problems, "--amount")


@pytest.mark.parametrize("text", ["100", "1e2", "100.0"])
def test_a_reversal_amount_is_read_as_a_settlement_amount_is(text: str) -> None:
    assert validation.parse_amount(text, "--amount") == 100
    assert validation.MAX_AMOUNT_CENTS == reversals.MAX_AMOUNT_CENTS  # one maximum


# -- the store's refusals are not the caller's ---------------------------------------------------


def test_a_job_the_store_refuses_is_a_store_refusal_naming_the_constraint() -> None:
    store = InMemoryStore()
    stl = b.settlement("u-1")
    job = b.make_job(stl, now=T0)
    (transfer,) = b.make_transfers(job, stl, now=T0)
    too_much = validation.MAX_AMOUNT_CENTS + 1

    with pytest.raises(errors.StoreRefused) as refused:
        store.schedule(
            attrs.evolve(job, total_amount_cents=too_much),
            [attrs.evolve(transfer, amount_cents=too_much)],
        )

    assert refused.value.constraint == "payout_transfers_amount_cents_check"
    assert not isinstance(refused.value, errors.InvalidInput)
    assert (store.jobs(), store.transfers()) == ([], [])


class RefusingStore(InMemoryStore):
    """A store with a rule the core does not know: no settlement ``stl-refused``."""

    def schedule(
        self, job: models.PayoutJob, transfers: Sequence[models.PayoutTransfer]
    ) -> ports.ScheduleResult:
        if job.settlement_id == "stl-refused":
            raise errors.StoreRefused("test_no_refused_check", "new row violates it")
        return super().schedule(job, transfers)


def test_a_row_the_store_refuses_is_rejected_saying_it_is_not_the_senders_fault() -> None:
    inbox, store = InMemoryInbox(), RefusingStore()
    refused = inbox.put("stl-refused", {**GOOD, "settlement_id": "stl-refused"}, received_at=T0)
    behind = inbox.put("stl-good", {**GOOD, "settlement_id": "stl-good"}, received_at=T0)

    taken = intake.take_settlements(inbox=inbox, store=store, now=T0)

    assert (taken.accepted, taken.rejected) == (1, 1)
    rows = {r.id: r for r in inbox.rows()}
    reason = rows[refused].rejected_reason or ""
    assert "not the settlement's fault" in reason
    assert "test_no_refused_check" in reason
    assert "invalid" not in reason
    assert rows[behind].status is InboxStatus.ACCEPTED


# -- exit codes ----------------------------------------------------------------------------------

PROBLEM = [errors.Problem("field", "what")]
EXIT_CODES: list[tuple[Exception, int]] = [
    (conventions.BadInput("bad"), 2),
    (settings_.ConfigError("PAYOUT_BATCH_SIZE"), 2),
    (errors.InvalidSettlement(PROBLEM), 2),
    (errors.InvalidOperatorAction(PROBLEM), 2),
    (errors.InvalidAccount(PROBLEM), 2),
    (errors.SettlementConflict("stl-1", "job-1"), 2),
    (errors.DuplicatePayout("c-1", ["u-1"]), 2),
    (errors.ActionRefused("t-1", "Stripe disagrees"), 2),
    (errors.StoreRefused("payout_x_check", "new row violates it"), 1),
    (errors.IllegalTransition("t-1", "completed", "claim"), 1),
    (errors.StoreUnavailable("the database failed"), 1),
    (errors.GatewayUnavailable("api_connection_error", "down"), 1),
    (postgres.MigrationError("0001.sql", "failed"), 1),
]


@pytest.mark.parametrize(
    ("raised", "code"), EXIT_CODES, ids=[type(e).__name__ for e, _ in EXIT_CODES]
)
def test_only_the_callers_refusals_exit_2(
    raised: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        with conventions.exit_codes():
            raise raised

    with pytest.raises(typer.Exit) as exited:
        fail()

    assert exited.value.exit_code == code
    said = capsys.readouterr().err
    assert str(raised).splitlines()[0] in said
    if isinstance(raised, errors.StoreRefused):
        assert "payout_x_check" in said
        assert "Not a problem with your input" in said


def test_a_message_quoting_markup_is_printed_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fail() -> None:
        with conventions.exit_codes():
            raise errors.InvalidSettlement([errors.Problem("contest_id", "'[/x] [u-1]' is odd")])

    with pytest.raises(typer.Exit):
        fail()

    assert "'[/x] [u-1]' is odd" in capsys.readouterr().err


# -- the library's loose ends --------------------------------------------------------------------


def test_json_bytes_are_read_as_utf8_as_the_database_hands_them() -> None:
    assert validation.loads(b'{"amount_cents": 1e2}') == {"amount_cents": 100}
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        validation.loads(b'{"user_id": "\xe9"}')


def test_library_callers_handing_other_types_are_told_which() -> None:
    assert validation.account_problems(7, None) == [
        errors.Problem("user_id", "must be a string, got int"),
        errors.Problem("account_id", "must be a string, got JSON null"),
    ]
    with pytest.raises(errors.InvalidOperatorAction, match="actor: must be a string, got int"):
        control.validate_actor_and_reason(7, "why")
