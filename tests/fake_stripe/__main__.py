r"""The fake Stripe as a process of its own, for benchmarks that run several workers.

    python -m tests.fake_stripe --latency-ms 200 --rate-limit 25 --accept-any-account

It serves on 127.0.0.1 (a free port unless ``--port``) and prints one JSON
line, ``{"url": ..., "api_key": ...}``, as soon as it accepts connections.
It stops when its standard input closes (start it with ``stdin=PIPE``: it
then dies with its parent; ``--ignore-stdin`` serves regardless) or on
SIGTERM or SIGINT, and then prints a JSON report of the run (or writes it to
``--report FILE``): see :class:`tests.fake_stripe.model.Report`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

import attrs

from tests.fake_stripe.model import DEFAULT_API_KEY, FakeStripe
from tests.fake_stripe.server import FakeStripeServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_stripe", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="0 (the default): any free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the least time any request takes"
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        help="requests per second allowed for each endpoint, over a rolling second "
        "(default: no limit)",
    )
    parser.add_argument(
        "--retry-after", type=float, default=None, help="seconds, sent with every 429"
    )
    parser.add_argument(
        "--accept-any-account",
        action="store_true",
        help="every destination is an active connected account",
    )
    parser.add_argument(
        "--accounts-prefix",
        default=None,
        help="like --accept-any-account, for destinations starting with this prefix only",
    )
    parser.add_argument("--report", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--ignore-stdin",
        action="store_true",
        help="serve until a signal, even when standard input closes",
    )
    return parser


def _stop_on_signals(stop: threading.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())


def _stop_at_end_of_input(stop: threading.Event) -> None:
    """Stop once standard input closes: the parent exited, or asked us to stop."""

    def drain() -> None:
        if sys.stdin is not None:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        stop.set()

    # A daemon thread, so a read blocked on a silent pipe does not keep the process
    # alive; reading the descriptor, not sys.stdin, whose buffer's lock the blocked
    # thread would hold while the interpreter shuts down (a fatal error).
    threading.Thread(target=drain, name="fake-stripe-stdin", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    fake = FakeStripe(
        api_key=args.api_key,
        latency=args.latency_ms / 1000,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        accept_any_account=args.accept_any_account or args.accounts_prefix is not None,
        accounts_prefix=args.accounts_prefix or "",
    )
    server = FakeStripeServer(fake, port=args.port)
    stop = threading.Event()
    _stop_on_signals(stop)  # before the URL is out: a parent may signal as soon as it reads it
    server.start()
    sys.stdout.write(json.dumps({"url": server.url, "api_key": server.api_key}) + "\n")
    sys.stdout.flush()
    if not args.ignore_stdin:
        _stop_at_end_of_input(stop)
    while not stop.wait(1.0):  # a timeout, so a signal is seen on any platform
        pass
    server.stop()
    report = json.dumps(attrs.asdict(fake.report()))
    if args.report is not None:
        args.report.write_text(report + "\n")
    else:
        sys.stdout.write(report + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
