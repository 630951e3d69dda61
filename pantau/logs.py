"""Structured logs: one logfmt line per event, with any `extra=` fields appended as key=value."""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

__all__ = ["configure_logging"]

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
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
        return " ".join(parts)


def configure_logging(level: str = "INFO") -> None:
    """Send logfmt lines to stderr at the given level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per HTTP request would drown the collector's own events.
    logging.getLogger("httpx").setLevel(logging.WARNING)
