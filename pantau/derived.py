"""The derived-message contract between collectors and API replicas: topics and payloads.

Collectors publish on `pantau/derived/{city}/{district}/{kind}/{device_id}/{what}`:
- `anomaly`: one event per anomaly episode;
- `indicator`: retained, so a fresh API replica learns the current state at once; district-level
  indicators use the device id `_district`;
- `reading`: a device's newest reading, retained;
- `pantau/derived/{city}/_all/{kind}/_all/readings`: one batch's newest readings of a city.
API replicas publish acknowledgements on `pantau/ops/ack/{anomaly id}`.

Every message is untrusted input on the reading side (anyone who may publish on the broker can
write one): `parse` raises ContractError, with a short fixed reason, for anything that does not
fit the contract, and `from_json` returns None instead. The contract bounds what a message may
hold: segment syntax, known kinds and fields, sizes, and flat values only (no nesting).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from processors.catalog import CATALOG

__all__ = [
    "ACKS_ALL",
    "ACK_PREFIX",
    "ALL",
    "ANOMALY_KEYS",
    "DERIVED_ALL",
    "DERIVED_PREFIX",
    "DISTRICT_DEVICE",
    "MAX_LABEL_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_NOTE_CHARS",
    "MAX_VALUES",
    "MAX_WHO_CHARS",
    "SEVERITIES",
    "Ack",
    "AnomalyEvent",
    "ContractError",
    "DerivedTopic",
    "IndicatorEvent",
    "ReadingSummary",
    "ack_topic",
    "derived_filter",
    "derived_topic",
    "finite_number",
    "is_segment",
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

# -- bounds of the contract -------------------------------------------------------------------

# A city, district or device id: one topic segment (as pantau.topics checks reading topics).
_SEGMENT: Final = re.compile(r"[a-z0-9_-]{1,64}")
# Detector and field names, as anomaly ids spell them; indicator names.
_DETECTOR: Final = re.compile(r"[a-z_]{1,32}")
_NAME: Final = re.compile(r"[a-z0-9_]{1,64}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# An anomaly's `kept_out`: the indicators its reading was kept out of, comma-separated.
_KEPT_OUT: Final = re.compile(r"[a-z0-9_]{1,32}(,[a-z0-9_]{1,32}){0,7}")
# The severities a detector may declare (processors.detectors.protocol.Severity).
SEVERITIES: Final = frozenset({"critical", "warning", "info"})
# Every message but a city's batch summary (which holds up to a batch's devices).
MAX_MESSAGE_BYTES: Final = 64 * 1024
# Values of one reading or one indicator message.
MAX_VALUES: Final = 64
# An indicator label (a category, a colour, a status).
MAX_LABEL_CHARS: Final = 200
# An acknowledgement: who (a token's name) and the note (as the API's ack route allows).
MAX_WHO_CHARS: Final = 200
MAX_NOTE_CHARS: Final = 500
# Epoch seconds: after 1970, before 2286.
_MAX_TS: Final = 1e10
# A reading summary's count of readings in its batch.
_MAX_COUNT: Final = 10**9
# The anomaly field of a whole-device finding (silence).
_DEVICE_FIELD: Final = "device"

ANOMALY_KEYS: Final = frozenset(
    {"ts", "kind", "device_id", "detector", "field", "severity", "score", "value", "kept_out"}
)
_SUMMARY_KEYS: Final = frozenset({"ts", "device_id", "district", "readings", "values", "kind"})
_ACK_KEYS: Final = frozenset({"by", "at", "note"})


class ContractError(ValueError):
    """A message that does not fit the contract.

    `reason` is one short fixed word (a metric label: never built from the message), `detail`
    says more for the log (it may quote the message: truncate it before logging).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def is_segment(value: Any) -> bool:
    """True for a string that is one valid topic segment (`[a-z0-9_-]{1,64}`)."""
    return isinstance(value, str) and _SEGMENT.fullmatch(value) is not None


def _segment(value: Any, name: str) -> str:
    if not is_segment(value):
        raise ContractError("segment", f"{name} must match [a-z0-9_-]{{1,64}}")
    text: str = value
    return text


def _timestamp(value: Any, name: str = "ts") -> float:
    ts = finite_number(value)
    if ts is None or not 0 <= ts <= _MAX_TS:
        raise ContractError("ts", f"{name} must be epoch seconds")
    return ts


def _optional_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    number = finite_number(value)
    if number is None:
        raise ContractError("schema", f"{name} must be a finite number or null")
    return number


def _object(data: Any, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ContractError("schema", "the payload must be a JSON object")
    extra = data.keys() - keys
    if extra:
        raise ContractError("schema", f"unknown keys: {sorted(str(k)[:40] for k in extra)[:5]}")
    return data


def _same(data: Mapping[str, Any], key: str, expected: str) -> None:
    """A payload's copy of a topic segment, where present, must agree with the topic."""
    if key in data and data[key] != expected:
        raise ContractError("schema", f"{key} disagrees with the topic")


def _fields(kind: str) -> frozenset[str]:
    spec = CATALOG.get(kind)
    if spec is None:
        raise ContractError("kind", "unknown kind")
    return frozenset(spec.field_names)


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

    @classmethod
    def parse(cls, topic: str) -> DerivedTopic:
        """The parts of a derived topic; ContractError if it is not a valid one.

        Segments have the syntax of reading topics, the kind is a catalog kind, a batch summary
        is `…/_all/{kind}/_all/readings` and only indicators may be a district's (`_district`).
        """
        prefix = f"{DERIVED_PREFIX}/"
        if not topic.startswith(prefix):
            raise ContractError("topic", "not a derived topic")
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 5 or parts[4] not in _WHATS:
            raise ContractError("topic", "not {city}/{district}/{kind}/{device}/{what}")
        city, district, kind, device, what = parts
        for name, segment in (("city", city), ("district", district), ("device_id", device)):
            _segment(segment, name)
        if kind not in CATALOG:
            raise ContractError("kind", "unknown kind")
        batch = what == "readings"
        if (district == ALL, device == ALL) != (batch, batch):
            raise ContractError("topic", f"{ALL} only in a batch summary's topic")
        if device == DISTRICT_DEVICE and what != "indicator":
            raise ContractError("topic", f"{DISTRICT_DEVICE} only for indicators")
        return cls(city, district, kind, device, what)


def parse_derived_topic(topic: str) -> DerivedTopic | None:
    """The parts of a derived topic; None if it is not a valid one (see DerivedTopic.parse)."""
    try:
        return DerivedTopic.parse(topic)
    except ContractError:
        return None


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
    def parse(
        cls,
        data: Any,
        *,
        kind: str | None = None,
        district: str | None = None,
        device_id: str | None = None,
    ) -> ReadingSummary:
        """Parse a summary; a topic's district and device, where given, override the payload's.

        With a kind, only its catalog fields are kept; values that are not finite numbers are
        dropped (a reading may lack fields), more than MAX_VALUES values are refused.
        """
        obj = _object(data, _SUMMARY_KEYS)
        ts = _timestamp(obj.get("ts"))
        if district is not None:
            _same(obj, "district", district)
        if device_id is not None:
            _same(obj, "device_id", device_id)
        if kind is not None:
            _same(obj, "kind", kind)
        place = _segment(obj.get("district") if district is None else district, "district")
        name = _segment(obj.get("device_id") if device_id is None else device_id, "device_id")
        values = obj.get("values")
        if not isinstance(values, dict):
            raise ContractError("schema", "values must be an object")
        if len(values) > MAX_VALUES:
            raise ContractError("values", f"more than {MAX_VALUES} values")
        known = _fields(kind) if kind is not None else None
        # The numbers as sent (an integer stays one).
        numbers = {
            k: v
            for k, v in values.items()
            if (known is None or k in known) and finite_number(v) is not None
        }
        count = obj.get("readings")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= _MAX_COUNT:
            count = 1
        return cls(ts, name, place, count, numbers)

    @classmethod
    def from_json(
        cls,
        data: Any,
        *,
        kind: str | None = None,
        district: str | None = None,
        device_id: str | None = None,
    ) -> ReadingSummary | None:
        """As parse, but None for a message that does not fit the contract."""
        try:
            return cls.parse(data, kind=kind, district=district, device_id=device_id)
        except ContractError:
            return None


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
    kept_out: str = ""  # the indicators the reading was kept out of ("ispu,aqi"), if any

    def as_json(self) -> dict[str, Any]:
        """The payload object (`kept_out` only when the reading was kept out of some)."""
        payload: dict[str, Any] = {
            "ts": self.ts,
            "kind": self.kind,
            "device_id": self.device_id,
            "detector": self.detector,
            "field": self.field,
            "severity": self.severity,
            "score": self.score,
            "value": self.value,
        }
        if self.kept_out:
            payload["kept_out"] = self.kept_out
        return payload

    @classmethod
    def parse(
        cls,
        data: Any,
        *,
        kind: str,
        device_id: str,
        detectors: Collection[str] | None = None,
        severities: Collection[str] = SEVERITIES,
        indicators: Collection[str] | None = None,
    ) -> AnomalyEvent:
        """Parse an anomaly; kind and device come from its topic.

        The detector must be one of `detectors` where given (the processors declare them:
        `pantau` may not import them), the field one of the kind's or `device`. `kept_out`,
        if any, is distinct comma-separated indicator names (of `indicators` where given).
        """
        obj = _object(data, ANOMALY_KEYS)
        _same(obj, "kind", kind)
        _same(obj, "device_id", device_id)
        ts = _timestamp(obj.get("ts"))
        detector, field_name = obj.get("detector"), obj.get("field")
        severity = obj.get("severity", "warning")
        if not (isinstance(detector, str) and _DETECTOR.fullmatch(detector)):
            raise ContractError("detector", "detector must match [a-z_]{1,32}")
        if detectors is not None and detector not in detectors:
            raise ContractError("detector", f"unknown detector {detector!r}")
        if not (isinstance(severity, str) and severity in severities):
            raise ContractError("severity", f"severity must be one of {sorted(severities)}")
        if not isinstance(field_name, str) or (
            field_name != _DEVICE_FIELD and field_name not in _fields(kind)
        ):
            raise ContractError("field", f"field must be a {kind} field or {_DEVICE_FIELD!r}")
        return cls(
            ts,
            kind,
            device_id,
            detector,
            field_name,
            severity,
            _optional_number(obj.get("score"), "score"),
            _optional_number(obj.get("value"), "value"),
            _kept_out(obj.get("kept_out", ""), indicators),
        )

    @classmethod
    def from_json(cls, data: Any, *, kind: str, device_id: str) -> AnomalyEvent | None:
        """As parse (any detector name), but None for a message that does not fit."""
        try:
            return cls.parse(data, kind=kind, device_id=device_id)
        except ContractError:
            return None


def _kept_out(value: Any, indicators: Collection[str] | None) -> str:
    """An anomaly's `kept_out`: "" or distinct indicator names, comma-separated."""
    if value is None or value == "":
        return ""
    if not (isinstance(value, str) and _KEPT_OUT.fullmatch(value)):
        raise ContractError("kept_out", "kept_out must be indicator names, comma-separated")
    names = value.split(",")
    if len(set(names)) != len(names):
        raise ContractError("kept_out", "kept_out names an indicator twice")
    if indicators is not None and not set(names) <= set(indicators):
        raise ContractError("kept_out", "kept_out names an unknown indicator")
    return value


_INDICATOR_HEAD: Final = frozenset({"ts", "kind", "device_id"})


def _indicator_value(name: Any, value: Any) -> float | str:
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ContractError("indicator_name", "indicator names must match [a-z0-9_]{1,64}")
    if finite_number(value) is not None:
        number: float | str = value  # as sent: an integer stays one
        return number
    if isinstance(value, str) and len(value) <= MAX_LABEL_CHARS and not _CONTROL.search(value):
        return value
    raise ContractError(
        "indicator_value",
        f"{name}: a finite number or a label of up to {MAX_LABEL_CHARS} characters",
    )


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
    def parse(cls, data: Any, *, kind: str, device_id: str) -> IndicatorEvent:
        """Parse an indicator message; kind and device come from its topic.

        Values are flat: finite numbers or short labels, at most MAX_VALUES of them.
        """
        if not isinstance(data, dict):
            raise ContractError("schema", "the payload must be a JSON object")
        if kind not in CATALOG:
            raise ContractError("kind", "unknown kind")
        _same(data, "kind", kind)
        _same(data, "device_id", device_id)
        ts = _timestamp(data.get("ts"))
        if len(data.keys() - _INDICATOR_HEAD) > MAX_VALUES:
            raise ContractError("values", f"more than {MAX_VALUES} values")
        values = {k: _indicator_value(k, v) for k, v in data.items() if k not in _INDICATOR_HEAD}
        return cls(ts, kind, device_id, values)

    @classmethod
    def from_json(cls, data: Any, *, kind: str, device_id: str) -> IndicatorEvent | None:
        """As parse, but None for a message that does not fit the contract."""
        try:
            return cls.parse(data, kind=kind, device_id=device_id)
        except ContractError:
            return None


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
    def parse(cls, data: Any) -> Ack:
        """Parse an acknowledgement: who (1 to 200 characters), when, a note of up to 500."""
        obj = _object(data, _ACK_KEYS)
        at = _timestamp(obj.get("at"), "at")
        by, note = obj.get("by"), obj.get("note", "")
        if not (isinstance(by, str) and 0 < len(by) <= MAX_WHO_CHARS):
            raise ContractError("ack", f"by must be a string of 1 to {MAX_WHO_CHARS} characters")
        if not (isinstance(note, str) and len(note) <= MAX_NOTE_CHARS):
            raise ContractError("ack", f"note must be a string of up to {MAX_NOTE_CHARS}")
        return cls(by, at, note)

    @classmethod
    def from_json(cls, data: Any) -> Ack | None:
        """As parse, but None for a message that does not fit the contract."""
        try:
            return cls.parse(data)
        except ContractError:
            return None
