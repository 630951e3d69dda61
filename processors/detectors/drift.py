"""Drift of a station against the other stations of its peer group (peer-based).

A peer group is what the registry says sees the same signal: the gauges of one river, the
air stations of one airshed, the lamps of one circuit (`peer_group`; the bank falls back to a
device's district when it has none). What drift means here, per device and field:

1. The device's value is standardised against its own slow baseline: z = (x - mean) / spread,
   mean an EWMA over about `1 / slow` readings (two weeks of hourly data), spread the mean
   absolute deviation over about `1 / spread_rate` readings (eight weeks: slower, so a drift
   that slips in before learning stops cannot inflate it much). z is undefined until
   `warmup` readings have been learned.
2. The group reference is the median of the latest z of every device of the group (the device
   itself included) that reported that field within `max_lag_s` of the group's newest such
   reading. With at least `min_stations` (3) devices the median sits between healthy
   stations, so one faulty station cannot drag it; its residual r = z - median then holds
   the station's own departure and none of the weather or pollution episodes that move the
   whole group.
3. Gauges ordered along a river (a registry `peer_order`) see one flood wave at different
   times, the upstream one first. For them z is widened to its envelope: the least and the
   greatest z of the device over the last `buckets` time buckets of `lag_s / buckets` each
   (between 3/4 and all of `lag_s`, 12 h: the wave's travel from the first gauge to the last
   must fit in it). The group reference is then the envelope of the medians (the median of
   the members' least z, the median of their greatest z), and r the gap between the device's
   envelope and the group's: 0 where they overlap. A wave that has reached a gauge within
   `lag_s` lies in its envelope, so while it travels from one gauge to the next the envelopes
   of the gauges it has passed and of those it has not overlap and r stays 0; a drift shifts
   the whole envelope of one gauge and r grows with it, less the envelopes' width. Without a
   `peer_order` the envelope is z itself and r is exactly z - median.
4. r has a slow baseline (mean and mean absolute deviation, same rates) and a fast EWMA
   (about `1 / fast` readings: two days, so flood waves and daily cycles average out while a
   drift over days to weeks still shows). A residual enters the fast EWMA clipped to
   `winsor` (8) baseline deviations from the baseline: a flood wave reaching one gauge hours
   before its peers throws r far for a few readings, a drift moves it steadily; unclipped,
   the wave moved the fast EWMA as much as days of drift (on the evaluation's river gauges
   clipping took drift precision from 0.60 to 0.90 at a small cost in recall, and the false
   alarms on the clean series from 16 to none). Drift is flagged when the fast EWMA departs from
   the slow baseline by more than `threshold` baseline deviations, once `warmup` residuals
   are learned. Weak, uncorrelated peers (a managed gate among river gauges) make r noisy
   and drift harder to see.
5. While the departure exceeds half the threshold nothing is learned (neither the value
   baseline nor the residual baseline), so a slow drift cannot drag its own reference along.
   The flag therefore persists until the station comes back (e.g. is recalibrated).

What it cannot find: a drift shared by the whole group (or by half of it or more, which
moves the median), a drift in a group with fewer than `min_stations` stations reporting
the field (with two, either could be the one drifting, so neither is judged), a device with
no group, a drift slower than the baseline (slower than about `1 / slow` readings per
threshold), a drift that starts during warm-up (it becomes the baseline), and, on an ordered
river, a drift smaller than the width of the gauges' envelopes.

Rounds are judged as the bank delivers them: each round first stores the z (and envelopes)
of its readings, then computes the group medians, so peers reported in the same round are
compared with each other. The medians of a round come from `PeerLanes`: the latest z of each
judged group's devices laid out as one lane per group and field (lanes grouped by width),
medians by one sort along the lanes (two such lanes, the least and the greatest z, when a
group has ordered members). The envelope's buckets are saved with the state only once an
ordered device has reported, so a snapshot without them (any saved before) still loads.
`processors.detectors.reference.ReferenceDrift` is the slow twin.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings
from processors.detectors.protocol import DetectorBase, Report
from processors.state import Scratch, StateField, flat, grow

__all__ = ["MIN_STATIONS", "DriftDetector", "PeerLanes"]

# With two stations either could be the drifting one; from three on the median is a healthy one.
MIN_STATIONS: Final = 3
# A spread below this share of the level is no variation at all (and would overflow z).
_TINY: Final = 1e-9
_MOST: Final = np.iinfo(np.int64).max  # the minimum of no counts at all

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.intp]


class Baseline:
    """Learns a running mean and mean absolute deviation per cell (in place; n counts).

    Both start as plain running averages (rate 1/n) and settle into EWMAs at `rate` and the
    slower `spread_rate`: unbiased from the first values, and a slow drift that slips in
    before the detector stops learning inflates the spread only a little.
    """

    def __init__(self, rate: float, spread_rate: float) -> None:
        self.rate, self.spread_rate = rate, spread_rate
        # Each count's weights, looked up rather than computed per cell; the last entry is
        # the EWMA rate, which every larger count has too (take's mode="clip").
        counts = np.arange(int(np.ceil(1.0 / min(rate, spread_rate))) + 2, dtype=np.float64)
        self.mean_weight = np.fmax(rate, 1.0 / (counts + 1.0))
        self.spread_weight = np.fmax(spread_rate, 1.0 / np.fmax(counts, 1.0))

    def learn(
        self,
        x: _Float,
        n: npt.NDArray[np.int64],
        mean: _Float,
        spread: _Float,
        learn: npt.NDArray[np.bool_],
        step: _Float | None = None,
    ) -> None:
        """Learn x where `learn` into mean and spread, counted in n (step: x - mean, if known)."""
        rate, spread_rate = self.rate, self.spread_rate
        # Only the cells that learn matter (a field a device never reports stays at 0).
        fewest = int(n.min(where=learn, initial=_MOST))
        with np.errstate(invalid="ignore"):
            if step is None:
                step = x - mean
            dev = np.abs(step)
            # Once every cell is past its first 1/rate values, the weight is one scalar.
            if 1.0 / (fewest + 1) <= rate:
                new_mean = mean + rate * step
            else:
                weight = np.take(self.mean_weight, n, mode="clip")
                weight *= step
                new_mean = mean + weight
            dev -= spread
            if 1.0 / max(fewest, 1) <= spread_rate:
                dev *= spread_rate
            else:
                dev *= np.take(self.spread_weight, n, mode="clip")
            new_spread = dev
            new_spread += spread
            if fewest < 2:  # the first value sets the mean, the second the spread
                first = n == 0
                new_mean = np.where(first, x, new_mean)
                new_spread = np.where(
                    first, np.nan, np.where(np.isnan(spread), np.abs(step), new_spread)
                )
        np.copyto(mean, new_mean, where=learn)
        np.copyto(spread, new_spread, where=learn)
        n += learn


class PeerLanes:
    """The latest z of every device of the judged peer groups, as one lane per group and field.

    Built once per batch over the groups with at least `min_stations` devices (smaller ones
    are never judged); each round writes its new z and takes every lane's median by one sort
    along the lanes, which is what makes a per-round median affordable. A lane is as wide as
    the next power of two of its group's size, and lanes of one width share a block
    (lanes x fields x width), so one large group does not widen every other lane.
    """

    def __init__(
        self,
        codes: _Int,
        z: _Float,
        z_ts: _Float,
        min_stations: int,
        max_lag_s: float,
        span: tuple[float, float] = (np.inf, -np.inf),
    ) -> None:
        """Lanes of the state rows' `codes`, their z and z times; `span`: the batch's times."""
        m = self.m = z.shape[1]
        self.max_lag_s = max_lag_s
        sizes = np.bincount(codes)
        sizes[0] = 0  # code 0: no peer group, never judged
        eligible = sizes >= min_stations
        judged = np.flatnonzero(eligible)
        widths = np.ones(len(sizes), dtype=np.intp)
        widths[judged] = 1 << np.ceil(np.log2(sizes[judged])).astype(np.intp)
        # Lanes in order of width, so each width's lanes are one block of the buffer.
        by_width = judged[np.argsort(widths[judged], kind="stable")]
        self.lanes = len(by_width)
        self.lane_of_code = np.full(len(sizes), -1, dtype=np.intp)  # -1: not judged
        self.lane_of_code[by_width] = np.arange(self.lanes)
        lane_width = widths[by_width]
        lane_start = np.r_[0, np.cumsum(lane_width * m)]  # each lane's flat start
        bounds = np.r_[0, np.flatnonzero(np.diff(lane_width)) + 1, self.lanes]
        self.blocks = [  # (first lane, end lane, width) of each width's block
            (int(lo), int(hi), int(lane_width[lo]))
            for lo, hi in itertools.pairwise(bounds.tolist())
            if hi > lo
        ]
        self.z = np.full(int(lane_start[-1]), np.nan)
        self.z_ts = np.full(int(lane_start[-1]), -np.inf)  # -inf: no z
        # Each member's field 0 at its lane's start plus its rank among the group's members;
        # field f is f lane widths further on.
        members = np.flatnonzero(eligible[codes])
        by_code = members[np.argsort(codes[members], kind="stable")]
        member_codes = codes[by_code]
        rank = np.arange(len(by_code)) - np.searchsorted(member_codes, member_codes)
        member_lanes = self.lane_of_code[member_codes]
        self.slot = np.full(len(codes), -1, dtype=np.intp)  # per state row; -1: not judged
        self.slot[by_code] = lane_start[member_lanes] + rank
        self.width = np.zeros(len(codes), dtype=np.intp)
        self.width[by_code] = lane_width[member_lanes]
        # Bounds on the times held: all of them are fresh while oldest >= newest - max_lag_s.
        self.newest, self.oldest = -np.inf, np.inf
        # Every member holding a z in every field (the steady state): a z, once held, stays,
        # so each lane's count and median positions are fixed for the batch.
        self.full = len(by_code) > 0 and not np.isnan(z[by_code]).any()
        times = z_ts[by_code]
        times[np.isnan(z[by_code])] = -np.inf
        held = times[times > -np.inf]
        if held.size:
            self.oldest, self.newest = float(held.min()), float(held.max())
        # Held times and the batch's within max_lag_s of each other: every z stays fresh all
        # batch long, and the times need not be kept (the usual batch of a few minutes).
        self.timeless = min(self.oldest, span[0]) >= max(self.newest, span[1]) - max_lag_s
        if len(by_code):
            cells = self.cells(by_code)
            np.put(self.z, cells, z[by_code])
            if not self.timeless:
                np.put(self.z_ts, cells, times)
        self._sizes = np.repeat(sizes[by_width], m).reshape(self.lanes, m)

    def __bool__(self) -> bool:
        return self.lanes > 0

    def cells(self, rows: _Int) -> _Int:
        """Flat positions of judged state rows' fields in the lanes, (rows x fields)."""
        result: _Int = self.slot[rows][:, None] + self.width[rows][:, None] * np.arange(self.m)
        return result

    def put(self, cells: _Int, z: _Float, z_ts: _Float, since: float) -> None:
        """Devices' latest z and its time (-inf: none) at their `cells` (see cells()).

        `since`: no time among them is both new to the lanes and older than this.
        """
        np.put(self.z, cells, z)
        if not self.timeless and z_ts.size:
            np.put(self.z_ts, cells, z_ts)
            self.newest = max(self.newest, float(z_ts.max()))
            self.oldest = min(self.oldest, since)

    def medians(self) -> tuple[_Float, npt.NDArray[np.intp]]:
        """Per lane and field: median of the fresh z and their count, one extra NaN/0 lane last.

        A z is fresh within `max_lag_s` of its lane's newest; the extra lane answers lane -1.
        """
        m = self.m
        medians = np.full((self.lanes + 1, m), np.nan)
        counts = np.zeros((self.lanes + 1, m), dtype=np.intp)
        fresh_all = self.timeless or self.oldest >= self.newest - self.max_lag_s
        start = 0
        for lo, hi, width in self.blocks:
            stop = start + (hi - lo) * m * width
            z = self.z[start:stop].reshape(hi - lo, m, width)
            if fresh_all:
                values = np.sort(z, axis=2)  # NaN last: the z held first, in order
                if self.full:  # every member holds one: the lane's size
                    count = self._sizes[lo:hi]
                else:
                    count = width - np.count_nonzero(np.isnan(values), axis=2)
            else:
                z_ts = self.z_ts[start:stop].reshape(hi - lo, m, width)
                fresh = z_ts >= z_ts.max(axis=2, keepdims=True) - self.max_lag_s
                fresh &= z_ts > -np.inf  # an empty lane's newest is -inf too
                values = np.where(fresh, z, np.nan)
                values.sort(axis=2)  # NaN last: the fresh values first, in order
                count = np.count_nonzero(fresh, axis=2)
            pick = np.stack([np.maximum(count - 1, 0) // 2, count // 2], axis=2)
            with np.errstate(invalid="ignore"):
                medians[lo:hi] = np.take_along_axis(values, pick, axis=2).mean(axis=2)
            counts[lo:hi] = count
            start = stop
        return medians, counts


class Envelopes:
    """Per device and field, the least and greatest z of each of the last `buckets` time buckets.

    A ring of `buckets` slots per cell: bucket b (time // bucket_s) lives in slot b % buckets,
    with its number, so a slot holding an older bucket is known stale. A device's readings
    arrive in time order, so the buckets within the window are never overwritten early.
    """

    def __init__(self, n_fields: int, lag_s: float, buckets: int) -> None:
        self.buckets = buckets
        self.bucket_s = lag_s / buckets
        self.lo = np.full((0, n_fields, buckets), np.nan)
        self.hi = np.full((0, n_fields, buckets), np.nan)
        self.number = np.full((0, n_fields, buckets), np.nan)  # the bucket held; NaN: none

    def parts(self) -> dict[str, _Float]:
        """The arrays by state name."""
        return {"env_lo": self.lo, "env_hi": self.hi, "env_bucket": self.number}

    def ensure(self, capacity: int) -> None:
        """Room for `capacity` devices."""
        self.lo, self.hi, self.number = (
            grow(a, capacity, np.nan) for a in (self.lo, self.hi, self.number)
        )

    def fresh(self, capacity: int) -> None:
        """Nothing held, for `capacity` devices."""
        self.lo, self.hi, self.number = (
            np.full((capacity, *a.shape[1:]), np.nan) for a in (self.lo, self.hi, self.number)
        )

    def take(self, arrays: Mapping[str, npt.NDArray[Any]], prefix: str, capacity: int) -> None:
        """Saved arrays if all are there in the right shape, else nothing held."""
        shape = (capacity, *self.lo.shape[1:])
        saved = [arrays.get(prefix + name) for name in self.parts()]
        if all(a is not None and a.shape == shape for a in saved):
            self.lo, self.hi, self.number = (np.array(a, dtype=np.float64) for a in saved)
        else:
            self.fresh(capacity)

    def bucket(self, ts: _Float) -> _Float:
        """The bucket number of observation times."""
        return np.floor(ts / self.bucket_s)

    def gather(self, rows: _Int, columns: _Int) -> tuple[_Float, _Float, _Float]:
        """Copies of the rows' rings in the carried columns, (rows x columns x buckets)."""
        at = np.ix_(rows, columns)
        return self.lo[at], self.hi[at], self.number[at]

    def scatter(self, rows: _Int, columns: _Int, rings: tuple[_Float, _Float, _Float]) -> None:
        """Store gathered rings back."""
        at = np.ix_(rows, columns)
        self.lo[at], self.hi[at], self.number[at] = rings

    def span(
        self, rings: tuple[_Float, _Float, _Float], now: _Float, z: _Float
    ) -> tuple[_Float, _Float]:
        """Least and greatest z of the buckets within the window of bucket `now` (per cell).

        z where a ring holds nothing in the window (e.g. restored without rings); NaN with z.
        """
        lo, hi, number = rings
        held = number > (now - self.buckets)[..., None]  # NaN: False
        with np.errstate(invalid="ignore"):
            least = np.min(np.where(held, lo, np.inf), axis=2)
            most = np.max(np.where(held, hi, -np.inf), axis=2)
        empty = ~held.any(axis=2)
        least[empty], most[empty] = z[empty], z[empty]
        least[np.isnan(z)], most[np.isnan(z)] = np.nan, np.nan
        return least, most

    def learn(
        self,
        rings: tuple[_Float, _Float, _Float],
        z: _Float,
        ready: npt.NDArray[np.bool_],
        now: _Float,
    ) -> None:
        """Put the ready z of bucket `now` (per row) into their slots (rings in place)."""
        lo, hi, number = rings
        i, j = np.nonzero(ready)
        slot = np.mod(now[i], self.buckets).astype(np.intp)
        v = z[i, j]
        same = number[i, j, slot] == now[i]
        lo[i, j, slot] = np.where(same, np.fmin(lo[i, j, slot], v), v)
        hi[i, j, slot] = np.where(same, np.fmax(hi[i, j, slot], v), v)
        number[i, j, slot] = now[i]


class _Wide:
    """A batch's ordered devices: their rings, and every group's envelope for the lanes.

    `least` and `most` are per group of the batch (groups x carried fields): the envelope at
    each device's latest z (the z itself for a device that is not ordered).
    """

    def __init__(self, detector: DriftDetector, rows: _Int, columns: _Int) -> None:
        self.envelopes = detector.envelopes
        self.columns = columns
        self.groups = np.flatnonzero(detector.ordered[rows])  # in group order: prefixes
        self.rows = rows[self.groups]
        self.rings = self.envelopes.gather(self.rows, columns) if len(self.groups) else None
        self.on = False  # the lanes hold envelopes: keep least and most
        self.least = self.most = np.empty((0, len(columns)))
        self._batch_rows = rows

    def lanes(
        self,
        detector: DriftDetector,
        codes: _Int,
        z: _Float,
        z_ts: _Float,
        span: tuple[float, float],
    ) -> tuple[PeerLanes, PeerLanes]:
        """Lanes of the least and of the greatest z of every state row (the envelopes)."""
        least, most = z.copy(), z.copy()
        members = np.flatnonzero(detector.ordered[: len(z)])
        env = self.envelopes
        least[members], most[members] = env.span(
            env.gather(members, self.columns), env.bucket(z_ts[members]), z[members]
        )
        self.least, self.most = least[self._batch_rows], most[self._batch_rows]
        self.on = True
        low, high = (
            PeerLanes(codes, a, z_ts, detector.min_stations, detector.max_lag_s, span)
            for a in (least, most)
        )
        return low, high

    def round(self, k: int, z: _Float, ready: npt.NDArray[np.bool_], t: _Float) -> None:
        """Round k's z (NaN where not ready): into the rings, and the envelopes."""
        if self.on:
            np.copyto(self.least[:k], z, where=ready)
            np.copyto(self.most[:k], z, where=ready)
        if self.rings is None:
            return
        o = int(np.searchsorted(self.groups, k))
        if o == 0:
            return
        mine = self.groups[:o]
        now = self.envelopes.bucket(t[mine])
        rings = (self.rings[0][:o], self.rings[1][:o], self.rings[2][:o])
        z_mine, ready_mine = z[mine], ready[mine]
        self.envelopes.learn(rings, z_mine, ready_mine, now)
        if self.on:
            when = np.broadcast_to(now[:, None], z_mine.shape)
            least, most = self.envelopes.span(rings, when, z_mine)
            self.least[mine] = np.where(ready_mine, least, self.least[mine])
            self.most[mine] = np.where(ready_mine, most, self.most[mine])

    def gap(self, k: int, ready: npt.NDArray[np.bool_], low: _Float, high: _Float) -> _Float:
        """Residuals of round k: the gap between each envelope and its group's [low, high].

        0 where they overlap; exactly z - median where both are single values.
        """
        above = np.where(ready, self.least[:k], np.nan) - high
        below = self.most[:k] - low
        r = np.where(above > 0, above, np.where(below < 0, below, 0.0))
        r[np.isnan(above) | np.isnan(below)] = np.nan
        return r

    def store(self, detector: DriftDetector) -> None:
        """The rings back into the detector's state."""
        if self.rings is not None:
            self.envelopes.scatter(self.rows, self.columns, self.rings)


class DriftDetector(DetectorBase):
    """Peer-relative drift detector over (devices x fields); see the module docstring."""

    name = "drift"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("mean", np.nan),  # the value's baseline ...
        StateField("spread", np.nan),  # ... and its mean absolute deviation
        StateField("learned", 0),
        StateField("z", np.nan),  # latest standardised value, for the peers
        StateField("z_ts", np.nan),  # its observation time
        StateField("r_fast", np.nan),
        StateField("r_base", np.nan),
        StateField("r_spread", np.nan),
        StateField("r_learned", 0),
    )
    reports: ClassVar[tuple[Report, ...]] = (Report("drift", "warning"),)

    def __init__(
        self,
        n_fields: int,
        *,
        threshold: float = 4.0,
        fast: float = 1 / 48,
        slow: float = 1 / 336,
        spread_rate: float = 1 / 1344,
        warmup: int = 168,
        min_stations: int = MIN_STATIONS,
        max_lag_s: float = 3 * 3600.0,
        floor: float = 0.05,
        winsor: float = 8.0,
        lag_s: float = 12 * 3600.0,
        buckets: int = 4,
        report_all: bool = True,
    ) -> None:
        self.threshold = threshold
        self.fast = fast
        self.warmup = warmup
        self.min_stations = min_stations
        self.max_lag_s = max_lag_s
        self.floor = floor  # least residual spread (z units): a near-identical twin station
        self.winsor = winsor
        self.report_all = report_all
        m = n_fields
        self.mean = np.full((0, m), np.nan)  # the value's baseline ...
        self.spread = np.full((0, m), np.nan)  # ... and its mean absolute deviation
        self.learned = np.zeros((0, m), dtype=np.int64)
        self.z = np.full((0, m), np.nan)  # latest standardised value, for the peers
        self.z_ts = np.full((0, m), np.nan)  # its observation time
        self.r_fast = np.full((0, m), np.nan)
        self.r_base = np.full((0, m), np.nan)
        self.r_spread = np.full((0, m), np.nan)
        self.r_learned = np.zeros((0, m), dtype=np.int64)
        self.ordered = np.zeros(0, dtype=np.bool_)  # a registry peer_order: z as an envelope
        self.envelopes = Envelopes(m, lag_s, buckets)
        self._scratch = Scratch()
        # The value's and the residual's baselines learn alike: at `slow` and `spread_rate`.
        self._baseline = Baseline(slow, spread_rate)

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind: as many fields."""
        return cls(len(spec.fields), report_all=report_all, **params)

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices (the envelopes too)."""
        super().ensure(capacity)
        self.ordered = grow(self.ordered, capacity, False)
        self.envelopes.ensure(capacity)

    def take_facts(self, facts: Mapping[str, npt.NDArray[Any]], start: int, stop: int) -> None:
        """Which of rows [start, stop) are ordered along a river (a registry peer_order)."""
        self.ordered[start:stop] = np.isfinite(facts["peer_order"][start:stop])

    def save(self) -> dict[str, npt.NDArray[Any]]:
        """The declared state, and the envelopes once any holds something (see the module)."""
        arrays = super().save()
        if not np.isnan(self.envelopes.number).all():
            arrays.update({f"{self.name}.{k}": v for k, v in self.envelopes.parts().items()})
        return arrays

    def load(self, arrays: Mapping[str, npt.NDArray[Any]], capacity: int) -> bool:
        """The declared state (all or nothing) and the envelopes if saved (else none held)."""
        taken = super().load(arrays, capacity)
        self.ordered = grow(self.ordered[:0], capacity, False)
        self.envelopes.take(arrays if taken else {}, f"{self.name}.", capacity)
        return taken

    def process(self, batch: BatchView) -> list[Findings]:
        """A batch (round-major, carried fields), judged against each device's peer group."""
        order, columns, cells = batch.order, batch.columns, batch.cells
        group = batch.peer_group
        if len(order) == 0:
            return [Findings.empty(self.name)]
        rows = order.rows
        values, present, ts = batch.values, batch.present, batch.ts
        capacity = len(self.z)
        # The peers' latest z as of the batch's start; the rounds keep the lanes current.
        z_start, z_ts_start = self.z[:, columns], self.z_ts[:, columns]
        span = (float(ts.min()), float(ts.max()))
        lanes = PeerLanes(
            group[:capacity], z_start, z_ts_start, self.min_stations, self.max_lag_s, span
        )
        slot = lanes.slot[rows] if lanes else np.full(len(rows), -1, dtype=np.intp)
        lane = np.where(slot >= 0, lanes.lane_of_code[group[rows]], -1)
        wide = _Wide(self, rows, columns)
        if lanes and (self.ordered[:capacity] & (lanes.slot >= 0)).any():
            # Ordered members judged: the lanes hold envelopes, the least and greatest z.
            lanes, lanes_hi = wide.lanes(self, group[:capacity], z_start, z_ts_start, span)
        else:
            lanes_hi = None
        judged_groups = np.flatnonzero(slot >= 0)  # in group order: round k's are a prefix
        group_cells = lanes.cells(rows[judged_groups])
        all_judged = len(judged_groups) == len(rows)
        # Per-group state, gathered once; round k updates the prefix [:n_k] in place.
        mean, spread, n = (np.take(a, cells) for a in (self.mean, self.spread, self.learned))
        z_last, z_ts = np.take(self.z, cells), np.take(self.z_ts, cells)
        z_ts[np.isnan(z_last)] = -np.inf  # the lanes' mark for "no z"
        r_fast, r_base, r_spread, r_n = (
            np.take(a, cells) for a in (self.r_fast, self.r_base, self.r_spread, self.r_learned)
        )
        shape = values.shape
        scratch = self._scratch
        score_all = scratch("score", shape)
        flag_all = scratch("flag", shape, np.bool_)
        judged_all = scratch("judged", shape, np.bool_)
        warmup, tiny = self.warmup, _TINY
        for lo, hi in itertools.pairwise(order.bounds):
            k = hi - lo
            v, here, t = values[lo:hi], present[lo:hi], ts[lo:hi]
            mn, sp, nn = mean[:k], spread[:k], n[:k]
            # Masked-out cells (no or a vanishing spread) may overflow: they are discarded.
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                step = v - mn
                ready = sp > tiny * np.fmax(1.0, np.abs(mn))
                if nn.min(where=here, initial=_MOST) < warmup:
                    ready &= nn >= warmup
                ready &= here
                z = step / sp
            if ready.all():  # the usual round: every reading has its z
                z_last[:k] = z
                z_ts[:k] = t[:, None]
            else:
                z[~ready] = np.nan
                np.copyto(z_last[:k], z, where=ready)
                np.copyto(z_ts[:k], t[:, None], where=ready)
            wide.round(k, z, ready, t)
            c = k if all_judged else int(np.searchsorted(judged_groups, k))
            if c == 0 or not ready.any():  # nobody judged this round: the baselines learn
                score_all[lo:hi] = 0.0
                flag_all[lo:hi] = False
                judged_all[lo:hi] = False
                self._baseline.learn(v, nn, mn, sp, here, step)
                continue
            # Store this round's z first, so devices reporting together are each other's peers.
            mine = judged_groups[:c]
            if lanes_hi is not None:  # the envelopes: the least z in `lanes`
                lanes.put(group_cells[:c], wide.least[mine], z_ts[mine], float(t.min()))
                lanes_hi.put(group_cells[:c], wide.most[mine], z_ts[mine], float(t.min()))
            elif all_judged:
                lanes.put(group_cells[:c], z_last[:c], z_ts[:c], float(t.min()))
            else:
                lanes.put(group_cells[:c], z_last[mine], z_ts[mine], float(t.min()))
            medians, counts = lanes.medians()
            ln = lane[:k]
            with np.errstate(invalid="ignore"):
                if lanes_hi is None:
                    r = z - medians[ln]  # lane -1 (not judged) has a NaN median
                else:
                    r = wide.gap(k, ready, medians[ln], lanes_hi.medians()[0][ln])
                if counts[:-1].min(initial=_MOST) < self.min_stations:
                    r[counts[ln] < self.min_stations] = np.nan
            self._judge(
                r,
                step,
                v,
                here,
                mn,
                sp,
                nn,
                r_fast[:k],
                r_base[:k],
                r_spread[:k],
                r_n[:k],
                score_all[lo:hi],
                flag_all[lo:hi],
                judged_all[lo:hi],
            )
        flat_cells = cells.reshape(-1)
        for state, part in (
            (self.mean, mean),
            (self.spread, spread),
            (self.learned, n),
            (self.z, z_last),
            (self.z_ts, z_ts),
            (self.r_fast, r_fast),
            (self.r_base, r_base),
            (self.r_spread, r_spread),
            (self.r_learned, r_n),
        ):
            flat(state)[flat_cells] = part.reshape(-1)
        wide.store(self)
        at = np.flatnonzero(judged_all if self.report_all else flag_all)
        return [batch.findings(self.name, at, np.take(score_all, at), np.take(flag_all, at))]

    def _judge(
        self,
        r: _Float,
        step: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        mean: _Float,
        spread: _Float,
        n: npt.NDArray[np.int64],
        r_fast: _Float,
        r_base: _Float,
        r_spread: _Float,
        r_n: npt.NDArray[np.int64],
        score_out: _Float,
        flag_out: npt.NDArray[np.bool_],
        judged_out: npt.NDArray[np.bool_],
    ) -> None:
        """One round with residuals: update the fast mean, judge, learn (state in place).

        `step` is values - mean, as the round found them.
        """
        have_r = ~np.isnan(r)
        # Every residual spread known (and so every fast mean) where there is a residual.
        settled = int(r_n.min(where=have_r, initial=_MOST)) >= 2
        spread_floor = np.fmax(r_spread, self.floor)
        with np.errstate(invalid="ignore"):
            # A residual beyond `winsor` deviations of its baseline enters the fast mean as
            # that many: a flood wave that reaches one gauge hours before its peers moves r
            # far and briefly, a drift moves it steadily, so clipping keeps the one from
            # looking like the other.
            reach = spread_floor * self.winsor
            clipped = np.clip(r, r_base - reach, r_base + reach)
            if not settled:
                clipped = np.where(np.isnan(r_spread), r, clipped)
            clipped -= r_fast
            clipped *= self.fast
            clipped += r_fast
            if not settled:
                clipped = np.where(np.isnan(r_fast), r, clipped)
        np.copyto(r_fast, clipped, where=have_r)
        judged = np.greater_equal(r_spread, 0.0, out=judged_out)
        judged &= have_r
        if self.warmup > 0:
            judged &= r_n >= self.warmup
        with np.errstate(invalid="ignore"):
            departure = np.abs(r_fast - r_base)
            departure /= spread_floor
        np.copyto(departure, 0.0, where=~judged)
        np.greater(departure, self.threshold, out=flag_out)
        np.clip(departure * (0.5 / self.threshold), 0.0, 1.0, out=score_out)
        # Stop learning as soon as a departure builds up (half the threshold), not only once
        # it is flagged: a slow drift would otherwise drag the baselines along with it.
        learn = departure <= self.threshold / 2
        learn &= present
        self._baseline.learn(values, n, mean, spread, learn, step)
        learn &= have_r
        self._baseline.learn(r, r_n, r_base, r_spread, learn)
