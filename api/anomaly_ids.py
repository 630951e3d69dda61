"""Stable anomaly ids: `{device_id}.{detector}.{field}.{observation time in ns}`.

The collector writes an anomaly point with exactly these tags and time, so any API replica
derives the same id from the live feed or from InfluxDB, and can find the point again by id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["AnomalyKey", "anomaly_id", "parse_anomaly_id", "ts_to_ns"]

_ID: Final = re.compile(r"([a-z0-9_-]{1,64})\.([a-z_]{1,32})\.([a-z0-9_]{1,32})\.(\d{1,19})")


@dataclass(frozen=True, slots=True)
class AnomalyKey:
    """What identifies one anomaly point."""

    device_id: str
    detector: str
    field: str
    ts_ns: int


def ts_to_ns(ts: float) -> int:
    """Epoch seconds to the nanoseconds the collector writes (microsecond precision)."""
    return round(ts * 1e6) * 1000


def anomaly_id(device_id: str, detector: str, field: str, ts_ns: int) -> str:
    """The id of one anomaly."""
    return f"{device_id}.{detector}.{field}.{ts_ns}"


def parse_anomaly_id(text: str) -> AnomalyKey | None:
    """The key of a well-formed id, or None."""
    match = _ID.fullmatch(text)
    if match is None:
        return None
    device, detector, field, ts = match.groups()
    return AnomalyKey(device, detector, field, int(ts))
