"""The shared test kit: what many test files need, each in one place.

- :mod:`tests.kit.times`: ``T0``, the moment every test's world starts, and the
  default lease and send margin a test reasons with.
- :mod:`tests.kit.clocks`: what the library's
  :class:`payout_adapters.memory.ManualClock` does not do (a clock shifted
  from another, a clock that notes its reads, the float clock and sleep a rate
  limiter takes). For a clock that stands still until moved, use ``ManualClock``
  itself; the ``clock`` fixture gives one at ``T0``.
- :mod:`tests.kit.builders`: settlements, jobs, transfers and outcomes, made
  through the core as the services make them.
- :mod:`tests.kit.waiting`: :func:`~tests.kit.waiting.wait_for`, the one poll
  for what another thread or process does.

The fixtures over these live in ``tests/conftest.py``.
"""
