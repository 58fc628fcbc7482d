"""The Stripe adapter: :class:`StripeGateway` on the official ``stripe`` SDK, the
payment gateway, the read-only transfer records and the reversal gateway of
:mod:`payout_core.ports`.

:mod:`~payout_adapters.stripe.classify` holds the one table from Stripe's
failures to gateway outcomes, :mod:`~payout_adapters.stripe.rate_limit` the
token bucket every request of a process takes from.
"""

from payout_adapters.stripe.gateway import StripeGateway
from payout_adapters.stripe.rate_limit import LocalRateLimiter

__all__ = ["LocalRateLimiter", "StripeGateway"]
