"""The little HTTP servers a worker runs (admin endpoints, Stripe's webhooks):
the standard library's threading server on a daemon thread, one handler base.

A handful of endpoints do not justify a web framework; what they share lives
here once: binding (port 0 picks a free one), the thread, answering, and
request logs at debug level instead of stderr.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from payout_cli import settings

__all__ = ["Handler", "bound_address", "serve"]


class Handler(BaseHTTPRequestHandler):
    """A handler that answers with :meth:`send` and logs through ``logger``."""

    logger = logging.getLogger("payout.http")

    def send(
        self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        self.logger.debug("payout.http.request", extra={"line": format % args})


def serve(
    address: settings.AdminAddress, handler: type[Handler], *, name: str
) -> ThreadingHTTPServer:
    """Listen on ``address`` and serve ``handler`` from a daemon thread
    ``name``; ``shutdown()`` and ``server_close()`` the result to stop."""
    server = ThreadingHTTPServer((address.host, address.port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def bound_address(
    server: ThreadingHTTPServer | None, configured: settings.AdminAddress
) -> settings.AdminAddress:
    """The address actually listened on (port 0 picks a free one)."""
    if server is None:
        return configured
    host, port = server.server_address[:2]
    return settings.AdminAddress(str(host), int(port))
