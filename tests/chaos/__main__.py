r"""Run the chaos suite by hand: one seed, or many in a row.

    python -m tests.chaos --seed 1234                 # replay one seed, CI's size
    python -m tests.chaos --seed 1234 --minutes 10    # a long run (rounds of about 40 s)
    python -m tests.chaos --seeds 10 --minutes 2      # ten seeds in a row, from --seed

Each run keeps its directory (the workers' output, PostgreSQL's log) under
``--keep DIR`` (a temporary directory by default) and prints its summary;
the exit code is 1 if any run found anything.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import attrs

from tests.chaos import run as chaos_run
from tests.chaos.plan import Config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds in a row")
    parser.add_argument(
        "--minutes", type=float, default=None, help="faults for about this long (default: CI's)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds of episodes, instead")
    parser.add_argument("--users", type=int, default=None, help="winners to draw from")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="where to keep each run's files")
    parser.add_argument("--quiet", action="store_true", help="print the summaries only")
    return parser


def _config(args: argparse.Namespace, seed: int) -> Config:
    config = Config.ci(seed) if args.minutes is None else Config.long(seed, args.minutes)
    if args.rounds is not None:
        config = attrs.evolve(config, rounds=args.rounds)
    if args.users is not None:
        config = attrs.evolve(config, users=args.users)
    return attrs.evolve(config, workers=args.workers)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _stop_cleanly(signum: int, _frame: object) -> None:
    """SIGTERM or SIGINT: unwind, so that the workers and the server are stopped."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A shell starts a background job with SIGINT ignored: take both back.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_cleanly)
    first = args.seed if args.seed is not None else random.randrange(1_000_000)
    root = args.keep or Path(tempfile.mkdtemp(prefix="payout-chaos-"))
    failed = 0
    table = []
    for seed in range(first, first + args.seeds):
        directory = root / f"seed-{seed}"
        started = time.monotonic()
        result = chaos_run.run(
            _config(args, seed),
            directory,
            say=(lambda _line: None) if args.quiet else _say,
        )
        sys.stdout.write(result.summary() + "\n")
        sys.stdout.flush()
        table.append((seed, result.passed, time.monotonic() - started))
        failed += not result.passed
    if args.seeds > 1:
        sys.stdout.write("\nseed | result | seconds\n")
        for seed, passed, seconds in table:
            sys.stdout.write(f"{seed} | {'passed' if passed else 'FAILED'} | {seconds:.0f}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
