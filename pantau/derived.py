"""The derived-message contract between collectors and API replicas: topics and payloads.

Collectors publish on `pantau/derived/{city}/{district}/{kind}/{device_id}/{what}`:
- `anomaly`: one event per anomaly episode;
- `indicator`: retained, so a fresh API replica learns the current state at once; district-level
  indicators use the device id `_district`;
- `reading`: a device's newest reading, retained;
- `pantau/derived/{city}/_all/{kind}/_all/readings`: one batch's newest readings of a city.
API replicas publish acknowledgements on `pantau/ops/ack/{anomaly id}`.

Every message is untrusted input on the reading side: `from_json` returns None for anything
that does not fit the contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "ACKS_ALL",
    "ACK_PREFIX",
    "ALL",
    "DERIVED_ALL",
    "DERIVED_PREFIX",
    "DISTRICT_DEVICE",
    "Ack",
    "AnomalyEvent",
    "DerivedTopic",
    "IndicatorEvent",
    "ReadingSummary",
    "ack_topic",
    "derived_filter",
    "derived_topic",
    "finite_number",
    "parse_ack_topic",
    "parse_derived_topic",
    "readings_topic",
]

DERIVED_PREFIX: Final = "pantau/derived"
ACK_PREFIX: Final = "pantau/ops/ack"
DERIVED_ALL: Final = f"{DERIVED_PREFIX}/#"
ACKS_ALL: Final = f"{ACK_PREFIX}/#"
DISTRICT_DEVICE: Final = "_district"
ALL: Final = "_all"  # district and device segment of the per-city batch summaries

What = Literal["anomaly", "indicator", "reading", "readings"]
_WHATS: Final = frozenset({"anomaly", "indicator", "reading", "readings"})


def finite_number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, strings, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# -- topics ----------------------------------------------------------------------------------


def derived_topic(city: str, district: str, kind: str, device_id: str, what: What) -> str:
    """The topic of one device's (or district's) derived message."""
    return f"{DERIVED_PREFIX}/{city}/{district}/{kind}/{device_id}/{what}"


def readings_topic(city: str, kind: str) -> str:
    """The topic of a city's per-batch readings summary (the live feeds)."""
    return derived_topic(city, ALL, kind, ALL, "readings")


def derived_filter(city: str = "+") -> str:
    """The subscription for every derived message of one city (`+`: every city)."""
    return f"{DERIVED_PREFIX}/{city}/#"


def ack_topic(anomaly_id: str) -> str:
    """The topic an acknowledgement of one anomaly is published on."""
    return f"{ACK_PREFIX}/{anomaly_id}"


@dataclass(frozen=True, slots=True)
class DerivedTopic:
    """The parts of a derived topic."""

    city: str
    district: str
    kind: str
    device_id: str
    what: str

    @property
    def is_batch_summary(self) -> bool:
        """A per-city batch of readings (`…/_all/{kind}/_all/readings`)."""
        return self.what == "readings" and self.district == ALL and self.device_id == ALL


def parse_derived_topic(topic: str) -> DerivedTopic | None:
    """The parts of a derived topic; None if it is not one."""
    prefix = f"{DERIVED_PREFIX}/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 5 or parts[4] not in _WHATS:
        return None
    return DerivedTopic(*parts)


def parse_ack_topic(topic: str) -> str | None:
    """The anomaly id of an acknowledgement topic; None if it is not one."""
    prefix = f"{ACK_PREFIX}/"
    return topic[len(prefix) :] if topic.startswith(prefix) else None


# -- payloads --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadingSummary:
    """A device's newest reading in one batch, and how many readings the batch held."""

    ts: float
    device_id: str
    district: str
    readings: int
    values: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        """The payload object."""
        return {
            "ts": self.ts,
            "device_id": self.device_id,
            "district": self.district,
            "readings": self.readings,
            "values": self.values,
        }

    @classmethod
    def from_json(
        cls, data: Any, *, district: str | None = None, device_id: str | None = None
    ) -> ReadingSummary | None:
        """Parse a summary; a topic's district and device, where given, override the payload's."""
        if not isinstance(data, dict):
            return None
        ts = finite_number(data.get("ts"))
        values = data.get("values")
        place = data.get("district") if district is None else district
        name = data.get("device_id") if device_id is None else device_id
        if ts is None or not isinstance(values, dict):
            return None
        if not (isinstance(place, str) and isinstance(name, str)):
            return None
        numbers = {k: v for k, v in values.items() if finite_number(v) is not None}
        count = data.get("readings")
        return cls(ts, name, place, count if isinstance(count, int) else 1, numbers)


@dataclass(frozen=True, slots=True)
class AnomalyEvent:
    """One reported anomaly, as the collector publishes it."""

    ts: float
    kind: str
    device_id: str
    detector: str
    field: str
    severity: str
    score: float | None
    value: float | None

    def as_json(self) -> dict[str, Any]:
        """The payload object."""
        return {
            "ts": self.ts,
            "kind": self.kind,
            "device_id": self.device_id,
            "detector": self.detector,
            "field": self.field,
            "severity": self.severity,
            "score": self.score,
            "value": self.value,
        }

    @classmethod
    def from_json(cls, data: Any, *, kind: str, device_id: str) -> AnomalyEvent | None:
        """Parse an anomaly; kind and device come from its topic."""
        if not isinstance(data, dict):
            return None
        ts = finite_number(data.get("ts"))
        detector, field_name = data.get("detector"), data.get("field")
        severity = data.get("severity", "warning")
        if ts is None or not (
            isinstance(detector, str) and isinstance(field_name, str) and isinstance(severity, str)
        ):
            return None
        return cls(
            ts,
            kind,
            device_id,
            detector,
            field_name,
            severity,
            finite_number(data.get("score")),
            finite_number(data.get("value")),
        )


_INDICATOR_HEAD: Final = frozenset({"ts", "kind", "device_id"})


@dataclass(frozen=True, slots=True)
class IndicatorEvent:
    """The latest indicators of one device or district: numbers and labels by name."""

    ts: float
    kind: str
    device_id: str
    values: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The payload object: the head, then the values flat beside it."""
        return {"ts": self.ts, "kind": self.kind, "device_id": self.device_id, **self.values}

    @classmethod
    def from_json(cls, data: Any, *, kind: str, device_id: str) -> IndicatorEvent | None:
        """Parse an indicator message; kind and device come from its topic."""
        if not isinstance(data, dict):
            return None
        ts = finite_number(data.get("ts"))
        if ts is None:
            return None
        values = {k: v for k, v in data.items() if k not in _INDICATOR_HEAD}
        return cls(ts, kind, device_id, values)


@dataclass(frozen=True, slots=True)
class Ack:
    """Who acknowledged an anomaly, when, and why."""

    by: str
    at: float
    note: str

    def as_json(self) -> dict[str, Any]:
        """The payload object."""
        return {"by": self.by, "at": self.at, "note": self.note}

    @classmethod
    def from_json(cls, data: Any) -> Ack | None:
        """Parse an acknowledgement."""
        if not isinstance(data, dict):
            return None
        at = finite_number(data.get("at"))
        by, note = data.get("by"), data.get("note", "")
        if at is None or not isinstance(by, str) or not isinstance(note, str):
            return None
        return cls(by, at, note)
