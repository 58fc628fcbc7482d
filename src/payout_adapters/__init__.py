"""Adapters for payout-core's ports: memory, PostgreSQL, Stripe."""
