"""The fake Stripe on a loopback HTTP port, for the real SDK to talk to.

A ``ThreadingHTTPServer`` on 127.0.0.1 and an ephemeral port (or a given
one), serving in a background thread, speaking HTTP/1.1 with keep-alive as
Stripe does: one handler thread per connection, so a benchmark's dozens of
kept-alive connections are served at once. Stopping it releases held
requests, closes every open connection and joins every handler thread, so no
socket outlives a test.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.fake_stripe import forms
from tests.fake_stripe.model import API_VERSION, DEFAULT_API_KEY, FakeStripe, Request

__all__ = ["FakeStripeServer", "closed_port", "running"]

log = logging.getLogger("tests.fake_stripe")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads
    # socketserver's default backlog of 5 drops the SYNs of connections opened
    # together (a benchmark's workers starting), which the kernel retries after 1,
    # 2, 4... seconds: 64 at once took up to 28 s to be answered, and 0.1 s with 128.
    request_queue_size = 128

    def __init__(self, fake: FakeStripe, tls: ssl.SSLContext | None, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        if tls is not None:
            # The handshake happens in accept(); one that fails (the client refused
            # the certificate) is an OSError that serve_forever ignores.
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._reset: set[socket.socket] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away between requests (a worker stopped, a reset) is
        # no error of the fake: socketserver would print a traceback for each.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
            reset = request in self._reset
            self._reset.discard(request)
        if reset:
            # No orderly shutdown first: close() alone, with SO_LINGER 0, sends a RST.
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def reset_on_close(self, request: socket.socket) -> None:
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._open_lock:
            self._reset.add(request)

    def close_open_connections(self) -> None:
        """Wake handlers waiting for a next request on a kept-alive connection."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # a silent client cannot hold a handler thread for ever
    # The head and the body leave in two writes; with Nagle's algorithm the body
    # would wait for the client's delayed ACK of the head, up to 40 ms a request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug(format, *args)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        url = urlsplit(self.path)
        params = forms.parse(body) if self.command == "POST" else forms.parse(url.query)
        request = Request(
            method=self.command,
            path=url.path,
            params=params,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        reply = self.server.fake.handle(request)
        if reply.drop:
            if reply.reset:
                self.server.reset_on_close(self.connection)
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            content_type = next(
                (v for k, v in reply.headers if k == "Content-Type"), "application/json"
            )
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Stripe-Version", API_VERSION)
            for name, value in reply.headers:
                if name != "Content-Type":
                    self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout) before the slow answer came.
            self.close_connection = True


class FakeStripeServer:
    """The fake Stripe, served on ``url``. Use :func:`running` to start and stop it."""

    def __init__(
        self, fake: FakeStripe, *, tls: ssl.SSLContext | None = None, port: int = 0
    ) -> None:
        self.fake = fake
        self._scheme = "https" if tls is not None else "http"
        self._http = _HTTPServer(fake, tls, port)
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-stripe",
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    @property
    def api_key(self) -> str:
        return self.fake.api_key

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.fake.stop()
        self._http.shutdown()
        self._http.close_open_connections()
        self._http.server_close()
        self._thread.join()


@contextlib.contextmanager
def running(
    fake: FakeStripe | None = None, *, tls: ssl.SSLContext | None = None, port: int = 0
) -> Iterator[FakeStripeServer]:
    """Serve ``fake`` (a new one by default) until the block ends; over HTTPS with
    ``tls`` (a server context holding a certificate); on ``port`` (0: any free one)."""
    server = FakeStripeServer(fake or FakeStripe(api_key=DEFAULT_API_KEY), tls=tls, port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
