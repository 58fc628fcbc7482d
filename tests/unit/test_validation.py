"""Settlement validation: valid settlements pass, every corruption is named."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_core import errors, validation

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
    assert settlement.to_payload() == data
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
