"""Configuration: one typed, frozen object built from flags and the environment.

Flags override environment variables (DESIGN 6). Settings are built from an
explicit mapping, never read from ``os.environ`` at import time, so tests pass
a dict. A bad value raises :class:`ConfigError` naming the variable and what
it accepts; the CLI turns that into exit code 2.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import attrs

from payout_adapters import redaction
from payout_core import models
from payout_core.services import tick

__all__ = ["AdminAddress", "ConfigError", "GatewayKind", "Settings", "redact_url"]


class ConfigError(Exception):
    """A configuration value is wrong; the message names it and what it accepts."""


class GatewayKind(enum.StrEnum):
    STRIPE = "stripe"
    SIMULATED = "simulated"


@attrs.frozen
class AdminAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# The URL with any password masked, for logs and ``status``: the one scrubber.
redact_url = redaction.scrub


def _secret_repr(value: object) -> str:
    return "<SECRET>" if value else "None"


@attrs.frozen(kw_only=True)
class Settings:
    """Everything the command needs, with DESIGN 6's defaults."""

    database_url: str | None = attrs.field(default=None, repr=lambda v: repr(v and redact_url(v)))
    stripe_api_key: str | None = attrs.field(default=None, repr=_secret_repr)
    stripe_api_base: str | None = None
    # The signed webhook receiver (webhooks serve; inside loop only when set).
    webhook_addr: AdminAddress | None = None
    stripe_webhook_secret: str | None = attrs.field(default=None, repr=_secret_repr)
    gateway: GatewayKind = GatewayKind.STRIPE
    interval_seconds: float = 300.0
    batch_size: int = 100
    concurrency: int = 8
    max_attempts: int = models.DEFAULT_MAX_ATTEMPTS
    admin_addr: AdminAddress | None = AdminAddress("127.0.0.1", 9108)
    lease_seconds: float = 600.0
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    stripe_timeout_seconds: float = 30.0
    stripe_rate_limit: float = 20.0
    # How long a command waits for a database connection before the operation
    # fails. Short, so that a tick during an outage fails (and SIGTERM is
    # honoured) within seconds rather than after the pool's default 30 s per call.
    database_timeout_seconds: float = 5.0
    # The longest one SQL statement may run before the server cancels it (the
    # tick fails and the next retries): a statement waiting on a stuck
    # session's lock must not hold a worker's connection, or its own locks,
    # for ever. `migrate` has its own, an hour.
    statement_timeout_seconds: float = 30.0

    @classmethod
    def from_sources(
        cls, environ: Mapping[str, str], flags: Mapping[str, object] | None = None
    ) -> Settings:
        """Build settings from environment variables, then flags on top.

        ``flags`` holds command-line values by field name; ``None`` means "not given".

        Raises:
            ConfigError: a value is malformed or out of range.
        """
        values: dict[str, Any] = {}
        for spec in _SPECS:
            raw = environ.get(spec.env)
            if raw is not None and raw.strip() != "":
                values[spec.field] = spec.parse(spec.env, raw.strip())
        for field, value in (flags or {}).items():
            if value is None:
                continue
            spec = _BY_FIELD[field]
            values[field] = spec.parse(spec.flag or spec.env, str(value))
        if values.get("retry_max_seconds", 3600.0) < values.get("retry_base_seconds", 30.0):
            raise ConfigError("PAYOUT_RETRY_MAX_SECONDS must be at least PAYOUT_RETRY_BASE_SECONDS")
        settings = cls(**values)
        settings.check_safety()
        return settings

    def check_safety(self) -> None:
        """Refuse settings that would break the exactly-once rules (DESIGN 3, rule 8).

        Raises:
            ConfigError: naming the variables and the least safe values.
        """
        problems = tick.unsafe_timing(
            lease=timedelta(seconds=self.lease_seconds),
            stripe_timeout=timedelta(seconds=self.stripe_timeout_seconds),
            retry_max=timedelta(seconds=self.retry_max_seconds),
        )
        if problems:
            raise ConfigError(
                "unsafe settings (PAYOUT_LEASE_SECONDS, PAYOUT_STRIPE_TIMEOUT_SECONDS, "
                "PAYOUT_RETRY_MAX_SECONDS): " + "; ".join(problems)
            )


#: The largest whole-number setting: far past any sane batch, concurrency or
#: attempt count, and well inside the database's 32-bit integers.
_MOST_INT = 1_000_000
#: The longest duration (or the highest rate) a setting takes: 30 days. Past it,
#: a value is a typo, and an arithmetic overflow later (a lease of 1e300 s).
_MOST_SECONDS = 30 * 24 * 3600.0


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= _MOST_INT:
        raise ConfigError(
            f"{name}={raw!r} is not valid: expected a whole number from 1 to {_MOST_INT:,}"
        )
    return value


def _positive_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not math.isfinite(value) or not 0 < value <= _MOST_SECONDS:
        raise ConfigError(
            f"{name}={raw!r} is not valid: expected a number greater than 0 and at most "
            f"{_MOST_SECONDS:,.0f}"
        )
    return value


def _database_url(name: str, raw: str) -> str:
    if not raw.startswith(("postgresql://", "postgres://")) and "=" not in raw:
        raise ConfigError(
            f"{name} is not valid: expected a postgresql:// URL or a libpq key=value string"
        )
    return raw


def _gateway(name: str, raw: str) -> GatewayKind:
    try:
        return GatewayKind(raw.lower())
    except ValueError:
        accepted = ", ".join(g.value for g in GatewayKind)
        raise ConfigError(f"{name}={raw!r} is not valid: expected one of {accepted}") from None


def _admin_addr(name: str, raw: str) -> AdminAddress | None:
    if raw.lower() == "off":
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"{name}={raw!r} is not valid: expected host:port (port 0 picks a free one) or 'off'"
        )
    return AdminAddress(host.strip("[]"), int(port))


def _api_base(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r} is not valid: expected an http:// or https:// URL")
    return raw.rstrip("/")


def _api_key(name: str, raw: str) -> str:
    # Never echo the value: only say what shape was expected.
    if not raw.startswith(("sk_", "rk_")):
        raise ConfigError(
            f"{name} is not valid: expected a Stripe secret key (sk_...) or restricted key (rk_...)"
        )
    return raw


def _webhook_secret(name: str, raw: str) -> str:
    # Never echo the value: only say what shape was expected.
    if not raw.startswith("whsec_") or len(raw) < 10:
        raise ConfigError(
            f"{name} is not valid: expected the endpoint's signing secret (whsec_...), "
            "shown by Stripe when the webhook endpoint is created"
        )
    return raw


@attrs.frozen
class _Spec:
    field: str
    env: str
    parse: Callable[[str, str], Any]
    flag: str | None = None


_SPECS = (
    _Spec("database_url", "PAYOUT_DATABASE_URL", _database_url, "--database-url"),
    _Spec("stripe_api_key", "STRIPE_API_KEY", _api_key),
    _Spec("stripe_api_base", "PAYOUT_STRIPE_API_BASE", _api_base),
    _Spec("webhook_addr", "PAYOUT_WEBHOOK_ADDR", _admin_addr, "--webhook-addr"),
    _Spec("stripe_webhook_secret", "STRIPE_WEBHOOK_SECRET", _webhook_secret),
    _Spec("gateway", "PAYOUT_GATEWAY", _gateway, "--gateway"),
    _Spec("interval_seconds", "PAYOUT_INTERVAL_SECONDS", _positive_seconds, "--interval"),
    _Spec("batch_size", "PAYOUT_BATCH_SIZE", _positive_int, "--batch-size"),
    _Spec("concurrency", "PAYOUT_CONCURRENCY", _positive_int, "--concurrency"),
    _Spec("max_attempts", "PAYOUT_MAX_ATTEMPTS", _positive_int),
    _Spec("admin_addr", "PAYOUT_ADMIN_ADDR", _admin_addr, "--admin-addr"),
    _Spec("lease_seconds", "PAYOUT_LEASE_SECONDS", _positive_seconds),
    _Spec("retry_base_seconds", "PAYOUT_RETRY_BASE_SECONDS", _positive_seconds),
    _Spec("retry_max_seconds", "PAYOUT_RETRY_MAX_SECONDS", _positive_seconds),
    _Spec("stripe_timeout_seconds", "PAYOUT_STRIPE_TIMEOUT_SECONDS", _positive_seconds),
    _Spec("stripe_rate_limit", "PAYOUT_STRIPE_RATE_LIMIT", _positive_seconds),
    _Spec("database_timeout_seconds", "PAYOUT_DATABASE_TIMEOUT_SECONDS", _positive_seconds),
    _Spec("statement_timeout_seconds", "PAYOUT_STATEMENT_TIMEOUT_SECONDS", _positive_seconds),
)
_BY_FIELD = {spec.field: spec for spec in _SPECS}
ENVIRONMENT_VARIABLES = tuple(spec.env for spec in _SPECS)
