"""The ``payout-core`` command: the composition root and nothing more."""
