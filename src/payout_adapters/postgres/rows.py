"""Rows to models and models to parameters: one column map per model, derived from its attrs fields.

A :class:`ColumnMap` reads ``attrs.fields()`` of a model once, at import, and
gives each field the converter of its type (:func:`converter_for`): an enum is
stored as its text and read back as the enum, an id the core keeps as a string
is a ``uuid`` column, a ``dict`` is ``jsonb``; text, integers, booleans and
times pass as they are. From the map come, with no list written twice:

* ``from_row``: a row (psycopg's ``dict_row``) to the model;
* ``params`` and ``array_params``: the model (or many, one array per column,
  for ``unnest``) to the parameters a statement takes, named as the columns;
* the column lists of the SQL (:mod:`payout_adapters.postgres.queries` puts
  them into ``sql/queries.sql`` once, when it loads it).

So a field added to a model is a column of its table with no other change; a
column named unlike its field, a field not stored, or an id kept as a UUID is
one line of its map below. Nothing here runs SQL or needs a connection: an
asynchronous adapter reuses all of it.
"""

from __future__ import annotations

import enum
import operator
import types
import typing
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

import attrs
from attrs import AttrsInstance
from psycopg.types.json import Jsonb

from payout_core import models, ports

__all__ = [
    "EVENTS",
    "JOBS",
    "LEDGER",
    "OPERATOR_ACTIONS",
    "PAUSES",
    "REVERSALS",
    "RUNS",
    "TRANSFERS",
    "ColumnMap",
    "Converter",
    "Row",
    "as_uuid",
    "converter_for",
]

Row = Mapping[str, Any]
M = TypeVar("M", bound=AttrsInstance)


def as_uuid(value: str) -> uuid.UUID | None:
    """``value`` as a UUID, or ``None`` when it is not one (then no row can have it)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


@attrs.frozen
class Converter:
    """How values of one type are stored: the SQL type a parameter is cast to
    (an ``unnest`` array's elements, a value selected into an ``INSERT``), and
    the conversion each way (``None``: the value as it is, at no cost)."""

    sql_type: str
    to_db: Callable[[Any], Any] | None = None
    from_db: Callable[[Any], Any] | None = None

    def optional(self) -> Converter:
        """The same for ``X | None``: ``None`` stays ``None`` both ways."""
        return Converter(self.sql_type, _or_none(self.to_db), _or_none(self.from_db))


def _or_none(convert: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    if convert is None:
        return None
    return lambda value: None if value is None else convert(value)


# -- one converter per type ----------------------------------------------------------

_AS_IS: Final[Mapping[type, Converter]] = {
    str: Converter("text"),
    # bigint holds every integer column; INSERT casts it to the column's own.
    int: Converter("bigint"),
    bool: Converter("boolean"),
    datetime: Converter("timestamptz"),
}

_JSON: Final = Converter("jsonb", to_db=Jsonb)


def _enum(cls: type[enum.Enum]) -> Converter:
    return Converter("text", to_db=operator.attrgetter("value"), from_db=cls)


def _uuid(label: str) -> Converter:
    """The core's ids are strings; their columns are ``uuid``."""

    def to_db(value: str) -> uuid.UUID:
        try:
            return uuid.UUID(value)
        except (ValueError, TypeError, AttributeError):
            raise ValueError(f"{label} must be a UUID, got {value!r}") from None

    return Converter("uuid", to_db=to_db, from_db=str)


def converter_for(kind: object, *, label: str, is_uuid: bool = False) -> Converter:
    """The converter of a field annotated ``kind`` (``label`` names it in errors).

    Raises:
        TypeError: no converter stores that type; add one here.
    """
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return converter_for(inner, label=label, is_uuid=is_uuid).optional()
    if is_uuid:
        if kind is not str:
            raise TypeError(f"{label} is stored as a uuid but is a {kind}, not a str")
        return _uuid(label)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _enum(kind)
    if typing.get_origin(kind) is dict:
        return _JSON
    if isinstance(kind, type) and kind in _AS_IS:
        return _AS_IS[kind]
    raise TypeError(
        f"{label}: no converter stores a {kind}; add one to payout_adapters.postgres.rows"
    )


@attrs.frozen
class Column:
    field: str
    name: str
    converter: Converter
    get: Callable[[Any], Any]


class ColumnMap(Generic[M]):
    """The columns of ``model``: one per attrs field, in field order, named as
    the field unless ``renamed``, minus those ``not_stored`` (which a row
    leaves at their defaults); the fields in ``uuids`` are ``uuid`` columns.
    Everything is worked out here, once: the per-row functions only look up
    what was prepared."""

    def __init__(
        self,
        model: type[M],
        *,
        uuids: Collection[str] = (),
        renamed: Mapping[str, str] | None = None,
        not_stored: Collection[str] = (),
    ) -> None:
        hints = typing.get_type_hints(model)
        fields = [f.name for f in attrs.fields(model)]
        unknown = (set(uuids) | set(renamed or {}) | set(not_stored)) - set(fields)
        if unknown:
            raise ValueError(f"{model.__name__} has no field(s) {sorted(unknown)}")
        self.model = model
        self.columns: tuple[Column, ...] = tuple(
            Column(
                field=name,
                name=(renamed or {}).get(name, name),
                converter=converter_for(
                    hints[name], label=f"{model.__name__}.{name}", is_uuid=name in uuids
                ),
                get=operator.attrgetter(name),
            )
            for name in fields
            if name not in not_stored
        )
        self._reads = tuple((c.field, c.name, c.converter.from_db) for c in self.columns)
        self._writes = tuple((c.get, c.name, c.converter.to_db) for c in self.columns)
        # params: every value at once (attrgetter, in C), then the few that convert.
        self._get_all = operator.attrgetter(*(c.field for c in self.columns))
        self._dumps = tuple(
            (i, c.converter.to_db) for i, c in enumerate(self.columns) if c.converter.to_db
        )
        self._names: dict[str, tuple[str, ...]] = {}

    # -- values ------------------------------------------------------------------------

    def from_row(self, row: Row) -> M:
        """The model of ``row``, which has (at least) every column of the map."""
        return self.model(
            **{
                field: row[name] if convert is None else convert(row[name])
                for field, name, convert in self._reads
            }
        )

    def params(self, value: M, *, prefix: str = "") -> dict[str, Any]:
        """Every column's value of ``value``, named ``prefix`` + the column's name."""
        names = self._names.get(prefix)
        if names is None:
            names = self._names[prefix] = tuple(prefix + c.name for c in self.columns)
        values = self._get_all(value)
        if len(names) == 1:
            values = (values,)  # attrgetter of one name gives the value, not a tuple
        params = dict(zip(names, values, strict=True))
        for i, convert in self._dumps:
            params[names[i]] = convert(values[i])
        return params

    def array_params(self, values: Sequence[M]) -> dict[str, list[Any]]:
        """One array per column, in the order of ``values`` (``{{..._arrays}}``)."""
        return {
            name: [get(v) for v in values] if convert is None else [convert(get(v)) for v in values]
            for get, name, convert in self._writes
        }

    # -- SQL text: the column names, which are the code's, never a value -----------------

    def names(self, *, qualifier: str = "") -> str:
        """``id, job_id, ...``, each name after ``qualifier`` (``t.``) if one is given."""
        return ", ".join(qualifier + c.name for c in self.columns)

    def values(self, *, prefix: str = "", cast: bool = False) -> str:
        """``%(id)s, %(job_id)s, ...``: the parameters of :meth:`params`, in column
        order, each cast to its type if ``cast`` (a ``SELECT`` into an ``INSERT``)."""
        return ", ".join(
            f"%({prefix}{c.name})s" + (f"::{c.converter.sql_type}" if cast else "")
            for c in self.columns
        )

    def arrays(self) -> str:
        """``%(id)s::uuid[], ...``: the arrays of :meth:`array_params`, for ``unnest``."""
        return ", ".join(f"%({c.name})s::{c.converter.sql_type}[]" for c in self.columns)


# -- the maps: a line here is all a column needs that its field does not say -------------

JOBS: Final = ColumnMap(models.PayoutJob, uuids={"id"})
TRANSFERS: Final = ColumnMap(models.PayoutTransfer, uuids={"id", "job_id", "reissue_of"})
LEDGER: Final = ColumnMap(models.LedgerEntry, uuids={"transfer_id", "job_id"})
RUNS: Final = ColumnMap(models.RunReport, uuids={"id"})
REVERSALS: Final = ColumnMap(models.Reversal, uuids={"id", "transfer_id"})
OPERATOR_ACTIONS: Final = ColumnMap(models.OperatorAction, uuids={"transfer_id"})
PAUSES: Final = ColumnMap(
    models.PauseState,
    renamed={"actor": "paused_by", "reason": "paused_reason", "since": "paused_at"},
)
EVENTS: Final = ColumnMap(ports.StripeEvent)
