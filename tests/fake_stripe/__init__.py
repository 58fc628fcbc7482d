"""A fake Stripe HTTP server that the real ``stripe`` SDK talks to, for tests.

It speaks enough of API v1 for transfers (create, list with filters and
pagination, retrieve) and their reversals (create, list) with Stripe's JSON
objects, error envelopes, ``Request-Id`` and idempotency semantics, and lets a
test script every fault the gateway must classify::

    with fake_stripe.running() as server:
        server.fake.add_account("acct_1")
        server.fake.script(fake_stripe.faults.server_error(create=True))
        server.fake.script(fake_stripe.faults.Drop(), path=fake_stripe.faults.REVERSALS)
        gateway = StripeGateway(api_key=server.api_key, api_base=server.url, ...)

It also makes the events Stripe would send (:meth:`FakeStripe.event_for`), and
:mod:`tests.fake_stripe.webhooks` signs and delivers them to a webhook
endpoint as Stripe does (or with a forged, old or missing signature).

For benchmarks it also takes time and refuses as Stripe does under load
(``FakeStripe(latency=0.2, rate_limit=25, accept_any_account=True)``), records
when each request arrived (:meth:`FakeStripe.max_in_window`,
:meth:`FakeStripe.report`), and runs as a process of its own that several
workers share: ``python -m tests.fake_stripe --latency-ms 200 --rate-limit 25
--accept-any-account`` (see :mod:`tests.fake_stripe.__main__`).

:mod:`tests.fake_stripe.model` holds the behaviour (no sockets),
:mod:`tests.fake_stripe.server` the HTTP plumbing, :mod:`tests.fake_stripe.faults`
what can be scripted, :mod:`tests.fake_stripe.webhooks` the deliveries.
"""

from tests.fake_stripe import faults, webhooks
from tests.fake_stripe.model import (
    API_VERSION,
    DEFAULT_API_KEY,
    AccountState,
    FakeStripe,
    ManualTime,
    RecordedRequest,
    Reply,
    Report,
    Request,
)
from tests.fake_stripe.server import FakeStripeServer, closed_port, running

__all__ = [
    "API_VERSION",
    "DEFAULT_API_KEY",
    "AccountState",
    "FakeStripe",
    "FakeStripeServer",
    "ManualTime",
    "RecordedRequest",
    "Reply",
    "Report",
    "Request",
    "closed_port",
    "faults",
    "running",
    "webhooks",
]
