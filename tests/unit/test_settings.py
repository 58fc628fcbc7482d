"""Configuration from the environment and flags: typed, validated, secrets never shown."""

from __future__ import annotations

import pytest

from payout_adapters import postgres
from payout_cli import bootstrap
from payout_cli import settings as s
from payout_core import errors

KEY = "sk_test_51SecretValueNeverShown"


def test_defaults_follow_the_design() -> None:
    got = s.Settings.from_sources({})
    assert got.database_url is None
    assert got.gateway is s.GatewayKind.STRIPE
    assert (got.interval_seconds, got.batch_size, got.concurrency, got.max_attempts) == (
        300.0,
        100,
        8,
        5,
    )
    assert got.admin_addr == s.AdminAddress("127.0.0.1", 9108)
    assert (got.lease_seconds, got.retry_base_seconds, got.retry_max_seconds) == (600, 30, 3600)
    assert (got.stripe_timeout_seconds, got.stripe_rate_limit) == (30, 20)
    assert got.database_timeout_seconds == 5
    assert got.statement_timeout_seconds == 30


def test_every_variable_is_read() -> None:
    got = s.Settings.from_sources(
        {
            "PAYOUT_DATABASE_URL": "postgresql://u:pw@db/payouts",
            "STRIPE_API_KEY": KEY,
            "PAYOUT_STRIPE_API_BASE": "http://127.0.0.1:12111/",
            "PAYOUT_GATEWAY": "simulated",
            "PAYOUT_INTERVAL_SECONDS": "5",
            "PAYOUT_BATCH_SIZE": "7",
            "PAYOUT_CONCURRENCY": "3",
            "PAYOUT_MAX_ATTEMPTS": "9",
            "PAYOUT_ADMIN_ADDR": "[::1]:0",
            "PAYOUT_LEASE_SECONDS": "65",
            "PAYOUT_RETRY_BASE_SECONDS": "1",
            "PAYOUT_RETRY_MAX_SECONDS": "40",
            "PAYOUT_STRIPE_TIMEOUT_SECONDS": "2.5",
            "PAYOUT_STRIPE_RATE_LIMIT": "12.5",
        }
    )
    assert got.database_url == "postgresql://u:pw@db/payouts"
    assert got.stripe_api_key == KEY
    assert got.stripe_api_base == "http://127.0.0.1:12111"
    assert got.gateway is s.GatewayKind.SIMULATED
    assert (got.interval_seconds, got.batch_size, got.concurrency, got.max_attempts) == (5, 7, 3, 9)
    assert got.admin_addr == s.AdminAddress("::1", 0)
    assert (got.lease_seconds, got.retry_base_seconds, got.retry_max_seconds) == (65, 1, 40)
    assert (got.stripe_timeout_seconds, got.stripe_rate_limit) == (2.5, 12.5)


def test_flags_override_the_environment() -> None:
    got = s.Settings.from_sources(
        {"PAYOUT_BATCH_SIZE": "7", "PAYOUT_GATEWAY": "stripe"},
        {"batch_size": 50, "gateway": "simulated", "concurrency": None},
    )
    assert (got.batch_size, got.gateway, got.concurrency) == (50, s.GatewayKind.SIMULATED, 8)


def test_the_statement_timeout_is_read_and_must_be_positive() -> None:
    got = s.Settings.from_sources({"PAYOUT_STATEMENT_TIMEOUT_SECONDS": "2.5"})
    assert got.statement_timeout_seconds == 2.5
    for never in ("0", "-1", "inf"):
        with pytest.raises(s.ConfigError, match="PAYOUT_STATEMENT_TIMEOUT_SECONDS"):
            s.Settings.from_sources({"PAYOUT_STATEMENT_TIMEOUT_SECONDS": never})


def test_the_admin_server_listens_on_loopback_unless_told_otherwise() -> None:
    assert s.Settings.from_sources({}).admin_addr == s.AdminAddress("127.0.0.1", 9108)
    told = s.Settings.from_sources({"PAYOUT_ADMIN_ADDR": "0.0.0.0:9108"})
    assert told.admin_addr == s.AdminAddress("0.0.0.0", 9108)  # noqa: S104


def test_the_admin_server_can_be_turned_off() -> None:
    assert s.Settings.from_sources({"PAYOUT_ADMIN_ADDR": "off"}).admin_addr is None


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("PAYOUT_BATCH_SIZE", "0", "whole number from 1 to"),
        ("PAYOUT_BATCH_SIZE", "ten", "whole number from 1 to"),
        ("PAYOUT_CONCURRENCY", "2.5", "whole number from 1 to"),
        ("PAYOUT_INTERVAL_SECONDS", "-1", "greater than 0"),
        ("PAYOUT_INTERVAL_SECONDS", "nan", "greater than 0"),
        ("PAYOUT_LEASE_SECONDS", "inf", "greater than 0"),
        ("PAYOUT_GATEWAY", "paypal", "stripe, simulated"),
        ("PAYOUT_ADMIN_ADDR", "9108", "host:port"),
        ("PAYOUT_ADMIN_ADDR", "localhost:99999", "host:port"),
        ("PAYOUT_DATABASE_URL", "mysql://x", "postgresql://"),
        ("PAYOUT_STRIPE_API_BASE", "127.0.0.1:12111", "http://"),
        ("STRIPE_API_KEY", "pk_test_publishable", "secret key"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(
    variable: str, value: str, said: str
) -> None:
    with pytest.raises(s.ConfigError) as caught:
        s.Settings.from_sources({variable: value})
    assert variable in str(caught.value)
    assert said in str(caught.value)


def test_a_bad_flag_names_the_flag() -> None:
    with pytest.raises(s.ConfigError, match="--batch-size"):
        s.Settings.from_sources({}, {"batch_size": 0})


def test_a_retry_cap_below_the_base_is_refused() -> None:
    with pytest.raises(s.ConfigError, match="PAYOUT_RETRY_MAX_SECONDS"):
        s.Settings.from_sources(
            {"PAYOUT_RETRY_BASE_SECONDS": "60", "PAYOUT_RETRY_MAX_SECONDS": "30"}
        )


# -- rule 8: settings that would break the exactly-once rules are refused -----------------


def test_the_default_timings_are_safe() -> None:
    s.Settings().check_safety()
    assert s.Settings.from_sources({}).lease_seconds == 600


@pytest.mark.parametrize(
    ("environ", "variable", "said"),
    [
        ({"PAYOUT_LEASE_SECONDS": "119"}, "PAYOUT_LEASE_SECONDS", "so at least 120 s"),
        (
            {"PAYOUT_STRIPE_TIMEOUT_SECONDS": "300"},
            "PAYOUT_STRIPE_TIMEOUT_SECONDS",
            "the lease (600 s) must be at least twice the send margin",
        ),
        (
            {"PAYOUT_RETRY_BASE_SECONDS": "1", "PAYOUT_RETRY_MAX_SECONDS": "59"},
            "PAYOUT_RETRY_MAX_SECONDS",
            "the retry cap (59 s) must be at least the send margin (60 s)",
        ),
    ],
    ids=["lease-too-short", "stripe-timeout-too-long-for-the-lease", "retry-cap-below-margin"],
)
def test_timings_that_would_break_the_exactly_once_rules_are_refused_naming_the_variables(
    environ: dict[str, str], variable: str, said: str
) -> None:
    with pytest.raises(s.ConfigError) as caught:
        s.Settings.from_sources(environ)
    assert variable in str(caught.value)
    assert said in str(caught.value)


def test_every_unsafe_timing_is_named_at_once() -> None:
    with pytest.raises(s.ConfigError) as caught:
        s.Settings.from_sources(
            {
                "PAYOUT_LEASE_SECONDS": "60",
                "PAYOUT_RETRY_BASE_SECONDS": "1",
                "PAYOUT_RETRY_MAX_SECONDS": "10",
            }
        )
    assert "the lease (60 s)" in str(caught.value)
    assert "the retry cap (10 s)" in str(caught.value)


def test_timings_at_the_limits_of_safety_are_accepted() -> None:
    got = s.Settings.from_sources(
        {
            "PAYOUT_LEASE_SECONDS": "120",
            "PAYOUT_RETRY_BASE_SECONDS": "1",
            "PAYOUT_RETRY_MAX_SECONDS": "60",
        }
    )
    assert (got.lease_seconds, got.retry_max_seconds) == (120, 60)


def test_a_hand_built_unsafe_setting_is_refused_by_its_check() -> None:
    with pytest.raises(s.ConfigError, match="PAYOUT_LEASE_SECONDS"):
        s.Settings(lease_seconds=30).check_safety()


def test_secrets_never_appear_in_the_repr_or_errors() -> None:
    got = s.Settings.from_sources(
        {"STRIPE_API_KEY": KEY, "PAYOUT_DATABASE_URL": "postgresql://app:hunter2@db/payouts"}
    )
    shown = repr(got)
    assert KEY not in shown
    assert "hunter2" not in shown
    assert "<SECRET>" in shown
    with pytest.raises(s.ConfigError) as caught:
        s.Settings.from_sources({"STRIPE_API_KEY": "pk_live_" + KEY})
    assert KEY not in str(caught.value)


def test_a_url_password_is_redacted_for_display() -> None:
    assert s.redact_url("postgresql://app:hunter2@db:5432/p") == "postgresql://app:***@db:5432/p"
    assert s.redact_url("postgresql://db/p") == "postgresql://db/p"


def test_a_command_waits_for_its_database_no_longer_than_the_setting_even_to_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A refused database used to be reported after the pool's fixed 10 s.
    asked: dict[str, object] = {}

    def refuse(url: str, **options: object) -> object:
        asked.update(options)
        raise errors.StoreUnavailable("refused")

    monkeypatch.setattr(postgres, "connect_pool", refuse)
    configured = s.Settings(database_url="postgresql://db/p", database_timeout_seconds=1.5)
    with pytest.raises(errors.StoreUnavailable), bootstrap.open_database(configured):
        pass
    assert (asked["timeout"], asked["open_timeout"]) == (1.5, 1.5)
