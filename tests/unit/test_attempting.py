"""One attempt against the ports (:mod:`payout_core.services.attempting`): when
it reads the worker's own clock.

Rule 2's start limit is measured on the worker's clock between two reads: one
just before the intent, one as the request leaves. Nothing else in an attempt
reads that clock; the outcome is recorded at the database's time (rule 1).
Each test logs, in order, the operations the attempt asks for, each read of
the worker's clock (``clock``) and each request that reaches Stripe
(``stripe``). That the times an attempt stores are the database's, whatever the
worker's clock says, is pinned in ``test_execution.py``.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from payout_adapters.memory import InMemoryAccountDirectory, InMemoryStore, ManualClock
from payout_adapters.memory import gateway as simulated
from payout_core import attempt, outcomes
from payout_core.services import attempting
from tests.kit import builders as b
from tests.kit.clocks import NotingClock
from tests.kit.times import HALF_JITTER, LEASE, T0

D = attempt.Disposition
#: A first retry is due 15 s after the attempt.
TIMING = attempt.Timing(policy=HALF_JITTER)
TIMED_OUT = simulated.Fault.respond(outcomes.Unknown(code="timeout", message="read timed out"))
SAVED_500 = simulated.Fault.server_error(created=True)


def logged(steps: attempt.Attempt, log: list[str]) -> attempt.Attempt:
    """``steps``, noting in ``log`` each operation as it is asked for."""
    answer: object = None
    while True:
        try:
            op = steps.send(answer)
        except StopIteration as done:
            result: attempt.AttemptResult = done.value
            return result
        log.append(type(op).__name__)
        answer = yield op


@attrs.define
class Worker:
    """One transfer of ``u-1`` on the in-memory adapters, and the log of its attempts."""

    connected: bool = True  # u-1 has a connected account, acct_1
    faults: list[simulated.Fault | None] = attrs.Factory(list)
    log: list[str] = attrs.Factory(list)
    db_clock: ManualClock = attrs.Factory(lambda: ManualClock(T0))
    directory: InMemoryAccountDirectory = attrs.Factory(InMemoryAccountDirectory)
    store: InMemoryStore = attrs.field(init=False)
    gateway: simulated.SimulatedGateway = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.store = InMemoryStore(clock=self.db_clock)
        self.gateway = simulated.SimulatedGateway(handler=self._stripe, clock=self.db_clock, seed=1)
        if self.connected:
            self.directory.set_account("u-1", "acct_1")
        b.schedule(self.store, b.settlement("u-1"), now=T0)

    def _stripe(self, _request: simulated.Request, _call: simulated.Call) -> simulated.Fault | None:
        self.log.append("stripe")
        return self.faults.pop(0) if self.faults else None

    def attempt_once(self, *, lease: timedelta = LEASE) -> attempt.Disposition:
        """Claim the transfer a send margin from now (due again by then, whatever
        the last attempt left), run one attempt, and return how it ended;
        ``log`` then holds that attempt alone."""
        self.db_clock.advance(TIMING.margin)
        [claimed] = self.store.claim_due(limit=1, lease=lease, token="worker")
        self.log.clear()
        result = attempting.drive(
            logged(attempt.run_attempt(claimed, timing=TIMING), self.log),
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=NotingClock(self.log),  # the worker's
        )
        return result.disposition


#: What an attempt that sends does once it has its destination.
SENDS = ["ReadLocalClock", "clock", "WriteIntent", "Send", "clock", "stripe", "Record"]


def test_a_first_send_reads_the_workers_clock_before_its_intent_and_as_its_request_leaves() -> None:
    worker = Worker()

    assert worker.attempt_once() is D.COMPLETED
    assert worker.log == ["ReadAccount", *SENDS]


def test_a_resend_of_an_uncertain_key_reads_the_workers_clock_the_same_two_times() -> None:
    worker = Worker(faults=[TIMED_OUT])
    assert worker.attempt_once() is D.RETRIED

    assert worker.attempt_once() is D.COMPLETED
    assert worker.log == SENDS


def test_a_winner_without_an_account_is_failed_without_a_read_of_the_workers_clock() -> None:
    worker = Worker(connected=False)

    assert worker.attempt_once() is D.FAILED_TERMINAL
    assert worker.log == ["ReadAccount", "Record"]


def test_a_look_up_is_decided_without_a_read_of_the_workers_clock() -> None:
    worker = Worker(faults=[SAVED_500])
    assert worker.attempt_once() is D.RETRIED  # a saved 500: only a look-up can decide

    assert worker.attempt_once() is D.COMPLETED
    assert worker.log == ["LookUp", "stripe", "Record"]


def test_an_intent_refused_for_a_short_lease_reads_the_workers_clock_once_before_it() -> None:
    worker = Worker()

    assert worker.attempt_once(lease=TIMING.margin / 2) is D.RELEASED
    assert worker.log == ["ReadAccount", "ReadLocalClock", "clock", "WriteIntent", "Record"]
