"""The public API keeps its promise (docs/library.md, "Versioning"): a name in
tests/unit/public_api.txt is still exported, or deprecated (it warns and still
works) until the release its deprecation names; every exported name is listed."""

from __future__ import annotations

import importlib
import pathlib
import types
import warnings

import pytest

import payout_core

RECORD = pathlib.Path(__file__).with_name("public_api.txt")

# Modules whose ``__all__`` is public as a whole: each of their names is recorded.
WHOLLY_PUBLIC = ("payout_core", "payout_adapters.memory", "payout_adapters.pytest_plugin")


def recorded() -> list[tuple[str, str]]:
    lines = RECORD.read_text(encoding="utf-8").splitlines()
    return [
        (module, name)
        for module, name in (line.split(":") for line in lines if line and not line.startswith("#"))
    ]


def deprecated(module: types.ModuleType) -> dict[str, str]:
    table: dict[str, str] = getattr(module, "_DEPRECATED", {})
    return table


def gone(names: list[tuple[str, str]]) -> list[str]:
    """The recorded names neither exported nor deprecated."""
    missing = []
    for module_name, name in names:
        module = importlib.import_module(module_name)
        exported = name in getattr(module, "__all__", ()) and name in vars(module)
        if not exported and name not in deprecated(module):
            missing.append(f"{module_name}:{name}")
    return missing


def test_no_public_name_disappeared_without_a_deprecation() -> None:
    assert gone(recorded()) == []


def test_every_exported_name_is_recorded() -> None:
    record = set(recorded())
    for module_name in WHOLLY_PUBLIC:
        module = importlib.import_module(module_name)
        unrecorded = [n for n in module.__all__ if (module_name, n) not in record]
        assert unrecorded == [], f"add them to {RECORD.name}: {module_name} {unrecorded}"


def test_the_check_notices_a_name_taken_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payout_core, "__all__", [n for n in payout_core.__all__ if n != "Payouts"])
    assert gone(recorded()) == ["payout_core:Payouts"]


@pytest.mark.parametrize("name", sorted(deprecated(payout_core)))
def test_a_deprecated_name_warns_and_still_works(name: str) -> None:
    warning = rf"payout_core\.{name} is deprecated since 0\.2\.0"
    with pytest.warns(DeprecationWarning, match=warning):
        value = getattr(payout_core, name)
    module = importlib.import_module(deprecated(payout_core)[name])
    assert value is getattr(module, name)


def test_the_public_names_import_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for module_name, name in recorded():
            module = importlib.import_module(module_name)
            if name not in deprecated(module):
                getattr(module, name)
