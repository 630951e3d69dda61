"""Structured logs: one logfmt line per event, with any `extra=` fields appended as key=value.

Secrets never reach a line: API tokens (`pantau_<id>_...`), `access_token=` and similar query
parameters, `Bearer` credentials and URL passwords are replaced by `[redacted]`, whoever logged
them (uvicorn logs every WebSocket's path with its query string).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Final

__all__ = ["LogfmtFormatter", "configure_logging", "redact"]

_REDACTED: Final = "[redacted]"
_SECRETS: Final = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{_REDACTED}"),
    # An API token keeps its public id, so a log still says which token was used.
    (re.compile(r"\b(pantau_[0-9a-f]{8})_[A-Za-z0-9_-]{8,}"), rf"\1_{_REDACTED}"),
    (
        re.compile(
            r"(?i)\b(access_token|token|ticket|password|passwd|secret|api_key)=[^&\s\"'\\]+"
        ),
        rf"\1={_REDACTED}",
    ),
    # scheme://user:password@host
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{_REDACTED}@"),
)


def redact(text: str) -> str:
    """The text with tokens, credentials in queries and URL passwords replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


_UNSAFE: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n') or _UNSAFE.search(text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        # Any other control character (a carriage return in a topic, say) could forge or hide
        # a log line: written as a visible escape.
        return '"' + _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", escaped) + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    """Format records as `ts=… level=… logger=… msg=… key=value …`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={stamp}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_value(record.getMessage())}",
        ]
        parts.extend(
            f"{key}={_value(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        )
        if record.exc_info:
            parts.append(f"exc={_value(self.formatException(record.exc_info))}")
        return redact(" ".join(parts))


def configure_logging(level: str = "INFO") -> None:
    """Send logfmt lines to stderr at the given level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request would drown the collector's own events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
