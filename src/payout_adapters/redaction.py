"""The one secret scrubber: text made safe to log, print or store.

Every place where a secret could leave the process passes its text through
:func:`scrub`: the Stripe gateway (each failure message, naming its own API
key), the command's log formatters and printed output (``payout_cli.logs``),
and the database URL shown by ``status`` and in the settings' ``repr``
(``payout_cli.settings.redact_url``). One row of :data:`RULES` per kind of
secret: a new kind is one row here, and every caller scrubs it.

It lives in the adapters because the Stripe adapter needs it and adapters may
not import the CLI (``lint-imports``); the core never holds a secret.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

__all__ = ["MASK", "RULES", "Rule", "scrub"]

MASK: Final = "***"


@attrs.frozen
class Rule:
    """One kind of secret: what it looks like, and what is left of it (the
    replacement keeps a prefix that says which kind was there)."""

    name: str
    pattern: re.Pattern[str]
    replacement: str


RULES: Final = (
    Rule(
        "Stripe secret or restricted key",
        re.compile(r"\b([sr]k_(?:live|test)_)[A-Za-z0-9]+"),
        rf"\1{MASK}",
    ),
    Rule("Stripe webhook signing secret", re.compile(r"\b(whsec_)[A-Za-z0-9+/=]+"), rf"\1{MASK}"),
    Rule("URL password", re.compile(r"(://[^:/@\s]+:)[^@\s]*@"), rf"\1{MASK}@"),
    # libpq's key=value connection strings, and a URL's ?password= parameter:
    # the value quoted ('it''s', with backslash escapes) or up to a space or &.
    Rule(
        "connection string password",
        re.compile(r"\b(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&'\"]+)"),
        rf"\1{MASK}",
    ),
)


def scrub(text: str, *secrets: str) -> str:
    """``text`` with each of ``secrets`` (values the caller holds, whatever their
    shape) and anything shaped like one of :data:`RULES` masked."""
    # The caller's own secrets first: a rule could mask part of one and leave the rest.
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for rule in RULES:
        text = rule.pattern.sub(rule.replacement, text)
    return text
