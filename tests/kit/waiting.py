"""Waiting for what another thread or process does, where no clock can be injected."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WAIT_TIMEOUT", "wait_for"]

T = TypeVar("T")

#: Generous on purpose: it runs out only when the test is failing anyway, and a
#: loaded machine (two cores, several suites) can take seconds to start a process.
WAIT_TIMEOUT = 60.0


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = WAIT_TIMEOUT,
    every: float = 0.02,
) -> T:
    """Call ``probe`` every ``every`` seconds until it returns something true;
    return that.

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(every)
