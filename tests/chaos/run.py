"""One chaos run: a fleet of ``payout-core loop`` processes, its own PostgreSQL
and the fake Stripe, through every fault of :mod:`tests.chaos.plan`, then a
drain and the checks of :mod:`tests.chaos.checks`.

Two threads drive it. The main thread plays the episodes one after another
(a SIGKILL, a PostgreSQL crash, an empty balance...). A second thread brings
the settlements as they arrive (``payout-core schedule`` and inbox rows),
scrapes every worker's ``/admin/jobs`` and ``/metrics``, and lets the fleet
take over claims nobody holds any more. Whatever needs the database waits
while an episode has it down (:attr:`Run.db_gate`), as a sender would retry.

Time is compressed in three places, each where the wait would prove nothing
(docs/fault-model.md says so too):

* a SIGKILLed worker's claims have their lease ended at once (it is dead: the
  62 s lease would only make the run longer);
* so have the claims a live worker gave up after a database error (it logged
  ``payout.transfer.error`` for that transfer after the claim: it will not
  touch that claim again, and the lease would expire just the same);
* once the faults stop, transfers waiting to retry are made due at once, and
  those waiting the send margin before a look-up have their last send moved
  back, but only when the fake Stripe has no request for them in flight, so
  no look-up can race a send that Stripe still runs.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import psycopg

from tests import fake_stripe
from tests.chaos import checks, postgres
from tests.chaos import fleet as fleet_
from tests.chaos.plan import Arrival, Config, Episode, Kind, Plan, Via
from tests.fake_stripe import faults, webhooks
from tests.integration import cli_helpers
from tests.integration.cli_helpers import CommandResult

__all__ = ["Result", "run"]

# Safe settings (DESIGN 3, rule 8), short enough for a run of a minute: the
# send margin is 1 + 30 s, the lease twice that.
STRIPE_TIMEOUT_SECONDS = 1
LEASE_SECONDS = 62
SETTINGS = {
    "PAYOUT_INTERVAL_SECONDS": "0.5",
    "PAYOUT_CONCURRENCY": "4",
    "PAYOUT_BATCH_SIZE": "4",
    "PAYOUT_LEASE_SECONDS": str(LEASE_SECONDS),
    # Not shorter: the bound on failed look-ups (rule 7) counts tries, not time,
    # and a burst of 429s must not meet five look-ups within a couple of seconds.
    "PAYOUT_RETRY_BASE_SECONDS": "1",
    "PAYOUT_RETRY_MAX_SECONDS": str(STRIPE_TIMEOUT_SECONDS + 30),
    "PAYOUT_STRIPE_TIMEOUT_SECONDS": str(STRIPE_TIMEOUT_SECONDS),
    "PAYOUT_STRIPE_RATE_LIMIT": "25",
    "PAYOUT_DATABASE_TIMEOUT_SECONDS": "2",
    "PAYOUT_ADMIN_ADDR": "127.0.0.1:0",
    "PAYOUT_WEBHOOK_ADDR": "127.0.0.1:0",
}

# The fake Stripe's weather while the faults last: per Create Transfer...
CREATE_MIX: tuple[tuple[float, faults.Fault], ...] = (
    (0.04, faults.Drop(create=True)),  # lost response: created, the answer lost
    (0.01, faults.Drop(create=True, reset=True)),  # ... with a TCP reset
    (0.02, faults.Drop(create=False)),  # connection dropped before Stripe executed
    (0.02, faults.server_error(create=False)),  # a 500 saved under the key
    (0.02, faults.server_error(create=True)),  # ... after the transfer was created
    (0.02, faults.rate_limited()),  # 429
    (0.01, faults.lock_timeout()),  # 429 lock_timeout
    (0.01, faults.service_unavailable()),  # 503 before executing
    (0.01, faults.bad_gateway()),  # a proxy's 502 page
    (0.02, faults.Delay(seconds=1.6)),  # longer than the 1 s timeout, key in flight
    (0.01, faults.Delay(seconds=2.5)),
    (0.02, faults.Delay(seconds=1.6, execute_first=True)),  # executed, the answer late
)
# ... and per List Transfers (the look-ups).
LOOKUP_MIX: tuple[tuple[float, faults.Fault], ...] = (
    (0.03, faults.rate_limited()),
    (0.02, faults.Drop(create=False)),
    (0.02, faults.service_unavailable()),
    (0.02, faults.Delay(seconds=1.6)),
)


def _elapsed_since(start: float) -> Callable[[], float]:
    return lambda: time.monotonic() - start


@attrs.define
class Result:
    """What a run did and found."""

    seed: int
    config: Config
    directory: Path
    seconds: float = 0.0
    chaos_seconds: float = 0.0
    drain_seconds: float = 0.0
    findings: list[str] = attrs.Factory(list)  # broken promises: the run fails
    log: list[str] = attrs.Factory(list)  # what happened, in order
    stats: dict[str, Any] = attrs.Factory(dict)

    @property
    def passed(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        lines = [
            f"chaos seed {self.seed}: {'PASSED' if self.passed else 'FAILED'} in "
            f"{self.seconds:.1f} s (faults {self.chaos_seconds:.1f} s, "
            f"drain {self.drain_seconds:.1f} s)",
            f"replay: {self.config.command()}   (output kept in {self.directory})",
        ]
        lines += [f"  {k}: {v}" for k, v in self.stats.items()]
        lines += [f"FINDING: {f}" for f in self.findings]
        return "\n".join(lines)


@attrs.define
class Run:
    plan: Plan
    directory: Path
    result: Result
    pg: postgres.OwnPostgres
    stripe: fake_stripe.FakeStripeServer
    api_key: str = attrs.field(repr=False)
    webhook_secret: str = attrs.field(repr=False)
    elapsed: Callable[[], float]
    say: Callable[[str], None]
    fleet: fleet_.Fleet = attrs.field(init=False)
    secrets_used: dict[str, str] = attrs.Factory(dict)  # name -> value: never to be shown
    captured: list[tuple[str, str]] = attrs.Factory(list)  # (what, text): scanned for secrets
    db_gate: threading.RLock = attrs.Factory(threading.RLock)
    stop: threading.Event = attrs.Factory(threading.Event)
    arrivals_done: threading.Event = attrs.Factory(threading.Event)
    counters: dict[str, int] = attrs.Factory(dict)
    chaos_began: float = 0.0  # when the faults began, by self.elapsed()
    # Transfers the run resolved as an operator would (rule 7), and why they needed one.
    operated: dict[str, str] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        self.fleet = fleet_.Fleet(
            directory=self.directory / "workers",
            env=self.env(),
            clock=self.elapsed,
            slots=self.plan.config.workers,
        )
        self.secrets_used.update(
            {
                "Stripe API key": self.api_key,
                "webhook signing secret": self.webhook_secret,
                "database password": self.pg.password,
            }
        )

    # -- plumbing --------------------------------------------------------------------------

    @property
    def fake(self) -> fake_stripe.FakeStripe:
        return self.stripe.fake

    def env(self) -> dict[str, str]:
        return cli_helpers.cli_env(
            self.pg.url,
            STRIPE_API_KEY=self.api_key,
            PAYOUT_STRIPE_API_BASE=self.stripe.url,
            STRIPE_WEBHOOK_SECRET=self.webhook_secret,
            **SETTINGS,
        )

    def note(self, text: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {text}"
        self.result.log.append(line)
        with (self.directory / "run.log").open("a") as log:
            log.write(line + "\n")
        self.say(line)

    def finding(self, text: str) -> None:
        self.result.findings.append(text)
        self.note(f"FINDING: {text}")

    def count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    def cli(self, *args: str, stdin: str | None = None, what: str = "") -> CommandResult:
        env = self.env()
        env["PAYOUT_ADMIN_ADDR"] = "off"
        env.pop("PAYOUT_WEBHOOK_ADDR")
        done = cli_helpers.run_cli(*args, env=env, stdin=stdin)
        self.captured.append((f"payout-core {' '.join(args)} {what}".strip(), done.output))
        return done

    def cli_ok(self, *args: str, stdin: str | None = None, retries: int = 0) -> CommandResult:
        """A command that must succeed; exit 1 (the database away) is retried."""
        for attempt in range(retries + 1):
            with self.db_gate:
                done = self.cli(*args, stdin=stdin)
            if done.returncode == 0:
                return done
            if done.returncode != 1 or attempt == retries:
                break
            time.sleep(0.5)
        self.finding(f"{done.describe()}")
        return done

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self.db_gate:
            return cli_helpers.query(self.pg.url, statement, params)

    # -- set-up ----------------------------------------------------------------------------

    def set_up(self) -> None:
        self.cli_ok("migrate")
        for winner in self.plan.winners:
            if winner.account is None:
                continue
            if winner.closed_at_stripe:
                self.fake.add_account(winner.account, fake_stripe.AccountState.CLOSED)
            else:
                self.fake.add_account(winner.account)
            if winner.connect_with_cli:
                self.cli_ok("accounts", "set", winner.user_id, winner.account)
            else:
                self.sql(
                    "INSERT INTO user_stripe_accounts (user_id, stripe_account_id) VALUES (%s, %s)",
                    (winner.user_id, winner.account),
                )
        self.fleet.start_all()
        self.note(f"{len(self.fleet.live())} workers up: {self.describe_fleet()}")

    def describe_fleet(self) -> str:
        return ", ".join(f"{i.name} (pid {i.pid})" for i in self.fleet.live())

    def start_weather(self) -> None:
        self.fake.script(
            faults.Mix(self.plan.stripe_mix_seed, CREATE_MIX), method="POST", times=None
        )
        self.fake.script(
            faults.Mix(self.plan.lookup_mix_seed, LOOKUP_MIX), method="GET", times=None
        )

    def end_weather(self) -> None:
        self.fake.clear_scripts()
        self.fake.set_balance(None)

    # -- the second thread: settlements, scrapes, claims nobody holds ------------------------

    def background(self) -> None:
        pending = list(self.plan.arrivals)
        next_scrape = next_sweep = 0.0
        while not self.stop.is_set():
            now = self.elapsed() - self.chaos_began
            while pending and pending[0].at <= now:
                self.harness(self.arrive, pending.pop(0))
            if not pending:
                self.arrivals_done.set()
            if self.elapsed() >= next_sweep:
                self.harness(self.release_abandoned_claims)
                next_sweep = self.elapsed() + 0.5
            if self.elapsed() >= next_scrape:
                self.harness(self.scrape)
                next_scrape = self.elapsed() + 3.0
            self.stop.wait(0.05)

    def harness(self, step: Callable[..., None], *args: Any) -> None:
        """Do one step of the second thread; a failure of the run itself is a
        finding (the run proves less), and the thread goes on."""
        try:
            step(*args)
        except Exception:
            self.finding(f"the run itself failed in {step.__name__}:\n{traceback.format_exc()}")

    def arrive(self, arrival: Arrival) -> None:
        payload = json.dumps(arrival.settlement)
        sid = arrival.settlement["settlement_id"]
        if arrival.via is Via.CLI:
            self.cli_ok("schedule", "-", stdin=payload, retries=20)
        else:
            for attempt in range(20):
                try:
                    self.sql(
                        "INSERT INTO payout_settlement_inbox (settlement_id, payload) "
                        "VALUES (%s, %s::jsonb)",
                        (sid, payload),
                    )
                    break
                except psycopg.OperationalError:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
        self.count(f"settlements via {arrival.via.value}")
        if arrival.duplicate:
            self.count("settlements sent twice")

    def release_abandoned_claims(self) -> None:
        """End the lease of claims a live worker gave up on after a database error."""
        for incarnation in self.fleet.live():
            for event in incarnation.new_events():
                if event.get("event") != "payout.transfer.error":
                    continue
                with contextlib.suppress(psycopg.OperationalError):
                    released = self.sql(
                        "UPDATE payout_transfers SET lease_expires_at = now() "
                        "WHERE id = %s AND status = 'processing' AND claim_token LIKE %s "
                        "AND updated_at <= %s::timestamptz AND lease_expires_at > now() "
                        "RETURNING id",
                        (event["transfer_id"], incarnation.claim_prefix + "%", event["ts"]),
                    )
                    self.count("claims given up after a database error, lease ended", len(released))

    def scrape(self) -> None:
        for incarnation in self.fleet.live():
            if incarnation.admin_url is None:
                continue
            for path in ("/admin/jobs", "/metrics"):
                # A worker killed while it answers leaves half an answer.
                with contextlib.suppress(OSError, http.client.HTTPException):
                    status, _, body = cli_helpers.http_get(incarnation.admin_url + path)
                    self.captured.append((f"{incarnation.name} {path} ({status})", body))

    # -- episodes --------------------------------------------------------------------------

    def play(self, episode: Episode) -> None:
        match episode.kind:
            case Kind.KILL:
                self.kill(episode)
            case Kind.PG_RESTART:
                with self.db_gate:
                    mode = "crash (immediate)" if episode.immediate else "fast"
                    self.note(f"PostgreSQL restart, {mode}")
                    self.pg.stop(immediate=episode.immediate)
                    self.pg.start()
                    self.note("PostgreSQL back")
            case Kind.PG_OUTAGE:
                with self.db_gate:
                    self.note(f"PostgreSQL down for {episode.seconds:.1f} s")
                    self.pg.stop(immediate=episode.immediate)
                    time.sleep(episode.seconds)
                    self.pg.start()
                    self.note("PostgreSQL back")
            case Kind.BALANCE:
                self.note(f"platform balance empty for {episode.seconds:.1f} s")
                self.fake.set_balance(0)
                time.sleep(episode.seconds)
                self.fake.set_balance(None)
                self.note("balance topped up")
            case Kind.KEY_ROTATION:
                self.rotate_key(episode)
            case Kind.PAUSE:
                self.pause(episode)
            case Kind.RATE_LIMITED:
                self.note(f"Stripe answers 429 to everything for {episode.seconds:.1f} s")
                self.fake.script(
                    faults.rate_limited(),
                    method=None,
                    path=None,
                    times=None,
                    until=time.time() + episode.seconds,
                )
                time.sleep(episode.seconds)
            case Kind.REVERSAL:
                self.reverse_one()

    def busy_workers(self) -> list[fleet_.Incarnation]:
        holding = {
            str(prefix)
            for (prefix,) in self.sql(
                "SELECT DISTINCT split_part(claim_token, '/', 1) || '/' FROM payout_transfers "
                "WHERE status = 'processing'"
            )
        }
        return [i for i in self.fleet.live() if i.claim_prefix in holding]

    def kill(self, episode: Episode) -> None:
        """SIGKILL a worker: one caught holding claims (mid-attempt) if any is
        within a couple of seconds, else the planned one."""
        victim = self.fleet.current(episode.worker)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            busy = self.busy_workers()
            if busy:
                victim = busy[episode.worker % len(busy)]
                break
            time.sleep(0.02)
        if victim is None or not victim.alive():
            self.finding(f"worker slot {episode.worker} had no live worker to kill")
            return
        victim.kill()
        self.count("workers SIGKILLed")
        with self.db_gate:
            held = self.sql(
                "UPDATE payout_transfers SET lease_expires_at = now() "
                "WHERE status = 'processing' AND claim_token LIKE %s RETURNING id",
                (victim.claim_prefix + "%",),
            )
        self.count("claims of killed workers", len(held))
        self.note(
            f"SIGKILL {victim.name} (pid {victim.pid}), holding {len(held)} claim(s); "
            f"replaced in {episode.seconds:.1f} s"
        )
        time.sleep(episode.seconds)
        with self.db_gate:
            started = self.fleet.start(victim.slot, self.env())
        self.note(f"{started.name} (pid {started.pid}) started")

    def rotate_key(self, episode: Episode) -> None:
        new_key = "sk_test_" + secrets.token_hex(20)
        self.count("rolling restarts")
        self.secrets_used[f"Stripe API key of rotation {self.counters['rolling restarts']}"] = (
            new_key
        )
        self.fake.add_api_key(new_key, can_write=True)
        self.fake.revoke_api_key(self.api_key)
        self.note(f"Stripe key revoked: 401s for {episode.seconds:.1f} s, then rolled")
        time.sleep(episode.seconds)
        self.api_key = new_key
        for slot in range(self.plan.config.workers):
            current = self.fleet.current(slot)
            if current is not None and current.alive():
                current.terminate()
                if current.returncode != 0:
                    self.finding(
                        f"{current.name} {current.how_it_ended()} on SIGTERM:\n"
                        f"{current.stderr()[-3000:]}"
                    )
            with self.db_gate:
                self.fleet.start(slot, self.env())
        self.note(f"every worker restarted with the new key: {self.describe_fleet()}")

    def processing_claims(self) -> set[tuple[str, str]]:
        return {
            (str(i), str(t))
            for i, t in self.sql(
                "SELECT id, claim_token FROM payout_transfers WHERE status = 'processing'"
            )
        }

    def pause(self, episode: Episode) -> None:
        paused = self.cli_ok("pause", "--actor", "chaos", "--reason", f"drill {self.result.seed}")
        if paused.returncode != 0:
            return
        self.note(f"fleet paused for {episode.seconds:.1f} s")
        until = time.monotonic() + episode.seconds
        time.sleep(0.5)  # a claim statement that read the switch just before it turned
        before = self.processing_claims()
        while time.monotonic() < until:
            new = self.processing_claims() - before
            if new:
                self.finding(f"claims taken while the fleet was paused: {sorted(new)}")
                break
            time.sleep(0.2)
        shown = self.cli_ok("status", "--json")
        if shown.returncode == 0 and shown.json()["pause"]["paused"] is not True:
            self.finding(f"status does not show the pause: {shown.stdout}")
        self.cli_ok("resume", "--actor", "chaos", "--reason", "drill over")
        self.note("fleet resumed")

    def reverse_one(self) -> None:
        """The dashboard reverses part of a paid transfer; Stripe tells a worker's
        webhook receiver, twice; the ledger must book it once."""
        rows = self.sql(
            "SELECT stripe_transfer_id, amount_cents FROM payout_transfers "
            "WHERE status = 'completed' ORDER BY random() LIMIT 1"
        )
        live = [i for i in self.fleet.live() if i.webhooks_url is not None]
        if not rows or not live:
            self.note("no paid transfer yet to reverse")
            return
        stripe_id, amount = rows[0]
        self.fake.reverse_transfer(stripe_id, max(1, int(amount) // 3))
        event = self.fake.event_for(stripe_id, "transfer.reversed")
        statuses = webhooks.deliver(
            str(live[0].webhooks_url), event, secret=self.webhook_secret, times=2
        )
        self.count("reversals made in the dashboard")
        self.note(f"reversed part of {stripe_id}; webhook delivered twice: {statuses}")
        if statuses != [200, 200]:
            self.finding(f"the webhook receiver answered {statuses} to a signed event")

    # -- the drain -------------------------------------------------------------------------

    def hurry(self) -> None:
        """Make waiting retries due now (see the module docstring)."""
        busy = [
            key.split(":")[1] for key in self.fake.in_flight_keys() if key.startswith("payout:")
        ]
        moved = self.sql(
            "UPDATE payout_transfers SET next_attempt_at = now(), "
            "last_send_at = CASE WHEN outcome_uncertain "
            "  THEN least(last_send_at, now() - interval '1 hour') ELSE last_send_at END "
            "WHERE status = 'retryable' AND needs_operator IS NULL AND next_attempt_at > now() "
            "AND NOT (id::text = ANY(%s)) RETURNING id",
            (busy,),
        )
        self.count("retries made due during the drain", len(moved))

    def operate(self) -> None:
        """Follow the runbook for every transfer that needs an operator: find
        what Stripe holds for it; ``transfers resolve --found`` the one Stripe
        paid, or ``--absent`` then ``transfers reissue``. Each is written down
        with its reason; one that should never have needed an operator, or
        that Stripe paid twice, is a finding."""
        waiting = self.sql(
            "SELECT id::text, needs_operator FROM payout_transfers WHERE needs_operator IS NOT NULL"
        )
        for transfer_id, reason in waiting:
            if transfer_id in self.operated:
                continue
            self.operated[transfer_id] = str(reason)
            self.note(f"{transfer_id} needs an operator: {reason}")
            explained = ("look-ups at Stripe failed in a row", "claims in a row expired")
            if not any(e in str(reason) for e in explained):
                self.finding(f"{transfer_id} needs an operator for no reason of the fault model")
            made = self.fake.transfers_for(transfer_id)
            why = f"chaos seed {self.result.seed}: Stripe holds {len(made)} transfer(s) for it"
            if len(made) > 1:
                self.finding(f"{transfer_id} was paid {len(made)} times at Stripe: {made}")
            elif made:
                self.cli_ok(
                    "transfers", "resolve", transfer_id, "--found", made[0]["id"],
                    "--actor", "chaos-operator", "--reason", why,
                )  # fmt: skip
            else:
                self.wait_nothing_in_flight_for(transfer_id)
                # The send margin has passed for what matters: nothing of it runs at Stripe.
                self.sql(
                    "UPDATE payout_transfers SET last_send_at = last_send_at - interval '1 hour' "
                    "WHERE id = %s",
                    (transfer_id,),
                )
                self.cli_ok(
                    "transfers", "resolve", transfer_id, "--absent",
                    "--actor", "chaos-operator", "--reason", why,
                )  # fmt: skip
                self.cli_ok(
                    "transfers", "reissue", transfer_id,
                    "--actor", "chaos-operator", "--reason", "resolved absent: pay again",
                )  # fmt: skip
            self.count("transfers resolved as an operator")

    def wait_nothing_in_flight_for(self, transfer_id: str) -> None:
        end = time.monotonic() + 30
        while any(transfer_id in key for key in self.fake.in_flight_keys()):
            if time.monotonic() > end:
                self.finding(f"a request for {transfer_id} is still running at Stripe")
                return
            time.sleep(0.1)

    def left(self) -> dict[str, int]:
        rows = self.sql(
            "SELECT 'transfers ' || status || CASE WHEN needs_operator IS NULL THEN '' "
            "  ELSE ' needing an operator' END, count(*) FROM payout_transfers "
            "WHERE status NOT IN ('completed', 'failed_terminal') GROUP BY 1 "
            "UNION ALL SELECT 'inbox rows new', count(*) FROM payout_settlement_inbox "
            "WHERE status = 'new' HAVING count(*) > 0 "
            "UNION ALL SELECT 'jobs not complete', count(*) FROM payout_jobs "
            "WHERE status <> 'complete' HAVING count(*) > 0"
        )
        return {str(what): int(n) for what, n in rows}

    def drain(self) -> bool:
        deadline = time.monotonic() + self.plan.config.drain_seconds
        last_said = 0.0
        while True:
            left = self.left()
            waiting = {k: v for k, v in left.items() if "needing an operator" not in k}
            stuck = {k: v for k, v in left.items() if "needing an operator" in k}
            if not waiting and not stuck:
                return True
            if stuck and set(waiting) <= {"jobs not complete"}:
                self.operate()
            if time.monotonic() > deadline:
                self.finding(f"not drained after {self.plan.config.drain_seconds:.0f} s: {left}")
                return False
            if time.monotonic() - last_said > 5:
                self.note(f"draining: {left}")
                last_said = time.monotonic()
            self.hurry()
            time.sleep(0.3)


def run(config: Config, directory: Path, say: Callable[[str], None] = print) -> Result:
    """Run the chaos of ``config`` in ``directory`` (kept: the workers' output,
    the server's log) and check every promise at the end."""
    plan = Plan.draw(config)
    result = Result(seed=config.seed, config=config, directory=directory)
    elapsed = _elapsed_since(time.monotonic())
    say(f"chaos seed {config.seed}: {len(plan.episodes)} episodes, {len(plan.arrivals)} arrivals")
    with contextlib.ExitStack() as stack:
        directory.mkdir(parents=True, exist_ok=True)
        pg = stack.enter_context(postgres.own_postgres(directory))
        api_key = "sk_test_" + secrets.token_hex(20)
        fake = fake_stripe.FakeStripe(api_key=api_key, idempotency_per_account=True)
        stripe = stack.enter_context(fake_stripe.running(fake))
        chaos = Run(
            plan=plan,
            directory=directory,
            result=result,
            pg=pg,
            stripe=stripe,
            api_key=api_key,
            webhook_secret="whsec_" + secrets.token_hex(24),
            elapsed=elapsed,
            say=say,
        )
        stack.callback(chaos.fleet.reap_all)
        _play(chaos)
    result.seconds = elapsed()
    return result


def _play(chaos: Run) -> None:
    result, plan = chaos.result, chaos.plan
    chaos.set_up()
    chaos.start_weather()
    chaos.chaos_began = chaos.elapsed()
    helper = threading.Thread(target=chaos.background, name="chaos-arrivals", daemon=True)
    helper.start()
    try:
        for episode in plan.episodes:
            wait = chaos.chaos_began + episode.at - chaos.elapsed()
            if wait > 0:
                time.sleep(wait)
            try:
                chaos.play(episode)
            except Exception:  # a worker that would not start, a server that would not
                chaos.finding(f"{episode} failed:\n{traceback.format_exc()}")
                break
            dead = chaos.fleet.unexpected_deaths()
            if dead:
                break
        chaos.arrivals_done.wait(timeout=plan.config.drain_seconds)
        chaos.end_weather()
        result.chaos_seconds = chaos.elapsed() - chaos.chaos_began
        chaos.note("faults over: draining")
        drain_began = chaos.elapsed()
        drained = chaos.drain()
        result.drain_seconds = chaos.elapsed() - drain_began
        chaos.note("drained" if drained else "gave up draining")
        chaos.scrape()
    finally:
        chaos.stop.set()
        helper.join(timeout=60)
    checks.check_everything(chaos)
    result.stats.update(chaos.counters)
    if chaos.operated:
        result.stats["needed an operator (resolved by the runbook)"] = chaos.operated
