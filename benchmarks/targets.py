"""Every target of issue 9, run side by side in one invocation: ``bench.py targets``.

Each line prints the figure, the target and whether it was met. ``--scale``
shrinks every size (0.1 for a quick look); the figures in docs/performance.md
are from the full sizes (``--scale 1``, about 30 minutes on the 2-core machine).
"""

from __future__ import annotations

import attrs
import bench
from bench import Result, Scenario


@attrs.frozen
class Line:
    target: str
    figure: str
    met: bool

    def __str__(self) -> str:
        return f"{'met ' if self.met else 'MISS'}  {self.target}: {self.figure}"


def _n(full: int, scale: float) -> int:
    return max(50, round(full * scale))


def _run(base: str, scenario: Scenario) -> Result:
    result = bench.run(base, scenario)
    bench.report(result)
    return result


def run_all(base: str, *, scale: float) -> list[Line]:
    lines: list[Line] = []
    runs: list[Result] = []

    # Fleet limit: 200 ms, fleet 20/s, Stripe 25/s; 1 and 4 workers.
    for workers in (1, 4):
        r = _run(
            base,
            Scenario(
                transfers=_n(600, scale),
                workers=workers,
                latency_ms=200,
                rate_limit=20,
                stripe_limit=25,
            ),
        )
        runs.append(r)
        lines += [
            Line(
                f"fleet limit, {workers} worker(s): sustained >= 19/s",
                f"{r.sustained:.1f}/s",
                r.sustained >= 0.95 * 20,
            ),
            Line(
                f"fleet limit, {workers} worker(s): <= 20 creates in any second",
                f"{r.max_creates_in_a_second}",
                (r.max_creates_in_a_second or 0) <= 20,
            ),
            Line(
                f"fleet limit, {workers} worker(s): no 429", f"{r.stripe_429s}", r.stripe_429s == 0
            ),
        ]

    # Stripe tighter than configured: Stripe 10/s, fleet 20/s.
    r = _run(
        base,
        Scenario(
            transfers=_n(600, scale), workers=4, latency_ms=200, rate_limit=20, stripe_limit=10
        ),
    )
    runs.append(r)
    requests = (r.stripe_creates or 0) + (r.stripe_429s or 0)
    share = (r.stripe_429s or 0) / max(requests, 1)
    lines += [
        Line(
            "Stripe at 10/s under a fleet at 20/s: 429s < 10% of requests",
            f"{share:.1%} ({r.stripe_429s} of {requests})",
            share < 0.10,
        ),
        Line(
            "Stripe at 10/s under a fleet at 20/s: >= 8/s paid",
            f"sustained {r.sustained:.1f}/s, end to end {r.per_second:.1f}/s",
            r.sustained >= 8,
        ),
    ]

    # Scaling out: 200 ms, concurrency 8, no limit.
    one = _run(base, Scenario(transfers=_n(800, scale), workers=1, latency_ms=200))
    four = _run(base, Scenario(transfers=_n(3200, scale), workers=4, latency_ms=200))
    runs += [one, four]
    lines += [
        Line(
            "scaling: one worker at concurrency 8, 200 ms: >= 36/s",
            f"{one.per_second:.1f}/s",
            one.per_second >= 36,
        ),
        Line(
            "scaling: 4 workers >= 3.5 x one",
            f"{four.per_second / one.per_second:.2f} x ({four.per_second:.1f}/s)",
            four.per_second >= 3.5 * one.per_second,
        ),
    ]

    # Job size and cost: the simulated gateway (zero latency), one worker.
    # The same number of transfers in both, so that only the job's size differs
    # (the simulated gateway keeps every transfer it made, as Stripe would, so
    # its worker grows with the count, whatever the jobs).
    big_size = _n(200_000, scale)
    small = _run(base, Scenario(transfers=big_size, job_size=1000, gateway="simulated"))
    big = _run(base, Scenario(transfers=big_size, job_size=big_size, gateway="simulated"))
    runs += [small, big]
    ratio = big.per_second / small.per_second
    lines.append(
        Line(
            f"job size: a {big_size:,}-winner job >= 0.9 x 1,000-winner jobs",
            f"{ratio:.2f} ({big.per_second:.0f}/s vs {small.per_second:.0f}/s)",
            ratio >= 0.9,
        )
    )
    # Memory: the production path (the stripe SDK against the fake Stripe, which
    # keeps its transfers in its own process), zero latency. The simulated
    # gateway keeps every transfer it made in the worker, as a Stripe would.
    mem = _run(base, Scenario(transfers=_n(20_000, scale), job_size=1000))
    runs.append(mem)
    flat = mem.rss_at_5000_mb is not None and mem.rss_at_end_mb <= 1.1 * mem.rss_at_5000_mb
    lines += [
        Line(
            f"memory: peak RSS over {mem.paid:,} transfers < 150 MB",
            f"{mem.peak_rss_mb:.0f} MB",
            mem.peak_rss_mb < 150,
        ),
        Line(
            "memory: flat from 5,000 paid to the last (within 10%)",
            f"{mem.rss_at_5000_mb or 0:.0f} MB -> {mem.rss_at_end_mb:.0f} MB",
            flat,
        ),
    ]
    cost = Scenario(transfers=_n(5000, scale), job_size=1000, gateway="simulated")
    ours = _run(base, cost)
    runs.append(ours)
    figures = bench.baseline_figures(base, cost)
    for text in figures.lines(ours.per_second):
        print(text)
    lines += [
        Line(
            "cost: >= 0.7 of the minimal psycopg loop",
            f"{ours.per_second / figures.minimal:.2f}",
            ours.per_second >= 0.7 * figures.minimal,
        ),
        Line(
            "cost: >= 2 x procrastinate's no-op jobs",
            f"{ours.per_second / figures.procrastinate:.2f}",
            ours.per_second >= 2 * figures.procrastinate,
        ),
    ]

    held = max(r.max_held_per_worker - r.scenario.concurrency for r in runs)
    lines.append(
        Line(
            "claims: never more held than a worker's concurrency (every run above)",
            f"at most {held:+d} over",
            held <= 0,
        )
    )
    wrong = [f"{r.scenario.describe()}: {p}" for r in runs for p in r.correct]
    lines.append(Line("every run: all paid, none twice", "; ".join(wrong) or "yes", not wrong))
    print("\nTargets")
    for line in lines:
        print(f"  {line}")
    return lines
