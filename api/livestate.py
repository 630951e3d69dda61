"""The current state of the regency, kept from the broker's derived topics.

Readings summaries and indicators are retained on the broker, so a fresh replica knows them
at once; anomalies are events, so a replica also loads the open ones from InfluxDB at start.
Two replicas fed the same messages hold the same state.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from api.anomaly_ids import anomaly_id, ts_to_ns
from ingest.registry import Registry

__all__ = [
    "Ack",
    "Anomaly",
    "DeviceInfo",
    "IndicatorEntry",
    "LiveState",
    "Reading",
    "finite_number",
]

DERIVED_PREFIX: Final = "pantau/derived/"
ACK_PREFIX: Final = "pantau/ops/ack/"
DISTRICT_DEVICE: Final = "_district"
ALL: Final = "_all"  # per-city batch summaries: pantau/derived/{city}/_all/{kind}/_all/readings
# A device without a registry interval is offline after this long without a reading.
_DEFAULT_INTERVAL_S: Final = 300.0
_OFFLINE_AFTER_INTERVALS: Final = 3.0
_MAX_ANOMALIES: Final = 20_000

Status = Literal["ok", "anomaly", "offline", "unknown"]


@dataclass(slots=True)
class DeviceInfo:
    """Where a device is and what it is."""

    device_id: str
    kind: str
    city: str
    district: str
    lat: float | None = None
    lon: float | None = None
    interval_s: float | None = None
    registered: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """A device's newest reading (from the collector's per-batch summary)."""

    ts: float
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class IndicatorEntry:
    """The latest indicators of one device, or of a district (device `_district`)."""

    kind: str
    city: str
    district: str
    device_id: str
    ts: float
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ack:
    """Who acknowledged an anomaly, when, and why."""

    by: str
    at: float
    note: str


@dataclass(slots=True)
class Anomaly:
    """One reported anomaly."""

    id: str
    ts: float
    kind: str
    city: str
    district: str
    device_id: str
    detector: str
    field: str
    severity: str
    score: float | None
    value: float | None
    acknowledged: Ack | None = None

    @property
    def ts_ns(self) -> int:
        """The exact observation time in ns (the float `ts` may be off by a few ns)."""
        return int(self.id.rsplit(".", 1)[1])

    def as_json(self) -> dict[str, Any]:
        """The API's representation."""
        ack = self.acknowledged
        return {
            "id": self.id,
            "ts": self.ts,
            "kind": self.kind,
            "city": self.city,
            "district": self.district,
            "device_id": self.device_id,
            "detector": self.detector,
            "field": self.field,
            "severity": self.severity,
            "score": self.score,
            "value": self.value,
            "acknowledged": None if ack is None else {"by": ack.by, "at": ack.at, "note": ack.note},
        }


def finite_number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, strings, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class LiveState:
    """Devices, newest readings, latest indicators and recent anomalies."""

    open_anomaly_s: float = 24 * 3600.0
    anomaly_status_s: float = 3600.0
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    readings: dict[str, Reading] = field(default_factory=dict)
    indicators: dict[tuple[str, str, str], IndicatorEntry] = field(default_factory=dict)
    anomalies: OrderedDict[str, Anomaly] = field(default_factory=OrderedDict)
    # Acks may arrive before their anomaly (a replica loading history); they wait here.
    pending_acks: dict[str, Ack] = field(default_factory=dict)
    version: int = 0
    _unsorted: bool = False

    def add_registry(self, registry: Registry) -> None:
        """Know every registered device, seen or not."""
        for d in registry:
            self.devices[d.device_id] = DeviceInfo(
                d.device_id, d.kind, d.city, d.district, d.lat, d.lon, d.interval_s, True
            )
        self.version += 1

    # -- messages ---------------------------------------------------------------------------

    def apply(self, topic: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one derived-topic message; the feed events it makes."""
        event = self._apply(topic, payload)
        if event is None:
            return []
        return event if isinstance(event, list) else [event]

    def _apply(
        self, topic: str, payload: dict[str, Any]
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        if topic.startswith(ACK_PREFIX):
            return self._apply_ack(topic[len(ACK_PREFIX) :], payload)
        parts = topic[len(DERIVED_PREFIX) :].split("/")
        if not topic.startswith(DERIVED_PREFIX) or len(parts) != 5:
            return None
        city, district, kind, device, what = parts
        if what == "readings" and district == ALL and device == ALL:
            batch = payload.get("readings")
            if not isinstance(batch, list):
                return None
            events = []
            for item in batch:
                if isinstance(item, dict):
                    place = item.get("district")
                    name = item.get("device_id")
                    if isinstance(place, str) and isinstance(name, str):
                        event = self._reading(city, place, kind, name, item)
                        if event is not None:
                            events.append(event)
            return events
        if what == "reading":
            # The retained per-device copy: state only; the feed has it from the batch message.
            self._reading(city, district, kind, device, payload)
            return None
        ts = finite_number(payload.get("ts"))
        if ts is None:
            return None
        if what == "indicator":
            skip = {"ts", "kind", "device_id"}
            values = {k: v for k, v in payload.items() if k not in skip}
            if device != DISTRICT_DEVICE:
                self._see(device, kind, city, district)
            self.indicators[(kind, district, device)] = IndicatorEntry(
                kind, city, district, device, ts, values
            )
            self.version += 1
            return {
                "type": "indicator",
                "ts": ts,
                "kind": kind,
                "city": city,
                "district": district,
                "device_id": device,
                "values": values,
            }
        if what == "anomaly":
            anomaly = self._anomaly_from(payload, ts, city, district, kind, device)
            if anomaly is None:
                return None
            self.add_anomalies([anomaly])
            return {"type": "anomaly", **anomaly.as_json()}
        return None

    def _reading(
        self, city: str, district: str, kind: str, device: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        ts = finite_number(payload.get("ts"))
        values = payload.get("values")
        if ts is None or not isinstance(values, dict):
            return None
        numbers = {k: v for k, v in values.items() if finite_number(v) is not None}
        self._see(device, kind, city, district)
        old = self.readings.get(device)
        if old is None or ts >= old.ts:
            self.readings[device] = Reading(ts, numbers)
        self.version += 1
        return {
            "type": "reading",
            "ts": ts,
            "kind": kind,
            "city": city,
            "district": district,
            "device_id": device,
            "values": numbers,
        }

    def _anomaly_from(
        self, payload: dict[str, Any], ts: float, city: str, district: str, kind: str, device: str
    ) -> Anomaly | None:
        detector, field_name = payload.get("detector"), payload.get("field")
        severity = payload.get("severity", "warning")
        if not (
            isinstance(detector, str) and isinstance(field_name, str) and isinstance(severity, str)
        ):
            return None
        self._see(device, kind, city, district)
        return Anomaly(
            id=anomaly_id(device, detector, field_name, ts_to_ns(ts)),
            ts=ts,
            kind=kind,
            city=city,
            district=district,
            device_id=device,
            detector=detector,
            field=field_name,
            severity=severity,
            score=finite_number(payload.get("score")),
            value=finite_number(payload.get("value")),
        )

    def _apply_ack(self, ident: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        at = finite_number(payload.get("at"))
        by, note = payload.get("by"), payload.get("note", "")
        if at is None or not isinstance(by, str) or not isinstance(note, str):
            return None
        ack = Ack(by, at, note)
        anomaly = self.anomalies.get(ident)
        if anomaly is None:
            if len(self.pending_acks) >= _MAX_ANOMALIES:
                self.pending_acks.pop(next(iter(self.pending_acks)))
            self.pending_acks[ident] = ack
            return None
        anomaly.acknowledged = ack
        self.version += 1
        return {"type": "ack", **anomaly.as_json()}

    def add_anomalies(self, anomalies: Iterable[Anomaly]) -> None:
        """Remember anomalies, applying any acks that waited for them."""
        for anomaly in anomalies:
            known = self.anomalies.pop(anomaly.id, None)
            if known is not None and anomaly.acknowledged is None:
                anomaly.acknowledged = known.acknowledged
            waiting = self.pending_acks.pop(anomaly.id, None)
            if waiting is not None:
                anomaly.acknowledged = waiting
            if self.anomalies and next(reversed(self.anomalies.values())).ts > anomaly.ts:
                self._unsorted = True  # sorted when next read: a storm must not sort per message
            self.anomalies[anomaly.id] = anomaly
        if len(self.anomalies) > 2 * _MAX_ANOMALIES:
            self._sorted_anomalies()
        self.version += 1

    def _sorted_anomalies(self) -> OrderedDict[str, Anomaly]:
        """The anomalies ordered by observation time, oldest first, at most the bound."""
        if self._unsorted:
            self.anomalies = OrderedDict(sorted(self.anomalies.items(), key=lambda kv: kv[1].ts))
            self._unsorted = False
        while len(self.anomalies) > _MAX_ANOMALIES:
            self.anomalies.popitem(last=False)
        return self.anomalies

    def _see(self, device: str, kind: str, city: str, district: str) -> None:
        info = self.devices.get(device)
        if info is None:
            self.devices[device] = DeviceInfo(device, kind, city, district)
        elif not info.registered:
            info.kind, info.city, info.district = kind, city, district

    # -- questions --------------------------------------------------------------------------

    def open_anomalies(
        self, device_id: str | None = None, now: float | None = None
    ) -> list[Anomaly]:
        """Unacknowledged anomalies within the open window, newest first."""
        since = (time.time() if now is None else now) - self.open_anomaly_s
        out = [
            a
            for a in reversed(self._sorted_anomalies().values())
            if a.ts >= since
            and a.acknowledged is None
            and (device_id is None or a.device_id == device_id)
        ]
        return out

    def status(self, device: DeviceInfo, now: float, newest_open: float | None) -> Status:
        """Unknown, offline (silent 3 intervals), anomaly (a recent open one) or ok."""
        reading = self.readings.get(device.device_id)
        if reading is None:
            return "unknown"
        interval = device.interval_s or _DEFAULT_INTERVAL_S
        if now - reading.ts > _OFFLINE_AFTER_INTERVALS * interval:
            return "offline"
        recent = newest_open is not None and newest_open >= now - self.anomaly_status_s
        return "anomaly" if recent else "ok"

    def device_json(
        self, device: DeviceInfo, now: float, open_anomalies: tuple[int, float] | None
    ) -> dict[str, Any]:
        """The API's representation of a device, given its (open count, newest open ts)."""
        count, newest = open_anomalies or (0, None)
        reading = self.readings.get(device.device_id)
        return {
            "device_id": device.device_id,
            "kind": device.kind,
            "city": device.city,
            "district": device.district,
            "lat": device.lat,
            "lon": device.lon,
            "interval_s": device.interval_s,
            "registered": device.registered,
            "status": self.status(device, now, newest),
            "last_seen": None if reading is None else reading.ts,
            "open_anomalies": count,
        }

    def open_counts(self, now: float) -> dict[str, tuple[int, float]]:
        """Open anomalies per device: how many, and the newest one's time."""
        counts: dict[str, tuple[int, float]] = {}
        for a in self.open_anomalies(now=now):
            count, newest = counts.get(a.device_id, (0, a.ts))
            counts[a.device_id] = (count + 1, max(newest, a.ts))
        return counts
