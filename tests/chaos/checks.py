"""What must hold once a chaos run has drained: every promise payout-core makes.

Each check adds a finding (a broken promise, with its evidence) to the run's
result rather than stopping at the first, so that one run says all it found.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from tests.chaos.plan import Via

if TYPE_CHECKING:
    from tests.chaos.run import Run

__all__ = ["check_everything", "exception_of", "leaks"]

# What a worker may log at error level under these faults, and why. Anything
# else at error level (payout.stripe.unexpected_error, a transfer that needs an
# operator...) is a finding.
EXPECTED_ERRORS = {
    "payout.tick.failed": "the database went away during a tick",
    "payout.tick.unrecorded": "the database went away before the run was recorded",
    "payout.transfer.error": "the database went away during an attempt: its claim stays",
    "payout.webhooks.not_stored": "the database went away while an event arrived",
    "payout.webhooks.drain_failed": "the database went away while events were applied",
    "payout.stripe.request_failed": "a systemic refusal (401, balance_insufficient)",
    "payout.transfer.systemic": "the same, for the transfer that met it",
    "payout.tick.halted": "the tick stopping on it",
    "payout.runner.halted": "the loop backing off after a halt",
}
# The exceptions the database's going away raises, in a logged traceback's last line.
EXPECTED_EXCEPTIONS = re.compile(
    r"^(psycopg\.(errors\.)?\w*(OperationalError|AdminShutdown|CrashShutdown|"
    r"CannotConnectNow|ConnectionTimeout)|psycopg_pool\.PoolTimeout|"
    r"payout_core\.errors\.StoreUnavailable)\b"
)
# Lines a worker writes to stderr that are not JSON log events (output.note).
NOTES = re.compile(
    r"^(admin endpoints on |Stripe webhooks on |payout-core loop on |received SIG\w+: )"
)


def check_everything(chaos: Run) -> None:
    _stop_the_fleet(chaos)
    _statuses(chaos)
    rows = _transfers(chaos)
    _every_transfer_ended(chaos, rows)
    _stripe_agrees(chaos, rows)
    _every_winner_as_planned(chaos, rows)
    _every_settlement_once(chaos)
    _reconcile(chaos)
    _worker_logs(chaos)
    _no_secret_shown(chaos)
    _faults_met(chaos)
    _tally(chaos, rows)


def _stop_the_fleet(chaos: Run) -> None:
    """SIGTERM every worker: each finishes its in-flight transfers and exits 0.
    Any that died before, of anything but our SIGKILL, is a finding."""
    for dead in chaos.fleet.unexpected_deaths():
        chaos.finding(
            f"{dead.name} (pid {dead.pid}) died on its own, exit {dead.process.returncode}:\n"
            f"{dead.stderr()[-4000:]}"
        )
        dead.ended_by_us = "found dead"
    for live in chaos.fleet.live():
        live.terminate()
        if live.returncode != 0:
            chaos.finding(f"{live.name} {live.how_it_ended()} on SIGTERM:\n{live.stderr()[-4000:]}")
    for incarnation in chaos.fleet.incarnations:
        if incarnation.ended_by_us == "SIGKILL" and incarnation.returncode != -9:
            chaos.finding(f"{incarnation.name} was SIGKILLed but exited {incarnation.returncode}")


def _statuses(chaos: Run) -> None:
    chaos.cli_ok("status")
    shown = chaos.cli_ok("status", "--json")
    if shown.returncode == 0:
        for transfer in shown.json().get("needs_operator_transfers", []):
            chaos.finding(f"a transfer needs an operator: {json.dumps(transfer, default=str)}")


def _transfers(chaos: Run) -> list[dict[str, Any]]:
    with psycopg.connect(chaos.pg.url, row_factory=dict_row) as conn:
        return list(
            conn.execute(
                "SELECT id::text, status, user_id, contest_id, amount_cents, currency, "
                "destination_account, stripe_transfer_id, failure_code, failure_message, "
                "needs_operator, attempt_count, key_generation, abandoned_claims, "
                "lookup_failures, reissue_of::text FROM payout_transfers"
            )
        )


def _every_transfer_ended(chaos: Run, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if row["status"] not in ("completed", "failed_terminal"):
            chaos.finding(f"transfer not terminal: {row}")


def _stripe_agrees(chaos: Run, rows: list[dict[str, Any]]) -> None:
    """Exactly one Stripe transfer per completed payout transfer, with its amount,
    currency, pinned destination and group; none for any other."""
    at_stripe: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for transfer in chaos.fake.transfers():
        at_stripe[transfer["metadata"].get("payout_transfer_id", "")].append(transfer)
    ours = {row["id"] for row in rows}
    for unknown in set(at_stripe) - ours:
        chaos.finding(f"Stripe transfers for no payout transfer: {at_stripe[unknown]}")
    for row in rows:
        made = at_stripe.get(row["id"], [])
        if row["status"] != "completed":
            if made:
                chaos.finding(f"{row['status']} transfer paid at Stripe: {row} -> {made}")
            continue
        if len(made) != 1:
            chaos.finding(f"{len(made)} Stripe transfers for one payout transfer: {row} -> {made}")
            continue
        paid = made[0]
        expected = (
            row["stripe_transfer_id"],
            row["amount_cents"],
            row["currency"],
            row["destination_account"],
            f"contest:{row['contest_id']}",
        )
        actual = (
            paid["id"],
            paid["amount"],
            paid["currency"],
            paid["destination"],
            paid["transfer_group"],
        )
        if expected != actual:
            chaos.finding(f"Stripe's transfer differs from the record: {expected} vs {actual}")


def _every_winner_as_planned(chaos: Run, rows: list[dict[str, Any]]) -> None:
    """Every winner with a connected, open account paid; the others failed for
    the reason they have, and nobody else."""
    reissued = {row["reissue_of"]: row for row in rows if row["reissue_of"] is not None}
    for failed in reissued:
        if failed not in chaos.operated:
            chaos.finding(f"{failed} was reissued, but not by the run's operator")
    # A reissue stands for the transfer it replaces.
    by_winner = {
        (row["contest_id"], row["user_id"]): row for row in rows if row["id"] not in reissued
    }
    expected_rows = len(reissued)
    for arrival in chaos.plan.arrivals:
        if arrival.malformed or arrival.duplicate:
            continue
        contest = str(arrival.settlement["contest_id"])
        winners = arrival.settlement["winners"]
        assert isinstance(winners, list)
        for entry in winners:
            expected_rows += 1
            winner = chaos.plan.winner(entry["user_id"])
            row = by_winner.get((contest, winner.user_id))
            if row is None:
                chaos.finding(f"no transfer for {winner.user_id} in {contest}")
                continue
            if row["amount_cents"] != entry["amount_cents"]:
                chaos.finding(f"{row['id']} pays {row['amount_cents']}, not {entry}")
            if winner.payable:
                want: tuple[object, ...] = ("completed", None, winner.account)
                got: tuple[object, ...] = (
                    row["status"],
                    row["failure_code"],
                    row["destination_account"],
                )
            else:
                code = "account_invalid" if winner.closed_at_stripe else None
                want = ("failed_terminal", code or "stripe_account_not_connected")
                got = (row["status"], row["failure_code"])
            if want != got:
                chaos.finding(f"{winner} in {contest}: wanted {want}, got {got}: {row}")
    if len(rows) != expected_rows:
        chaos.finding(f"{len(rows)} payout transfers for {expected_rows} winners settled")


def _every_settlement_once(chaos: Run) -> None:
    jobs = {
        sid: (status, total)
        for sid, status, total in chaos.sql(
            "SELECT settlement_id, status, total_transfers FROM payout_jobs"
        )
    }
    inbox = collections.defaultdict(list)
    for sid, status, reason in chaos.sql(
        "SELECT settlement_id, status, rejected_reason FROM payout_settlement_inbox"
    ):
        inbox[sid].append((status, reason))
    planned = {str(a.settlement["settlement_id"]): a for a in chaos.plan.arrivals}
    for sid, arrival in planned.items():
        if arrival.malformed:
            if sid in jobs or [s for s, _ in inbox[sid]] != ["rejected"]:
                chaos.finding(f"the malformed settlement was not rejected: {inbox[sid]}, {jobs}")
            continue
        if jobs.get(sid, ("", 0))[0] != "complete":
            chaos.finding(f"settlement {sid}: job {jobs.get(sid)}")
        sent_to_inbox = sum(
            1
            for a in chaos.plan.arrivals
            if a.settlement["settlement_id"] == sid and a.via is Via.INBOX
        )
        if [s for s, _ in inbox[sid]] != ["accepted"] * sent_to_inbox:
            chaos.finding(f"settlement {sid}: inbox rows {inbox[sid]}, {sent_to_inbox} sent")
    for sid in set(jobs) - set(planned):
        chaos.finding(f"a job for a settlement nobody sent: {sid}")


def _reconcile(chaos: Run) -> None:
    done = chaos.cli("reconcile")
    chaos.result.stats["reconcile"] = (done.output.strip().splitlines() or ["(nothing)"])[-1]
    if done.returncode != 0:
        chaos.finding(f"reconcile found what it should not:\n{done.describe()}")


def _worker_logs(chaos: Run) -> None:
    errors: collections.Counter[str] = collections.Counter()
    exceptions: collections.Counter[str] = collections.Counter()
    for incarnation in chaos.fleet.incarnations:
        for line in incarnation.stderr().splitlines():
            if not line.startswith("{"):
                if line.strip() and not NOTES.match(line):
                    chaos.finding(f"{incarnation.name} wrote an unexpected line: {line!r}")
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                if incarnation.ended_by_us == "SIGKILL":
                    continue  # cut off mid-line by the kill
                chaos.finding(f"{incarnation.name} wrote a broken log line: {line!r}")
                continue
            if event.get("level") in ("error", "critical"):
                errors[event.get("event", "?")] += 1
                systemic = event.get("outcome", "systemic") == "systemic"
                operated = (
                    event.get("event") == "payout.transfer.needs_operator"
                    and event.get("transfer_id") in chaos.operated
                )
                if operated:
                    continue  # written down, and resolved, by the run's operator
                if event.get("event") not in EXPECTED_ERRORS or not systemic:
                    chaos.finding(f"{incarnation.name} logged an unexpected error: {line}")
            if "exception" in event:
                raised = exception_of(str(event["exception"]))
                exceptions[raised] += 1
                if not EXPECTED_EXCEPTIONS.match(raised):
                    chaos.finding(f"{incarnation.name} logged an unexpected exception: {line}")
        if incarnation.stdout().strip():
            chaos.captured.append((f"{incarnation.name} stdout", incarnation.stdout()))
    chaos.result.stats["worker errors logged"] = dict(errors)
    chaos.result.stats["exceptions logged"] = dict(exceptions)


def leaks(texts: Iterable[tuple[str, str]], hidden: Mapping[str, str]) -> list[str]:
    """Where any secret of ``hidden`` (name -> value) shows in ``texts``
    (``(what, text)`` pairs): one line each, naming the secret, the text and
    what came before it there, never the secret itself."""
    found = []
    for what, text in texts:
        for name, secret in hidden.items():
            at = text.find(secret) if secret else -1
            if at >= 0:
                before = text[max(0, at - 80) : at]
                for other in hidden.values():
                    before = before.replace(other, "<SECRET>") if other else before
                found.append(f"the {name} shows in {what}: ...{before}<SECRET>")
    return found


def exception_of(traceback: str) -> str:
    """The exception a formatted traceback ends with (its message may span lines)."""
    names = re.findall(r"^([A-Za-z_][\w.]*)(?::|$)", traceback, flags=re.MULTILINE)
    return names[-1] if names else "?"


def _no_secret_shown(chaos: Run) -> None:
    texts = list(chaos.captured)
    for incarnation in chaos.fleet.incarnations:
        texts.append((f"{incarnation.name} stdout", incarnation.stdout()))
        texts.append((f"{incarnation.name} stderr", incarnation.stderr()))
    for leak in leaks(texts, chaos.secrets_used):
        chaos.finding(leak)
    chaos.result.stats["outputs scanned for secrets"] = len(texts)


def _faults_met(chaos: Run) -> None:
    """A run that met no fault proves nothing: the random mix must have struck
    (each of these is near certain over a run's few hundred requests), and the
    windows are noted when no request happened to fall in them."""
    requests = chaos.fake.requests()
    met = {
        "a dropped connection or lost response": sum(r.fault == "Drop" for r in requests),
        "a request slower than the timeout": sum(r.fault == "Delay" for r in requests),
        "a saved 500": sum(r.status == 500 for r in requests),
    }
    for what, n in met.items():
        if n == 0:
            chaos.finding(f"the run met no {what}: the fault mix did not strike")
    if not any(r.status == 401 for r in requests):
        chaos.note("no request fell in a 401 window")
    if (
        chaos.counters.get("workers SIGKILLed", 0)
        < chaos.plan.config.kills * chaos.plan.config.rounds
    ):
        chaos.finding("fewer workers were killed than planned")


def _tally(chaos: Run, rows: list[dict[str, Any]]) -> None:
    stats = chaos.result.stats
    outcomes = collections.Counter(
        row["status"] if row["failure_code"] is None else f"{row['status']} ({row['failure_code']})"
        for row in rows
    )
    stats["transfers"] = dict(outcomes)
    stats["jobs"] = chaos.sql("SELECT count(*) FROM payout_jobs")[0][0]
    requests = chaos.fake.requests()
    stats["stripe requests"] = len(requests)
    stats["stripe answers"] = dict(
        sorted(
            collections.Counter(
                "dropped" if r.status is None else str(r.status) for r in requests
            ).items()
        )
    )
    stats["stripe faults"] = dict(collections.Counter(r.fault for r in requests if r.fault))
    stats["stripe transfers"] = len(chaos.fake.transfers())
    stats["worker processes"] = len(chaos.fleet.incarnations)
    stats["retries (attempts > 1) / new key generations"] = (
        sum(1 for row in rows if row["attempt_count"] > 1),
        sum(1 for row in rows if row["key_generation"] > 0),
    )
