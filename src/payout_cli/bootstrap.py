"""The composition root: settings in, adapters out. Nothing else wires adapters.

Nothing here runs at import time: every resource (pool, embedded server,
Stripe client) is opened by a function the command calls, and closed by it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import attrs
import psycopg_pool

from payout_adapters import clock as clock_
from payout_adapters import postgres
from payout_adapters.memory import gateway as simulated
from payout_cli import metrics as metrics_
from payout_cli import settings as settings_
from payout_core import ports, retry
from payout_core.services import tick

if TYPE_CHECKING:
    from payout_adapters.stripe import gateway as stripe_adapter
    from payout_cli import webhooks as webhooks_

__all__ = [
    "Database",
    "build_gateway",
    "build_operator_stripe",
    "build_webhook_receiver",
    "open_database",
    "require_current_schema",
    "require_gateway_settings",
    "require_webhook_settings",
    "stripe_if_configured",
    "worker_settings",
]

log = logging.getLogger("payout.bootstrap")

# How long a readiness probe waits for a pooled connection: well within the
# second a probe is given (the admin server answers 503 after
# admin.READY_DEADLINE_SECONDS whatever happens).
PING_TIMEOUT_SECONDS: Final = 0.5


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
            rate_limiter=postgres.PostgresRateLimiter(
                pool, dict.fromkeys(ports.Budget, settings.stripe_rate_limit)
            ),
        )
    finally:
        pool.close()


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
) -> ports.PaymentGateway:
    """The configured gateway. Refuses to build Stripe's without a key.
    ``limiter`` paces Stripe's requests (the fleet's, from :class:`Database`);
    by default one of this process alone.

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
        gateway = simulated.SimulatedGateway(clock=clock_.SystemClock())
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
    )


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
