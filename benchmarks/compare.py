r"""Throughput of this tree against a baseline tree, side by side in one run.

    git worktree add /tmp/baseline <revision>
    PAYOUT_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        python benchmarks/compare.py --baseline /tmp/baseline --rounds 3 -- --transfers 3000

Runs ``benchmarks/throughput.py`` of each tree in turn (baseline, this, baseline,
this, ...) against the same PostgreSQL, each on the code of its own tree, and
prints every figure and the ratio of the medians. Alternating rounds share
whatever the machine is doing, so the ratio means more than either figure.
Everything after ``--`` goes to both runs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"paid \d+ transfers in [\d.]+ s: ([\d,]+) transfers/s")


def run(tree: Path, extra: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    result = subprocess.run(  # noqa: S603 - our own script, our own interpreter
        [sys.executable, str(tree / "benchmarks" / "throughput.py"), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = FIGURE.search(result.stdout)
    if found is None:
        raise SystemExit(f"no figure in the output of {tree}:\n{result.stdout}{result.stderr}")
    return float(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="arguments for throughput.py (after --)")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"baseline": [], "this tree": []}
    for n in range(1, args.rounds + 1):
        for name, tree in (("baseline", args.baseline.resolve()), ("this tree", HERE)):
            figure = run(tree, args.extra)
            figures[name].append(figure)
            print(f"round {n}: {name:9} {figure:8,.0f} transfers/s", flush=True)
    base, this = (statistics.median(figures[k]) for k in ("baseline", "this tree"))
    print(f"median: baseline {base:,.0f}/s, this tree {this:,.0f}/s, ratio {this / base:.2f}")


if __name__ == "__main__":
    main()
