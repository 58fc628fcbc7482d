"""Every SQL statement is parameterized: no value ever reaches the text of a query.

ruff's S608 flags SQL built from strings in Python; this test holds every
module that talks to PostgreSQL to the rule, followed through names, and the
file of named queries (``sql/queries.sql``) to its own.

The rule: the text given to ``execute`` (and ``executemany``, ``stream``,
``copy``, ``psycopg.sql.SQL``) is built from string literals and module
constants only, by ``+``, ``str.join``, ``strip``/``split`` and f-strings of
such things, or is a named query, ``QUERIES["name"]`` with a literal name the
file has. A function parameter may carry it if it is
annotated ``LiteralString``, and then every call of that function is held to
the same rule. ``%`` and ``.format`` on query text are refused outright (the
first is how values get pasted in place of ``%(name)s``), and so is anything
else: a variable, an attribute of an object, a call. ``sql.SQL(...).format``
takes ``sql.Identifier`` and ``sql.Literal`` of constants only.

The one exemption, :data:`JUSTIFIED`, names the expression and why.

The file's rule: loading it replaces each ``{{name}}`` with another entry of
the file or a column list of the code (names and ``%(name)s`` parameters,
nothing else), and after that every ``%`` is a parameter (or ``%%``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs
import pytest

from payout_adapters.postgres import queries

SRC: Final = Path(__file__).parents[2] / "src"

# Methods whose first argument is query text (psycopg connections and cursors).
RUNS_SQL: Final = frozenset({"execute", "executemany", "stream", "copy"})
# Methods of a constant string that give a constant string.
CONSTANT_METHODS: Final = frozenset({"join", "strip", "split", "lower", "upper", "replace"})
# psycopg.sql's composables.
COMPOSABLES: Final = frozenset({"SQL", "Identifier", "Literal", "Placeholder"})

# Mappings of named queries: (module, name) -> the names they hold.
NAMED_QUERIES: Final = {
    ("payout_adapters.postgres.queries", "QUERIES"): frozenset(queries.QUERIES),
}

JUSTIFIED: Final = {
    # The migration files are the schema: shipped with the code, checksummed,
    # and sent whole because a file holds several statements (no parameters).
    ("payout_adapters.postgres.migrator", "migration.sql.encode('utf-8')"),
}


@attrs.frozen
class Module:
    name: str
    tree: ast.Module
    constants: Mapping[str, ast.expr]  # module-level NAME = ... assignments
    modules: Mapping[str, str]  # local alias -> module imported under it
    names: Mapping[str, tuple[str, str]]  # local name -> (module, name) imported

    @classmethod
    def parse(cls, name: str, source: str) -> Module:
        tree = ast.parse(source)
        constants: dict[str, ast.expr] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name):
                constants[target.id] = value
        modules: dict[str, str] = {}
        names: dict[str, tuple[str, str]] = {}
        for imports in ast.walk(tree):
            if isinstance(imports, ast.Import):
                for alias in imports.names:
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name
            elif isinstance(imports, ast.ImportFrom) and imports.module:
                for alias in imports.names:
                    # `from package import module` and `from module import NAME` alike.
                    modules[alias.asname or alias.name] = f"{imports.module}.{alias.name}"
                    names[alias.asname or alias.name] = (imports.module, alias.name)
        return cls(name=name, tree=tree, constants=constants, modules=modules, names=names)

    def talks_to_postgres(self) -> bool:
        imported = set(self.modules.values()) | {m for m, _ in self.names.values()}
        return any(
            m.split(".")[0] in {"psycopg", "psycopg_pool"} or m.endswith("postgres.queries")
            for m in imported
        )


@attrs.frozen
class Scope:
    """What a name means where an expression is: the function's parameters that
    carry query text, its local assignments, comprehension variables."""

    module: Module
    literal_params: frozenset[str] = frozenset()
    local: Mapping[str, tuple[ast.expr, ...]] = attrs.Factory(dict)
    bound: frozenset[str] = frozenset()


def _is_literal_string(annotation: ast.expr | None) -> bool:
    if isinstance(annotation, ast.Name):
        return annotation.id == "LiteralString"
    if isinstance(annotation, ast.Attribute):
        return annotation.attr == "LiteralString"
    return isinstance(annotation, ast.Constant) and annotation.value == "LiteralString"


def _params(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.arg]:
    arguments = function.args
    return [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]


def _function_scope(module: Module, function: ast.FunctionDef | ast.AsyncFunctionDef) -> Scope:
    local: dict[str, list[ast.expr]] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    local.setdefault(target.id, []).append(node.value)
        elif (
            isinstance(node, ast.AnnAssign | ast.AugAssign)
            and isinstance(node.target, ast.Name)
            and node.value is not None
        ):
            # `query += more` is `query = query + more`: both must be constant.
            local.setdefault(node.target.id, []).append(node.value)
    return Scope(
        module=module,
        literal_params=frozenset(
            p.arg for p in _params(function) if _is_literal_string(p.annotation)
        ),
        local={name: tuple(values) for name, values in local.items()},
    )


class Checker:
    """Finds query text that is not built from constants, in ``modules``."""

    def __init__(
        self,
        modules: Mapping[str, Module],
        named_queries: Mapping[tuple[str, str], frozenset[str]] = NAMED_QUERIES,
    ) -> None:
        self.modules = modules
        self.named_queries = named_queries
        self._resolving: set[tuple[str, str]] = set()

    # -- what is constant ---------------------------------------------------------

    def constant(self, node: ast.expr, scope: Scope) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str | bytes)
        if isinstance(node, ast.Name):
            return self._name(node.id, scope)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            imported = scope.module.modules.get(node.value.id)
            return imported in self.modules and self._module_constant(str(imported), node.attr)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.constant(node.left, scope) and self.constant(node.right, scope)
        if isinstance(node, ast.IfExp):
            return self.constant(node.body, scope) and self.constant(node.orelse, scope)
        if isinstance(node, ast.JoinedStr):
            return all(
                self.constant(part.value, scope)
                for part in node.values
                if isinstance(part, ast.FormattedValue)
            )
        if isinstance(node, ast.Tuple | ast.List):
            return all(self.constant(e, scope) for e in node.elts)
        if isinstance(node, ast.GeneratorExp | ast.ListComp):
            return self._comprehension(node, scope)
        if isinstance(node, ast.Call):
            return self._call(node, scope)
        if isinstance(node, ast.Subscript):
            return self._named_query(node, scope)
        return False

    def _named_query(self, node: ast.Subscript, scope: Scope) -> bool:
        """``QUERIES["name"]``: a literal name that the mapping holds."""
        mapping: tuple[str, str] | None = None
        if isinstance(node.value, ast.Name):
            name = node.value.id
            mapping = scope.module.names.get(name, (scope.module.name, name))
        elif isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name):
            module = scope.module.modules.get(node.value.value.id)
            mapping = None if module is None else (module, node.value.attr)
        names = self.named_queries.get(mapping) if mapping else None
        key = node.slice
        return (
            names is not None
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and key.value in names
        )

    def _name(self, name: str, scope: Scope) -> bool:
        if name in scope.bound or name in scope.literal_params:
            return True  # a literal parameter's callers are checked (literal_string_callers)
        if name in scope.local:
            return all(self.constant(value, scope) for value in scope.local[name])
        if name in scope.module.constants:
            return self._module_constant(scope.module.name, name)
        if name in scope.module.names:
            module, original = scope.module.names[name]
            return module in self.modules and self._module_constant(module, original)
        return False

    def _module_constant(self, module: str, name: str) -> bool:
        value = self.modules[module].constants.get(name)
        if value is None:
            return False
        key = (module, name)
        if key in self._resolving:
            return False  # defined in terms of itself: not a constant
        self._resolving.add(key)
        try:
            return self.constant(value, Scope(module=self.modules[module]))
        finally:
            self._resolving.discard(key)

    def _comprehension(self, node: ast.GeneratorExp | ast.ListComp, scope: Scope) -> bool:
        bound = set(scope.bound)
        for generator in node.generators:
            within = attrs.evolve(scope, bound=frozenset(bound))
            if generator.ifs or not self.constant(generator.iter, within):
                return False
            bound |= {n.id for n in ast.walk(generator.target) if isinstance(n, ast.Name)}
        return self.constant(node.elt, attrs.evolve(scope, bound=frozenset(bound)))

    def _call(self, node: ast.Call, scope: Scope) -> bool:
        func = node.func
        arguments = [*node.args, *(k.value for k in node.keywords)]
        if not isinstance(func, ast.Attribute):
            return False
        if func.attr in COMPOSABLES and _is_psycopg_sql(func.value, scope.module):
            return all(self.constant(a, scope) for a in arguments)
        if func.attr == "format":
            # Only a composable's, and only with composables of constants.
            return self._composable(func.value, scope) and all(
                self._composable(a, scope) for a in arguments
            )
        if func.attr in CONSTANT_METHODS:
            return self.constant(func.value, scope) and all(
                self.constant(a, scope) for a in arguments
            )
        return False

    def _composable(self, node: ast.expr, scope: Scope) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in COMPOSABLES | {"format", "join"}
            and self.constant(node, scope)
        )

    # -- where query text goes ----------------------------------------------------------

    def findings(self) -> list[str]:
        found: list[str] = []
        carriers = self._literal_string_parameters()
        for module in self.modules.values():
            for function in _functions(module.tree):
                scope = _function_scope(module, function)
                for call in _calls(function):
                    for text in self._query_texts(call, module, carriers):
                        if self.constant(text, scope):
                            continue
                        if (module.name, ast.unparse(text)) in JUSTIFIED:
                            continue
                        found.append(
                            f"{module.name}:{text.lineno}: query text `{ast.unparse(text)}` "
                            "is not built from constants only"
                        )
        return found

    def _query_texts(
        self, call: ast.Call, module: Module, carriers: Mapping[str, list[Carrier]]
    ) -> Iterator[ast.expr]:
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (
            isinstance(func, ast.Attribute)
            and name in RUNS_SQL
            and module.talks_to_postgres()
            and call.args
        ):
            yield call.args[0]
        for carrier in carriers.get(name or "", []):
            if not carrier.reaches(module) or (
                carrier.method and not isinstance(func, ast.Attribute)
            ):
                continue
            # A method is called on its object: `self` is not among the arguments.
            index = carrier.position - int(carrier.method)
            if index < len(call.args) and not any(
                isinstance(a, ast.Starred) for a in call.args[: index + 1]
            ):
                yield call.args[index]
            yield from (k.value for k in call.keywords if k.arg == carrier.keyword)

    def _literal_string_parameters(self) -> dict[str, list[Carrier]]:
        """Functions by name, with their parameter annotated ``LiteralString``:
        their callers pass query text."""
        carriers: dict[str, list[Carrier]] = {}
        for module in self.modules.values():
            methods = {
                id(f)
                for c in ast.walk(module.tree)
                if isinstance(c, ast.ClassDef)
                for f in c.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            for function in _functions(module.tree):
                for position, param in enumerate(_params(function)):
                    if _is_literal_string(param.annotation):
                        carriers.setdefault(function.name, []).append(
                            Carrier(
                                module=module.name,
                                position=position,
                                keyword=param.arg,
                                method=id(function) in methods,
                            )
                        )
        return carriers


@attrs.frozen
class Carrier:
    """A function with a parameter annotated ``LiteralString``."""

    module: str  # where it is defined
    position: int  # of the parameter, counting ``self``
    keyword: str
    method: bool

    def reaches(self, caller: Module) -> bool:
        """Whether a call in ``caller`` may be of this function: it is defined
        there, or there imported from."""
        imported = set(caller.modules.values()) | {m for m, _ in caller.names.values()}
        return caller.name == self.module or self.module in imported


def _is_psycopg_sql(node: ast.expr, module: Module) -> bool:
    """``sql`` (from psycopg import sql) or ``psycopg.sql``."""
    if isinstance(node, ast.Name):
        return module.modules.get(node.id) == "psycopg.sql"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "sql"
        and isinstance(node.value, ast.Name)
        and module.modules.get(node.value.id) == "psycopg"
    )


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _calls(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.Call]:
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            yield node


def source_modules() -> dict[str, Module]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = Module.parse(name, path.read_text(encoding="utf-8"))
    return modules


def findings_in(sources: Mapping[str, str]) -> list[str]:
    named = {("app.queries", "QUERIES"): frozenset({"get_transfer"})}
    return Checker({n: Module.parse(n, s) for n, s in sources.items()}, named).findings()


# -- the rule holds in src/ ---------------------------------------------------------------


def test_every_statement_in_src_is_built_from_constants_only() -> None:
    modules = source_modules()
    assert "payout_adapters.postgres.queries" in modules

    assert Checker(modules).findings() == []


def test_the_scan_reaches_every_module_that_runs_sql() -> None:
    talking = {m.name for m in source_modules().values() if m.talks_to_postgres()}

    assert {
        "payout_adapters.postgres.store",
        "payout_adapters.postgres.store_claims",
        "payout_adapters.postgres.jobs",
        "payout_adapters.postgres.migrator",
        "payout_adapters.postgres.ledger_reader",
        "payout_adapters.postgres.events",
        "payout_adapters.embedded",
        "payout_cli.bootstrap",
    } <= talking


def test_the_one_justified_exemption_is_still_needed() -> None:
    modules = source_modules()
    checker = Checker(modules)
    unparsed = {
        (module.name, ast.unparse(call.args[0]))
        for module in modules.values()
        for function in _functions(module.tree)
        for call in _calls(function)
        if isinstance(call.func, ast.Attribute) and call.func.attr in RUNS_SQL and call.args
    }

    assert unparsed >= JUSTIFIED
    assert checker.findings() == []


# -- the scan finds what it is for: without these, a passing scan would mean nothing -------

QUERIES = """
from typing import Final
COLUMNS: Final = "id, amount_cents"
GET: Final = "SELECT " + COLUMNS + " FROM payout_transfers WHERE id = %(id)s"
QUERIES: Final = load()
"""


@pytest.mark.parametrize(
    ("body", "flagged"),
    [
        pytest.param(
            'conn.execute(f"SELECT * FROM t WHERE id = {user_id}")', "user_id", id="f-string"
        ),
        pytest.param('conn.execute("SELECT * FROM t WHERE id = %s" % user_id)', "%", id="percent"),
        pytest.param(
            'conn.execute("SELECT * FROM t WHERE id = {}".format(user_id))', "format", id="format"
        ),
        pytest.param('conn.execute(q.GET + " AND user_id = " + user_id)', "user_id", id="concat"),
        pytest.param("query = q.GET + user_id\n    conn.execute(query)", "query", id="local"),
        pytest.param("conn.execute(user_id)", "user_id", id="a-parameter"),
        pytest.param(
            'conn.execute(sql.SQL("SELECT {}").format(user_id))', "format", id="sql-format-raw"
        ),
        pytest.param(
            'conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(user_id)))',
            "Identifier",
            id="identifier-of-input",
        ),
        pytest.param("conn.execute(q.GET.format())", "format", id="format-of-a-constant"),
        pytest.param("conn.execute(q.MISSING)", "MISSING", id="unknown-constant"),
        pytest.param("conn.execute(q.QUERIES[user_id])", "user_id", id="named-by-a-value"),
        pytest.param('conn.execute(q.QUERIES["missing"])', "missing", id="unknown-name"),
        pytest.param(
            'conn.execute(q.QUERIES["get_transfer"] + user_id)', "user_id", id="named-plus-value"
        ),
        pytest.param('conn.execute(q.other["get_transfer"])', "other", id="not-the-mapping"),
    ],
)
def test_query_text_built_from_a_value_is_found(body: str, flagged: str) -> None:
    found = findings_in(
        {
            "app.queries": QUERIES,
            "app.store": (
                "import psycopg\nfrom psycopg import sql\nfrom app import queries as q\n"
                f"def run(conn, user_id):\n    {body}\n"
            ),
        }
    )

    assert len(found) == 1, found
    assert found[0].startswith("app.store:")
    assert flagged in found[0]


def test_a_literal_string_parameter_holds_its_callers_to_the_rule() -> None:
    store = """
import psycopg
from typing import LiteralString
from app import queries as q
class Db:
    def fetch(self, action: str, query: LiteralString, params: dict) -> None:
        self.conn.execute(query, params)
def good(db, user_id):
    db.fetch("read", q.GET, {"id": user_id})
    db.fetch("read", query=q.GET, params={})
def bad(db, user_id):
    db.fetch("read", f"SELECT {user_id}", {})
"""
    found = findings_in({"app.queries": QUERIES, "app.store": store})

    assert found == [
        "app.store:12: query text `f'SELECT {user_id}'` is not built from constants only"
    ]


def test_constants_joined_and_formatted_from_constants_pass() -> None:
    store = """
import psycopg
from psycopg import sql
from app import queries as q
from app.queries import COLUMNS
NAME = "payout"
ALL = ", ".join(f"t.{c.strip()}" for c in COLUMNS.split(","))
def run(conn, flag, user_id):
    query = q.GET if flag else "SELECT " + ALL + " FROM t"
    conn.execute(query, {"id": user_id})
    conn.execute(f'CREATE DATABASE "{NAME}"')
    conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(NAME)))
    conn.execute(sql.SQL("SELECT {}").format(sql.Literal("x")))
    conn.execute(q.QUERIES["get_transfer"], {"id": user_id})
    named = q.QUERIES["get_transfer"] if flag else q.GET
    conn.execute(named, {"id": user_id})
"""
    assert findings_in({"app.queries": QUERIES, "app.store": store}) == []


def test_modules_that_never_touch_postgres_are_not_read_as_sql() -> None:
    other = "def run(stripe, request):\n    return stripe.execute(request)\n"

    assert findings_in({"app.gateway": other}) == []


# -- the file of named queries --------------------------------------------------------------


def test_every_named_query_takes_values_only_as_parameters() -> None:
    assert queries.QUERIES
    for name, text in queries.QUERIES.items():
        assert "{{" not in text, name
        assert "%" not in re.findall(r"%\(\w+\)s|%%|%", text), name


def test_the_column_lists_put_into_the_sql_are_names_and_parameters_only() -> None:
    item = r"(?:(?:[a-z]\.)?[a-z_]+|%\([a-z_]+\)s(?:::[a-z]+(?:\[\])?)?)"
    for name, text in queries.COLUMN_LISTS.items():
        assert re.fullmatch(rf"{item}(?:, {item})*", text), (name, text)


def test_every_named_query_is_run_somewhere() -> None:
    used = {
        node.slice.value
        for module in source_modules().values()
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and "QUERIES" in ast.unparse(node.value)
    }

    assert set(queries.QUERIES) - used == set()


def test_the_loader_puts_fragments_and_column_lists_in_and_runs_no_fragment() -> None:
    source = """
-- a preamble, not a query --
-- _now --
-- The time.
now()
-- get --
-- One job.
-- Why, over more lines.
SELECT {{_now}}, {{job_columns}} FROM payout_jobs WHERE id = %(id)s  -- a trailing note
"""
    loaded = queries.load(source, {"job_columns": "id, status"})

    assert loaded == {
        "get": "SELECT now(), id, status FROM payout_jobs WHERE id = %(id)s  -- a trailing note"
    }


@pytest.mark.parametrize(
    ("source", "why"),
    [
        pytest.param("-- get --\n-- One.\nSELECT 1 WHERE id = %s", "no %", id="stray-percent"),
        pytest.param("-- get --\n-- One.\nSELECT {{nothing}}", "no entry", id="unknown"),
        pytest.param("-- get --\n-- One.\nSELECT 1 {{get}}", "includes itself", id="cycle"),
        pytest.param("-- get --\nSELECT 1", "must say what it does", id="no-summary"),
        pytest.param("-- get --\n-- A.\nSELECT 1\n-- get --\n-- B.\nSELECT 2", "twice", id="twice"),
    ],
)
def test_the_loader_refuses_a_malformed_file(source: str, why: str) -> None:
    with pytest.raises(queries.QueryFileError, match=why):
        queries.load(source, {})
