"""The README's library example runs, and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).parents[2] / "README.md"


def library_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Library API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the Library API section has no python example"
    return match.group(1)


def test_the_library_example_runs_and_prints_what_it_promises() -> None:
    code = library_example()
    promised = [
        line.split("#", 1)[1].split("(", 1)[0].strip()
        for line in code.splitlines()
        if line.startswith("print(") and "#" in line
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), {})  # noqa: S102 - our own README
    assert printed.getvalue().split("\n")[:-1] == promised
