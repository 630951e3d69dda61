"""Live indicators kept as per-device arrays and updated one batch of readings at a time.

- Air: ISPU (P.14/2020) from 24-hour means kept as 24 hourly bins per station and pollutant; a
  mean counts with at least 18 of its 24 hours (75 %) reported. US AQI beside it from the
  same 24-hour PM2.5/PM10 means (EPA's 24-hour pollutants only; the 8-hour and 1-hour ones
  need windows the station state does not keep).
- Water: alert level from the gauge's registry thresholds, rate of rise (least squares over
  the last hour of the latest 32 readings) and hours to the next level at that rate.
- Streetlights: per lamp whether it works now, energy and day-burn hours of the local day;
  per district the share of lamps working among those that should be on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.indicators import (
    FloodThresholds,
    IndexResult,
    aqi_index,
    flood_level,
    ispu_index,
    lamp_should_be_off,
    lamp_should_be_on,
    lamp_working,
    next_level,
    time_to_next_level,
)
from processors.indicators.streetlight import local_day
from processors.state import OrderedBatch, SavedState, Scratch, StateField, columns_any, flat

__all__ = ["INDICATOR_INPUTS", "Indicators", "LiveIndicators"]

_ISPU: Final = ("pm10", "pm25", "so2", "co", "o3", "no2", "hc")
_AQI: Final = ("pm25", "pm10")  # EPA's 24-hour pollutants
_LEVEL: Final = "level_cm"
_LAMP: Final = ("lamp_on", "dim_pct", "power_w", "energy_wh")  # what _lamp_step reads
# Per kind and field, the live indicators that read it: the one declaration of their inputs.
# LiveIndicators picks its columns from it, and an anomaly that keeps a reading out of the
# indicators names these (its `kept_out`).
INDICATOR_INPUTS: Final[Mapping[str, Mapping[str, tuple[str, ...]]]] = MappingProxyType(
    {
        "air_quality": MappingProxyType(
            {p: ("ispu", "aqi") if p in _AQI else ("ispu",) for p in _ISPU}
        ),
        "water_level": MappingProxyType({_LEVEL: ("flood",)}),
        "streetlight": MappingProxyType({f: ("streetlight",) for f in _LAMP}),
    }
)
_RING: Final = 32
_INDEX_FIELDS: Final = ("reported", "category", "colour_hex", "critical")  # what is shown
_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.intp]


def _byte_sums(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Over the last axis, the sum of all bytes of the words (each byte 0 or 1, 3 words).

    The words' sum has bytes of at most 3 (no carries); times 0x0101... adds every byte
    into the top one.
    """
    total = words[..., 0] + words[..., 1]
    total += words[..., 2]
    total *= np.uint64(0x0101010101010101)
    total >>= np.uint64(56)
    return total


def _index_of(
    index: Callable[[Mapping[str, _Float]], IndexResult],
    conc: Mapping[str, _Float],
    rated: _Int,
) -> dict[str, npt.NDArray[Any]]:
    """The fields of `index(conc)` the indicators use, computed for the `rated` rows only.

    The other rows get the result of no concentration at all (NaN, empty labels), as
    computing them would give.
    """
    n = len(next(iter(conc.values())))
    if len(rated) == n:
        whole = index(conc)
        return {name: getattr(whole, name) for name in _INDEX_FIELDS}
    blank = _blank(index, tuple(conc))
    part = index({p: v[rated] for p, v in conc.items()}) if len(rated) else None
    fields = {}
    for name in _INDEX_FIELDS:
        field = np.repeat(blank[name], n)
        if part is not None:
            field[rated] = getattr(part, name)
        fields[name] = field
    return fields


@functools.cache
def _blank(
    index: Callable[[Mapping[str, _Float]], IndexResult], pollutants: tuple[str, ...]
) -> dict[str, npt.NDArray[Any]]:
    """The fields of the index of no concentration at all (one station; never changes)."""
    result = index({p: np.full(1, np.nan) for p in pollutants})
    return {name: getattr(result, name) for name in _INDEX_FIELDS}


@dataclass
class Indicators:
    """Indicator values per device row (`rows`) and per district, for one batch."""

    rows: _Int = field(default_factory=lambda: np.empty(0, np.intp))
    ts: _Float = field(default_factory=lambda: np.empty(0))
    numbers: dict[str, _Float] = field(default_factory=dict)
    labels: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    districts: dict[str, dict[str, float]] = field(default_factory=dict)
    district_ts: dict[str, float] = field(default_factory=dict)


class LiveIndicators(SavedState):
    """The live indicator state of one kind."""

    name = "LiveIndicators"  # the snapshot label (the class name, as saved before versions)
    version = 2  # 2: air_ts and air_value (what forget() may take back)
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("hour", -1),
        StateField("sums", 0.0),
        StateField("counts", 0.0),
        StateField("air_ts", np.nan),
        StateField("air_value", np.nan),
        StateField("ring_ts", np.nan),
        StateField("ring_level", np.nan),
        StateField("ring_next", 0),
        StateField("lamp_ts", np.nan),
        StateField("lamp_working", False),
        StateField("lamp_due", False),
        StateField("lamp_day", -1),
        StateField("energy_first", np.nan),
        StateField("energy_last", np.nan),
        StateField("burn_s", 0.0),
        StateField("burning", False),
    )

    def __init__(self, spec: KindSpec) -> None:
        self.spec = spec
        names = spec.field_names
        self.kind = spec.kind
        reads = INDICATOR_INPUTS.get(spec.kind, {})
        # Per catalog column, the indicators that read it ("ispu,aqi"; "" for none).
        self.inputs = tuple(",".join(reads.get(name, ())) for name in names)
        air = all("ispu" in reads.get(p, ()) and p in names for p in _ISPU)
        self._air = [names.index(p) for p in _ISPU] if air else []
        flood = _LEVEL in names and "flood" in reads.get(_LEVEL, ())
        self._level = names.index(_LEVEL) if flood else -1
        self.hour = np.full((0, 24), -1, dtype=np.int64)
        self.sums = np.zeros((0, len(self._air), 24))
        self._reported = [False] * len(self._air)  # pollutants ever summed (derived)
        self.counts = np.zeros((0, len(self._air), 24))
        # Per station and pollutant, the newest reading summed into the bins (time, value):
        # the only one forget() may take back.
        self.air_ts = np.full((0, len(self._air)), np.nan)
        self.air_value = np.full((0, len(self._air)), np.nan)
        self.ring_ts = np.full((0, _RING), np.nan)
        self.ring_level = np.full((0, _RING), np.nan)
        self.ring_next = np.zeros(0, dtype=np.int64)
        self.lamp_ts = np.full(0, np.nan)
        self.lamp_working = np.zeros(0, dtype=np.bool_)
        self.lamp_due = np.zeros(0, dtype=np.bool_)  # should be on at its latest reading
        self.lamp_day = np.full(0, -1, dtype=np.int64)
        self.energy_first = np.full(0, np.nan)
        self.energy_last = np.full(0, np.nan)
        self.burn_s = np.zeros(0)
        self.burning = np.zeros(0, dtype=np.bool_)
        self._scratch = Scratch()

    def recount(self) -> None:
        """Rederive what is derived from the state arrays (after they were replaced)."""
        if self._air:
            self._reported = [bool(x) for x in np.any(self.counts, axis=(0, 2)).reshape(-1)]

    def migrate(
        self, arrays: Mapping[str, npt.NDArray[Any]], version: int
    ) -> Mapping[str, npt.NDArray[Any]] | None:
        """Version 1 had no air_ts/air_value: unknown, so nothing learned before is forgotten."""
        if version != 1 or "hour" not in arrays:
            return None
        unknown = np.full((len(arrays["hour"]), len(self._air)), np.nan)
        return {**arrays, "air_ts": unknown, "air_value": unknown.copy()}

    def learn(
        self,
        order: OrderedBatch,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        facts: dict[str, _Float],
        *,
        carries: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Learn a batch of fresh readings, round-major (see order_batch), all fields.

        `carries` tells per field whether any reading has it usable (worked out if not given).
        """
        if len(order) == 0:
            return
        if self._air:
            self._air_learn(
                order, ts, values, present, columns_any(present) if carries is None else carries
            )
        bounds = list(zip(order.bounds[:-1], order.bounds[1:], strict=True))
        if self._level >= 0:
            for lo, hi in bounds:
                have = present[lo:hi, self._level]
                r = order.rows[: hi - lo][have]
                slot = self.ring_next[r] % _RING
                self.ring_ts[r, slot] = ts[lo:hi][have]
                self.ring_level[r, slot] = values[lo:hi, self._level][have]
                self.ring_next[r] += 1
        if self.kind == "streetlight":
            rows = order.rows[order.group]
            lat, lon = facts["lat"][rows], facts["lon"][rows]
            # The sun for every located reading at once, not per round.
            located = np.isfinite(lat) & np.isfinite(lon)
            up, due = np.zeros(len(ts), bool), np.zeros(len(ts), bool)
            if located.any():
                at = (lat[located], lon[located], ts[located])
                up[located], due[located] = lamp_should_be_off(*at), lamp_should_be_on(*at)
            for lo, hi in bounds:
                self._lamp_step(
                    order.rows[: hi - lo],
                    ts[lo:hi],
                    values[lo:hi],
                    present[lo:hi],
                    facts,
                    up[lo:hi],
                    due[lo:hi],
                )

    def _air_learn(
        self,
        order: OrderedBatch,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        carries: npt.NDArray[np.bool_],
    ) -> None:
        """Hourly bins: each (device, slot) ends with the newest hour it saw, summed in order.

        Reading by reading, a bin holding an older day's hour is reset and then summed into,
        readings older than the bin's hour are ignored. Readings come in time order per device,
        so the bin ends holding the newest hour among its old one and the batch's, with the old
        sums kept only if that is still the old hour: computed per (group, slot) at once.
        `values` and `present` have all catalog columns; `carries` whether any reading has
        each one.
        """
        hour = np.floor(ts / 3600.0).astype(np.int64)
        cells = len(order.rows) * 24
        # Floor division by a scalar and a product: numpy's integer modulo is several times
        # slower (and floors the same way).
        key = order.group * 24 + (hour - hour // 24 * 24)
        never = np.iinfo(np.int64).min
        newest = np.full(cells, never, dtype=np.int64)
        np.maximum.at(newest, key, hour)
        touched = np.flatnonzero(newest > never)
        group = touched // 24
        slot = touched - group * 24
        row = order.rows[group]
        hour_cells = row * 24 + slot
        old_hour = np.take(self.hour, hour_cells)
        final = np.maximum(old_hour, newest[touched])
        newest[touched] = final
        add = hour == newest[key]  # older readings than the bin's hour are ignored
        # Flat position of each touched bin of the first pollutant; a pollutant is 24 on.
        n_air = len(self._air)
        first = row * (n_air * 24) + slot
        moved = old_hour != final  # the bin starts a newer hour: its old sums are dropped
        if moved.any():
            dropped = (first[moved][:, None] + np.arange(n_air) * 24).reshape(-1)
            flat(self.sums)[dropped] = 0.0
            flat(self.counts)[dropped] = 0.0
        # Only the pollutants the batch has are summed into; the others' bins stay as they are.
        present_air = carries[self._air]
        has = [(j, self._air[j]) for j in np.flatnonzero(present_air).tolist()]
        if has:
            # The touched bins of each pollutant the batch has, pollutant by pollutant.
            bins = (np.array([j * 24 for j, _ in has])[:, None] + first).reshape(-1)
            sums, counts = np.take(self.sums, bins), np.take(self.counts, bins)
            compact = np.empty(cells, dtype=np.intp)
            compact[touched] = np.arange(len(touched))
            at = compact[key]  # each reading's bin among the touched ones
            n_bins = len(touched)
            every = None  # readings per bin, when every reading adds to every pollutant
            whole = []  # pollutants every reading added to: newest summed is each newest
            for k, (j, column) in enumerate(has):
                use = np.logical_and(present[:, column], add)
                where = at + k * n_bins
                # The old sum first, then the readings in time order (round-major order is
                # time order per device): the same additions, in the same order, as one at a
                # time. Counts are whole numbers: added up in any order, they are exact.
                if use.all():
                    np.add.at(sums, where, values[:, column])
                    if every is None:
                        every = np.bincount(at, minlength=n_bins).astype(np.float64)
                    counts[k * n_bins : (k + 1) * n_bins] += every
                    whole.append((j, column))
                elif use.any():
                    np.add.at(sums, where[use], values[use, column])
                    np.add.at(counts, where[use], 1.0)
                    # Round-major: a later position is a later reading of the station.
                    newest = np.full(len(order.rows), -1, dtype=np.intp)
                    used = np.flatnonzero(use)
                    np.maximum.at(newest, order.group[used], used)
                    by = newest >= 0
                    self.air_ts[order.rows[by], j] = ts[newest[by]]
                    self.air_value[order.rows[by], j] = values[newest[by], column]
                else:
                    continue
                self._reported[j] = True
            if len(whole) == n_air:  # the usual batch: whole rows, as cheap as it gets
                newest_ts = np.take(ts, order.last)
                self.air_ts[order.rows] = newest_ts[:, None]
                self.air_value[order.rows] = np.take(values, order.last, axis=0)[:, self._air]
            elif whole:
                js, columns = (np.array(x) for x in zip(*whole, strict=True))
                self.air_ts[order.rows[:, None], js] = np.take(ts, order.last)[:, None]
                self.air_value[order.rows[:, None], js] = np.take(
                    values[order.last], columns, axis=1
                )
            flat(self.sums)[bins] = sums
            flat(self.counts)[bins] = counts
        flat(self.hour)[hour_cells] = final

    def _lamp_step(
        self,
        rows: _Int,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        facts: dict[str, _Float],
        up: npt.NDArray[np.bool_],
        due: npt.NDArray[np.bool_],
    ) -> None:
        col = self.spec.column

        def get(name: str) -> _Float:
            column = col(name)
            result: _Float = np.where(present[:, column], values[:, column], np.nan)
            return result

        rated = facts["rated_w"][rows]
        day = local_day(ts)
        new_day = day != self.lamp_day[rows]
        energy = get("energy_wh")
        first = np.where(new_day, energy, self.energy_first[rows])
        self.energy_first[rows] = np.where(np.isnan(first), energy, first)
        self.energy_last[rows] = np.where(np.isnan(energy), self.energy_last[rows], energy)
        # Day-burn: time lit since the previous reading, counted when the sun is up now.
        elapsed = np.nan_to_num(ts - self.lamp_ts[rows], nan=0.0)
        burn = np.where(new_day, 0.0, self.burn_s[rows])
        self.burn_s[rows] = burn + np.where(self.burning[rows] & up, elapsed, 0.0)
        on = get("lamp_on") == 1.0
        self.burning[rows] = on
        self.lamp_day[rows] = day
        self.lamp_ts[rows] = ts
        self.lamp_working[rows] = lamp_working(
            get("lamp_on"), get("dim_pct"), get("power_w"), rated
        )
        self.lamp_due[rows] = due

    def forget(self, rows: _Int, ts: _Float, column: _Int, value: _Float) -> npt.NDArray[np.bool_]:
        """Take readings already learned back out of the indicators; which ones it could.

        For the spike detector, which decides one reading later: the reading it names is then
        the newest learned of its device and field. What can be taken back:
        - air: the newest reading summed per station and pollutant (same time and value),
          subtracted from its hourly bin while the bin still holds that hour (a bin left
          without readings is exactly empty again); an older one is not known any more;
        - flood: a reading still in the gauge's ring (same time and level), which closes up so
          that the ring is again its latest readings in order. The reading the ring dropped
          when this one came in is gone: the ring holds one reading fewer until the next one
          (which the spike's own decision brings, in the same batch).
        - streetlights: nothing. A lamp's state is that of its newest reading, and the
          reading that decides a spike replaces it; the day's energy and burn hours that an
          earlier reading moved cannot be told apart from the others.
        """
        rows, column = np.asarray(rows, dtype=np.intp), np.asarray(column, dtype=np.intp)
        ts, value = np.asarray(ts, dtype=np.float64), np.asarray(value, dtype=np.float64)
        taken = np.zeros(len(rows), dtype=np.bool_)
        if self._air:
            pollutant = np.full(len(self.spec.fields), -1, dtype=np.intp)
            pollutant[self._air] = np.arange(len(self._air))
            j = pollutant[column]
            air = np.flatnonzero(j >= 0)
            taken[air] = self._air_forget(rows[air], j[air], ts[air], value[air])
        if self._level >= 0:
            level = np.flatnonzero(column == self._level)
            taken[level] = self._flood_forget(rows[level], ts[level], value[level])
        return taken

    def _air_forget(self, rows: _Int, j: _Int, ts: _Float, value: _Float) -> npt.NDArray[np.bool_]:
        """Subtract each station's newest summed reading of a pollutant, if it is the one named."""
        hour = np.floor(ts / 3600.0).astype(np.int64)
        slot = hour - hour // 24 * 24
        match = (self.air_ts[rows, j] == ts) & (self.air_value[rows, j] == value)
        match &= self.hour[rows, slot] == hour  # the bin still holds that hour
        # Each (station, pollutant) once, should it be named twice.
        named = np.flatnonzero(match)
        _, once = np.unique(rows[named] * len(self._air) + j[named], return_index=True)
        mine = np.zeros(len(rows), dtype=np.bool_)
        mine[named[once]] = True
        r, p, s = rows[mine], j[mine], slot[mine]
        self.sums[r, p, s] -= value[mine]
        self.counts[r, p, s] -= 1.0
        # An emptied bin is exactly empty (no rounding left over from the subtraction).
        self.sums[r, p, s] = np.where(self.counts[r, p, s] > 0, self.sums[r, p, s], 0.0)
        self.air_ts[r, p] = np.nan  # taken back once
        return mine

    def _flood_forget(self, rows: _Int, ts: _Float, level: _Float) -> npt.NDArray[np.bool_]:
        """Remove readings from the gauges' rings, closing up the newer ones; which were found."""
        taken = np.zeros(len(rows), dtype=np.bool_)
        if len(rows) == 0:
            return taken
        # One per gauge at a time (a ring closes up around one reading), the rest after.
        _, once = np.unique(rows, return_index=True)
        rest = np.ones(len(rows), dtype=np.bool_)
        rest[once] = False
        r = rows[once]
        # The ring oldest first: ordinal n - 32 + c sits in slot (n - 32 + c) % 32.
        n = self.ring_next[r]
        slots = (n[:, None] + np.arange(_RING) - _RING) % _RING
        ring_ts = np.take_along_axis(self.ring_ts[r], slots, axis=1)
        ring_level = np.take_along_axis(self.ring_level[r], slots, axis=1)
        match = (ring_ts == ts[once, None]) & (ring_level == level[once, None])
        found = match.any(axis=1)
        if found.any():
            r, n, slots, match = r[found], n[found], slots[found], match[found]
            ring_ts, ring_level = ring_ts[found], ring_level[found]
            at = match.argmax(axis=1)
            # Close up: drop position `at`, the slot before the oldest (lost) becomes empty.
            c = np.arange(_RING)
            source = np.where(c[None, :] <= at[:, None], c - 1, c)
            new_slots = (n[:, None] - 1 + c - _RING) % _RING
            for ring, kept in ((self.ring_ts, ring_ts), (self.ring_level, ring_level)):
                moved = np.take_along_axis(kept, np.maximum(source, 0), axis=1)
                moved[:, 0] = np.nan
                ring[r[:, None], new_slots] = moved
            self.ring_next[r] = n - 1
            taken[once[found]] = True
        if rest.any():
            later = np.flatnonzero(rest)
            taken[later] = self._flood_forget(rows[later], ts[later], level[later])
        return taken

    def compute(
        self,
        rows: _Int,
        facts: dict[str, _Float],
        districts: npt.NDArray[Any],
        now: float,
        latest: _Float,
    ) -> Indicators:
        """Current indicators of the given devices (and of their districts).

        `latest` holds each device's newest reading time: what an air indicator is as of.
        """
        rows = np.asarray(rows)
        if rows.ndim != 1 or not (rows[1:] > rows[:-1]).all():  # sorted unique: as they are
            rows = np.unique(rows)
        out = Indicators(rows=rows)
        if len(rows) == 0:
            return out
        if self._air:
            self._air_indicators(rows, out)
            out.ts = latest[rows].astype(np.float64)
        elif self._level >= 0:
            self._flood_indicators(rows, facts, out)
        elif self.kind == "streetlight":
            self._lamp_indicators(rows, districts, now, out)
        return out

    def _air_indicators(self, rows: _Int, out: Indicators) -> None:
        n = len(rows)
        lo = int(rows[0])
        contiguous = int(rows[-1]) - lo == n - 1  # sorted unique rows: a slice, no gathers
        hour = self.hour[lo : lo + n] if contiguous else np.take(self.hour, rows, axis=0)
        newest = hour.max(axis=1)
        means = np.full((n, len(_ISPU)), np.nan)
        # Only pollutants some station ever reported: the others' means are NaN anyway.
        reported = np.flatnonzero(self._reported)
        rated = np.zeros(0, dtype=np.intp)  # stations with some 24-hour mean
        if len(reported):
            recent = hour > (newest - 24)[:, None]  # the station's last 24 h
            rated = self._air_means(rows, lo, contiguous, recent, reported, means)
        # Only stations with a mean have an index: the others get the index of nothing.
        result = _index_of(ispu_index, {p: means[:, i] for i, p in enumerate(_ISPU)}, rated)
        aqi = _index_of(aqi_index, {p: means[:, _ISPU.index(p)] for p in _AQI}, rated)
        out.numbers = {"ispu": result["reported"], "aqi": aqi["reported"]}
        out.labels = {
            "ispu_category": result["category"],
            "ispu_colour": result["colour_hex"],
            "ispu_critical": result["critical"],
            "aqi_category": aqi["category"],
        }

    def _air_means(
        self,
        rows: _Int,
        lo: int,
        contiguous: bool,
        recent: npt.NDArray[np.bool_],
        reported: _Int,
        means: _Float,
    ) -> _Int:
        """24-hour means (of the stations with 18 hours of data) into `means`; those stations.

        A mean counts with at least 18 of its 24 hours (75 %) reported: the sums are only
        worked out where they are, the other means stay NaN.
        """
        sums, counts = self._air_bins(rows, lo, contiguous)
        # Bins with data, and those in the window: 24 flag bytes (0 or 1) per station and
        # pollutant as 3 words, so the masks combine 8 bins per operation.
        has = np.not_equal(counts, 0.0, out=self._scratch("has", counts.shape, np.bool_))
        has_words = has.view(np.uint64)
        in_window = has_words & recent.view(np.uint64)[:, None, :]
        enough = _byte_sums(in_window)[:, reported] >= 18  # 75 % of 24 hours
        wanted = enough[:, 0].copy()
        for j in range(1, len(reported)):
            wanted |= enough[:, j]
        need = np.flatnonzero(wanted)
        if len(need) == 0:
            return need
        # Outside the window every bin counts as zero. A bin without data holds zeros
        # already (sums and counts are reset and added together), so the plain sums are those
        # of the masked bins, operation for operation, except for stations with data outside
        # the window: those are masked as such.
        outside = np.flatnonzero((has_words[need] != in_window[need]).reshape(len(need), -1))
        stale = np.unique(outside // (3 * len(self._air)))
        window = np.take(recent, need[stale], axis=0).astype(np.float64)
        total = np.empty((len(need), len(reported)))
        count = np.empty((len(need), len(reported)))
        every = len(need) == len(rows)
        for j, i in enumerate(reported.tolist()):
            for bins, into in ((sums, total), (counts, count)):
                of = bins[:, i, :] if every else bins[need, i, :]
                if into is count:  # whole numbers: exact in any order, so einsum's (faster)
                    into[:, j] = np.einsum("ij->i", of)
                else:  # numpy's sum, as the 24-hour mean has always been added up
                    into[:, j] = of.sum(axis=1)
                if len(stale):
                    into[stale, j] = (of[stale] * window).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        means[need[:, None], reported] = np.where(enough[need], mean, np.nan)
        return need

    def _air_bins(self, rows: _Int, lo: int, contiguous: bool) -> tuple[_Float, _Float]:
        """The hourly sums and counts of the stations (views when the rows are a slice)."""
        if contiguous:
            return self.sums[lo : lo + len(rows)], self.counts[lo : lo + len(rows)]
        # Fresh copies, not scratch: as large as the state itself for a whole fleet.
        return np.take(self.sums, rows, axis=0), np.take(self.counts, rows, axis=0)

    def _flood_indicators(self, rows: _Int, facts: dict[str, _Float], out: Indicators) -> None:
        ring_ts, ring_level = self.ring_ts[rows], self.ring_level[rows]
        latest_slot = (self.ring_next[rows] - 1) % _RING
        ts = ring_ts[np.arange(len(rows)), latest_slot]
        level = ring_level[np.arange(len(rows)), latest_slot]
        window = ~np.isnan(ring_ts) & (ring_ts > (ts - 3600.0)[:, None])
        n = window.sum(axis=1)
        t = np.where(window, (ring_ts - ts[:, None]) / 3600.0, 0.0)
        y = np.where(window, ring_level, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_mean, y_mean = t.sum(1) / n, y.sum(1) / n
            cov = (np.where(window, (t - t_mean[:, None]) * (y - y_mean[:, None]), 0.0)).sum(1)
            var = (np.where(window, (t - t_mean[:, None]) ** 2, 0.0)).sum(1)
            rate = np.where((n >= 2) & (var > 0), cov / var, np.nan)
        thresholds = FloodThresholds(
            facts["waspada_cm"][rows], facts["siaga_cm"][rows], facts["awas_cm"][rows]
        )
        alert = flood_level(level, thresholds)
        following, _ = next_level(level, thresholds)
        out.ts = ts
        has_thresholds = ~np.isnan(facts["waspada_cm"][rows])
        out.numbers = {
            "level_cm": level,
            "rate_cm_h": rate,
            "flood_level": np.where(has_thresholds, alert.astype(np.float64), np.nan),
            "hours_to_next_level": np.where(
                has_thresholds, time_to_next_level(level, rate, thresholds), np.nan
            ),
            "next_level": np.where(has_thresholds, following.astype(np.float64), np.nan),
        }
        names = np.array(["", "Normal", "Waspada", "Siaga", "Awas"], dtype=object)
        out.labels = {"flood_status": np.where(has_thresholds, names[alert.astype(int) + 1], "")}

    def _lamp_indicators(
        self, rows: _Int, districts: npt.NDArray[Any], now: float, out: Indicators
    ) -> None:
        out.ts = self.lamp_ts[rows]
        energy = self.energy_last[rows] - self.energy_first[rows]
        out.numbers = {
            "working": self.lamp_working[rows].astype(np.float64),
            "energy_today_wh": np.where(energy >= 0, energy, np.nan),  # a counter reset today
            "day_burn_h_today": self.burn_s[rows] / 3600.0,
        }
        fresh = now - self.lamp_ts < 3 * 3600.0
        for district in sorted({str(d) for d in districts[rows]}):
            mine = (districts[: len(self.lamp_ts)] == district) & fresh
            due = mine & self.lamp_due
            total_energy = self.energy_last[mine] - self.energy_first[mine]
            out.districts[district] = {
                "availability": float(self.lamp_working[due].mean()) if due.any() else float("nan"),
                "lamps_due": float(due.sum()),
                "lamps_reporting": float(mine.sum()),
                "energy_today_wh": float(np.nansum(np.where(total_energy >= 0, total_energy, 0.0))),
                "day_burn_h_today": float(self.burn_s[mine].sum() / 3600.0),
            }
            out.district_ts[district] = float(np.nanmax(self.lamp_ts[mine])) if mine.any() else now
