"""Stripe's webhook deliveries, for testing an endpoint that receives them.

Stripe POSTs each ``event`` as JSON to the endpoint's URL and signs the
delivery with the endpoint's secret (``whsec_...``), in a header
``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``
(https://docs.stripe.com/webhooks#verify-manually). A receiver checks it with
the SDK (``stripe.Webhook.construct_event``), which also refuses a signature
older than its tolerance (300 seconds by default), so that a recorded delivery
cannot be replayed later. Stripe may deliver one event more than once, each
time signed anew.

:func:`deliver` does that, and what a test needs that Stripe never does: a
forged signature, an old one, or none::

    event = server.fake.event_for(transfer_id, "transfer.reversed")
    assert webhooks.deliver(url, event, secret=SECRET, times=2) == [200, 200]
    assert webhooks.deliver(url, event, secret=SECRET, signature=Signature.FORGED) == [400]

The event itself comes from :meth:`tests.fake_stripe.FakeStripe.event_for`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_SECRET", "Signature", "body_of", "deliver", "signature_header"]

DEFAULT_SECRET = "whsec_fakeFAKEfake0123456789webhookSECRET"


class Signature(enum.Enum):
    """How a delivery is signed."""

    VALID = "valid"  # with the endpoint's secret, as Stripe signs
    FORGED = "forged"  # with another secret: someone else's delivery
    MISSING = "missing"  # no Stripe-Signature header at all


def body_of(event: Mapping[str, Any]) -> bytes:
    """The bytes Stripe sends for ``event`` (pretty-printed JSON, as Stripe's
    deliveries are). The signature covers exactly these bytes."""
    return json.dumps(event, indent=2).encode()


def signature_header(body: bytes, *, secret: str, timestamp: int) -> str:
    """``Stripe-Signature`` for ``body`` signed with ``secret`` at ``timestamp``
    (unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def deliver(
    url: str,
    event: Mapping[str, Any],
    *,
    secret: str = DEFAULT_SECRET,
    times: int = 1,
    signature: Signature = Signature.VALID,
    age: timedelta = timedelta(0),
    clock: Callable[[], float] = time.time,
    timeout: float = 5.0,
) -> list[int]:
    """POST ``event`` to ``url`` ``times`` times, each delivery signed anew;
    the HTTP status of each answer, in order.

    ``age``: sign as if ``age`` ago (an old timestamp, outside the
    receiver's tolerance once past 300 seconds). ``clock`` is the signer's
    time, real by default because the SDK checks the tolerance against the
    real clock (the fake's own clock dates only the event).

    Raises:
        OSError: the endpoint could not be reached or did not answer.
    """
    if times < 1:
        raise ValueError(f"deliver at least once, got times={times}")
    address = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if address.scheme == "https" else http.client.HTTPConnection
    )
    target = (address.path or "/") + (f"?{address.query}" if address.query else "")
    body = body_of(event)
    statuses: list[int] = []
    for _ in range(times):
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Stripe/1.0"}
        timestamp = int(clock() - age.total_seconds())
        if signature is not Signature.MISSING:
            key = secret if signature is Signature.VALID else secret + "-forged"
            headers["Stripe-Signature"] = signature_header(body, secret=key, timestamp=timestamp)
        conn = connection_class(address.hostname or "", address.port, timeout=timeout)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        finally:
            conn.close()
    return statuses
