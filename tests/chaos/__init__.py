"""The chaos suite (issue 12): a fleet of ``payout-core loop`` processes, a
PostgreSQL of its own and the fake Stripe, through every fault at once, then
every promise checked. docs/fault-model.md says what it runs and why.

:mod:`tests.chaos.plan` draws a run from its seed, :mod:`tests.chaos.postgres`
is the server it restarts, :mod:`tests.chaos.fleet` the worker processes,
:mod:`tests.chaos.run` plays the run and :mod:`tests.chaos.checks` judges it.
``python -m tests.chaos`` runs it by hand (:mod:`tests.chaos.__main__`).
"""
