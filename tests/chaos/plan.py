"""What a chaos run will do, drawn from its seed before anything starts.

A :class:`Plan` is pure data: the winners and their accounts, every settlement
and when and how it arrives, every fault episode and when it begins, and the
seeds of the fake Stripe's random fault mixes. The same seed gives the same
plan. What the processes then do in between (which transfer a SIGKILL catches
mid-request, which request draws which fault) depends on real timing and does
not replay exactly; the seed replays the storm, not every raindrop.

Episodes never overlap (one ends before the next begins): each is a fault the
fleet must come through on its own, while the Stripe mix, the settlements and
the other workers go on around it.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence

import attrs

from tests.kit.builders import settlement_json

__all__ = ["Arrival", "Config", "Episode", "Kind", "Plan", "Via", "Winner"]


class Kind(enum.Enum):
    KILL = "kill"  # SIGKILL one worker, start another in its place after `seconds`
    PG_RESTART = "pg_restart"  # stop PostgreSQL (immediate: a crash) and start it again
    PG_OUTAGE = "pg_outage"  # PostgreSQL down for `seconds`, several ticks
    BALANCE = "balance"  # the platform balance is empty for `seconds`
    KEY_ROTATION = "key_rotation"  # the key is revoked; `seconds` of 401s, then rolled
    PAUSE = "pause"  # `payout-core pause`, `seconds`, `payout-core resume`
    RATE_LIMITED = "rate_limited"  # Stripe answers 429 to every request for `seconds`
    REVERSAL = "reversal"  # a paid transfer is partly reversed at Stripe; a webhook tells us


class Via(enum.Enum):
    CLI = "cli"  # payout-core schedule -
    INBOX = "inbox"  # INSERT INTO payout_settlement_inbox


@attrs.frozen(kw_only=True)
class Config:
    """The size of a run. :meth:`ci` is the configuration CI runs; :meth:`long`
    the one run by hand."""

    seed: int
    rounds: int = 1  # each round: every kind of episode (KILL `kills` times), shuffled
    kills: int = 2
    workers: int = 3
    users: int = 48
    settlements_per_second: float = 1.0
    max_winners: int = 8
    # How long the fleet has to pay everything once the faults stop: a bound
    # against a hang, not a measurement.
    drain_seconds: float = 150.0

    @classmethod
    def ci(cls, seed: int) -> Config:
        return cls(seed=seed)

    @classmethod
    def long(cls, seed: int, minutes: float) -> Config:
        """About ``minutes`` of faults (a round lasts about 40 s)."""
        return cls(seed=seed, rounds=max(1, round(minutes * 60 / 40)), users=200)

    def command(self) -> str:
        """The command that runs this configuration again."""
        extra = [
            f"--{name} {getattr(self, name)}"
            for name in ("rounds", "users", "workers")
            if getattr(self, name) != getattr(Config.ci(self.seed), name)
        ]
        return " ".join(["python -m tests.chaos", f"--seed {self.seed}", *extra])


@attrs.frozen(kw_only=True)
class Winner:
    user_id: str
    # What payout-core's directory says (None: never connected), and what
    # Stripe says of that account.
    account: str | None
    closed_at_stripe: bool = False
    connect_with_cli: bool = False  # `payout-core accounts set`, else SQL

    @property
    def payable(self) -> bool:
        return self.account is not None and not self.closed_at_stripe


@attrs.frozen(kw_only=True)
class Arrival:
    at: float  # seconds after the chaos began
    via: Via
    settlement: dict[str, object]
    # The same settlement again (a retry of the sender): it must map to the same job.
    duplicate: bool = False
    malformed: bool = False  # an inbox row the intake must reject without blocking the rest


@attrs.frozen(kw_only=True)
class Episode:
    at: float  # not before this many seconds after the chaos began
    kind: Kind
    seconds: float  # how long it lasts (for a kill: until the replacement starts)
    worker: int = 0  # which worker slot a kill takes
    immediate: bool = False  # PostgreSQL stopped as a crash, not cleanly


@attrs.frozen(kw_only=True)
class Plan:
    config: Config
    winners: Sequence[Winner]
    arrivals: Sequence[Arrival]
    episodes: Sequence[Episode]
    chaos_seconds: float  # when the last episode is planned to end
    stripe_mix_seed: int
    lookup_mix_seed: int

    @classmethod
    def draw(cls, config: Config) -> Plan:
        rng = random.Random(config.seed)
        winners = _winners(rng, config)
        episodes, end = _episodes(rng, config)
        arrivals = _arrivals(rng, config, winners, end)
        return cls(
            config=config,
            winners=winners,
            arrivals=arrivals,
            episodes=episodes,
            chaos_seconds=end,
            stripe_mix_seed=rng.randrange(2**32),
            lookup_mix_seed=rng.randrange(2**32),
        )

    def winner(self, user_id: str) -> Winner:
        return next(w for w in self.winners if w.user_id == user_id)


def _winners(rng: random.Random, config: Config) -> list[Winner]:
    """Most winners connected to an active account; a few never connected, a
    few connected to an account Stripe closed: those fail, and must not be paid."""
    winners = []
    for n in range(config.users):
        user = f"u-{n:04d}"
        roll = rng.random()
        if roll < 0.06:
            winners.append(Winner(user_id=user, account=None))
        elif roll < 0.10:
            winners.append(
                Winner(user_id=user, account=f"acct_closed{n:04d}", closed_at_stripe=True)
            )
        else:
            winners.append(
                Winner(
                    user_id=user,
                    account=f"acct_chaos{n:04d}",
                    connect_with_cli=rng.random() < 0.1,
                )
            )
    return winners


def _episodes(rng: random.Random, config: Config) -> tuple[list[Episode], float]:
    episodes: list[Episode] = []
    at = rng.uniform(2.0, 4.0)  # let the fleet get going first
    for _ in range(config.rounds):
        kinds = [Kind.KILL] * config.kills + [k for k in Kind if k is not Kind.KILL]
        rng.shuffle(kinds)
        for kind in kinds:
            episode = _episode(rng, kind, at, config)
            episodes.append(episode)
            # A key rotation restarts every worker after its window: time for that too.
            busy = episode.seconds + (2.0 * config.workers if kind is Kind.KEY_ROTATION else 0)
            at += busy + rng.uniform(1.0, 3.0)
    return episodes, at


def _episode(rng: random.Random, kind: Kind, at: float, config: Config) -> Episode:
    match kind:
        case Kind.KILL:
            return Episode(
                at=at,
                kind=kind,
                seconds=rng.uniform(0.2, 2.0),
                worker=rng.randrange(config.workers),
            )
        case Kind.PG_RESTART:
            return Episode(at=at, kind=kind, seconds=0.0, immediate=rng.random() < 0.7)
        case Kind.PG_OUTAGE:
            # Longer than a tick (0.5 s) many times over.
            return Episode(
                at=at, kind=kind, seconds=rng.uniform(2.5, 4.0), immediate=rng.random() < 0.5
            )
        case Kind.BALANCE:
            return Episode(at=at, kind=kind, seconds=rng.uniform(2.0, 4.0))
        case Kind.KEY_ROTATION:
            return Episode(at=at, kind=kind, seconds=rng.uniform(1.5, 3.0))
        case Kind.PAUSE:
            return Episode(at=at, kind=kind, seconds=rng.uniform(3.0, 4.5))
        case Kind.RATE_LIMITED:
            return Episode(at=at, kind=kind, seconds=rng.uniform(1.0, 2.0))
        case Kind.REVERSAL:
            return Episode(at=at, kind=kind, seconds=0.0)


def _arrivals(
    rng: random.Random, config: Config, winners: Sequence[Winner], end: float
) -> list[Arrival]:
    arrivals: list[Arrival] = []
    count = max(4, round(end * config.settlements_per_second))
    times = sorted(rng.uniform(0.0, end) for _ in range(count))
    for n, at in enumerate(times):
        size = rng.randint(1, config.max_winners)
        chosen = rng.sample(list(winners), size)
        settlement = settlement_json(
            f"stl-{config.seed}-{n:04d}",
            {w.user_id: rng.randint(100, 50_000) for w in chosen},  # sampled: no user twice
            contest_id=f"contest-{config.seed}-{n:04d}",
        )
        via = Via.CLI if rng.random() < 0.5 else Via.INBOX
        arrivals.append(Arrival(at=at, via=via, settlement=settlement))
        if rng.random() < 0.1:  # the sender retries, through the other door, a little later
            again = Via.INBOX if via is Via.CLI else Via.CLI
            arrivals.append(
                Arrival(
                    at=min(end, at + rng.uniform(0.5, 5.0)),
                    via=again,
                    settlement=settlement,
                    duplicate=True,
                )
            )
    # One malformed row: rejected with its reason, never blocking the others.
    bad = settlement_json(
        f"stl-{config.seed}-malformed",
        {winners[0].user_id: "12.50"},
        contest_id=f"contest-{config.seed}-malformed",
    )
    arrivals.append(Arrival(at=rng.uniform(0, end), via=Via.INBOX, settlement=bad, malformed=True))
    return sorted(arrivals, key=lambda a: a.at)
