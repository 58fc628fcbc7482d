"""The signed Stripe webhook receiver: ``payout-core webhooks serve``, and
inside ``loop`` when ``PAYOUT_WEBHOOK_ADDR`` is set.

``POST /stripe/webhooks``: the signature is verified with the stripe SDK
(:mod:`payout_adapters.stripe.webhooks`); a bad, missing or stale one is
answered 400 and nothing is written. A verified event is stored in the event
inbox (its id once: Stripe delivers more than once and out of order) and
answered 200 as soon as it is durable; a database that cannot store it gets a
503, so that Stripe delivers it again. A drainer thread applies the stored
events afterwards (:func:`payout_core.services.reversals.book_transfer_event`),
so slow work never makes Stripe wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer

import attrs

from payout_adapters.stripe import webhooks as signed
from payout_cli import http_serving, settings
from payout_core import errors, ports
from payout_core.services import reversals

__all__ = ["DEFAULT_ADDR", "MAX_BODY_BYTES", "PATH", "WebhookReceiver", "drain"]

log = logging.getLogger("payout.webhooks")

PATH = "/stripe/webhooks"
DEFAULT_ADDR = settings.AdminAddress("127.0.0.1", 9109)
#: Stripe's events are a few kilobytes; anything far larger is not one.
MAX_BODY_BYTES = 1 << 20
#: How often the drainer looks for stored events it has not applied (it is also
#: woken by each new one).
DRAIN_INTERVAL_SECONDS = 5.0


def drain(
    inbox: ports.EventInbox,
    store: ports.PayoutStore,
    gateway: ports.ReversalGateway | None,
    clock: ports.Clock,
    *,
    limit: int = 100,
) -> int:
    """Apply the stored events not yet applied, oldest first; how many.

    An event the store or Stripe cannot serve now stays for the next drain;
    one that can never apply (malformed, or refused by the ledger) is marked
    with why, logged as an error, and left for ``reconcile`` to report.
    """
    done = 0
    for event in inbox.unprocessed(limit=limit):
        try:
            parsed = signed.transfer_event(event)
            if parsed is None:
                outcome = f"ignored: {event.type}"
            else:
                outcome = reversals.book_transfer_event(
                    store,
                    gateway,
                    payout_transfer_id=parsed.payout_transfer_id,
                    stripe_transfer_id=parsed.stripe_transfer_id,
                    reversals=parsed.reversals,
                    complete=parsed.complete,
                    now=clock.now(),
                )
        except errors.InfrastructureError:
            log.warning("payout.webhooks.retry_later", extra={"event_id": event.id}, exc_info=True)
            break
        except (ValueError, errors.IllegalTransition) as exc:
            outcome = f"refused: {exc}"
            log.error(  # noqa: TRY400 - the reason is the whole story; no traceback
                "payout.webhooks.refused", extra={"event_id": event.id, "reason": str(exc)}
            )
        inbox.mark_processed(event.id, outcome=outcome, now=clock.now())
        log.info(
            "payout.webhooks.applied",
            extra={"event_id": event.id, "type": event.type, "outcome": outcome},
        )
        done += 1
    return done


@attrs.define
class WebhookReceiver:
    """The HTTP endpoint and its drainer, on daemon threads; :meth:`close` stops both."""

    address: settings.AdminAddress
    secret: str = attrs.field(repr=False)
    inbox: ports.EventInbox
    clock: ports.Clock
    apply: Callable[[], int]  # drains the inbox once (see drain)
    _server: ThreadingHTTPServer | None = None
    _wake: threading.Event = attrs.Factory(threading.Event)
    _stop: threading.Event = attrs.Factory(threading.Event)
    _drainer: threading.Thread | None = None

    @property
    def bound(self) -> settings.AdminAddress:
        """The address actually listened on (port 0 picks a free one)."""
        return http_serving.bound_address(self._server, self.address)

    @property
    def url(self) -> str:
        """Where Stripe delivers: what to register at Stripe (behind a proxy)."""
        return f"http://{self.bound}{PATH}"

    def receive(self, body: bytes, signature: str | None) -> tuple[HTTPStatus, bytes]:
        """One delivery: the status and body to answer Stripe with."""
        try:
            event = signed.verify(body, signature, secret=self.secret, received_at=self.clock.now())
        except signed.WebhookRefused as exc:
            log.warning("payout.webhooks.refused_request", extra={"reason": str(exc)})
            return HTTPStatus.BAD_REQUEST, f"{exc}\n".encode()
        try:
            new = self.inbox.accept(event)
        except errors.StoreUnavailable:
            log.error("payout.webhooks.not_stored", extra={"event_id": event.id}, exc_info=True)
            return HTTPStatus.SERVICE_UNAVAILABLE, b"not stored; deliver again\n"
        log.info(
            "payout.webhooks.received",
            extra={"event_id": event.id, "type": event.type, "duplicate": not new},
        )
        self._wake.set()
        return HTTPStatus.OK, b"stored\n" if new else b"already stored\n"

    def start(self) -> None:
        receiver = self

        class Handler(http_serving.Handler):
            logger = log

            def do_POST(self) -> None:  # noqa: N802 - http.server calls it by this name
                if self.path.split("?", 1)[0] != PATH:
                    self.send(HTTPStatus.NOT_FOUND, b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or "-1")
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    self.send(HTTPStatus.BAD_REQUEST, b"a body of known, bounded length\n")
                    return
                status, body = receiver.receive(
                    self.rfile.read(length), self.headers.get("Stripe-Signature")
                )
                self.send(status, body)

            def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
                self.send(HTTPStatus.METHOD_NOT_ALLOWED, b"POST Stripe events here\n")

        self._server = http_serving.serve(self.address, Handler, name="payout-webhooks")
        self._drainer = threading.Thread(target=self._drain_forever, name="payout-webhooks-drain")
        self._drainer.daemon = True
        self._drainer.start()
        log.info("payout.webhooks.listening", extra={"address": str(self.bound), "path": PATH})

    def _drain_forever(self) -> None:
        while not self._stop.is_set():
            try:
                while self.apply():
                    pass
            except Exception:
                log.exception("payout.webhooks.drain_failed")
            self._wake.wait(DRAIN_INTERVAL_SECONDS)
            self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._drainer is not None:
            self._drainer.join(timeout=10)
