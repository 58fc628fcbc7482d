"""Every rule an input must keep, in one place, used by every door.

The doors are the ``schedule`` command, the settlement inbox (rows other
services insert), the library API and the operator commands; each calls these
functions rather than keep a stricter or a looser copy, so that what one door
accepts, every door accepts. ``docs/bad-input.md`` is the table of what each
refuses and why. Every problem is reported at once, before anything is written.
A settlement comes in by one of two doors, each checking it once: JSON by
:func:`parse_settlement`, a model a library caller built by
:func:`check_settlement`; what they return is planned and stored as it is.

It is one module, longer than most, because it is one idea: the list of rules
below, each a function the doors share; split, a door could keep its own copy.
Reading the text exactly is :mod:`payout_core.exact_json`'s (re-exported here).

The rules:

* **JSON** is read exactly (:func:`~payout_core.exact_json.loads`): a number
  with a fraction or an exponent becomes a :class:`~decimal.Decimal`, never a
  float; ``NaN`` and ``Infinity`` are no JSON; a key given twice keeps its last
  value (as PostgreSQL's ``jsonb`` does, so that the inbox and the command line
  read the same settlement the same way).
* **An amount** (:func:`amount_problem`) is a whole number of minor units from
  1 to :data:`MAX_AMOUNT_CENTS`. ``1500``, ``1500.0``, ``1.5e3`` and ``1.5E3``
  are the same amount: JSON has one kind of number, and ``jsonb`` keeps its
  value, not its spelling (``1e2`` is stored as ``100``), so the inbox cannot
  tell them apart and the command line does not either. ``1500.5``, a string,
  a boolean, ``null`` and a Python float (inexact: give an ``int``) are refused.
* **An id** (:func:`id_problem`: settlement, contest and user ids) is a
  non-empty string of at most :data:`MAX_ID_LENGTH` printable characters that
  neither starts nor ends with white space. An id that looks like SQL is an id
  like any other: every statement is parameterised.
* **A Stripe connected account id** (:func:`account_id_problem`) is ``acct_``
  and 1 to 250 printable characters, none of them a space (Stripe's ids are at
  most 255 characters). On printable strings of that length this is the
  schema's own check (``stripe_account_id ~ '^acct_[^[:space:]]+$'``); the
  core refuses in addition control characters and ids longer than Stripe's.
* **A currency** is an ISO 4217 code in lowercase (:data:`CURRENCIES`).
"""

from __future__ import annotations

import enum
import operator
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, cast

import attrs

from payout_core import errors, models

# Reading JSON exactly is its own module; its names stay importable from here,
# the one module every door calls (the command line, both inboxes, the tests).
from payout_core.exact_json import TooDeep, Unreadable, loads, payload_from_json

__all__ = [
    "ACCOUNT_ID",
    "CURRENCIES",
    "MAX_ACCOUNT_ID_LENGTH",
    "MAX_AMOUNT_CENTS",
    "MAX_ID_LENGTH",
    "TooDeep",
    "Unreadable",
    "account_id_problem",
    "account_problems",
    "amount_problem",
    "check_settlement",
    "id_problem",
    "is_account_id",
    "loads",
    "parse_amount",
    "parse_settlement",
    "payload_from_json",
    "problems_in",
    "shown",
    "transfer_id_problem",
]

# Stripe refuses amounts of more than eight digits in minor units; the schema's
# amount_cents checks (transfers, ledger, reversals) say the same.
MAX_AMOUNT_CENTS: Final = 99_999_999
# Ids end up in idempotency keys (255 characters at most at Stripe) and metadata
# values (500); the schema's *_id checks say the same.
MAX_ID_LENGTH: Final = 200
# Stripe's object ids are at most 255 characters.
MAX_ACCOUNT_ID_LENGTH: Final = 255
# The shape of a Stripe connected account id; account_id_problem adds what a
# regular expression does not say (printable, at most 255 characters).
ACCOUNT_ID: Final = re.compile(r"acct_\S+")

# ISO 4217's active codes, without those that are no money a winner can be
# paid in (gold, silver, the SDR, the testing and "no currency" codes).
CURRENCIES: Final = frozenset(
    # One word per code, 22 to a line: it reads as the standard's table (SIM905 below).
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob bov brl bsd
    btn bwp byn bzd cad cdf che chf chw clf clp cny cop cou crc cuc cup cve czk djf dkk dop
    dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr
    iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad
    mdl mga mkd mmk mnt mop mru mur mvr mwk mxn mxv myr mzn nad ngn nio nok npr nzd omr pab
    pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd
    ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs uah ugx usd usn uyi uyu uyw uzs
    ved ves vnd vuv wst xaf xcd xcg xof xpf yer zar zmw zwg zwl
    """.split()  # noqa: SIM905
)

_FIELDS = ("settlement_id", "contest_id", "currency", "winners")
_WINNER_FIELDS = ("user_id", "amount_cents")
# An int this long is shown by its length, not its digits (exact_json's longest
# int literal, 38 digits, fits).
_BITS_SHOWN = 128
# Numbers this large are shown in scientific notation.
_LARGE = 10**20


# -- one rule per thing ------------------------------------------------------------------------


def shown(value: object, limit: int = 60) -> str:
    """``value`` for a message: short, and never raw control characters (a
    message goes to a terminal, a log line and the inbox's ``rejected_reason``).

    A number is shown by its value, as ``jsonb`` keeps it, so that the command
    line and the inbox word a refusal alike: ``1e9`` as 1000000000, ``-0.0``
    as 0, ``1e400`` as 1.000E+400.
    """
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return _number(value)
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _number(value: int | Decimal) -> str:
    if isinstance(value, int) and value.bit_length() > _BITS_SHOWN:
        # Only a library caller's int gets here (JSON's long literals are
        # Decimals); Decimal() of a ten-million-bit int takes minutes.
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, Decimal) and not value.is_finite():
        return str(value)
    if not -_LARGE < value < _LARGE:
        return f"{Decimal(value):.3E}"
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def _kind(value: object) -> str:
    return "JSON null" if value is None else type(value).__name__


def amount_problem(value: object, field: str) -> errors.Problem | None:
    """What is wrong with ``value`` as an amount in minor units, if anything."""
    whole = "must be an integer number of minor units"
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        why = f"{whole}, got {_kind(value)} {shown(value)}"
        if isinstance(value, float):
            why += " (a float is inexact: give an int)"
        return errors.Problem(field, why)
    if isinstance(value, Decimal) and not value.is_finite():
        return errors.Problem(field, f"{whole}, got {shown(value)}")
    if value <= 0:
        return errors.Problem(field, f"must be greater than 0, got {shown(value)}")
    if value > MAX_AMOUNT_CENTS:
        return errors.Problem(
            field,
            f"must be at most {MAX_AMOUNT_CENTS} minor units (Stripe's most per transfer), "
            f"got {shown(value)}",
        )
    if isinstance(value, Decimal) and value != value.to_integral_value():
        # A JSON number with a fraction: a "float" to whoever wrote it.
        return errors.Problem(field, f"{whole}, got float {shown(value)}")
    return None


def parse_amount(text: str, field: str) -> int:
    """An amount given as text (a command-line flag), by the same rule as JSON's.

    Raises:
        InvalidOperatorAction: naming ``field`` and the problem.
    """
    try:
        value = loads(text)
    except ValueError:
        value = text  # not a number: amount_problem names it
    problem = amount_problem(value, field)
    if problem is not None:
        raise errors.InvalidOperatorAction([problem])
    return int(cast("int | Decimal", value))


def id_problem(
    value: object, field: str, *, max_length: int = MAX_ID_LENGTH
) -> errors.Problem | None:
    """What is wrong with ``value`` as a settlement, contest or user id, if anything."""
    if not isinstance(value, str):
        return errors.Problem(field, f"must be a string, got {_kind(value)}")
    if not value.strip():
        return errors.Problem(field, "must not be empty")
    if len(value) > max_length:
        return errors.Problem(field, f"must be at most {max_length} characters, got {len(value)}")
    if value != value.strip():
        return errors.Problem(field, "must not start or end with white space")
    if not value.isprintable():
        return errors.Problem(
            field, "must not contain control characters (a NUL byte, a line break, ...)"
        )
    return None


def account_id_problem(value: object, field: str) -> errors.Problem | None:
    """What is wrong with ``value`` as a Stripe connected account id, if anything."""
    if not isinstance(value, str):
        return errors.Problem(field, f"must be a string, got {_kind(value)}")
    if len(value) > MAX_ACCOUNT_ID_LENGTH:
        return errors.Problem(
            field,
            f"must be at most {MAX_ACCOUNT_ID_LENGTH} characters (Stripe's longest id), "
            f"got {len(value)}",
        )
    if not ACCOUNT_ID.fullmatch(value) or not value.isprintable():
        return errors.Problem(
            field,
            f"{shown(value)} is not a Stripe connected account id (acct_ and what "
            "Stripe gave after it, without white space or control characters)",
        )
    return None


def is_account_id(value: str) -> bool:
    """Whether ``value`` keeps the account-id rule."""
    return account_id_problem(value, "account_id") is None


def account_problems(
    user_id: object,
    account_id: object,
    *,
    fields: tuple[str, str] = ("user_id", "account_id"),
) -> list[errors.Problem]:
    """Every problem with connecting ``user_id`` to ``account_id``."""
    found = (id_problem(user_id, fields[0]), account_id_problem(account_id, fields[1]))
    return [p for p in found if p is not None]


def transfer_id_problem(value: str, field: str = "transfer id") -> errors.Problem | None:
    """What is wrong with ``value`` as a payout transfer's id (a UUID), if anything."""
    try:
        uuid.UUID(value)
    except ValueError:
        return errors.Problem(
            field, f"no payout transfer {shown(value)} (a payout transfer id is a UUID)"
        )
    return None


def _currency_problem(value: object) -> errors.Problem | None:
    if isinstance(value, str) and value in CURRENCIES:
        return None
    why = f"must be an ISO 4217 code in lowercase letters, such as usd; got {shown(value)}"
    if isinstance(value, str) and value.lower() in CURRENCIES:
        why += f" (did you mean {value.lower()!r}?)"
    return errors.Problem("currency", why)


# -- the settlement ----------------------------------------------------------------------------


class _Absent(enum.Enum):
    """A JSON field not given (its ``is required`` problem is the shape's)."""

    ABSENT = enum.auto()


_ABSENT: Final = _Absent.ABSENT


def _key(key: object) -> str:
    """An unknown field's name for a message: as given when printable."""
    return key if isinstance(key, str) and key.isprintable() and len(key) <= 60 else shown(key)


def _fields_problems(
    given: Mapping[Any, object], known: tuple[str, ...], where: str = ""
) -> list[errors.Problem]:
    """The JSON shape of an object: no field unknown, none missing."""
    problems = [
        errors.Problem(f"{where}{_key(key)}", "is not a known field")
        for key in given
        if key not in known
    ]
    problems.extend(
        errors.Problem(f"{where}{key}", "is required") for key in known if key not in given
    )
    return problems


def _head_problems(
    settlement_id: object, contest_id: object, currency: object
) -> list[errors.Problem]:
    """The settlement's ids and currency (an absent one is the shape's problem)."""
    found = (
        None if settlement_id is _ABSENT else id_problem(settlement_id, "settlement_id"),
        None if contest_id is _ABSENT else id_problem(contest_id, "contest_id"),
        None if currency is _ABSENT else _currency_problem(currency),
    )
    return [p for p in found if p is not None]


def _winners_problem(winners: object) -> errors.Problem | None:
    if not isinstance(winners, list | tuple):
        return errors.Problem("winners", f"must be a list, got {_kind(winners)}")
    if not winners:
        return errors.Problem("winners", "must not be empty")
    return None


def _winner_problems(
    where: str, user_id: object, amount_cents: object, seen: dict[str, int], index: int
) -> list[errors.Problem]:
    """One winner's user (once per settlement) and amount."""
    problems = []
    if user_id is not _ABSENT:
        problem = id_problem(user_id, f"{where}.user_id")
        if problem is not None:
            problems.append(problem)
        elif cast("str", user_id) in seen:
            problems.append(
                errors.Problem(
                    f"{where}.user_id",
                    f"duplicate user {shown(user_id)} (also winners[{seen[cast('str', user_id)]}])",
                )
            )
        else:
            seen[cast("str", user_id)] = index
    if amount_cents is not _ABSENT:
        problem = amount_problem(amount_cents, f"{where}.amount_cents")
        if problem is not None:
            problems.append(problem)
    return problems


def problems_in(data: object) -> list[errors.Problem]:
    """Every rule of DESIGN 3 "Settlement" that ``data`` (parsed JSON) breaks."""
    if isinstance(data, Unreadable):
        return [errors.Problem("settlement", data.reason)]
    if not isinstance(data, Mapping):
        return [errors.Problem("settlement", f"must be a JSON object, got {_kind(data)}")]
    problems = _fields_problems(data, _FIELDS)
    problems.extend(
        _head_problems(
            data.get("settlement_id", _ABSENT),
            data.get("contest_id", _ABSENT),
            data.get("currency", _ABSENT),
        )
    )
    if "winners" not in data:
        return problems
    winners = data["winners"]
    if (problem := _winners_problem(winners)) is not None:
        return [*problems, problem]
    seen: dict[str, int] = {}
    for index, winner in enumerate(winners):
        where = f"winners[{index}]"
        if not isinstance(winner, Mapping):
            problems.append(errors.Problem(where, f"must be an object, got {_kind(winner)}"))
            continue
        problems.extend(_fields_problems(winner, _WINNER_FIELDS, where=f"{where}."))
        problems.extend(
            _winner_problems(
                where,
                winner.get("user_id", _ABSENT),
                winner.get("amount_cents", _ABSENT),
                seen,
                index,
            )
        )
    return problems


def parse_settlement(data: object) -> models.Settlement:
    """Build a :class:`~payout_core.models.Settlement` from parsed JSON
    (:func:`loads` reads it exactly; a ``json.loads`` float amount is refused):
    the JSON door's check, after which nothing checks the settlement again.

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
            models.Winner(user_id=w["user_id"], amount_cents=int(w["amount_cents"]))
            for w in fields["winners"]
        ),
    )


def check_settlement(settlement: models.Settlement) -> models.Settlement:
    """The settlement a library caller built, checked by the rules
    :func:`parse_settlement` applies to JSON (the same problems, worded alike),
    with each amount the ``int`` it is (``Decimal("1.5e3")`` is 1500).

    This is the model's door, as :func:`parse_settlement` is the JSON's: each
    settlement is checked at the one door it comes in by, and what either
    returns is planned (:func:`payout_core.services.scheduling.plan_payout`)
    and stored as it is. The model is not checked when it is built because a
    :class:`~payout_core.models.Winner` cannot know its place in the list
    (``winners[3].amount_cents``) nor a duplicate user, and because a refusal
    names every problem at once, which attrs validators, one field at a time,
    do not.

    Raises:
        InvalidSettlement: with every problem found.
    """
    problems = _head_problems(settlement.settlement_id, settlement.contest_id, settlement.currency)
    # Typed as tuple[Winner, ...], but a library caller's may hold anything.
    winners: object = settlement.winners
    if (problem := _winners_problem(winners)) is not None:
        raise errors.InvalidSettlement([*problems, problem])
    seen: dict[str, int] = {}
    for index, winner in enumerate(cast("Sequence[object]", winners)):
        where = f"winners[{index}]"
        if not isinstance(winner, models.Winner):
            problems.append(errors.Problem(where, f"must be a Winner, got {_kind(winner)}"))
            continue
        problems.extend(_winner_problems(where, winner.user_id, winner.amount_cents, seen, index))
    if problems:
        raise errors.InvalidSettlement(problems)
    exact = tuple(
        w if type(w.amount_cents) is int else attrs.evolve(w, amount_cents=int(w.amount_cents))
        for w in settlement.winners
    )
    # By identity: Decimal("1500") == 1500, and the Decimal must go.
    if isinstance(winners, tuple) and all(map(operator.is_, exact, winners)):
        return settlement
    return attrs.evolve(settlement, winners=exact)
