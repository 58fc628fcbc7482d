"""The Stripe adapter: :class:`StripeGateway` on the official ``stripe`` SDK.

:mod:`~payout_adapters.stripe.classify` holds the one table from Stripe's
failures to gateway outcomes, :mod:`~payout_adapters.stripe.rate_limit` the
token bucket every request of a process takes from.
"""

from payout_adapters.stripe.gateway import RemoteTransfer, StripeGateway
from payout_adapters.stripe.rate_limit import LocalRateLimiter

__all__ = ["LocalRateLimiter", "RemoteTransfer", "StripeGateway"]
