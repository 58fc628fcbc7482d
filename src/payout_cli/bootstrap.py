"""The composition root: settings in, adapters out. Nothing else wires adapters.

Every command, the demo and the benchmarks take what they work with from
here: the clock (:func:`clock`), the database and its adapters
(:func:`open_database`, :func:`migrate`), the gateways, and the wired worker
that ``loop`` and the demo run (:func:`worker`, :func:`demo_worker`).

Nothing here runs at import time: every resource (pool, embedded server,
Stripe client) is opened by a function the command calls, and closed by it.

It is longer than most modules, and one piece on purpose: it is the one place
where adapters are built, and a reader looking for how something is wired
should find it here, not in one of several files.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import attrs
import psycopg_pool

from payout_adapters import clock as clock_
from payout_adapters import postgres
from payout_adapters.memory import faults
from payout_adapters.memory import gateway as simulated
from payout_adapters.postgres import ledger_reader
from payout_cli import metrics as metrics_
from payout_cli import settings as settings_
from payout_core import ports, retry
from payout_core.services import tick
from payout_core.services import worker as worker_

if TYPE_CHECKING:
    from payout_adapters.stripe import gateway as stripe_adapter
    from payout_cli import webhooks as webhooks_

__all__ = [
    "DEMO_FAULTS",
    "DEMO_WORKER",
    "Database",
    "build_gateway",
    "build_operator_stripe",
    "build_webhook_receiver",
    "clock",
    "demo_worker",
    "migrate",
    "open_database",
    "open_demo_database",
    "require_current_schema",
    "require_gateway_settings",
    "require_webhook_settings",
    "simulated_gateway",
    "stripe_if_configured",
    "worker",
    "worker_name",
    "worker_settings",
]

log = logging.getLogger("payout.bootstrap")

# How long a readiness probe waits for a pooled connection: well within the
# second a probe is given (the admin server answers 503 after
# admin.READY_DEADLINE_SECONDS whatever happens).
PING_TIMEOUT_SECONDS: Final = 0.5


def clock() -> ports.Clock:
    """The clock of every command: the system's."""
    return clock_.SystemClock()


@attrs.frozen
class Database:
    """An open pool and the PostgreSQL adapters over it."""

    url: str = attrs.field(repr=False)
    shown_as: str  # what to tell the user (no password)
    pool: psycopg_pool.ConnectionPool
    store: postgres.PostgresStore
    directory: postgres.PostgresAccountDirectory
    inbox: postgres.PostgresInbox
    events: postgres.PostgresEventInbox  # Stripe's webhook events, stored then applied
    ledger: ledger_reader.PostgresLedgerReader  # the ledger export's, one snapshot per export
    # The fleet's pace toward Stripe: PAYOUT_STRIPE_RATE_LIMIT for every worker together.
    rate_limiter: postgres.PostgresRateLimiter

    def ping(self) -> bool:
        """Whether the database answers (``/readyz``). Waits at most
        :data:`PING_TIMEOUT_SECONDS` for a connection: while the database is
        down, the pool has none to lend, and a probe must hear so in time.

        Raises:
            psycopg_pool.PoolTimeout: no connection within that time.
            psycopg.OperationalError: the connection failed.
        """
        with self.pool.connection(timeout=PING_TIMEOUT_SECONDS) as conn:
            conn.execute("SELECT 1")
        return True


def resolve_database_url(settings: settings_.Settings) -> tuple[str, str]:
    """The URL to use and how to show it: the configured one, or the embedded server's."""
    if settings.database_url is not None:
        return settings.database_url, settings_.redact_url(settings.database_url)
    from payout_adapters import embedded  # noqa: PLC0415 - only a laptop without a URL needs it

    server = embedded.start()
    return server.url, f"embedded PostgreSQL in {server.data_dir}"


def migrate(settings: settings_.Settings) -> tuple[list[str], str]:
    """Apply the pending migrations to the configured database (``payout-core
    migrate``, a deploy step); the migrations applied, and how to show the
    database to the user.

    Raises:
        MigrationError: a migration failed; nothing of it was applied.
    """
    url, shown_as = resolve_database_url(settings)
    return postgres.migrate(url), shown_as


@contextlib.contextmanager
def open_database(
    settings: settings_.Settings, *, max_size: int | None = None
) -> Iterator[Database]:
    """Open a pool on the configured database and the adapters over it.

    The embedded database (no URL configured) is a laptop's own: it is brought
    up to date here, so a newcomer never has to run ``migrate``. A configured
    database is migrated only by ``payout-core migrate``, a deploy step.
    """
    url, shown_as = resolve_database_url(settings)
    if settings.database_url is None:
        postgres.migrate(url)
    size = max_size or settings.concurrency + 2
    pool = postgres.connect_pool(
        url,
        max_size=size,
        timeout=settings.database_timeout_seconds,
        # A database that refuses connections is told within the same wait.
        open_timeout=settings.database_timeout_seconds,
        statement_timeout=settings.statement_timeout_seconds,
    )
    try:
        yield Database(
            url=url,
            shown_as=shown_as,
            pool=pool,
            store=postgres.PostgresStore(pool),
            directory=postgres.PostgresAccountDirectory(pool),
            inbox=postgres.PostgresInbox(pool),
            events=postgres.PostgresEventInbox(pool),
            ledger=ledger_reader.PostgresLedgerReader(pool),
            rate_limiter=postgres.PostgresRateLimiter(
                pool, dict.fromkeys(ports.Budget, settings.stripe_rate_limit)
            ),
        )
    finally:
        pool.close()


@contextlib.contextmanager
def open_demo_database() -> Iterator[Database]:
    """The demo's database: always the embedded server, whatever
    PAYOUT_DATABASE_URL says, so that a demo never writes its fake winners into
    a real database."""
    with open_database(settings_.Settings(), max_size=10) as db:
        yield db


def require_gateway_settings(settings: settings_.Settings) -> None:
    """Refuse, before anything runs, a Stripe gateway without a key.

    Raises:
        ConfigError: the Stripe gateway was asked for without ``STRIPE_API_KEY``.
    """
    if settings.gateway is settings_.GatewayKind.STRIPE and settings.stripe_api_key is None:
        raise settings_.ConfigError(
            "STRIPE_API_KEY is not set: the stripe gateway needs a secret key "
            "(or run with --gateway simulated, which moves no money)"
        )


def build_gateway(
    settings: settings_.Settings,
    *,
    metrics: metrics_.Metrics | None = None,
    limiter: ports.RateLimiter | None = None,
    clock: ports.Clock | None = None,
) -> ports.PaymentGateway:
    """The configured gateway. Refuses to build Stripe's without a key.
    ``limiter`` paces Stripe's requests (the fleet's, from :class:`Database`);
    by default one of this process alone. ``clock`` is the simulated
    gateway's (by default the system's).

    Raises:
        ConfigError: the Stripe gateway was asked for without ``STRIPE_API_KEY``.
    """
    require_gateway_settings(settings)
    gateway: ports.PaymentGateway
    if settings.gateway is settings_.GatewayKind.SIMULATED:
        log.warning(
            "payout.gateway.simulated",
            extra={"reason": "PAYOUT_GATEWAY=simulated: NO MONEY MOVES, transfers are simulated"},
        )
        gateway = simulated_gateway(clock=clock or clock_.SystemClock())
    else:
        gateway = _stripe_gateway(settings, limiter)
    if metrics is not None:
        gateway = metrics_.InstrumentedGateway(gateway, metrics)
    return gateway


def worker_settings(settings: settings_.Settings) -> tick.WorkerSettings:
    return tick.WorkerSettings(
        batch_size=settings.batch_size,
        concurrency=settings.concurrency,
        lease=timedelta(seconds=settings.lease_seconds),
        stripe_timeout=timedelta(seconds=settings.stripe_timeout_seconds),
        retry_policy=retry.RetryPolicy(
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            uniform=random.SystemRandom().random,
        ),
        max_attempts=settings.max_attempts,
    )


def simulated_gateway(
    *, clock: ports.Clock, latency: tuple[float, float] = (0.0, 0.0)
) -> simulated.SimulatedGateway:
    """Stripe simulated in this process: no money moves, no fault unless
    scripted. ``latency``: each request sleeps a time drawn in this range of
    seconds, as a real call would take (a benchmark's)."""
    return simulated.SimulatedGateway(clock=clock, latency=latency)


def worker_name() -> str:
    """How a worker names itself in its claim tokens: its host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker(
    settings: settings_.Settings,
    db: Database,
    *,
    metrics: metrics_.Metrics | None = None,
    gateway: ports.PaymentGateway | None = None,
) -> worker_.Worker:
    """The worker ``payout-core loop`` runs: ``db``'s store, directory and
    inbox, the configured gateway (:func:`build_gateway`, counted in
    ``metrics``) on the system clock, the tick's settings from ``settings``,
    and a name of its host and process for its claim tokens.

    Every worker of the fleet takes its Stripe requests from one schedule
    (``db.rate_limiter``), and claims follow that budget; the simulated gateway
    has none, and its worker claims for every free slot. ``gateway`` replaces
    the configured one (a benchmark's simulated Stripe with latency).

    Raises:
        ConfigError: the Stripe gateway was asked for without ``STRIPE_API_KEY``.
    """
    system = clock()
    if gateway is None:
        gateway = build_gateway(settings, metrics=metrics, limiter=db.rate_limiter, clock=system)
    simulating = settings.gateway is settings_.GatewayKind.SIMULATED
    return worker_.Worker(
        store=db.store,
        directory=db.directory,
        inbox=db.inbox,
        gateway=gateway,
        clock=system,
        settings=worker_settings(settings),
        limiter=None if simulating else db.rate_limiter,
        name=worker_name(),
    )


# Seconds instead of minutes, so that the demo's retries and the look-ups after
# a simulated 500 happen while you watch. Safe only because no money moves.
DEMO_WORKER: Final = tick.WorkerSettings(
    batch_size=25,
    concurrency=8,
    lease=timedelta(seconds=10),
    stripe_timeout=timedelta(seconds=1),
    send_start_limit=timedelta(seconds=1),
    retry_policy=retry.RetryPolicy(base_seconds=0.2, max_seconds=2.0),
)
# What goes wrong at the demo's simulated Stripe, and how often.
DEMO_FAULTS: Final = faults.FaultRates(
    lost_response=0.06, server_error=0.04, rate_limited=0.06, key_in_use=0.02
)


def demo_worker(db: Database, *, seed: int) -> tuple[worker_.Worker, simulated.SimulatedGateway]:
    """The demo's worker over ``db`` (:func:`open_demo_database`), and the
    simulated Stripe it pays through, which loses responses, answers 500 and
    rate-limits at random (``seed`` replays the same faults).

    It takes nothing from the inbox: the demo schedules its own settlement.
    """
    system = clock()
    gateway = simulated.SimulatedGateway.with_random_faults(
        seed=seed, rates=DEMO_FAULTS, latency=(0.005, 0.03), clock=system
    )
    demo = worker_.Worker(
        store=db.store, directory=db.directory, gateway=gateway, clock=system, settings=DEMO_WORKER
    )
    return demo, gateway


def _stripe_gateway(
    settings: settings_.Settings, limiter: ports.RateLimiter | None = None
) -> stripe_adapter.StripeGateway:
    # The SDK takes a third of a command's start-up; only commands that talk to
    # Stripe load it.
    import stripe  # noqa: PLC0415

    from payout_adapters.stripe import gateway as stripe_adapter  # noqa: PLC0415

    # The SDK reports request latencies to Stripe and writes a telemetry id
    # under ~/.config by default; a payout worker keeps to its own traffic.
    stripe.enable_telemetry = False
    if settings.stripe_api_key is None:
        raise settings_.ConfigError("STRIPE_API_KEY is not set")
    if limiter is None:
        return stripe_adapter.StripeGateway(
            api_key=settings.stripe_api_key,
            api_base=settings.stripe_api_base,
            timeout_seconds=settings.stripe_timeout_seconds,
            rate_limit=settings.stripe_rate_limit,
        )
    return stripe_adapter.StripeGateway(
        api_key=settings.stripe_api_key,
        api_base=settings.stripe_api_base,
        timeout_seconds=settings.stripe_timeout_seconds,
        limiter=limiter,
    )


def build_operator_stripe(
    settings: settings_.Settings, *, limiter: ports.RateLimiter
) -> stripe_adapter.StripeGateway:
    """Stripe for ``reconcile`` and the operator's commands (its records, and
    reversals), paced by ``limiter`` (the fleet's, from :class:`Database`: an
    operator's requests spend the fleet's budgets like a worker's).

    Raises:
        ConfigError: no Stripe to read (the simulated gateway holds nothing
            between processes), or no ``STRIPE_API_KEY``.
    """
    if settings.gateway is settings_.GatewayKind.SIMULATED:
        raise settings_.ConfigError(
            "this command reads Stripe, and PAYOUT_GATEWAY=simulated has no Stripe to read: "
            "run it with the stripe gateway and STRIPE_API_KEY"
        )
    return _stripe_gateway(settings, limiter)


def stripe_if_configured(
    settings: settings_.Settings, *, limiter: ports.RateLimiter
) -> stripe_adapter.StripeGateway | None:
    """:func:`build_operator_stripe` when there is a Stripe to ask (the stripe
    gateway and a key), else ``None``: for what also works without Stripe
    (``transfers show``, ``reconcile`` of the database alone, the webhook
    receiver's listing of reversals an event left out)."""
    if settings.gateway is settings_.GatewayKind.STRIPE and settings.stripe_api_key is not None:
        return build_operator_stripe(settings, limiter=limiter)
    return None


def require_webhook_settings(settings: settings_.Settings) -> str:
    """The webhook endpoint's signing secret; refuses to go on without one.

    Raises:
        ConfigError: no ``STRIPE_WEBHOOK_SECRET``.
    """
    if settings.stripe_webhook_secret is None:
        raise settings_.ConfigError(
            "STRIPE_WEBHOOK_SECRET is not set: the webhook receiver verifies every event with "
            "the endpoint's signing secret (whsec_...), and refuses to start without it"
        )
    return settings.stripe_webhook_secret


def build_webhook_receiver(
    settings: settings_.Settings,
    db: Database,
    *,
    address: settings_.AdminAddress,
    clock: ports.Clock,
) -> webhooks_.WebhookReceiver:
    """The signed webhook receiver over ``db``'s event inbox and store. With a
    Stripe key it can list a transfer's reversals when an event leaves some out.

    Raises:
        ConfigError: no ``STRIPE_WEBHOOK_SECRET``.
    """
    from payout_cli import webhooks as webhooks_  # noqa: PLC0415 - loads the stripe SDK

    secret = require_webhook_settings(settings)
    lister = stripe_if_configured(settings, limiter=db.rate_limiter)
    return webhooks_.WebhookReceiver(
        address=address,
        secret=secret,
        inbox=db.events,
        clock=clock,
        apply=functools.partial(webhooks_.drain, db.events, db.store, lister, clock),
    )


def require_current_schema(db: Database) -> None:
    """Refuse to work on a database whose schema is behind this release.

    Raises:
        MigrationError: migrations are pending (run ``payout-core migrate``).
    """
    pending = postgres.pending_migrations(db.pool)
    if pending:
        raise postgres.MigrationError(
            None,
            f"{len(pending)} migration(s) pending ({', '.join(pending)}): "
            "run `payout-core migrate` first",
        )
