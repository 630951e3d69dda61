"""The one timestamp parser: epoch seconds or an RFC 3339 (ISO 8601) time, as epoch seconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = ["TimestampError", "parse_time"]

_EPOCH: Final = re.compile(r"[+-]?\d{1,12}(?:\.\d{1,9})?")
# A longer string is no timestamp; refusing it early keeps parsing cheap on hostile input.
_MAX_LENGTH: Final = 40
# RFC 3339's shortest full date-time with a zone: YYYY-MM-DDTHH:MM:SSZ.
_FULL_LENGTH: Final = 20


class TimestampError(ValueError):
    """A text that is not a timestamp of the accepted forms; the message says why."""


def parse_time(
    text: str,
    *,
    epoch: bool = True,
    naive_utc_offset_h: float | None = None,
    full: bool = False,
) -> float:
    """Epoch seconds of `text`; raise TimestampError with the reason.

    epoch: accept epoch seconds written as a decimal number.
    naive_utc_offset_h: hours east of UTC for a time without a zone; None refuses such times,
        since a time without an offset is ambiguous across time zones.
    full: require RFC 3339's full date-time (seconds and zone), as devices must send.
    """
    if epoch and _EPOCH.fullmatch(text):
        return float(text)
    what = "epoch seconds or an RFC 3339 time" if epoch else "an RFC 3339 time"
    if len(text) > _MAX_LENGTH or (full and len(text) < _FULL_LENGTH):
        raise TimestampError(f"not {what}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TimestampError(f"not {what}") from None
    if moment.tzinfo is None:
        if naive_utc_offset_h is None:
            raise TimestampError("an RFC 3339 time needs a zone (Z or +07:00)")
        zone = timezone(timedelta(hours=naive_utc_offset_h)) if naive_utc_offset_h else UTC
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()
