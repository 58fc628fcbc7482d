"""Prometheus metrics of one worker process, and the gateway wrapper that feeds them."""

from __future__ import annotations

import time

import attrs
import prometheus_client as prom

from payout_core import models, outcomes, ports

__all__ = ["InstrumentedGateway", "Metrics"]


def _outcome_label(outcome: outcomes.LookupOutcome | outcomes.GatewayOutcome) -> str:
    return type(outcome).__name__.lower()


@attrs.define
class Metrics:
    """All metrics live in their own registry, so tests can make as many as they like."""

    registry: prom.CollectorRegistry = attrs.Factory(prom.CollectorRegistry)
    transfers: prom.Counter = attrs.field(init=False)
    gateway_latency: prom.Histogram = attrs.field(init=False)
    tick_duration: prom.Histogram = attrs.field(init=False)
    ticks: prom.Counter = attrs.field(init=False)
    settlements: prom.Counter = attrs.field(init=False)
    due: prom.Gauge = attrs.field(init=False)
    stuck: prom.Gauge = attrs.field(init=False)
    needs_operator: prom.Gauge = attrs.field(init=False)
    by_status: prom.Gauge = attrs.field(init=False)
    halted: prom.Gauge = attrs.field(init=False)
    paused: prom.Gauge = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        r = self.registry
        self.transfers = prom.Counter(
            "payout_transfer_attempts",
            "Transfer attempts recorded by this process, by how they ended.",
            ["outcome"],
            registry=r,
        )
        self.gateway_latency = prom.Histogram(
            "payout_gateway_request_seconds",
            "Time spent in each call to the payment gateway.",
            ["operation", "outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.tick_duration = prom.Histogram(
            "payout_tick_duration_seconds",
            "Duration of each runner tick.",
            buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.ticks = prom.Counter(
            "payout_ticks", "Runner ticks, by result.", ["result"], registry=r
        )
        self.settlements = prom.Counter(
            "payout_inbox_settlements",
            "Settlements taken from the inbox, by result.",
            ["result"],
            registry=r,
        )
        self.due = prom.Gauge(
            "payout_transfers_due", "Transfers due for an attempt now.", registry=r
        )
        self.stuck = prom.Gauge(
            "payout_transfers_stuck",
            "Transfers held by a claim whose lease has expired (their worker died).",
            registry=r,
        )
        self.needs_operator = prom.Gauge(
            "payout_transfers_needs_operator",
            "Transfers no worker will touch until an operator resolves them: look-ups at "
            "Stripe kept failing, or claims kept expiring without an outcome. See "
            "`payout-core status`.",
            registry=r,
        )
        self.by_status = prom.Gauge(
            "payout_transfers", "Transfers in the database, by status.", ["status"], registry=r
        )
        self.halted = prom.Gauge(
            "payout_halted",
            "1 while the last tick was halted by a systemic gateway error (bad key, no balance).",
            registry=r,
        )
        self.paused = prom.Gauge(
            "payout_paused",
            "1 while an operator has paused the fleet (`payout-core pause`): no worker claims "
            "a transfer. `payout-core status` says who paused it and why.",
            registry=r,
        )

    def observe_tick(self, report: models.RunReport, seconds: float) -> None:
        self.tick_duration.observe(seconds)
        result = "error" if report.error else "halted" if report.halted_reason else "ok"
        self.ticks.labels(result=result).inc()
        self.halted.set(1 if report.halted_reason else 0)
        for outcome in ("completed", "retried", "failed_terminal", "released", "stale"):
            count = getattr(report, outcome)
            if count:
                self.transfers.labels(outcome=outcome).inc(count)
        if report.settlements_accepted:
            self.settlements.labels(result="accepted").inc(report.settlements_accepted)
        if report.settlements_rejected:
            self.settlements.labels(result="rejected").inc(report.settlements_rejected)

    def observe_queue(
        self,
        counts: dict[models.TransferStatus, int],
        depth: ports.QueueDepth,
        pause: models.PauseState,
    ) -> None:
        self.paused.set(1 if pause.paused else 0)
        for status, n in counts.items():
            self.by_status.labels(status=status.value).set(n)
        self.due.set(depth.due)
        self.stuck.set(depth.stuck)
        self.needs_operator.set(depth.needs_operator)

    def exposition(self) -> bytes:
        return prom.generate_latest(self.registry)


@attrs.frozen
class InstrumentedGateway:
    """A :class:`~payout_core.ports.PaymentGateway` that times every call."""

    inner: ports.PaymentGateway
    metrics: Metrics

    def create_transfer(self, request: outcomes.TransferRequest) -> outcomes.GatewayOutcome:
        started = time.perf_counter()
        outcome = self.inner.create_transfer(request)
        self.metrics.gateway_latency.labels(
            operation="create_transfer", outcome=_outcome_label(outcome)
        ).observe(time.perf_counter() - started)
        return outcome

    def find_transfer(self, lookup: outcomes.TransferLookup) -> outcomes.LookupOutcome:
        started = time.perf_counter()
        found = self.inner.find_transfer(lookup)
        self.metrics.gateway_latency.labels(
            operation="find_transfer", outcome=_outcome_label(found)
        ).observe(time.perf_counter() - started)
        return found
