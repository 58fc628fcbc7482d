"""The README's test example for services runs as a downstream suite would run it."""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[2] / "README.md"


def readme_tests_example() -> str:
    section = README.read_text(encoding="utf-8").split("### In the service's tests", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's tests section has no python example"
    return match.group(1)


def test_the_readme_test_example_passes_under_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_from_the_readme=readme_tests_example())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
