"""Settlement validation: every problem at once, before anything is written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from payout_core import errors, models

__all__ = ["ACCOUNT_ID", "MAX_AMOUNT_CENTS", "MAX_ID_LENGTH", "parse_settlement", "problems_in"]

# Stripe refuses amounts of more than eight digits in minor units.
MAX_AMOUNT_CENTS = 99_999_999
# Ids end up in idempotency keys (255 characters at most at Stripe) and metadata values (500).
MAX_ID_LENGTH = 200
# A Stripe connected account id, as user_stripe_accounts and payout_transfers
# check it in PostgreSQL: acct_ and no white space (match with fullmatch).
ACCOUNT_ID = re.compile(r"acct_\S+")
_CURRENCY = re.compile(r"[a-z]{3}")
_FIELDS = ("settlement_id", "contest_id", "currency", "winners")
_WINNER_FIELDS = ("user_id", "amount_cents")


def _check_id(value: object, field: str, problems: list[errors.Problem]) -> None:
    if not isinstance(value, str):
        problems.append(errors.Problem(field, f"must be a string, got {type(value).__name__}"))
    elif not value.strip():
        problems.append(errors.Problem(field, "must not be empty"))
    elif len(value) > MAX_ID_LENGTH:
        problems.append(errors.Problem(field, f"must be at most {MAX_ID_LENGTH} characters"))
    elif value != value.strip():
        problems.append(errors.Problem(field, "must not start or end with white space"))
    elif not value.isprintable():
        problems.append(errors.Problem(field, "must not contain control characters"))


def _check_amount(value: object, field: str, problems: list[errors.Problem]) -> None:
    # bool is an int subclass: True must not pay one cent.
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        problems.append(
            errors.Problem(field, f"must be an integer number of minor units, got {kind} {value!r}")
        )
    elif value <= 0:
        problems.append(errors.Problem(field, f"must be greater than 0, got {value}"))
    elif value > MAX_AMOUNT_CENTS:
        problems.append(
            errors.Problem(field, f"must be at most {MAX_AMOUNT_CENTS} minor units, got {value}")
        )


def _check_winners(value: object, problems: list[errors.Problem]) -> None:
    if not isinstance(value, list | tuple):
        problems.append(errors.Problem("winners", "must be a list"))
        return
    if not value:
        problems.append(errors.Problem("winners", "must not be empty"))
        return
    seen: dict[str, int] = {}
    for index, winner in enumerate(value):
        _check_winner(index, winner, seen, problems)


def _check_winner(
    index: int, winner: object, seen: dict[str, int], problems: list[errors.Problem]
) -> None:
    where = f"winners[{index}]"
    if not isinstance(winner, Mapping):
        problems.append(errors.Problem(where, "must be an object"))
        return
    for key in winner:
        if key not in _WINNER_FIELDS:
            problems.append(errors.Problem(f"{where}.{key}", "is not a known field"))
    for key in _WINNER_FIELDS:
        if key not in winner:
            problems.append(errors.Problem(f"{where}.{key}", "is required"))
    if "user_id" in winner:
        user_id = winner["user_id"]
        _check_id(user_id, f"{where}.user_id", problems)
        if isinstance(user_id, str) and user_id in seen:
            problems.append(
                errors.Problem(
                    f"{where}.user_id",
                    f"duplicate user {user_id!r} (also winners[{seen[user_id]}])",
                )
            )
        elif isinstance(user_id, str):
            seen[user_id] = index
    if "amount_cents" in winner:
        _check_amount(winner["amount_cents"], f"{where}.amount_cents", problems)


def problems_in(data: object) -> list[errors.Problem]:
    """Every rule of DESIGN 3 "Settlement" that ``data`` (parsed JSON) breaks."""
    if not isinstance(data, Mapping):
        return [errors.Problem("settlement", "must be a JSON object")]
    problems: list[errors.Problem] = []
    for key in data:
        if key not in _FIELDS:
            problems.append(errors.Problem(str(key), "is not a known field"))
    for key in _FIELDS:
        if key not in data:
            problems.append(errors.Problem(key, "is required"))
    if "settlement_id" in data:
        _check_id(data["settlement_id"], "settlement_id", problems)
    if "contest_id" in data:
        _check_id(data["contest_id"], "contest_id", problems)
    if "currency" in data:
        currency = data["currency"]
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            problems.append(
                errors.Problem(
                    "currency", f"must be an ISO 4217 code in 3 lowercase letters, got {currency!r}"
                )
            )
    if "winners" in data:
        _check_winners(data["winners"], problems)
    return problems


def parse_settlement(data: object) -> models.Settlement:
    """Build a :class:`~payout_core.models.Settlement` from parsed JSON.

    Raises:
        InvalidSettlement: with every problem found.
    """
    problems = problems_in(data)
    if problems:
        raise errors.InvalidSettlement(problems)
    fields = cast("Mapping[str, Any]", data)  # problems_in proved its shape
    return models.Settlement(
        settlement_id=fields["settlement_id"],
        contest_id=fields["contest_id"],
        currency=fields["currency"],
        winners=tuple(
            models.Winner(user_id=w["user_id"], amount_cents=w["amount_cents"])
            for w in fields["winners"]
        ),
    )
