"""Slow, obviously correct twins of the vectorised detectors: one reading at a time, dicts.

They take the same batch semantics as KindProcessor (sort by device and time, skip readings
not newer than the last one processed for the device) and must give the same decisions and
scores; tests/test_detectors_reference.py checks that with hypothesis.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from processors.catalog import KindSpec

__all__ = ["ReferenceBank", "ReferenceDrift", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One judged reading: detector, reading reference, field (-1: device), decision, score."""

    detector: str
    ref: int
    field: int
    flag: bool
    score: float


@dataclass
class _FieldState:
    prev: float | None = None
    mid: float | None = None
    mid_ref: int = -1
    scale: float | None = None
    learned: int = 0
    last: float | None = None
    run: int = 0
    typical: float = 0.0
    runs: int = 0
    rate_last: float | None = None
    rate_ts: float | None = None


@dataclass
class _DeviceState:
    last_ts: float | None = None
    learned_interval: float | None = None
    fields: dict[int, _FieldState] = field(default_factory=dict)
    rain: float = 0.0
    rain_ts: float | None = None


class ReferenceBank:
    """The reference twin of KindProcessor's spike, stuck, rate, flood-rise and gap detectors."""

    def __init__(
        self,
        spec: KindSpec,
        *,
        spike_threshold: float = 10.0,
        spike_alpha: float = 0.05,
        spike_warmup: int = 10,
        stuck_min_run: int = 6,
        stuck_factor: float = 3.0,
        stuck_decay: float = 0.999,
        stuck_warmup_runs: int = 20,
        gap_factor: float = 3.0,
        gap_alpha: float = 0.1,
    ) -> None:
        self.spec = spec
        self.p = dict(
            spike_threshold=spike_threshold,
            spike_alpha=spike_alpha,
            spike_warmup=spike_warmup,
            stuck_min_run=stuck_min_run,
            stuck_factor=stuck_factor,
            stuck_decay=stuck_decay,
            stuck_warmup_runs=stuck_warmup_runs,
            gap_factor=gap_factor,
            gap_alpha=gap_alpha,
        )
        self.devices: dict[str, _DeviceState] = {}

    def process(
        self,
        device_ids: list[str],
        ts: list[float],
        values: list[list[float]],
        present: list[list[bool]],
    ) -> list[Verdict]:
        """Judge a batch reading by reading, in (device, time) order."""
        verdicts: list[Verdict] = []
        order = sorted(range(len(ts)), key=lambda i: (device_ids[i], ts[i]))
        previous: tuple[str, float] | None = None
        for i in order:
            key = (device_ids[i], ts[i])
            state = self.devices.setdefault(device_ids[i], _DeviceState())
            duplicate = key == previous
            previous = key
            if duplicate or (state.last_ts is not None and ts[i] <= state.last_ts):
                continue
            verdicts += self._reading(state, i, ts[i], values[i], present[i])
        return verdicts

    def _usable(self, j: int, value: float, present: bool) -> bool:
        spec = self.spec.fields[j]
        return present and math.isfinite(value) and spec.low <= value <= spec.high

    def _reading(
        self, state: _DeviceState, ref: int, ts: float, values: list[float], present: list[bool]
    ) -> list[Verdict]:
        out: list[Verdict] = []
        out += self._gap(state, ref, ts)
        rain = self._rain(state, ts, values, present)
        for j, spec in enumerate(self.spec.fields):
            if not self._usable(j, values[j], present[j]):
                continue
            fs = state.fields.setdefault(j, _FieldState())
            v = values[j]
            out += self._spike(fs, ref, j, v, spec.resolution)
            out += self._stuck(fs, ref, j, v, spec.varies)
            out += self._rate(fs, ref, j, v, ts, spec.max_rate_per_h, spec.name, rain)
        state.last_ts = ts
        return out

    def _spike(
        self, fs: _FieldState, ref: int, j: int, v: float, resolution: float
    ) -> list[Verdict]:
        p = self.p
        out: list[Verdict] = []
        if fs.prev is not None and fs.mid is not None:
            scale = max(fs.scale if fs.scale is not None else resolution, resolution)
            limit = p["spike_threshold"] * scale
            s = abs(fs.mid - (fs.prev + v) / 2.0) - abs(v - fs.prev) / 2.0
            spike = fs.learned >= p["spike_warmup"] and s > limit
            out.append(Verdict("spike", fs.mid_ref, j, spike, min(1.0, max(0.0, s / (2 * limit)))))
            if not spike:
                step = abs(fs.mid - fs.prev)
                if step > 0:
                    if fs.learned >= p["spike_warmup"]:
                        step = min(step, 3.0 * scale)
                    fs.scale = (
                        step
                        if fs.scale is None
                        else fs.scale + p["spike_alpha"] * (step - fs.scale)
                    )
                    fs.learned += 1
                fs.prev = fs.mid
        elif fs.mid is not None:
            fs.prev = fs.mid
        fs.mid, fs.mid_ref = v, ref
        return out

    def _stuck(self, fs: _FieldState, ref: int, j: int, v: float, varies: bool) -> list[Verdict]:
        p = self.p

        def limit() -> float:
            return max(float(p["stuck_min_run"]), math.ceil(p["stuck_factor"] * fs.typical))

        same = fs.last is not None and v == fs.last
        if not same and fs.run > 0 and fs.run < limit():
            fs.typical = max(fs.typical * p["stuck_decay"], fs.run)
            fs.runs += 1
        fs.run = fs.run + 1 if same else 1
        fs.last = v
        if not varies:
            return []
        stuck = fs.runs >= p["stuck_warmup_runs"] and fs.run >= limit()
        return [Verdict("stuck", ref, j, stuck, min(1.0, fs.run / limit()))]

    def _rate(
        self,
        fs: _FieldState,
        ref: int,
        j: int,
        v: float,
        ts: float,
        max_rate: float,
        name: str,
        rain: float | None,
    ) -> list[Verdict]:
        out: list[Verdict] = []
        if fs.rate_last is not None and fs.rate_ts is not None and ts > fs.rate_ts:
            hours = (ts - fs.rate_ts) / 3600.0
            rate = abs(v - fs.rate_last) / hours
            fast = rate > max_rate
            score = min(1.0, max(0.0, rate / (2 * max_rate)))
            flood = (
                fast
                and name == "level_cm"
                and rain is not None
                and v > fs.rate_last
                and rain >= 0.5
            )
            out.append(Verdict("rate_of_change", ref, j, fast and not flood, score))
            if flood:
                out.append(Verdict("flood_rise", ref, j, True, score))
        fs.rate_last, fs.rate_ts = v, ts
        return out

    def _rain(
        self, state: _DeviceState, ts: float, values: list[float], present: list[bool]
    ) -> float | None:
        names = self.spec.field_names
        if "rain_mm" not in names or "level_cm" not in names:
            return None
        j = names.index("rain_mm")
        elapsed = math.inf if state.rain_ts is None else (ts - state.rain_ts) / 3600.0
        decayed = state.rain * math.exp(-max(elapsed, 0.0) / 3.0)
        fresh = values[j] if self._usable(j, values[j], present[j]) else 0.0
        state.rain = decayed + fresh
        state.rain_ts = ts
        return state.rain

    def _gap(self, state: _DeviceState, ref: int, ts: float) -> list[Verdict]:
        p = self.p
        if state.last_ts is None:
            return []
        gap = ts - state.last_ts
        interval = state.learned_interval
        ended = interval is not None and gap > p["gap_factor"] * interval
        score = (
            0.0 if interval is None else min(1.0, max(0.0, gap / (2 * p["gap_factor"] * interval)))
        )
        if gap > 0 and (interval is None or not ended):
            spacing = max(gap, 1.0)
            state.learned_interval = (
                spacing if interval is None else interval + p["gap_alpha"] * (spacing - interval)
            )
        return [Verdict("dropout", ref, -1, ended, score)]


@dataclass
class _DriftCell:
    """One device and field of the drift twin."""

    mean: float | None = None
    spread: float | None = None
    learned: int = 0
    z: float | None = None  # latest standardised value, for the peers
    z_ts: float = -math.inf
    lo: float | None = None  # the least and greatest z of the window at z_ts (ordered: else z)
    hi: float | None = None
    history: list[tuple[float, float]] = field(default_factory=list)  # (bucket, z), ordered
    fast: float | None = None
    base: float | None = None
    r_spread: float | None = None
    r_learned: int = 0


def _learn(
    x: float, n: int, mean: float | None, spread: float | None, rate: float, spread_rate: float
) -> tuple[float, float | None]:
    """Running mean and mean absolute deviation (rate 1/n at first, then the EWMA rates)."""
    if n == 0 or mean is None:
        return x, None
    new_mean = mean + max(rate, 1.0 / (n + 1)) * (x - mean)
    dev = abs(x - mean)
    if spread is None:
        return new_mean, dev
    return new_mean, spread + max(spread_rate, 1.0 / n) * (dev - spread)


class ReferenceDrift:
    """The reference twin of DriftDetector as KindProcessor runs it (rounds, peer groups).

    `peer_order`: the registry's order of each device ordered along a river (see the drift
    module's envelopes); its group is the one given, else its district, as in the bank.
    """

    def __init__(
        self,
        spec: KindSpec,
        *,
        threshold: float = 4.0,
        fast: float = 1 / 48,
        slow: float = 1 / 336,
        spread_rate: float = 1 / 1344,
        warmup: int = 168,
        min_stations: int = 3,
        max_lag_s: float = 3 * 3600.0,
        floor: float = 0.05,
        winsor: float = 8.0,
        lag_s: float = 12 * 3600.0,
        buckets: int = 4,
        peer_order: Mapping[str, float] | None = None,
    ) -> None:
        self.spec = spec
        self.winsor = winsor
        self.bucket_s = lag_s / buckets
        self.buckets = buckets
        self.ordered = {d for d, k in (peer_order or {}).items() if math.isfinite(k)}
        self.threshold = threshold
        self.fast = fast
        self.slow = slow
        self.spread_rate = spread_rate
        self.warmup = warmup
        self.min_stations = min_stations
        self.max_lag_s = max_lag_s
        self.floor = floor
        self.last_ts: dict[str, float] = {}
        self.group: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}  # peer group -> its devices
        self.cells: dict[tuple[str, int], _DriftCell] = {}

    def process(
        self,
        device_ids: list[str],
        ts: list[float],
        values: list[list[float]],
        present: list[list[bool]],
        districts: list[str] | None = None,
        groups: list[str] | None = None,
    ) -> list[Verdict]:
        """Judge a batch: round k holds each device's k-th new reading, in time order."""
        if groups is None:
            groups = districts
        elif districts is not None:
            groups = [g or d for g, d in zip(groups, districts, strict=True)]
        if groups is not None:
            for device, name in zip(device_ids, groups, strict=True):
                if device in self.group:
                    self.members[self.group[device]].discard(device)
                self.group[device] = name
                self.members.setdefault(name, set()).add(device)
        order = sorted(range(len(ts)), key=lambda i: (device_ids[i], ts[i]))
        rounds: list[list[int]] = []
        rank: dict[str, int] = {}
        previous: tuple[str, float] | None = None
        for i in order:
            device = device_ids[i]
            duplicate = (device, ts[i]) == previous
            previous = (device, ts[i])
            if duplicate or ts[i] <= self.last_ts.get(device, -math.inf):
                continue
            k = rank.get(device, 0)
            rank[device] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(i)
        verdicts: list[Verdict] = []
        for readings in rounds:
            verdicts += self._round(readings, device_ids, ts, values, present)
            for i in readings:
                self.last_ts[device_ids[i]] = ts[i]
        return verdicts

    def _round(
        self,
        readings: list[int],
        device_ids: list[str],
        ts: list[float],
        values: list[list[float]],
        present: list[list[bool]],
    ) -> list[Verdict]:
        fields = range(len(self.spec.fields))
        usable = {
            (i, j): present[i][j]
            and math.isfinite(values[i][j])
            and self.spec.fields[j].low <= values[i][j] <= self.spec.fields[j].high
            for i in readings
            for j in fields
        }
        # First every reading's z (and envelope), stored for the peers; then the group medians.
        z: dict[tuple[int, int], float | None] = {}
        for i in readings:
            for j in fields:
                cell = self.cells.setdefault((device_ids[i], j), _DriftCell())
                z[i, j] = None
                if (
                    usable[i, j]
                    and cell.learned >= self.warmup
                    and cell.mean is not None
                    and cell.spread is not None
                    and cell.spread > 1e-9 * max(1.0, abs(cell.mean))
                ):
                    zed = (values[i][j] - cell.mean) / cell.spread
                    z[i, j] = zed
                    cell.z, cell.z_ts = zed, ts[i]
                    cell.lo = cell.hi = zed
                    if device_ids[i] in self.ordered:
                        now = math.floor(ts[i] / self.bucket_s)
                        cell.history.append((now, zed))
                        cell.history = [(b, v) for b, v in cell.history if b > now - self.buckets]
                        cell.lo = min(v for _, v in cell.history)
                        cell.hi = max(v for _, v in cell.history)
        out: list[Verdict] = []
        for i in readings:
            device = device_ids[i]
            for j in fields:
                if not usable[i, j]:
                    continue
                cell = self.cells[device, j]
                zij = z[i, j]
                low, high, count = self._median(self.group.get(device), j)
                r = None
                if zij is not None and low is not None and count >= self.min_stations:
                    assert high is not None and cell.lo is not None and cell.hi is not None
                    # The gap between the envelopes: z - median without a peer_order.
                    r = 0.0
                    if cell.lo - high > 0:
                        r = cell.lo - high
                    elif cell.hi - low < 0:
                        r = cell.hi - low
                    clipped = r
                    if cell.base is not None and cell.r_spread is not None:
                        reach = self.winsor * max(cell.r_spread, self.floor)
                        clipped = min(max(r, cell.base - reach), cell.base + reach)
                    cell.fast = (
                        clipped
                        if cell.fast is None
                        else cell.fast + self.fast * (clipped - cell.fast)
                    )
                departure = 0.0
                judged = (
                    r is not None and cell.r_learned >= self.warmup and cell.r_spread is not None
                )
                if judged:
                    assert cell.fast is not None and cell.base is not None
                    assert cell.r_spread is not None
                    departure = abs(cell.fast - cell.base) / max(cell.r_spread, self.floor)
                    score = min(1.0, max(0.0, departure / (2 * self.threshold)))
                    out.append(Verdict("drift", i, j, departure > self.threshold, score))
                if judged and departure > self.threshold / 2:
                    continue  # a departure is building up: learn nothing
                cell.mean, cell.spread = _learn(
                    values[i][j], cell.learned, cell.mean, cell.spread, self.slow, self.spread_rate
                )
                cell.learned += 1
                if r is not None:
                    cell.base, cell.r_spread = _learn(
                        r, cell.r_learned, cell.base, cell.r_spread, self.slow, self.spread_rate
                    )
                    cell.r_learned += 1
        return out

    def _median(self, group: str | None, j: int) -> tuple[float | None, float | None, int]:
        """Medians of the least and greatest fresh latest z of a group's devices in field j.

        Both are the median of z where no device has a peer_order; and how many were fresh.
        """
        if group is None:
            return None, None, 0
        latest = [
            cell
            for device in self.members.get(group, ())
            if (cell := self.cells.get((device, j))) is not None and cell.z is not None
        ]
        if not latest:
            return None, None, 0
        newest = max(cell.z_ts for cell in latest)
        fresh = [cell for cell in latest if cell.z_ts >= newest - self.max_lag_s]
        low = statistics.median(cell.lo for cell in fresh if cell.lo is not None)
        high = statistics.median(cell.hi for cell in fresh if cell.hi is not None)
        return low, high, len(fresh)
