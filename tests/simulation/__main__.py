"""Run simulation seeds by hand: ``python -m tests.simulation --seeds 100000``.

Prints progress, and the first failing seed with the command that replays it.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.simulation import world


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--first", type=int, default=0, help="first seed of a range")
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds")
    args = parser.parse_args()
    chosen = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    started = time.perf_counter()
    steps = 0
    for n, seed in enumerate(chosen, 1):
        try:
            steps += world.run_seed(seed)
        except world.Violation as violation:
            print(f"FAILED {violation}", file=sys.stderr)  # noqa: T201
            return 1
        if n % 1000 == 0:
            elapsed = time.perf_counter() - started
            print(f"{n} seeds, {steps} steps, {elapsed:.1f} s", flush=True)  # noqa: T201
    elapsed = time.perf_counter() - started
    print(f"{len(chosen)} seeds passed, {steps} steps, {elapsed:.1f} s")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
