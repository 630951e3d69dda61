"""The current state of the regency, kept from the broker's derived topics.

Readings summaries and indicators are retained on the broker, so a fresh replica knows them
at once; anomalies are events, so a replica also loads the open ones from InfluxDB at start.
Two replicas fed the same messages hold the same state.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from api.anomaly_ids import anomaly_id, parse_anomaly_id, ts_to_ns
from pantau.derived import (
    DISTRICT_DEVICE,
    Ack,
    AnomalyEvent,
    ContractError,
    DerivedTopic,
    IndicatorEvent,
    ReadingSummary,
    finite_number,
    parse_ack_topic,
)
from pantau.registry import Registry
from pantau.settings import ApiSettings
from processors.detectors.protocol import Severity
from processors.detectors.registry import SEVERITY
from processors.live import INDICATOR_INPUTS

__all__ = [
    "DETECTORS",
    "INDICATORS",
    "SEVERITIES",
    "Ack",
    "Anomaly",
    "DeviceInfo",
    "IndicatorEntry",
    "LiveState",
    "Reading",
    "finite_number",
]

# A device without a registry interval is offline after this long without a reading.
_DEFAULT_INTERVAL_S: Final = 300.0
_OFFLINE_AFTER_INTERVALS: Final = 3.0
_MAX_ANOMALIES: Final = 20_000

# The findings the detectors declare (anomaly "detector"), and the severities they may have.
DETECTORS: Final = frozenset(SEVERITY)
SEVERITIES: Final = frozenset(get_args(Severity))
# The live indicators an anomaly's reading may have been kept out of (its `kept_out`).
INDICATORS: Final = frozenset(
    name for fields in INDICATOR_INPUTS.values() for names in fields.values() for name in names
)

# Called for every rejected message (or batch entry): reason, topic, detail.
RejectHook = Callable[[str, str, str], None]
# Called when a bound refuses or evicts: what (devices, indicators, ...), action, how many.
BoundHook = Callable[[str, str, int], None]

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
    kept_out: str = ""  # the indicators its reading was kept out of ("ispu,aqi"), if any

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
            "kept_out": self.kept_out,
            "acknowledged": None if ack is None else {"by": ack.by, "at": ack.at, "note": ack.note},
        }


@dataclass
class LiveState:
    """Devices, newest readings, latest indicators and recent anomalies.

    Every message is untrusted: one that does not fit the contract (pantau/derived.py, plus
    the detectors' names and the registry here) is rejected, counted by reason in `rejected`
    and reported to `on_reject`. What the broker can make this hold is bounded: devices not in
    the registry and indicator entries (new ones beyond the bound are refused), anomalies and
    waiting acks (the oldest are evicted); `on_bound` hears of each refusal and eviction.
    """

    open_anomaly_s: float = 24 * 3600.0
    anomaly_status_s: float = 3600.0
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    readings: dict[str, Reading] = field(default_factory=dict)
    indicators: dict[tuple[str, str, str], IndicatorEntry] = field(default_factory=dict)
    anomalies: OrderedDict[str, Anomaly] = field(default_factory=OrderedDict)
    # Acks may arrive before their anomaly (a replica loading history); they wait here.
    pending_acks: dict[str, Ack] = field(default_factory=dict)
    version: int = 0
    # Bounds (ApiSettings: configure()).
    max_unregistered_devices: int = 10_000
    max_indicators: int = 100_000
    max_anomalies: int = _MAX_ANOMALIES
    max_pending_acks: int = _MAX_ANOMALIES
    max_summary_readings: int = 50_000
    detectors: frozenset[str] = DETECTORS
    severities: frozenset[str] = SEVERITIES
    # With a registry, only its devices are believed (the collector accepts no others).
    has_registry: bool = False
    unregistered_devices: int = 0
    districts: set[tuple[str, str]] = field(default_factory=set)  # (city, district) registered
    rejected: Counter[str] = field(default_factory=Counter)
    on_reject: RejectHook | None = None
    on_bound: BoundHook | None = None
    _unsorted: bool = False

    def configure(self, api: ApiSettings) -> None:
        """Take the bounds from the API's settings."""
        self.max_unregistered_devices = api.max_unregistered_devices
        self.max_indicators = api.max_indicators
        self.max_anomalies = api.max_anomalies
        self.max_pending_acks = api.max_pending_acks
        self.max_summary_readings = api.max_summary_readings

    def add_registry(self, registry: Registry) -> None:
        """Know every registered device, seen or not; from now on only these are believed."""
        for d in registry:
            known = self.devices.get(d.device_id)
            if known is not None and not known.registered:
                self.unregistered_devices -= 1
            self.devices[d.device_id] = DeviceInfo(
                d.device_id, d.kind, d.city, d.district, d.lat, d.lon, d.interval_s, True
            )
            self.districts.add((d.city, d.district))
        self.has_registry = True
        self.version += 1

    def sizes(self) -> dict[str, int]:
        """How much each bounded part holds (for the metrics)."""
        return {
            "devices": len(self.devices),
            "unregistered_devices": self.unregistered_devices,
            "readings": len(self.readings),
            "indicators": len(self.indicators),
            "anomalies": len(self.anomalies),
            "pending_acks": len(self.pending_acks),
        }

    def reject(self, reason: str, topic: str, detail: str = "") -> None:
        """Count one rejected message (or batch entry) and tell `on_reject`."""
        self.rejected[reason] += 1
        if self.on_reject is not None:
            self.on_reject(reason, topic, detail)

    def _bound(self, what: str, action: str, count: int = 1) -> None:
        if self.on_bound is not None and count:
            self.on_bound(what, action, count)

    # -- messages ---------------------------------------------------------------------------

    def apply(self, topic: str, payload: Any) -> list[dict[str, Any]]:
        """Take one derived-topic message; the feed events it makes (none if it is rejected)."""
        try:
            event = self._apply(topic, payload)
        except ContractError as exc:
            self.reject(exc.reason, topic, exc.detail)
            return []
        if event is None:
            return []
        return event if isinstance(event, list) else [event]

    def _apply(self, topic: str, payload: Any) -> dict[str, Any] | list[dict[str, Any]] | None:
        acked = parse_ack_topic(topic)
        if acked is not None:
            return self._apply_ack(acked, payload)
        where = DerivedTopic.parse(topic)
        city, district, kind, device = where.city, where.district, where.kind, where.device_id
        if where.is_batch_summary:
            return self._batch(topic, city, kind, payload)
        if where.what == "reading":
            # The retained per-device copy: state only; the feed has it from the batch message.
            summary = ReadingSummary.parse(payload, kind=kind, district=district, device_id=device)
            self._reading(city, kind, summary)
            return None
        if where.what == "indicator":
            indicator = IndicatorEvent.parse(payload, kind=kind, device_id=device)
            if device != DISTRICT_DEVICE:
                self._see(device, kind, city, district)
            elif self.has_registry and (city, district) not in self.districts:
                raise ContractError("unknown_district", "no registered device there")
            key = (kind, district, device)
            if key not in self.indicators and len(self.indicators) >= self.max_indicators:
                self._bound("indicators", "refused")
                raise ContractError("indicators_full", f"{self.max_indicators} entries held")
            self.indicators[key] = IndicatorEntry(
                kind, city, district, device, indicator.ts, indicator.values
            )
            self.version += 1
            return {
                "type": "indicator",
                "ts": indicator.ts,
                "kind": kind,
                "city": city,
                "district": district,
                "device_id": device,
                "values": indicator.values,
            }
        if where.what == "anomaly":
            event = AnomalyEvent.parse(
                payload,
                kind=kind,
                device_id=device,
                detectors=self.detectors,
                severities=self.severities,
                indicators=INDICATORS,
            )
            self._see(device, kind, city, district)
            anomaly = Anomaly(
                id=anomaly_id(device, event.detector, event.field, ts_to_ns(event.ts)),
                ts=event.ts,
                kind=kind,
                city=city,
                district=district,
                device_id=device,
                detector=event.detector,
                field=event.field,
                severity=event.severity,
                score=event.score,
                value=event.value,
                kept_out=event.kept_out,
            )
            self.add_anomalies([anomaly])
            return {"type": "anomaly", **anomaly.as_json()}
        return None

    def _batch(self, topic: str, city: str, kind: str, payload: Any) -> list[dict[str, Any]]:
        """A city's batch summary: one event per valid entry; each bad entry rejected alone."""
        if not isinstance(payload, dict) or payload.keys() - {"kind", "readings"}:
            raise ContractError("schema", "a batch summary is {kind, readings}")
        if payload.get("kind", kind) != kind:
            raise ContractError("schema", "kind disagrees with the topic")
        batch = payload.get("readings")
        if not isinstance(batch, list):
            raise ContractError("schema", "readings must be a list")
        if len(batch) > self.max_summary_readings:
            raise ContractError("readings", f"more than {self.max_summary_readings} readings")
        events = []
        for item in batch:
            try:
                summary = ReadingSummary.parse(item, kind=kind)
                events.append(self._reading(city, kind, summary))
            except ContractError as exc:
                self.reject(exc.reason, topic, exc.detail)
        return events

    def _reading(self, city: str, kind: str, summary: ReadingSummary) -> dict[str, Any]:
        device, district = summary.device_id, summary.district
        self._see(device, kind, city, district)
        old = self.readings.get(device)
        if old is None or summary.ts >= old.ts:
            self.readings[device] = Reading(summary.ts, summary.values)
        self.version += 1
        return {
            "type": "reading",
            "ts": summary.ts,
            "kind": kind,
            "city": city,
            "district": district,
            "device_id": device,
            "values": summary.values,
        }

    def _apply_ack(self, ident: str, payload: Any) -> dict[str, Any] | None:
        if parse_anomaly_id(ident) is None:
            raise ContractError("ack_id", "not an anomaly id")
        ack = Ack.parse(payload)
        anomaly = self.anomalies.get(ident)
        if anomaly is None:
            self.pending_acks.pop(ident, None)
            while self.pending_acks and len(self.pending_acks) >= self.max_pending_acks:
                self.pending_acks.pop(next(iter(self.pending_acks)))
                self._bound("pending_acks", "evicted")
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
        if len(self.anomalies) > 2 * self.max_anomalies:
            self._sorted_anomalies()
        self.version += 1

    def _sorted_anomalies(self) -> OrderedDict[str, Anomaly]:
        """The anomalies ordered by observation time, oldest first, at most the bound."""
        if self._unsorted:
            self.anomalies = OrderedDict(sorted(self.anomalies.items(), key=lambda kv: kv[1].ts))
            self._unsorted = False
        evicted = 0
        while len(self.anomalies) > self.max_anomalies:
            self.anomalies.popitem(last=False)
            evicted += 1
        self._bound("anomalies", "evicted", evicted)
        return self.anomalies

    def _see(self, device: str, kind: str, city: str, district: str) -> None:
        """Admit a message about a device, or raise ContractError.

        With a registry: only its devices, of its kind and at its place; without: a new
        device only while there is room.
        """
        info = self.devices.get(device)
        if info is None:
            if self.has_registry:
                raise ContractError("unknown_device", "not in the registry")
            if self.unregistered_devices >= self.max_unregistered_devices:
                self._bound("devices", "refused")
                raise ContractError("devices_full", f"{self.max_unregistered_devices} held")
            self.devices[device] = DeviceInfo(device, kind, city, district)
            self.unregistered_devices += 1
        elif not info.registered:
            info.kind, info.city, info.district = kind, city, district
        elif info.kind != kind:
            raise ContractError("device_kind", f"the registry has it as {info.kind}")
        elif (info.city, info.district) != (city, district):
            raise ContractError("device_place", "the registry has it elsewhere")

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
