"""The admin HTTP endpoints of a worker: health, readiness, the scheduler registry, metrics.

Served from a daemon thread with the standard library's threading HTTP server:
four read-only endpoints do not justify a web framework. Loopback by default
(``PAYOUT_ADMIN_ADDR`` is ``127.0.0.1:9108`` unless set): ``/admin/jobs`` and
``/metrics`` say what the fleet is doing, which is nobody else's business.

``/readyz`` answers within :data:`READY_DEADLINE_SECONDS` whatever the
database does: the check runs on a thread of its own, one at a time, and a
probe that outlives the deadline is answered 503 (a black-holed connection
could otherwise hold it, and a thread per probe, for minutes).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Final

import attrs
from prometheus_client import CONTENT_TYPE_LATEST

from payout_cli import http_serving, runner, settings
from payout_cli import metrics as metrics_

__all__ = ["READY_DEADLINE_SECONDS", "AdminServer"]

log = logging.getLogger("payout.admin")

# How long /readyz waits for the check before it answers 503: under the one
# second a probe gives it (Kubernetes' default timeoutSeconds).
READY_DEADLINE_SECONDS: Final = 0.9


@attrs.define
class AdminServer:
    address: settings.AdminAddress
    registry: runner.Registry
    metrics: metrics_.Metrics
    ready: Callable[[], bool]
    ready_deadline: float = READY_DEADLINE_SECONDS
    _server: ThreadingHTTPServer | None = None
    # The check in flight, shared by the probes that arrive while it runs.
    _check: Future[bool] | None = attrs.field(default=None, init=False)
    _check_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @property
    def bound(self) -> settings.AdminAddress:
        """The address actually listened on (port 0 picks a free one)."""
        return http_serving.bound_address(self._server, self.address)

    def start(self) -> None:
        admin = self

        class Handler(http_serving.Handler):
            logger = log

            def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self.send(HTTPStatus.OK, b"ok\n")
                elif path == "/readyz":
                    ok = admin._is_ready()
                    self.send(
                        HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                        b"ready\n" if ok else b"database unreachable\n",
                    )
                elif path == "/admin/jobs":
                    body = json.dumps(admin.registry.snapshot(), indent=2).encode()
                    self.send(HTTPStatus.OK, body, "application/json")
                elif path == "/metrics":
                    self.send(HTTPStatus.OK, admin.metrics.exposition(), CONTENT_TYPE_LATEST)
                else:
                    self.send(HTTPStatus.NOT_FOUND, b"not found\n")

        self._server = http_serving.serve(self.address, Handler, name="payout-admin")
        log.info("payout.admin.listening", extra={"address": str(self.bound)})

    def _is_ready(self) -> bool:
        with self._check_lock:
            check = self._check
            if check is None or check.done():
                check = self._check = Future()
                threading.Thread(
                    target=self._run_check, args=(check,), name="payout-readyz", daemon=True
                ).start()
        try:
            return check.result(timeout=self.ready_deadline)
        except TimeoutError:
            log.warning(
                "payout.admin.not_ready",
                extra={"reason": f"no answer from the database in {self.ready_deadline} s"},
            )
            return False

    def _run_check(self, check: Future[bool]) -> None:
        ok = False
        try:
            ok = self.ready()
        except Exception:
            log.warning("payout.admin.not_ready", exc_info=True)
        finally:
            check.set_result(ok)  # whatever happened: a check left pending would fail every probe

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
