"""The admin HTTP endpoints of a worker: health, readiness, the scheduler registry, metrics.

Served from a daemon thread with the standard library's threading HTTP server:
four read-only endpoints do not justify a web framework. Loopback by default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer

import attrs
from prometheus_client import CONTENT_TYPE_LATEST

from payout_cli import http_serving, runner, settings
from payout_cli import metrics as metrics_

__all__ = ["AdminServer"]

log = logging.getLogger("payout.admin")


@attrs.define
class AdminServer:
    address: settings.AdminAddress
    registry: runner.Registry
    metrics: metrics_.Metrics
    ready: Callable[[], bool]
    _server: ThreadingHTTPServer | None = None

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
        try:
            return self.ready()
        except Exception:
            log.warning("payout.admin.not_ready", exc_info=True)
            return False

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
