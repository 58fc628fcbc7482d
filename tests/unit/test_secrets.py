"""The one secret scrubber: each rule masks its kind of secret, and every caller uses it."""

from __future__ import annotations

import pytest

from payout_adapters import redaction
from payout_cli import logs, settings

# What each rule of redaction.RULES scrubs, by the rule's name: (text, scrubbed).
SCRUBBED = {
    "Stripe secret or restricted key": [
        ("refused sk_live_51AbCdEf0123456789, retrying", "refused sk_live_***, retrying"),
        ("refused sk_test_51AbCdEf0123456789, retrying", "refused sk_test_***, retrying"),
        ("refused rk_live_51AbCdEf0123456789, retrying", "refused rk_live_***, retrying"),
        ("refused rk_test_51AbCdEf0123456789, retrying", "refused rk_test_***, retrying"),
    ],
    "Stripe webhook signing secret": [
        (
            "STRIPE_WEBHOOK_SECRET=whsec_AbCdEf0123456789+/= refused",
            "STRIPE_WEBHOOK_SECRET=whsec_*** refused",
        ),
    ],
    "URL password": [
        (
            "to postgresql://payout:hunter2@db:5432/payout",
            "to postgresql://payout:***@db:5432/payout",
        ),
        ("to postgres://app:p%40ss@db/p now", "to postgres://app:***@db/p now"),
    ],
    "connection string password": [
        ("host=db user=app password=hunter2 dbname=p", "host=db user=app password=*** dbname=p"),
        ("host=db password = 'it\\'s a secret' port=5432", "host=db password = *** port=5432"),
        (
            "postgresql://db/p?password=hunter2&sslmode=require",
            "postgresql://db/p?password=***&sslmode=require",
        ),
    ],
}


@pytest.mark.parametrize(
    ("rule", "text", "scrubbed"),
    [(rule, text, scrubbed) for rule, cases in SCRUBBED.items() for text, scrubbed in cases],
)
def test_each_rule_masks_its_kind_of_secret_and_keeps_the_rest(
    rule: str, text: str, scrubbed: str
) -> None:
    assert redaction.scrub(text) == scrubbed, rule


def test_every_rule_of_the_scrubber_is_shown_scrubbing() -> None:
    assert sorted(SCRUBBED) == sorted(rule.name for rule in redaction.RULES)


def test_a_secret_the_caller_names_is_masked_whatever_its_shape() -> None:
    assert redaction.scrub("the key 0pen-Sesame! leaked", "0pen-Sesame!") == "the key *** leaked"


def test_text_without_a_secret_is_left_as_it_is() -> None:
    text = "pk_live_51Publishable postgresql://db/payout sk_test_... tr_123 acct_1 task_live_1"

    assert redaction.scrub(text, "") == text


def test_the_logs_the_printed_output_and_the_settings_use_the_one_scrubber() -> None:
    assert logs.scrub is redaction.scrub
    assert settings.redact_url is redaction.scrub
