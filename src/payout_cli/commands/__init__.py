"""The commands of ``payout-core``, one module per family; ``payout_cli.app``
registers them. Each parses its arguments, takes what it works with from
:mod:`payout_cli.bootstrap`, calls a service and prints."""
