"""A fake Stripe HTTP server that the real ``stripe`` SDK talks to, for tests.

It speaks enough of API v1 for transfers (create, list with filters and
pagination, retrieve) with Stripe's JSON objects, error envelopes,
``Request-Id`` and idempotency semantics, and lets a test script every fault
the gateway must classify::

    with fake_stripe.running() as server:
        server.fake.add_account("acct_1")
        server.fake.script(fake_stripe.faults.server_error(create=True))
        gateway = StripeGateway(api_key=server.api_key, api_base=server.url, ...)

:mod:`tests.fake_stripe.model` holds the behaviour (no sockets),
:mod:`tests.fake_stripe.server` the HTTP plumbing, :mod:`tests.fake_stripe.faults`
what can be scripted.
"""

from tests.fake_stripe import faults
from tests.fake_stripe.model import (
    DEFAULT_API_KEY,
    AccountState,
    FakeStripe,
    ManualTime,
    RecordedRequest,
    Reply,
    Request,
)
from tests.fake_stripe.server import FakeStripeServer, closed_port, running

__all__ = [
    "DEFAULT_API_KEY",
    "AccountState",
    "FakeStripe",
    "FakeStripeServer",
    "ManualTime",
    "RecordedRequest",
    "Reply",
    "Request",
    "closed_port",
    "faults",
    "running",
]
