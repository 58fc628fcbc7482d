"""A deterministic simulation of a payout fleet on its worst days.

One seed is one reproducible run: single-threaded, every random draw from one
seeded generator, time simulated (a day passes in no time). It drives the
engine's own decisions, :func:`payout_core.attempt.run_attempt`, through the
engine's own stores and Stripe model (:class:`InMemoryStore` with a clock of
its own standing for the database's, :class:`SimulatedGateway` with Stripe's),
and does each operation at a simulated time of its choosing. Between any two
operations a worker may crash, stall past its lease, or find the database
gone; Stripe may lose responses, save 500s, answer 429s and 409s, refuse for
want of balance, or finish a request after the client gave up; an operator may
move a winner to another account; the whole fleet may be down for a day.

After every step it checks the money invariants, and at the end, once the
faults have stopped and every request in flight has finished, that every
transfer ended (or waits for an operator, with a reason). The first broken
invariant ends the run with a :class:`Violation` naming the seed.

``docs/exactly-once.md`` describes the fault model; ``python -m
tests.simulation --help`` runs seeds by hand.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs

from payout_adapters.memory import InMemoryAccountDirectory, InMemoryStore, SimulatedGateway
from payout_adapters.memory.faults import Call, Fault, Operation, Request
from payout_core import attempt, errors, models, outcomes, reconcile, retry
from payout_core import state_machine as sm
from payout_core.services import scheduling
from tests.kit import builders
from tests.kit.times import LEASE, T0

__all__ = ["Config", "Simulation", "Violation", "replay_command", "run_seed"]

S = models.TransferStatus


def replay_command(seed: int) -> str:
    return f"python -m tests.simulation --seed {seed}"


class Violation(AssertionError):
    """An invariant broke: the seed replays it."""

    def __init__(self, seed: int, at: datetime, message: str) -> None:
        super().__init__(f"seed {seed}, at +{at - T0}: {message}\n  replay: {replay_command(seed)}")
        self.seed = seed
        self.message = message


@attrs.frozen(kw_only=True)
class Config:
    """How big a run is and how often each fault strikes (per step or per call)."""

    workers: int = 3
    jobs: int = 2
    winners: int = 4  # per job
    concurrency: int = 2  # per worker
    max_attempts: int = 3
    tick_seconds: float = 60.0
    lease: timedelta = LEASE
    stripe_timeout: timedelta = timedelta(seconds=30)
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 1800.0
    faults_for: timedelta = timedelta(hours=2)  # then every fault stops
    # ...and every transfer must end this long after that (or after the fleet is
    # back from a day-long outage): time for a few backoffs, never a day.
    settle_within: timedelta = timedelta(hours=8)
    # worker faults, per step
    crash: float = 0.02
    stall: float = 0.02  # past the lease
    long_stall: float = 0.003  # past a day
    # the database, per record
    record_outage: float = 0.04
    # Stripe, per call
    lost_response: float = 0.06
    server_error: float = 0.05
    rate_limited: float = 0.05
    key_in_use: float = 0.02
    finishes_later: float = 0.06  # within the send margin, as the design assumes
    # per run
    account_changes: int = 3
    fleet_down: float = 0.4  # probability of a day-long outage of every worker
    balance_window: float = 0.4
    deleted_account: float = 0.15  # a destination Stripe no longer knows: look-ups fail
    poison: float = 0.15  # a transfer that kills every worker that takes it
    skewed_host: float = 0.4  # one worker's clock a day off


@attrs.define
class _Task:
    steps: attempt.Attempt
    transfer_id: str


@attrs.define
class _Worker:
    name: str
    skew: timedelta
    alive: bool = True
    epoch: int = 0  # a crash starts a new epoch: events of an older one are void
    tasks: dict[int, _Task] = attrs.Factory(dict)


class _SimClock:
    """The simulated time, as Stripe sees it."""

    def __init__(self, world: Simulation) -> None:
        self._world = world

    def now(self) -> datetime:
        return self._world.now


class _DatabaseClock:
    """The simulated time, as the database sees it (rule 1: the only clock
    that decides leases, due times and key ages)."""

    def __init__(self, world: Simulation) -> None:
        self._world = world

    def now(self) -> datetime:
        return self._world.database_time()


class Simulation:
    """One seeded run. :meth:`run` raises :class:`Violation` or returns the
    number of steps it took."""

    def __init__(self, seed: int, config: Config | None = None) -> None:
        self.seed = seed
        self.config = config or Config()
        self.random = random.Random(seed)
        self.stats: Counter[str] = Counter()  # which faults struck, and what followed
        self.now = T0
        self.steps = 0
        self._queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._task_ids = itertools.count()
        self.faults_on = True
        self.acting: _Worker | None = None  # the worker whose step this is
        self.store = InMemoryStore(clock=_DatabaseClock(self))
        self.directory = InMemoryAccountDirectory()
        self.gateway = SimulatedGateway(
            handler=self._stripe_fault, clock=_SimClock(self), seed=seed
        )
        cfg = self.config
        policy = retry.RetryPolicy(
            base_seconds=cfg.retry_base_seconds,
            max_seconds=cfg.retry_max_seconds,
            uniform=self.random.random,
        )
        self.timing = attempt.Timing(stripe_timeout=cfg.stripe_timeout, policy=policy)
        self.workers = [self._new_worker(n) for n in range(cfg.workers)]
        self.fleet_back_at = T0  # the end of a day-long outage of every worker
        self.errors: list[str] = []  # exceptions a worker met (the driver logs them)
        self.poisoned: dict[str, str] = {}  # transfer id -> the step that kills
        self.deleted: set[str] = set()

    def database_time(self) -> datetime:
        return self.now

    # -- set-up ------------------------------------------------------------------------

    def _new_worker(self, n: int) -> _Worker:
        skew = timedelta(seconds=self.random.uniform(-90, 90))
        if n == 0 and self.random.random() < self.config.skewed_host:
            self.stats["worker clock a day off"] += 1
            skew = timedelta(hours=self.random.choice((-26, 26)))
        return _Worker(name=f"w{n}", skew=skew)

    def _schedule_settlements(self) -> None:
        cfg = self.config
        for j in range(cfg.jobs):
            winners: list[tuple[str, int]] = []
            for u in range(cfg.winners):
                user = f"u{j}-{u}"
                winners.append((user, self.random.randint(50, 50_000)))
                if self.random.random() < 0.9:  # a few winners never connect an account
                    self.directory.set_account(user, f"acct_{j}x{u}")
            scheduling.schedule_payout_for_settlement(  # which validates it, as at any door
                store=self.store,
                settlement=builders.settlement(*winners, settlement_id=f"s{j}", contest_id=f"c{j}"),
                now=self.now,
                max_attempts=cfg.max_attempts,
                new_id=self._new_uuid,
            )

    def _new_uuid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def _plan_faults(self) -> None:
        cfg, rnd = self.config, self.random
        end = T0 + cfg.faults_for
        users = [t.user_id for t in self.store.transfers()]
        for n in range(cfg.account_changes):
            user = rnd.choice(users)
            self._at(self._during(end), functools.partial(self._move_account, user, n))
        if rnd.random() < cfg.fleet_down:
            down_for = timedelta(hours=rnd.uniform(24.5, 30))
            self._at(self._during(end), lambda: self._fleet_down(down_for))
        if rnd.random() < cfg.balance_window:
            self.stats["window of low balance"] += 1
            start = self._during(end)
            self._at(start, lambda: self.gateway.set_balance(rnd.randint(0, 20_000)))
            self._at(
                start + timedelta(minutes=rnd.uniform(1, 60)),
                lambda: self.gateway.set_balance(None),
            )
        transfers = self.store.transfers()
        if rnd.random() < cfg.deleted_account:
            self._at(self._during(end), self._delete_an_account)
        if rnd.random() < cfg.poison:
            self.stats["poison transfer"] += 1
            victim = rnd.choice(transfers)
            self.poisoned[victim.id] = rnd.choice(("ReadLocalClock", "Send", "Record"))

    def _during(self, end: datetime) -> datetime:
        return self.now + (end - self.now) * self.random.random()

    # -- the event loop ------------------------------------------------------------------

    def _at(self, when: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (max(when, self.now), next(self._sequence), action))

    def run(self) -> int:
        self._schedule_settlements()
        self._plan_faults()
        for worker in self.workers:
            self._at(self.now + self._jitter(), self._ticker(worker, worker.epoch))
        faults_end = T0 + self.config.faults_for
        self._at(faults_end, self._stop_faults)
        # Stalled workers and requests still running at Stripe are let finish,
        # however long after the faults stopped they wake: that is when a send
        # long after its intent would strike.
        while self._queue:
            when, _, action = heapq.heappop(self._queue)
            deadline = max(faults_end, self.fleet_back_at) + self.config.settle_within
            if when > deadline and not self._ended():
                self.now = deadline
                self.check(final=True)
            self.now = when
            action()
            self.steps += 1
            self.check()
            if not self.faults_on and self._ended() and not any(w.tasks for w in self.workers):
                break
        self.gateway.finish_in_flight()
        self.check(final=True)
        for t in self.store.transfers():
            self.stats[f"ended {t.status}" if t.needs_operator is None else "needs operator"] += 1
            self.stats["paid under a later key"] += t.status is S.COMPLETED and t.key_generation > 0
        if self.errors:
            raise self.fail(f"workers met {len(self.errors)} error(s), first: {self.errors[0]}")
        return self.steps

    def _jitter(self, seconds: float = 1.0) -> timedelta:
        return timedelta(seconds=self.random.uniform(0, seconds))

    def _stop_faults(self) -> None:
        self.faults_on = False
        self.gateway.set_balance(None)
        if self.now >= self.fleet_back_at:  # a fleet that is down comes back when due
            for worker in self.workers:
                if not worker.alive:
                    self._restart(worker)

    def _ended(self) -> bool:
        return all(
            t.status.is_terminal or t.needs_operator is not None for t in self.store.transfers()
        )

    # -- workers -------------------------------------------------------------------------

    def _ticker(self, worker: _Worker, epoch: int) -> Callable[[], None]:
        return lambda: self._tick(worker, epoch)

    def _tick(self, worker: _Worker, epoch: int) -> None:
        if worker.epoch != epoch or not worker.alive:
            return
        self.acting = worker
        free = self.config.concurrency - len(worker.tasks)
        if free > 0:
            try:
                claimed = self.store.claim_due(
                    limit=free, lease=self.config.lease, token=f"{worker.name}-{self.steps}"
                )
            except Exception as exc:  # as run_tick: the tick fails, the loop goes on
                self.errors.append(f"{type(exc).__name__}: {exc}")
                claimed = []
            for transfer in claimed:
                task_id = next(self._task_ids)
                steps = attempt.run_attempt(transfer, timing=self.timing)
                worker.tasks[task_id] = _Task(steps=steps, transfer_id=transfer.id)
                self._continue(worker, epoch, task_id, next(steps))
        self._at(self._next_tick(), self._ticker(worker, epoch))

    def _next_tick(self) -> datetime:
        """The next tick; when nothing falls due before, up to an hour later
        (a quiet day passes in a few steps)."""
        step = self.now + timedelta(seconds=self.config.tick_seconds) + self._jitter(5)
        due = [d for t in self.store.transfers() if (d := sm.due_at(t)) is not None]
        return max(step, min([*due, self.now + timedelta(hours=1)]))

    def _crash(self, worker: _Worker) -> None:
        self.stats["worker crashed"] += 1
        worker.epoch += 1
        worker.alive = False
        for task in worker.tasks.values():
            task.steps.close()
        worker.tasks.clear()
        back = self.now + timedelta(seconds=self.random.uniform(1, 900))
        self._at(back, functools.partial(self._restart, worker, worker.epoch))

    def _restart(self, worker: _Worker, epoch: int | None = None) -> None:
        if epoch is not None and worker.epoch != epoch:
            return  # crashed again meanwhile; that crash restarts it
        if worker.alive:
            return
        worker.epoch += 1
        worker.alive = True
        self._at(self.now + self._jitter(), self._ticker(worker, worker.epoch))

    def _fleet_down(self, down_for: timedelta) -> None:
        self.stats["fleet down for a day"] += 1
        for worker in self.workers:
            if worker.alive:
                self._crash(worker)
            worker.epoch += 1  # the pending restarts are void: the fleet is down
        back = self.fleet_back_at = self.now + down_for
        for worker in self.workers:
            self._at(back, functools.partial(self._restart, worker))

    def _continue(self, worker: _Worker, epoch: int, task_id: int, op: attempt.Operation) -> None:
        delay = timedelta(milliseconds=self.random.uniform(1, 20))
        if self.faults_on:
            roll = self.random.random()
            if roll < self.config.long_stall:
                self.stats["worker stalled a day"] += 1
                delay = timedelta(hours=self.random.uniform(24, 30))
            elif roll < self.config.long_stall + self.config.stall:
                self.stats["worker stalled past its lease"] += 1
                delay = self.config.lease * self.random.uniform(1.0, 2.0)
        self._at(self.now + delay, lambda: self._step(worker, epoch, task_id, op))

    def _step(self, worker: _Worker, epoch: int, task_id: int, op: attempt.Operation) -> None:
        if worker.epoch != epoch:
            return
        try:
            self._perform(worker, epoch, task_id, op)
        except Exception as exc:  # as the driver: logged, the claim waits
            self._error(worker, task_id, exc)

    def _error(self, worker: _Worker, task_id: int, exc: Exception) -> None:
        """What ``execute_claimed`` does with an exception: log it (here:
        keep it for the final check) and leave the claim to its lease."""
        self.errors.append(f"{type(exc).__name__}: {exc}")
        task = worker.tasks.pop(task_id, None)
        if task is not None:
            task.steps.close()

    def _perform(self, worker: _Worker, epoch: int, task_id: int, op: attempt.Operation) -> None:
        self.acting = worker
        task = worker.tasks[task_id]
        if self.poisoned.get(task.transfer_id) == type(op).__name__ or (
            self.faults_on and self.random.random() < self.config.crash
        ):
            self._crash(worker)
            return
        answer: object
        delay = timedelta(0)
        match op:
            case attempt.ReadAccount(user_id=user_id):
                answer = self.directory.account_for(user_id)
            case attempt.ReadLocalClock():
                answer = self.now + worker.skew
            case attempt.WriteIntent(claimed=claimed, destination=destination, margin=margin):
                answer = self.store.write_intent(
                    claimed=claimed, destination=destination, margin=margin
                )
            case attempt.Send(request=request):
                if op.too_late(self.now + worker.skew):
                    self.stats["send given up: too late after its intent"] += 1
                    answer = attempt.TOO_LATE
                else:
                    answer = self.gateway.create_transfer(request)
                    delay = self._response_time(answer)
            case attempt.LookUp(lookup=lookup):
                answer = self.gateway.find_transfer(lookup)
                delay = self._response_time(answer)
            case attempt.Record(claimed=claimed, updated=updated, ledger_entry=entry, now=at):
                if self.faults_on and self.random.random() < self.config.record_outage:
                    self.stats["database gone during a record"] += 1
                    self.store.fail_next(operations={"record"})
                try:
                    answer = self.store.record(
                        claimed=claimed, updated=updated, ledger_entry=entry, now=at
                    )
                except errors.StoreUnavailable:
                    worker.tasks.pop(task_id).steps.close()  # the claim waits out its lease
                    return
                if self.faults_on and self.random.random() < self.config.crash:
                    self._crash(worker)  # recorded, but the worker never learns it
                    return
        if delay:
            self._at(self.now + delay, lambda: self._answer(worker, epoch, task_id, answer))
        else:
            self._answer(worker, epoch, task_id, answer)

    def _response_time(self, answer: object) -> timedelta:
        if isinstance(answer, outcomes.Unknown) and answer.code == "timeout":
            return self.config.stripe_timeout
        return timedelta(milliseconds=self.random.uniform(50, 800))

    def _answer(self, worker: _Worker, epoch: int, task_id: int, answer: object) -> None:
        if worker.epoch != epoch:
            return  # the worker died while the request was out
        task = worker.tasks[task_id]
        try:
            op = task.steps.send(answer)
        except StopIteration:
            del worker.tasks[task_id]
            return
        except Exception as exc:  # as the driver: logged, the claim waits
            self._error(worker, task_id, exc)
            return
        self._continue(worker, epoch, task_id, op)

    # -- Stripe and the operators ----------------------------------------------------------

    def _stripe_fault(self, request: Request, call: Call) -> Fault | None:
        if not self.faults_on:
            return None
        cfg, draw = self.config, self.random.random()
        if call.operation is Operation.FIND:
            if draw < cfg.server_error:
                self.stats["stripe: look-up failed"] += 1
                return Fault.server_error()
            return Fault.rate_limited() if draw < cfg.server_error + cfg.rate_limited else None
        for rate, name, fault in (
            (cfg.lost_response, "lost response", Fault.lost_response),
            (
                cfg.server_error,
                "500 saved under the key",
                lambda: Fault.server_error(created=self.random.random() < 0.5),
            ),
            (cfg.rate_limited, "429", Fault.rate_limited),
            (cfg.key_in_use, "409", Fault.key_in_use),
            (
                cfg.finishes_later,
                "request finished after the client gave up",
                lambda: Fault.finishes_later(
                    self.random.uniform(1, self.timing.margin.total_seconds() - 1)
                ),
            ),
        ):
            if draw < rate:
                self.stats[f"stripe: {name}"] += 1
                return fault()
            draw -= rate
        return None

    def _move_account(self, user_id: str, n: int) -> None:
        self.stats["winner moved to another account"] += 1
        self.directory.set_account(user_id, f"acct_moved{n}{user_id.replace('-', '')}")

    def _delete_an_account(self) -> None:
        """Stripe deletes a destination, preferably one a look-up must search:
        that look-up then fails for good (rule 7)."""
        transfers = self.store.transfers()
        doubtful = [t for t in transfers if t.key_replays_error and t.destination_account]
        victim = self.random.choice(doubtful or transfers)
        account = victim.destination_account or self.directory.account_for(victim.user_id)
        if account is not None:
            self.stats["destination deleted at stripe"] += 1
            self.deleted.add(account)
            self.gateway.delete_account(account)

    # -- the invariants ------------------------------------------------------------------

    def fail(self, message: str) -> Violation:
        return Violation(self.seed, self.now, message)

    def check(self, *, final: bool = False) -> None:
        """DESIGN 3's money invariants, over the whole state."""
        at_stripe: dict[str | None, list[str]] = {}
        for record in self.gateway.created_transfers():
            at_stripe.setdefault(record.payout_transfer_id, []).append(record.id)
        records = {r.id: r for r in self.gateway.created_transfers()}
        transfers = self.store.transfers()
        for t in transfers:
            paid = at_stripe.get(t.id, [])
            if len(paid) > 1:
                raise self.fail(f"transfer {t.id} ({t.user_id}) paid {len(paid)} times: {paid}")
            if t.status is S.FAILED_TERMINAL and paid:
                raise self.fail(f"transfer {t.id} failed ({t.failure_code}) but Stripe paid {paid}")
            if t.status is S.COMPLETED:
                if paid != [t.stripe_transfer_id]:
                    raise self.fail(
                        f"completed {t.id} as {t.stripe_transfer_id}, Stripe has {paid}"
                    )
                record = records[paid[0]]
                if (record.amount_cents, record.destination) != (
                    t.amount_cents,
                    t.destination_account,
                ):
                    raise self.fail(f"completed {t.id} does not match Stripe's {record}")
            if final and not t.status.is_terminal and t.needs_operator is None:
                raise self.fail(
                    f"transfer {t.id} still {t.status} {self.config.settle_within} after the "
                    f"faults stopped: {t}"
                )
        # The ledger rows and job counts exactly as DESIGN says: the checks
        # `payout-core reconcile` runs, over every job.
        for job in self.store.jobs():
            mismatches = reconcile.check_job(
                job, self.store.transfers_of(job.id), self.store.ledger(job_id=job.id)
            )
            if mismatches:
                raise self.fail(f"the ledger or a job disagrees: {mismatches}")


def run_seed(seed: int, config: Config | None = None) -> int:
    """Run one seed; raises :class:`Violation`; returns its number of steps."""
    return Simulation(seed, config).run()
