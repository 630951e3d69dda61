"""A simulated fleet's readings, chunk by chunk, with faults, as time-ordered MQTT messages."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from pantau.registry import Registry
from processors.catalog import KINDS
from simulators.air import AirQualityModel
from simulators.faults import FaultEvent
from simulators.injector import FaultInjector, FaultRates, malform, message_faults
from simulators.lights import StreetlightModel
from simulators.model import KindModel
from simulators.purbalingga import DISTRICTS
from simulators.river import RiverModel
from simulators.schedule import Schedule

__all__ = ["FleetSimulator", "Outgoing"]

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]

_MAX_CHUNK_S: Final = 3600.0
_SCHEDULE_TAG: Final = 0x5C
_MESSAGE_TAG: Final = 0x4D


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message: when it is due (simulated epoch s), who sends it, where, what."""

    emit_at: float
    device_id: str
    topic: str
    payload: bytes
    readings: int  # well-formed readings inside (0 for a corrupted payload)
    newest_ts: float  # the latest observation time inside (a delayed message is sent later)


@dataclass(slots=True)
class _Pending:
    """A message before its delivery fault is decided."""

    fleet: int  # index into the simulator's per-kind fleets
    device: int
    body: Any  # one reading, or a list of them (gateway batch)
    first_ts: float
    last_ts: float


class _KindFleet:
    """The devices of one kind with their model, schedule and fault injector."""

    def __init__(
        self, kind: str, registry: Registry, seed: int, start: float, faults: FaultRates
    ) -> None:
        devices = registry.by_kind(kind)
        districts = {d.name: d for d in DISTRICTS}
        self.kind = kind
        self.ids = tuple(d.device_id for d in devices)
        self.topics = tuple(d.topic for d in devices)
        self.model: KindModel
        if kind == "air_quality":
            self.model = AirQualityModel(devices, seed, districts)
        elif kind == "water_level":
            self.model = RiverModel(devices, seed)
        else:
            self.model = StreetlightModel(devices, seed)
        rated = [d.rated_w or 0.0 for d in devices]
        self.injector = FaultInjector(faults, kind, self.ids, rated)
        rng = np.random.default_rng([seed, _SCHEDULE_TAG, KINDS.index(kind)])
        self.schedule = Schedule.spread([d.interval_s for d in devices], start, rng)
        spec = self.model.spec
        self.names = spec.field_names
        self.integer = tuple(places == 0 for places in self.model.decimals)
        self.lows, self.highs = spec.lows(), spec.highs()


class FleetSimulator:
    """Generates a fleet's messages in time order; deterministic for a given seed."""

    def __init__(
        self,
        registry: Registry,
        *,
        seed: int,
        start: float,
        end: float | None = None,
        faults: FaultRates | None = None,
        batch: int = 1,
        chunk_readings: int = 20_000,
    ) -> None:
        """Simulate [start, end) (forever if end is None); `batch` readings per message."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self._seed = seed
        self._start = start
        self._end = end
        self._faults = faults or FaultRates()
        self._batch = batch
        self._fleets = [
            _KindFleet(kind, registry, seed, start, self._faults)
            for kind in KINDS
            if registry.by_kind(kind)
        ]
        per_second = sum(f.schedule.readings_per_second() for f in self._fleets)
        # Chunks bound memory (and the latency of the first message) whatever the fleet size.
        self.chunk_s = min(_MAX_CHUNK_S, chunk_readings / per_second) if per_second else 1.0
        self.ground_truth: list[FaultEvent] = []
        self.counts: Counter[str] = Counter()
        self._gateway: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self._seq = 0

    @property
    def readings_per_second(self) -> float:
        """Readings per simulated second of the whole fleet."""
        return sum(f.schedule.readings_per_second() for f in self._fleets)

    def messages(self) -> Iterator[Outgoing]:
        """Every message of the run, ordered by the simulated time it is due."""
        queue: list[tuple[float, int, Outgoing]] = []
        chunk = 0
        while True:
            t0 = self._start + chunk * self.chunk_s
            if self._end is not None and t0 >= self._end:
                break
            t1 = t0 + self.chunk_s if self._end is None else min(t0 + self.chunk_s, self._end)
            pending: list[_Pending] = []
            for index, fleet in enumerate(self._fleets):
                rng = np.random.default_rng([self._seed, chunk, index])
                pending += self._readings(index, fleet, t0, t1, rng)
            self._deliver(pending, np.random.default_rng([self._seed, chunk, _MESSAGE_TAG]), queue)
            while queue and queue[0][0] < t1:
                yield heapq.heappop(queue)[2]
            chunk += 1
        # Partly filled gateway batches go out at the end; delayed messages arrive last.
        rest = [self._flush_batch(key, items) for key, items in self._gateway.items() if items]
        self._gateway.clear()
        self._deliver(rest, np.random.default_rng([self._seed, chunk, _MESSAGE_TAG]), queue)
        while queue:
            yield heapq.heappop(queue)[2]

    def _readings(
        self, index: int, fleet: _KindFleet, t0: float, t1: float, rng: np.random.Generator
    ) -> list[_Pending]:
        device, ts = fleet.schedule.between(t0, t1)
        values = fleet.model.sample(device, ts, rng)
        events = fleet.injector.lamp_faults(device, ts, values, rng)
        fleet.model.settle(device, ts, values)
        events += fleet.injector.value_faults(device, ts, values, rng)
        np.clip(values, fleet.lows, fleet.highs, out=values)
        for col, places in enumerate(fleet.model.decimals):
            values[:, col] = np.round(values[:, col], places)
        keep, dropped = fleet.injector.dropouts(device, ts, rng)
        self.ground_truth += events + dropped
        self.counts["readings"] += int(keep.sum())
        self.counts["dropped"] += int(ts.size - keep.sum())
        out: list[_Pending] = []
        names, integer = fleet.names, fleet.integer
        rows = values[keep].tolist()
        for d, t, row in zip(device[keep].tolist(), ts[keep].tolist(), rows, strict=True):
            reading: dict[str, Any] = {"ts": t}
            for name, value, as_int in zip(names, row, integer, strict=True):
                if value == value:  # NaN: the field is not sent
                    reading[name] = int(value) if as_int else value
            if self._batch == 1:
                out.append(_Pending(index, d, reading, t, t))
                continue
            items = self._gateway.setdefault((index, d), [])
            items.append(reading)
            if len(items) == self._batch:
                out.append(self._flush_batch((index, d), items))
                self._gateway[(index, d)] = []
        return out

    def _flush_batch(self, key: tuple[int, int], items: list[dict[str, Any]]) -> _Pending:
        return _Pending(key[0], key[1], list(items), items[0]["ts"], items[-1]["ts"])

    def _deliver(
        self,
        pending: list[_Pending],
        rng: np.random.Generator,
        queue: list[tuple[float, int, Outgoing]],
    ) -> None:
        pending.sort(key=lambda p: p.last_ts)  # stable: kinds and devices keep their order
        faults = message_faults(self._faults, len(pending), rng)
        delays = rng.uniform(0.0, 1.0, len(pending))
        for item, fault, delay in zip(pending, faults, delays.tolist(), strict=True):
            fleet = self._fleets[item.fleet]
            device_id, topic = fleet.ids[item.device], fleet.topics[item.device]
            period = float(fleet.schedule.intervals[item.device]) * self._batch
            payload = orjson.dumps(item.body)
            count = len(item.body) if isinstance(item.body, list) else 1
            emit_at = item.last_ts
            if fault == "malformed":
                payload = malform(item.body, payload, rng)
                count = 0
            elif fault == "out_of_order":
                emit_at += period * (2.0 + 3.0 * delay)  # after 2-5 later messages
            elif fault == "duplicate":
                again = Outgoing(
                    emit_at + period * (0.2 + 1.3 * delay),
                    device_id,
                    topic,
                    payload,
                    count,
                    item.last_ts,
                )
                self._push(queue, again)
            if fault:
                self.counts[fault] += 1
                self.ground_truth.append(
                    FaultEvent(device_id, fleet.kind, "", fault, item.first_ts, item.last_ts)
                )
            self._push(queue, Outgoing(emit_at, device_id, topic, payload, count, item.last_ts))

    def _push(self, queue: list[tuple[float, int, Outgoing]], message: Outgoing) -> None:
        self._seq += 1
        heapq.heappush(queue, (message.emit_at, self._seq, message))
