"""A throwaway self-signed certificate, for a fake Stripe that the SDK must refuse."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

__all__ = ["self_signed_context"]


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A TLS server context with a new self-signed certificate for 127.0.0.1.

    The SDK verifies servers against its own CA bundle, which never trusts
    this certificate: the handshake fails as it would behind a TLS-intercepting
    proxy.
    """
    openssl = shutil.which("openssl")
    if openssl is None:  # pragma: no cover - every CI image here has openssl
        raise RuntimeError("the TLS test needs the openssl command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
