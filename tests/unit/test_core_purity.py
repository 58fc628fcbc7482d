"""The core stays pure: importing it loads no I/O library, and it reads no environment."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import payout_core

FORBIDDEN = ["psycopg", "psycopg_pool", "stripe", "typer", "requests", "httpx", "urllib3"]
CORE = pathlib.Path(payout_core.__file__).parent


def test_importing_the_core_loads_no_io_library() -> None:
    script = (
        "import json, sys; import payout_core, payout_core.services.tick; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_the_core_source_never_reads_the_environment() -> None:
    sources = sorted(CORE.rglob("*.py"))
    assert sources, "the core's sources were not found"
    offenders = [
        str(path.relative_to(CORE))
        for path in sources
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert offenders == []


def test_the_core_imports_nothing_from_the_adapters_or_the_cli() -> None:
    offenders = [
        str(path.relative_to(CORE))
        for path in CORE.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("import payout_adapters", "from payout_adapters"))
        or line.lstrip().startswith(("import payout_cli", "from payout_cli"))
    ]
    assert offenders == []
