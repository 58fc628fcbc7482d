"""Reading JSON exactly: the one reader of settlement text, for every door.

A number with a fraction or an exponent becomes a :class:`~decimal.Decimal`,
never a float; ``NaN`` and ``Infinity`` are no JSON; a key given twice keeps its
last value (as PostgreSQL's ``jsonb`` does, so that the inbox and the command
line read the same settlement the same way). What a value read here must be to
be a settlement is :mod:`payout_core.validation`'s, which re-exports these names.
"""

from __future__ import annotations

import json
from decimal import Decimal

import attrs

__all__ = ["TooDeep", "Unreadable", "loads", "payload_from_json"]

# An integer literal longer than this is read as a Decimal: Python refuses to
# make an int of more than 4,300 digits, and no amount has more than 8.
_LONGEST_INT = 38


@attrs.frozen
class Unreadable:
    """A payload that is no JSON payout-core reads, and why: what the inbox
    hands on for a row it cannot read, so that the row is rejected with its
    reason instead of failing the tick (and every tick after it)."""

    reason: str


class TooDeep(ValueError):
    """JSON nested deeper than Python parses: valid JSON (``jsonb`` holds it)
    that payout-core cannot read."""


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _int_or_decimal(text: str) -> int | Decimal:
    return int(text) if len(text) <= _LONGEST_INT else Decimal(text)


def loads(text: str | bytes) -> object:
    """Parse JSON exactly: numbers with a fraction or an exponent become
    :class:`~decimal.Decimal` (never a float), ``NaN`` and ``Infinity`` are
    refused, and a key given twice keeps its last value (as ``jsonb`` does).

    Raises:
        ValueError: the text is no JSON; the message says where and why.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(
            text,
            parse_float=Decimal,
            parse_int=_int_or_decimal,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise TooDeep("nests arrays or objects too deeply") from None


def payload_from_json(text: str | bytes) -> object:
    """:func:`loads`, or an :class:`Unreadable` saying why not: never raises."""
    try:
        return loads(text)
    except ValueError as exc:
        return Unreadable(f"is not JSON payout-core can read: {exc}")
