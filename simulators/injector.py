"""Fault injection into a simulated fleet's readings, recording each fault as ground truth."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from processors.catalog import kind_spec
from simulators.faults import (
    FAULT_TYPES,
    FaultEvent,
    inject_drift,
    inject_dropout,
    inject_noise_burst,
    inject_spike,
    inject_stuck,
)

__all__ = [
    "LAMP_FAULTS",
    "MESSAGE_FAULTS",
    "VALUE_FAULTS",
    "FaultInjector",
    "FaultRates",
    "malform",
    "message_faults",
    "parse_fault_spec",
]

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]
_Bool = npt.NDArray[np.bool_]

VALUE_FAULTS: Final = ("spike", "stuck", "drift", "noise_burst")
LAMP_FAULTS: Final = ("lamp_out", "day_burn", "power_off_rating")
MESSAGE_FAULTS: Final = ("duplicate", "out_of_order", "malformed")
# Fields a value fault may hit: measured quantities, not states or counters.
_VALUE_FIELDS: Final = MappingProxyType(
    {
        "air_quality": ("pm25", "pm10", "so2", "no2", "o3", "co", "hc", "temperature", "humidity"),
        "water_level": ("level_cm", "battery_v"),
        "streetlight": ("voltage_v", "lux"),
    }
)
# How many consecutive readings a fault lasts (at most: a window ends with the chunk of readings
# being generated, and a lamp fault also ends when night or day does).
_LENGTHS: Final = MappingProxyType(
    {
        "spike": (1, 1),
        "stuck": (10, 60),
        "drift": (30, 120),
        "noise_burst": (5, 30),
        "dropout": (5, 60),
        "lamp_out": (30, 360),
        "day_burn": (30, 360),
        "power_off_rating": (60, 600),
    }
)
_STANDBY_W: Final = 0.4


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-reading (per-message for message faults) probability that each fault type starts."""

    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, rate in self.rates.items():
            if name not in FAULT_TYPES:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_TYPES)}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate {name}={rate} must lie in [0, 1]")
        if sum(self.rates.get(m, 0.0) for m in MESSAGE_FAULTS) > 1.0:
            raise ValueError("duplicate + out_of_order + malformed rates must not exceed 1")
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))

    def get(self, fault: str) -> float:
        """The rate of one fault type (0 when not given)."""
        return self.rates.get(fault, 0.0)

    def __bool__(self) -> bool:
        """True when any fault has a positive rate."""
        return any(rate > 0 for rate in self.rates.values())


def parse_fault_spec(spec: str) -> FaultRates:
    """Parse `spike=0.01,stuck=0.005,...` (an empty string means no faults)."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault {part!r} needs a rate, e.g. {part}=0.01")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"fault rate {part!r} is not a number") from None
    return FaultRates(rates)


class _Groups:
    """Each device's readings in time order, to find windows of consecutive readings."""

    def __init__(self, device: _Int, ts: _Float) -> None:
        self.order = np.lexsort((ts, device))
        n = device.size
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[self.order] = np.arange(n)
        sorted_dev = device[self.order]
        ends = np.r_[np.flatnonzero(sorted_dev[1:] != sorted_dev[:-1]) + 1, n]
        starts = np.r_[0, ends[:-1]]
        group = np.cumsum(np.r_[False, sorted_dev[1:] != sorted_dev[:-1]])
        self.start = starts[group]  # by sorted position
        self.end = ends[group]

    def series(self, reading: int) -> tuple[_Int, int]:
        """All readings of this reading's device (in time order) and its offset among them."""
        p = int(self.pos[reading])
        return self.order[self.start[p] : self.end[p]], p - int(self.start[p])


class FaultInjector:
    """Injects one kind's device and value faults into chunks of generated readings."""

    def __init__(
        self,
        rates: FaultRates,
        kind: str,
        device_ids: Sequence[str],
        rated_w: Sequence[float] | None = None,
    ) -> None:
        """Faults for the devices of one kind (device index -> id; lamps' rated power)."""
        self._rates = rates
        self._kind = kind
        self._ids = tuple(device_ids)
        self._spec = kind_spec(kind)
        self._fields = _VALUE_FIELDS[kind]
        self._rated = np.asarray(rated_w if rated_w is not None else [], dtype=np.float64)

    def _starts(self, fault: str, n: int, rng: np.random.Generator) -> _Int:
        rate = self._rates.get(fault)
        draws = rng.random(n)  # drawn even at rate 0, so other faults' draws never shift
        return np.flatnonzero(draws < rate) if rate > 0 else np.empty(0, dtype=np.int64)

    def _length(self, fault: str, rng: np.random.Generator) -> int:
        low, high = _LENGTHS[fault]
        return int(rng.integers(low, high + 1))

    def _event(
        self, d: int, span: _Int, ts: _Float, fault: str, field_name: str = ""
    ) -> FaultEvent:
        return FaultEvent(
            self._ids[d], self._kind, field_name, fault, float(ts[span[0]]), float(ts[span[-1]])
        )

    def _candidates(
        self, faults: Sequence[str], n: int, rng: np.random.Generator
    ) -> list[tuple[int, str]]:
        picked = [(int(r), f) for f in faults for r in self._starts(f, n, rng)]
        return sorted(picked)  # in time order (readings are sorted by time)

    def lamp_faults(
        self, device: _Int, ts: _Float, values: _Float, rng: np.random.Generator
    ) -> list[FaultEvent]:
        """Lamps out at night, burning by day or drawing power off their rating (in place)."""
        if self._kind != "streetlight":
            return []
        groups = _Groups(device, ts)
        on_col, dim_col, power_col = map(self._spec.column, ("lamp_on", "dim_pct", "power_w"))
        busy = np.full(len(self._ids), -np.inf)
        events: list[FaultEvent] = []
        for reading, fault in self._candidates(LAMP_FAULTS, ts.size, rng):
            d = int(device[reading])
            length = self._length(fault, rng)
            factor = rng.uniform(0.45, 0.7) if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
            if ts[reading] <= busy[d]:
                continue
            series, offset = groups.series(reading)
            lit = values[series, on_col] == 1.0
            want_lit = fault != "day_burn"
            span = series[offset : offset + length]
            # The fault lasts while it makes sense: lamp_out only at night, day_burn only by day.
            matching = lit[offset : offset + length] == want_lit
            cut = int(np.argmin(matching)) if not matching.all() else matching.size
            span = span[:cut]
            if span.size == 0:
                continue
            if fault == "lamp_out":
                values[span, on_col] = 0.0
                values[span, power_col] = _STANDBY_W + rng.normal(0.0, 0.03, span.size)
            elif fault == "day_burn":
                values[span, on_col] = 1.0
                values[span, dim_col] = 100.0
                values[span, power_col] = self._rated[d] * (1 + rng.normal(0, 0.015, span.size))
            else:
                values[span, power_col] *= factor
            busy[d] = ts[span[-1]]
            field_name = "power_w" if fault == "power_off_rating" else ""
            events.append(self._event(d, span, ts, fault, field_name))
        return events

    def value_faults(
        self, device: _Int, ts: _Float, values: _Float, rng: np.random.Generator
    ) -> list[FaultEvent]:
        """Spikes, stuck sensors, drift and noise bursts on measured fields (in place)."""
        groups = _Groups(device, ts)
        busy = np.full(len(self._ids), -np.inf)
        events: list[FaultEvent] = []
        for reading, fault in self._candidates(VALUE_FAULTS, ts.size, rng):
            d = int(device[reading])
            field_name = self._fields[int(rng.integers(len(self._fields)))]
            length = self._length(fault, rng)
            sign = 1.0 if rng.random() < 0.5 else -1.0
            if ts[reading] <= busy[d]:
                continue
            col = self._spec.column(field_name)
            series, offset = groups.series(reading)
            length = min(length, series.size - offset)
            column = values[series, col]  # a copy: the inject_* helpers edit it in place
            if fault == "spike":
                # Upwards for fields bounded at zero, where a downward spike would only clip.
                spec = self._spec.fields[col]
                # A block holds only minutes of readings: its own spread says little about
                # the field, so the jump is at least a quarter of the level (or 20 steps of
                # the field's resolution), and stays inside the physical range so the
                # collector stores it rather than rejecting it.
                level = float(np.nanmean(np.abs(column))) if np.isfinite(column).any() else 0.0
                scale = max(0.25 * level, 20.0 * spec.resolution)
                inject_spike(column, offset, sign=sign if spec.low < 0 else 1.0, scale=scale)
                column[offset] = min(max(column[offset], spec.low), spec.high)
            elif fault == "stuck":
                inject_stuck(column, offset, length)
            elif fault == "drift":
                inject_drift(column, offset, length, total=6.0 * sign)
            else:
                inject_noise_burst(column, offset, length, rng)
            values[series, col] = column
            span = series[offset : offset + length]
            busy[d] = ts[span[-1]]
            events.append(self._event(d, span, ts, fault, field_name))
        return events

    def dropouts(
        self, device: _Int, ts: _Float, rng: np.random.Generator
    ) -> tuple[_Bool, list[FaultEvent]]:
        """Which readings are delivered, and the silent windows."""
        keep = np.ones(ts.size, dtype=np.bool_)
        groups = _Groups(device, ts)
        busy = np.full(len(self._ids), -np.inf)
        events: list[FaultEvent] = []
        for reading, fault in self._candidates(("dropout",), ts.size, rng):
            d = int(device[reading])
            length = self._length(fault, rng)
            if ts[reading] <= busy[d]:
                continue
            series, offset = groups.series(reading)
            delivered = keep[series]
            inject_dropout(delivered, offset, length)
            keep[series] = delivered
            span = series[offset : offset + length]
            busy[d] = ts[span[-1]]
            events.append(self._event(d, span, ts, fault))
        return keep, events


def message_faults(rates: FaultRates, n: int, rng: np.random.Generator) -> list[str]:
    """For n messages, the message fault of each ("" for none); at most one per message."""
    edges = np.cumsum([rates.get(f) for f in MESSAGE_FAULTS])
    draws = rng.random(n)
    index = np.searchsorted(edges, draws, side="right")
    names = (*MESSAGE_FAULTS, "")
    return [names[i] for i in index]


def _first_field(reading: dict[str, Any]) -> str | None:
    return next((k for k in reading if k != "ts"), None)


_Malformer = Callable[[Any, bytes], bytes]


def _truncated(body: Any, raw: bytes) -> bytes:
    return raw[: max(1, len(raw) // 2)]


def _not_json(body: Any, raw: bytes) -> bytes:
    return b"ERR sensor timeout"


def _not_utf8(body: Any, raw: bytes) -> bytes:
    return b"\xff\xfe" + raw


def _edit_first(body: Any, edit: Callable[[dict[str, Any]], None]) -> bytes:
    readings = body if isinstance(body, list) else [body]
    copies = [dict(r) for r in readings]
    edit(copies[0])
    out = copies if isinstance(body, list) else copies[0]
    return json.dumps(out, allow_nan=True, separators=(",", ":")).encode()


def _text_value(body: Any, raw: bytes) -> bytes:
    def edit(reading: dict[str, Any]) -> None:
        name = _first_field(reading)
        if name is not None:
            reading[name] = f"{reading[name]} units"

    return _edit_first(body, edit)


def _nan_value(body: Any, raw: bytes) -> bytes:
    def edit(reading: dict[str, Any]) -> None:
        name = _first_field(reading)
        if name is not None:
            reading[name] = float("nan")

    return _edit_first(body, edit)


def _no_timestamp(body: Any, raw: bytes) -> bytes:
    return _edit_first(body, lambda reading: reading.pop("ts", None))


_MALFORMERS: Final[tuple[_Malformer, ...]] = (
    _truncated,
    _not_json,
    _not_utf8,
    _text_value,
    _nan_value,
    _no_timestamp,
)


def malform(body: Any, raw: bytes, rng: np.random.Generator) -> bytes:
    """A corrupted payload: truncated, not JSON, not UTF-8, a text or NaN value, or no ts."""
    return _MALFORMERS[int(rng.integers(len(_MALFORMERS)))](body, raw)
