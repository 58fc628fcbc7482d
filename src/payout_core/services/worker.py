"""A wired worker: the ports one tick needs, held together, and its tick.

``payout-core loop`` builds one from settings (``payout_cli.bootstrap.worker``)
over PostgreSQL and Stripe; a test builds one over the in-memory adapters,
without the command line::

    worker = Worker(store=store, directory=directory, gateway=gateway, clock=clock)
    report = worker.tick()

Each :meth:`Worker.tick` is :func:`payout_core.services.tick.run_tick` with
these ports: the worker holds no state between ticks, so one may be shared
by threads, and :func:`attrs.evolve` gives a variant (other settings, another
gateway).
"""

from __future__ import annotations

import threading

import attrs

from payout_core import models, ports
from payout_core.services import tick

__all__ = ["Worker"]


@attrs.frozen(kw_only=True)
class Worker:
    """What one worker pays with, and how.

    ``inbox``: settlements other services write, taken at the start of every
    tick (none: only what was scheduled directly is paid). ``limiter``: the
    Stripe budget the gateway sends under, which claims follow (none: claim
    for every free slot). ``name`` names the worker in its claim tokens
    (``name/uuid``), so that a claim tells which worker holds it.
    """

    store: ports.PayoutStore
    directory: ports.AccountDirectory
    gateway: ports.PaymentGateway
    clock: ports.Clock
    settings: tick.WorkerSettings = attrs.Factory(tick.WorkerSettings)
    inbox: ports.SettlementInbox | None = None
    limiter: ports.RateLimiter | None = None
    name: str | None = None

    def tick(self, stop: threading.Event | None = None) -> models.RunReport:
        """One tick (:func:`~payout_core.services.tick.run_tick`): take the
        inbox, then claim and pay what is due until nothing is, the tick's
        budget is spent, ``stop`` is set or the gateway halts it. Never raises
        for a failed tick: the report's ``error`` says why it failed."""
        return tick.run_tick(
            store=self.store,
            directory=self.directory,
            gateway=self.gateway,
            clock=self.clock,
            settings=self.settings,
            stop=stop,
            inbox=self.inbox,
            limiter=self.limiter,
            worker=self.name,
        )
