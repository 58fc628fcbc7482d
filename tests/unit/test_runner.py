"""The loop's timing, registry, metrics and admin endpoints, with a scripted tick."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

from payout_adapters.memory import ManualClock
from payout_cli import admin, logs, runner, settings
from payout_cli import metrics as metrics_
from payout_core import models, ports
from tests.kit.times import T0


def report(**changes: object) -> models.RunReport:
    return attrs.evolve(models.RunReport(id="run-1", started_at=T0, finished_at=T0), **changes)  # type: ignore[arg-type]


def make_runner(reports: list[models.RunReport], **kwargs: object) -> runner.Runner:
    queue = list(reports)

    def tick(stop: threading.Event) -> models.RunReport:
        result = queue.pop(0)
        if not queue:
            stop.set()
        return result

    return runner.Runner(
        tick=tick,
        interval_seconds=300,
        clock=ManualClock(T0),
        registry=runner.Registry(interval_seconds=300),
        metrics=metrics_.Metrics(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_next_tick_waits_the_interval() -> None:
    assert make_runner([]).next_wait(report(claimed=3)) == 300


def test_a_tick_that_spent_its_budget_is_followed_at_once() -> None:
    assert make_runner([], tick_budget=1000).next_wait(report(claimed=1000)) == 0


def test_systemic_halts_back_off_doubling_up_to_an_hour() -> None:
    r = make_runner([])
    halted = report(halted_reason="authentication_error: bad key")
    waits = [r.next_wait(halted) for _ in range(6)]
    assert waits == [300, 600, 1200, 2400, 3600, 3600]
    assert r.next_wait(report()) == 300


def test_a_failed_tick_is_retried_after_the_interval() -> None:
    assert make_runner([], tick_budget=10).next_wait(report(error="db down", claimed=10)) == 300


def test_the_registry_shows_the_last_run_and_counts_failures() -> None:
    r = make_runner([report(error="StoreUnavailable: db down"), report(completed=4)])
    r.run_once()
    assert r.registry.consecutive_failures == 1
    r.run_once()
    snapshot = r.registry.snapshot()["jobs"][0]
    assert snapshot["consecutive_failures"] == 0
    assert snapshot["last_run"]["completed"] == 4
    assert snapshot["interval_seconds"] == 300
    assert snapshot["running"] is False


def test_run_forever_stops_when_asked() -> None:
    r = make_runner([report(), report(), report()])
    r.interval_seconds = 0.001
    r.run_forever()
    assert r.stop.is_set()
    assert r.registry.last_run is not None


def test_metrics_count_what_each_tick_did() -> None:
    m = metrics_.Metrics()
    m.observe_tick(report(completed=3, retried=2, stale=1, settlements_accepted=1), 0.5)
    m.observe_tick(report(halted_reason="x"), 0.1)
    m.observe_queue(
        dict.fromkeys(models.TransferStatus, 1),
        ports.QueueDepth(due=4, stuck=1, needs_operator=2),
        models.PauseState(paused=True, actor="ops", reason="why", since=T0),
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(m.exposition().decode())
        for s in family.samples
    }
    assert samples[("payout_transfer_attempts_total", (("outcome", "completed"),))] == 3
    assert samples[("payout_transfer_attempts_total", (("outcome", "retried"),))] == 2
    assert samples[("payout_transfer_attempts_total", (("outcome", "stale"),))] == 1
    assert samples[("payout_ticks_total", (("result", "halted"),))] == 1
    assert samples[("payout_halted", ())] == 1
    assert samples[("payout_paused", ())] == 1
    assert samples[("payout_transfers_due", ())] == 4
    assert samples[("payout_transfers_stuck", ())] == 1
    assert samples[("payout_transfers_needs_operator", ())] == 2
    assert samples[("payout_transfers", (("status", "retryable"),))] == 1
    assert samples[("payout_inbox_settlements_total", (("result", "accepted"),))] == 1


READY = threading.Event()


@pytest.fixture
def server() -> Iterator[admin.AdminServer]:
    r = make_runner([report(completed=2)])
    r.run_once()
    READY.clear()
    srv = admin.AdminServer(
        settings.AdminAddress("127.0.0.1", 0), r.registry, r.metrics, ready=READY.is_set
    )
    srv.start()
    yield srv
    srv.close()


def get(srv: admin.AdminServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{srv.bound}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_admin_endpoints_answer(server: admin.AdminServer) -> None:
    assert get(server, "/healthz") == (200, "ok\n")
    assert get(server, "/readyz")[0] == 503
    READY.set()
    assert get(server, "/readyz") == (200, "ready\n")
    status, body = get(server, "/admin/jobs")
    assert status == 200
    assert json.loads(body)["jobs"][0]["last_run"]["completed"] == 2
    status, body = get(server, "/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"payout_tick_duration_seconds", "payout_transfer_attempts"} <= names
    assert get(server, "/nope")[0] == 404


def test_json_logs_carry_ids_and_never_a_key() -> None:
    stream = io.StringIO()
    logs.configure(stream=stream)
    try:
        logging.getLogger("payout.test").info(
            "payout.transfer.completed",
            extra={"transfer_id": "t1", "note": "key sk_live_abcDEF123 and postgresql://a:pw@h/d"},
        )
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue())
    assert line["event"] == "payout.transfer.completed"
    assert line["transfer_id"] == "t1"
    assert "abcDEF123" not in stream.getvalue()
    assert ":pw@" not in stream.getvalue()
