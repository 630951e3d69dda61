"""Derived data: run the processors on each batch; render anomalies and indicators.

Anomalies and indicators go into the same InfluxDB write as the readings (measurements
`anomaly` and `indicator`) and onto the derived topics of `pantau.derived` (the contract with
the API). Each batch also publishes its newest reading per device: all of them in one
readings message per city (the live feeds), and retained per device (at most every 10 s).
Points carry the reading's observation time, so a redelivered batch rewrites the same points.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from ingest.batch import Batch, KindColumns
from pantau.derived import (
    DISTRICT_DEVICE,
    AnomalyEvent,
    IndicatorEvent,
    derived_topic,
    readings_topic,
)
from pantau.files import write_atomically
from pantau.lineprotocol import point
from pantau.registry import Registry, facts_from_registry
from processors.bank import KEPT_OUT, SEVERITY, KindProcessor
from processors.catalog import CATALOG
from processors.detectors import Findings
from processors.live import Indicators

__all__ = ["Derivation", "Derived", "DerivedMessage"]

log = logging.getLogger(__name__)

# An unchanged category or status is re-sent at most this often per device: numbers such as
# an energy counter move with every reading, and one message per reading would double the
# broker's load. A changed label (category, alert level, ...) is sent at once.
INDICATOR_EVERY_S: Final = 60.0
# A device's retained latest-reading message is refreshed at most this often; a newer reading
# held back meanwhile goes out with the next silence sweep.
SUMMARY_RETAIN_EVERY_S: Final = 10.0
# One anomaly per device, field and detector is reported per episode: a stuck sensor flags
# every reading, and an alarm storm helps nobody. A new report needs this much quiet first.
ANOMALY_QUIET_S: Final = 3600.0
_LEVELS: Final = frozenset({"ispu", "aqi", "flood_level", "next_level", "working"})


@dataclass(frozen=True, slots=True)
class DerivedMessage:
    """One MQTT message for the derived topics."""

    topic: str
    payload: bytes
    retain: bool
    qos: int = 1


@dataclass
class Derived:
    """What one batch adds: line protocol, MQTT messages and counts.

    `live` holds the newest readings (the live feed): sent as soon as the batch is processed.
    `messages` holds anomalies and indicators: sent only once the batch is durable.
    """

    lines: list[str] = field(default_factory=list)
    messages: list[DerivedMessage] = field(default_factory=list)
    anomalies: int = 0
    live: list[DerivedMessage] = field(default_factory=list)

    def extend(self, other: Derived) -> None:
        """Append another batch's derived data."""
        self.lines += other.lines
        self.messages += other.messages
        self.anomalies += other.anomalies
        self.live += other.live


class Derivation:
    """The processor banks of all kinds, fed batch by batch, with their snapshot on disk."""

    def __init__(self, registry: Registry | None = None) -> None:
        facts = facts_from_registry(registry)
        self.banks = {
            kind: KindProcessor(spec, facts, report_all=False) for kind, spec in CATALOG.items()
        }
        self._places: dict[str, tuple[str, str]] = {}  # device id -> (city, district)
        self._district_city: dict[str, str] = {}  # for district-level indicators
        # Each registered device's peer group for drift (a river, an airshed); others: none,
        # so the bank falls back to the reading's district.
        self._peers = {d.device_id: d.peer or "" for d in registry} if registry else {}
        self._sent: dict[tuple[str, str, str], tuple[float, tuple[tuple[str, str], ...]]] = {}
        self._summary_sent: dict[tuple[str, str, str], float] = {}
        # Retained latest readings waiting for the sweep: key -> (topic, summary)
        self._held_back: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        self._episodes: dict[tuple[str, int, int, str], float] = {}  # -> last flagged time
        self.layout = ""  # the partition layout the state was built under (see save())
        if registry is not None:
            for d in registry:
                self._place(d.device_id, d.city, d.district)

    def process(self, batch: Batch) -> Derived:
        """Anomalies and indicators of one batch (the readings are already validated)."""
        derived = Derived()
        now = time.time()
        for kind, columns in batch.columns.items():
            if not len(columns):
                continue
            bank = self.banks[kind]
            ids = np.array(columns.device_ids.tolist())
            districts = np.array(columns.districts.tolist())
            # One entry per device, not per reading.
            _, first = np.unique(ids, return_index=True)
            cities = columns.cities[first].tolist()
            for device, city, district in zip(
                ids[first].tolist(), cities, districts[first].tolist(), strict=True
            ):
                self._place(device, city, district)
            ts = columns.ts_ns.astype(np.float64) / 1e9
            findings = bank.process(
                ids, ts, columns.values, columns.present, districts, self._groups(ids)
            )
            derived.extend(self._anomalies(kind, bank, findings))
            derived.extend(self._indicators(kind, bank, bank.indicators(now)))
            derived.extend(self._summaries(kind, columns))
        return derived

    def _groups(self, ids: npt.NDArray[np.str_]) -> npt.NDArray[np.str_] | None:
        """Each reading's peer group from the registry ("": none); None without a registry."""
        if not self._peers:
            return None
        devices, inverse = np.unique(ids, return_inverse=True)
        names = np.array([self._peers.get(d, "") for d in devices.tolist()], dtype=str)
        groups: npt.NDArray[np.str_] = names[inverse.reshape(-1)]
        return groups

    def _place(self, device: str, city: str, district: str) -> None:
        self._places[device] = (city, district)
        self._district_city[district] = city

    def sweep(self, now: float, *, silence: bool = True) -> Derived:
        """Devices gone silent since the last sweep (dropout anomalies), and held-back readings.

        `silence=False` skips the silence check (the collector is replaying a backlog).
        """
        derived = Derived()
        for kind, bank in self.banks.items():
            if silence:
                derived.extend(self._anomalies(kind, bank, [bank.sweep(now)]))
        derived.live += [
            _retained_reading(topic, summary, key[0])
            for key, (topic, summary) in self._held_back.items()
        ]
        for key in self._held_back:
            self._summary_sent[key] = time.monotonic()
        self._held_back.clear()
        return derived

    # -- rendering ----------------------------------------------------------------------------

    def _anomalies(self, kind: str, bank: KindProcessor, findings: Iterable[Findings]) -> Derived:
        derived = Derived()
        names = bank.spec.field_names
        for finding in findings:
            flagged = finding.flagged()
            severity = SEVERITY.get(finding.detector, "warning")
            # The indicators each flagged field feeds, which the bank kept its reading out of.
            inputs = bank.live.inputs if finding.detector in KEPT_OUT else ()
            for row, column, ts, value, score in zip(
                flagged.row.tolist(),
                flagged.field.tolist(),
                flagged.ts.tolist(),
                flagged.value.tolist(),
                flagged.score.tolist(),
                strict=True,
            ):
                episode = (kind, row, column, finding.detector)
                last = self._episodes.get(episode)
                self._episodes[episode] = ts if last is None else max(last, ts)
                if last is not None and abs(ts - last) < ANOMALY_QUIET_S:
                    continue  # the same episode goes on
                device = bank.device_id(row)
                city, district = self._places.get(device, ("unknown", "unknown"))
                field_name = names[column] if column >= 0 else "device"
                tags = {
                    "city": city,
                    "district": district,
                    "device_id": device,
                    "kind": kind,
                    "detector": finding.detector,
                    "field": field_name,
                    "severity": severity,
                }
                known = math.isfinite(value)
                fields: dict[str, float | str] = {"score": score}
                if known:
                    fields["value"] = value
                kept_out = inputs[column] if 0 <= column < len(inputs) else ""
                if kept_out:
                    fields["kept_out"] = kept_out
                derived.lines.append(point("anomaly", tags, fields, round(ts * 1e6) * 1000))
                event = AnomalyEvent(
                    ts,
                    kind,
                    device,
                    finding.detector,
                    field_name,
                    severity,
                    score,
                    value if known else None,
                    kept_out,
                )
                derived.messages.append(
                    DerivedMessage(
                        derived_topic(city, district, kind, device, "anomaly"),
                        orjson.dumps(event.as_json()),
                        retain=False,
                    )
                )
                derived.anomalies += 1
        return derived

    def _indicators(self, kind: str, bank: KindProcessor, ind: Indicators) -> Derived:
        derived = Derived()
        for i, row in enumerate(ind.rows.tolist()):
            device = bank.device_id(row)
            city, district = self._places.get(device, ("unknown", "unknown"))
            numbers = {k: float(v[i]) for k, v in ind.numbers.items()}
            labels = {k: str(v[i]) for k, v in ind.labels.items()}
            self._indicator(
                derived, kind, city, district, device, float(ind.ts[i]), numbers, labels
            )
        for district, numbers in ind.districts.items():
            city = self._district_city.get(district, "unknown")
            self._indicator(
                derived,
                kind,
                city,
                district,
                DISTRICT_DEVICE,
                ind.district_ts[district],
                numbers,
                {},
            )
        return derived

    def _indicator(
        self,
        derived: Derived,
        kind: str,
        city: str,
        district: str,
        device: str,
        ts: float,
        numbers: dict[str, float],
        labels: dict[str, str],
    ) -> None:
        finite = {k: v for k, v in numbers.items() if math.isfinite(v)}
        texts = {k: v for k, v in labels.items() if v}
        if not math.isfinite(ts) or not (finite or texts):
            return
        key = (kind, district, device)
        now = time.monotonic()
        signature = tuple(sorted(texts.items())) + tuple(
            (k, repr(v)) for k, v in sorted(finite.items()) if k in _LEVELS
        )
        last = self._sent.get(key)
        if last is not None and last[1] == signature and now - last[0] < INDICATOR_EVERY_S:
            return
        self._sent[key] = (now, signature)
        tags = {"city": city, "district": district, "device_id": device, "kind": kind}
        values: dict[str, float | str] = {**finite, **texts}
        derived.lines.append(point("indicator", tags, values, round(ts * 1e6) * 1000))
        event = IndicatorEvent(ts, kind, device, values)
        derived.messages.append(
            DerivedMessage(
                derived_topic(city, district, kind, device, "indicator"),
                orjson.dumps(event.as_json()),
                retain=True,
            )
        )

    def _summaries(self, kind: str, columns: KindColumns) -> Derived:
        """The batch's newest reading per device: one message per city, and retained per device.

        The live feed gets one `…/_all/{kind}/_all/readings` message per city and batch, so the
        message rate follows batches, not devices. A fresh API replica learns each device's
        latest reading from the retained `…/{device}/reading`, re-sent at most every 10 s (a
        held-back one is encoded only when the sweep sends it).
        """
        derived = Derived()
        ids = columns.device_ids
        order = np.lexsort((columns.ts_ns, ids))
        sorted_ids = ids[order]
        last = np.flatnonzero(np.append(sorted_ids[1:] != sorted_ids[:-1], True))
        counts = np.diff(np.append(-1, last)).tolist()
        rows = order[last]
        names = columns.spec.field_names
        # Whole columns to Python lists at once; the loop below only assembles dicts.
        present = columns.present[rows]
        values = columns.values[rows].tolist()
        ts = (columns.ts_ns[rows] / 1e9).tolist()
        devices = ids[rows].tolist()
        cities = columns.cities[rows].tolist()
        districts = columns.districts[rows].tolist()
        if present.all():
            fields = [dict(zip(names, v, strict=True)) for v in values]
        else:
            mask = present.tolist()
            fields = [
                {n: x for n, x, p in zip(names, v, m, strict=True) if p}
                for v, m in zip(values, mask, strict=True)
            ]
        now = time.monotonic()
        per_city: dict[str, list[dict[str, Any]]] = {}
        sent, held = self._summary_sent, self._held_back
        for i, device in enumerate(devices):
            city, district = cities[i], districts[i]
            summary = {
                "ts": ts[i],
                "device_id": device,
                "district": district,
                "readings": counts[i],
                "values": fields[i],
            }
            per_city.setdefault(city, []).append(summary)
            key = (kind, district, device)
            topic = derived_topic(city, district, kind, device, "reading")
            if now - sent.get(key, -math.inf) >= SUMMARY_RETAIN_EVERY_S:
                sent[key] = now
                held.pop(key, None)
                derived.live.append(_retained_reading(topic, summary, kind))
            else:
                held[key] = (topic, summary)  # sent by the next sweep (every 10 s)
        for city, summaries in per_city.items():
            derived.live.append(
                DerivedMessage(
                    readings_topic(city, kind),
                    orjson.dumps({"kind": kind, "readings": summaries}),
                    retain=False,
                    qos=0,
                )
            )
        return derived

    # -- surviving a restart --------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write every bank's state atomically (temporary file, fsync, rename).

        With the state go the anomaly episodes (so a replay after a restart reports an episode
        that goes on as the same one) and the partition layout it was built under.
        """
        arrays: dict[str, Any] = {}
        for kind, bank in self.banks.items():
            arrays.update({f"{kind}/{name}": value for name, value in bank.snapshot().items()})
        places = json.dumps(self._places)
        arrays["places"] = np.array([places])
        episodes = [[*key, last] for key, last in self._episodes.items()]
        arrays["episodes"] = np.array([json.dumps(episodes)])
        arrays["layout"] = np.array([self.layout])
        encoded = io.BytesIO()
        np.savez(encoded, **arrays)
        write_atomically(path, encoded.getvalue(), mode=0o644)

    def load(self, path: Path) -> bool:
        """Restore state saved by save(); False (fresh state) if there is none or it is bad."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("processor snapshot unreadable; starting fresh", extra={"error": str(exc)})
            return False
        for kind, bank in self.banks.items():
            prefix = f"{kind}/"
            part = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            if part:
                bank.restore(part)
        if "places" in arrays:
            for device, (city, district) in json.loads(str(arrays["places"][0])).items():
                self._place(device, city, district)
        if "episodes" in arrays:
            for kind, row, column, detector, last in json.loads(str(arrays["episodes"][0])):
                self._episodes[(str(kind), int(row), int(column), str(detector))] = float(last)
        self.layout = str(arrays["layout"][0]) if "layout" in arrays else ""
        return True


def _retained_reading(topic: str, summary: dict[str, Any], kind: str) -> DerivedMessage:
    """A device's retained latest reading (QoS 0: a later one replaces a lost one)."""
    return DerivedMessage(topic, orjson.dumps({**summary, "kind": kind}), retain=True, qos=0)
