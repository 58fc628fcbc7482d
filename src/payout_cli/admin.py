"""The admin HTTP endpoints of a worker: health, readiness, the scheduler registry, metrics.

Served from a daemon thread with the standard library's threading HTTP server:
four read-only endpoints do not justify a web framework. Loopback by default.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
from prometheus_client import CONTENT_TYPE_LATEST

from payout_cli import metrics as metrics_
from payout_cli import runner, settings

__all__ = ["AdminServer"]

log = logging.getLogger("payout.admin")


@attrs.define
class AdminServer:
    address: settings.AdminAddress
    registry: runner.Registry
    metrics: metrics_.Metrics
    ready: Callable[[], bool]
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def bound(self) -> settings.AdminAddress:
        """The address actually listened on (port 0 picks a free one)."""
        if self._server is None:
            return self.address
        host, port = self._server.server_address[:2]
        return settings.AdminAddress(str(host), int(port))

    def start(self) -> None:
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ok = admin._is_ready()
                    self._send(
                        HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                        b"ready\n" if ok else b"database unreachable\n",
                        "text/plain; charset=utf-8",
                    )
                elif path == "/admin/jobs":
                    body = json.dumps(admin.registry.snapshot(), indent=2).encode()
                    self._send(HTTPStatus.OK, body, "application/json")
                elif path == "/metrics":
                    self._send(HTTPStatus.OK, admin.metrics.exposition(), CONTENT_TYPE_LATEST)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("payout.admin.request", extra={"line": format % args})

        self._server = ThreadingHTTPServer((self.address.host, self.address.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="payout-admin", daemon=True
        )
        self._thread.start()
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
