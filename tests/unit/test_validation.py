"""Settlement validation: valid settlements pass, every corruption is named."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_core import errors, idempotency, models, validation
from payout_core.services import scheduling

T0 = datetime(2026, 1, 1, tzinfo=UTC)

ids = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S")),
    min_size=1,
    max_size=40,
)
amounts = st.integers(min_value=1, max_value=validation.MAX_AMOUNT_CENTS)
currencies = st.sampled_from(sorted(validation.CURRENCIES))


@st.composite
def settlements(draw: st.DrawFn) -> dict[str, Any]:
    users = draw(st.lists(ids, min_size=1, max_size=20, unique=True))
    return {
        "settlement_id": draw(ids),
        "contest_id": draw(ids),
        "currency": draw(currencies),
        "winners": [{"user_id": u, "amount_cents": draw(amounts)} for u in users],
    }


def fields_named(data: object) -> list[str]:
    with pytest.raises(errors.InvalidSettlement) as caught:
        validation.parse_settlement(data)
    return [p.field for p in caught.value.problems]


@given(settlements())
def test_valid_settlements_are_accepted_as_given(data: dict[str, Any]) -> None:
    settlement = validation.parse_settlement(data)
    assert (settlement.settlement_id, settlement.contest_id, settlement.currency) == (
        data["settlement_id"],
        data["contest_id"],
        data["currency"],
    )
    assert [(w.user_id, w.amount_cents) for w in settlement.winners] == [
        (w["user_id"], w["amount_cents"]) for w in data["winners"]
    ]
    assert settlement.total_amount_cents == sum(w["amount_cents"] for w in data["winners"])


BAD_AMOUNTS = [
    (0, "greater than 0"),
    (-1, "greater than 0"),
    (15.0, "integer number of minor units"),
    ("1500", "integer number of minor units"),
    (True, "integer number of minor units"),
    (None, "integer number of minor units"),
    (validation.MAX_AMOUNT_CENTS + 1, "at most"),
]


@pytest.mark.parametrize(("amount", "said"), BAD_AMOUNTS)
@given(data=settlements(), index=st.integers(min_value=0))
def test_each_bad_amount_is_refused_naming_the_winner(
    amount: object, said: str, data: dict[str, Any], index: int
) -> None:
    index %= len(data["winners"])
    data["winners"][index]["amount_cents"] = amount
    with pytest.raises(errors.InvalidSettlement) as caught:
        validation.parse_settlement(data)
    (problem,) = caught.value.problems
    assert problem.field == f"winners[{index}].amount_cents"
    assert said in problem.message


@given(settlements())
def test_a_duplicate_user_is_refused_naming_both_places(data: dict[str, Any]) -> None:
    data["winners"].append(copy.deepcopy(data["winners"][0]))
    with pytest.raises(errors.InvalidSettlement) as caught:
        validation.parse_settlement(data)
    (problem,) = caught.value.problems
    last = len(data["winners"]) - 1
    assert problem.field == f"winners[{last}].user_id"
    assert "winners[0]" in problem.message


@pytest.mark.parametrize("currency", ["USD", "us", "usdd", "", 840, None, "u$d", "xyz", "xau"])
@given(data=settlements())
def test_a_bad_currency_is_refused(currency: object, data: dict[str, Any]) -> None:
    data["currency"] = currency
    assert fields_named(data) == ["currency"]


@pytest.mark.parametrize("field", ["settlement_id", "contest_id"])
@pytest.mark.parametrize("value", ["", "   ", None, 7, " padded", "x" * 201, "a\x00b", "\x85"])
@given(data=settlements())
def test_an_empty_or_malformed_id_is_refused(
    field: str, value: object, data: dict[str, Any]
) -> None:
    data[field] = value
    assert fields_named(data) == [field]


@given(settlements())
def test_an_empty_user_id_is_refused(data: dict[str, Any]) -> None:
    data["winners"][0]["user_id"] = ""
    assert fields_named(data) == ["winners[0].user_id"]


def test_empty_winners_are_refused() -> None:
    data = {"settlement_id": "s", "contest_id": "c", "currency": "usd", "winners": []}
    assert fields_named(data) == ["winners"]


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "settlement_id": "",
        "currency": "USD",
        "winners": [
            {"user_id": "u1", "amount_cents": 1.5},
            {"user_id": "u1", "amount_cents": 0},
            {"amount_cents": 10, "bonus": 1},
            "not a winner",
        ],
        "extra": True,
    }
    assert sorted(fields_named(data)) == sorted(
        [
            "extra",
            "contest_id",
            "settlement_id",
            "currency",
            "winners[0].amount_cents",
            "winners[1].user_id",
            "winners[1].amount_cents",
            "winners[2].bonus",
            "winners[2].user_id",
            "winners[3]",
        ]
    )


@pytest.mark.parametrize("data", [None, [], "settlement", 42])
def test_a_settlement_that_is_not_an_object_is_refused(data: object) -> None:
    assert fields_named(data) == ["settlement"]


def test_winners_that_are_not_a_list_are_refused() -> None:
    data = {"settlement_id": "s", "contest_id": "c", "currency": "usd", "winners": {"u": 1}}
    assert fields_named(data) == ["winners"]


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(errors.InvalidSettlement) as caught:
        validation.parse_settlement({"settlement_id": "s", "contest_id": "c", "currency": "usd"})
    assert "winners: is required" in str(caught.value)
    assert "1 problem" in str(caught.value)


# -- the model's door, and the plan ------------------------------------------------------------


def as_model(data: dict[str, Any]) -> models.Settlement:
    """The settlement a library caller would build of ``data``, unchecked."""
    return models.Settlement(
        settlement_id=data["settlement_id"],
        contest_id=data["contest_id"],
        currency=data["currency"],
        winners=tuple(
            models.Winner(user_id=w["user_id"], amount_cents=w["amount_cents"])
            for w in data["winners"]
        ),
    )


@pytest.mark.parametrize(("amount", "said"), BAD_AMOUNTS)
@given(data=settlements(), index=st.integers(min_value=0))
def test_a_model_is_refused_with_the_problems_its_json_has(
    amount: object, said: str, data: dict[str, Any], index: int
) -> None:
    data["winners"][index % len(data["winners"])]["amount_cents"] = amount
    data["winners"].append(copy.deepcopy(data["winners"][0]))
    data["settlement_id"] = " padded"

    with pytest.raises(errors.InvalidSettlement) as from_json:
        validation.parse_settlement(data)
    with pytest.raises(errors.InvalidSettlement) as from_the_model:
        validation.check_settlement(as_model(data))

    assert from_the_model.value.problems == from_json.value.problems
    assert any(said in p.message for p in from_the_model.value.problems)


@given(settlements())
def test_a_checked_model_is_the_settlement_its_json_parses_to(data: dict[str, Any]) -> None:
    model = as_model(data)

    checked = validation.check_settlement(model)

    assert checked is model  # nothing to make exact: the same object, not a copy
    assert checked == validation.parse_settlement(data)


def test_a_checked_model_holds_its_amounts_as_ints() -> None:
    model = models.Settlement(
        settlement_id="s",
        contest_id="c",
        currency="usd",
        winners=[models.Winner(user_id="u", amount_cents=Decimal("1.5e3"))],  # type: ignore[arg-type]  # a caller's list, and a Decimal
    )

    checked = validation.check_settlement(model)

    assert isinstance(checked.winners, tuple)
    assert [type(w.amount_cents) for w in checked.winners] == [int]
    assert checked.total_amount_cents == 1500


@given(settlements())
def test_the_plan_has_one_transfer_per_winner_and_the_totals_of_its_transfers(
    data: dict[str, Any],
) -> None:
    settlement = validation.parse_settlement(data)

    job, transfers = scheduling.plan_payout(settlement, now=T0, max_attempts=3)

    assert [(t.user_id, t.amount_cents) for t in transfers] == [
        (w.user_id, w.amount_cents) for w in settlement.winners
    ]
    assert (job.total_transfers, job.total_amount_cents) == (
        len(transfers),
        sum(t.amount_cents for t in transfers),
    )
    assert {(t.job_id, t.max_attempts, t.status) for t in transfers} == {
        (job.id, 3, models.TransferStatus.PENDING)
    }
    assert job.settlement_fingerprint == idempotency.settlement_fingerprint(settlement)
    assert len({job.id, *(t.id for t in transfers)}) == len(transfers) + 1


def test_a_plan_needs_at_least_one_attempt() -> None:
    settlement = validation.parse_settlement(
        {
            "settlement_id": "s",
            "contest_id": "c",
            "currency": "usd",
            "winners": [{"user_id": "u", "amount_cents": 1}],
        }
    )
    with pytest.raises(ValueError, match="max_attempts"):
        scheduling.plan_payout(settlement, now=T0, max_attempts=0)
