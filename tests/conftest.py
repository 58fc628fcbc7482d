"""What every test shares: Hypothesis profiles (fast locally, thorough in CI) and
the fixtures of the test kit (:mod:`tests.kit`)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from payout_adapters.memory import ManualClock
from tests.kit.times import T0

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# pytester runs a downstream project's suite in a subprocess (tests/unit/test_pytest_plugin.py).
pytest_plugins = ["pytester"]


@pytest.fixture
def clock() -> ManualClock:
    """The test's clock: it stands at :data:`tests.kit.times.T0` until the test moves it."""
    return ManualClock(T0)
