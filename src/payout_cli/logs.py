"""Logging for the command: JSON lines when stdout is not a terminal, plain text when it is.

Events have stable dotted names (``payout.transfer.completed``) and carry ids
(run, job, transfer), never whole objects. As a last line of defence every
line goes through the one secret scrubber, :func:`payout_adapters.redaction.scrub`
(here as :func:`scrub`, which ``output`` uses for what it prints).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from payout_adapters import redaction

__all__ = ["configure", "scrub"]

scrub = redaction.scrub  # the one scrubber, by the name the CLI calls it

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update({k: _plain(v) for k, v in _fields(record).items()})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(line, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={_plain(v)}" for k, v in _fields(record).items())
        text = f"{ts} {record.levelname:<7} {record.getMessage()} {extras}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return scrub(text)


def configure(*, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send payout-core's logs to ``stream`` (stderr by default)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if stream.isatty() else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The SDKs log request lines of their own at INFO; ours say what matters.
    for noisy in ("stripe", "psycopg", "psycopg.pool", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
