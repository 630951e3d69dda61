"""A learned normal per series: a calibrated anomaly score and change detectors on its residual.

Per device and varying field (a cell), all devices at once, in the bank's rounds (a device's
readings in time order). Parameters are the constructor's keyword arguments, defaults in
brackets. `last_ts` is the field's previous usable reading's time (none yet: gaps are inf);
wt = fmin((ts - last_ts) / 3600, 1) and wd = fmin((ts - last_ts) / 86400, 1) are the hours
and days a reading covers (at most one). half = warmup // 2.

State per cell, float64, stored in this order as `cell` (devices x fields x 19): n (readings
seen), level, spread, short, mu, var, zfast, vshort, vmu, vvar, up, down, cov, power, wpower,
use_day, use_week (0 or 1), quiet, run; float32:
daily (24 UTC hour bins) and weekly (7 days, 0 = Monday), stored as (devices x bins x
fields). A new cell has them all 0 except spread = 1e-300 and mu = 1. Arithmetic is
float64 (profile values are read as float32 and stored back rounded to float32).

One present reading x at time ts of a cell, in this order ("clip(a, B)": a clipped to
[-B, B]; absent readings change nothing):

1. If n = 0: level = x. h = floor(ts / 3600) mod 24, dow = (floor(ts / 86400) + 3) mod 7,
   d = daily[h], w = weekly[dow]; sd = use_day * d, sw = use_week * w; dev = x - level;
   g = dev - sw; r = g - sd; z = r / spread; zc = clip(z, z_cap [16]).
2. If n = half: short = zfast = vshort = up = down = var = vmu = vvar = 0, mu = 1 (the
   statistics start afresh once level and spread have settled).
3. Statistics: u = |zc|; e2 = min((zc - zfast)^2, burst_cap [3]^2) (zfast before its
   update); with sr = short_rate [0.35]: short += sr (u - short), zfast += sr (zc - zfast),
   vshort += sr (e2 - vshort); t = (short - mu) / sqrt(var + var_floor [0.1]) (the unusual
   statistic), tb = (vshort - vmu) / sqrt(vvar + vvar_floor [0.04]) (the noise statistic);
   up = max(0, up + zc - drift_k [2]), down = max(0, down - zc - drift_k) (two-sided
   CUSUM); cov += wd (g d - cov), power += wd (d^2 - power), wpower += wd / 7 (w^2 - wpower).
4. Decisions, only where n >= warmup [96] (the warm-up: no scores, no flags before):
   - unusual: t >= T(unusual_at [0.4]) if n >= quiet, else t >= T(unusual_at / quiet_gain)
     (never when that is above 1), T(s) the t whose score (6) is s;
   - level_shift: max(up, down) >= shift_h [150];
   - noise_burst: tb >= T(burst_at [0.7]);
   - pattern_lost: judged where use_day = 1 and power > (amp_sd [3] spread)^2; flagged
     where judged and cov <= lost_q [0.1] power.
   alarm = any flag, or max(up, down) >= hold [1] shift_h (a shift building up: not
   learned, so that the level does not follow it); run = run + 1 if alarm else 0; where
   unusual is flagged, quiet = n + 1 + quiet_for [200] (the next quiet_for readings are
   damped: a refractory period).
5. Learning, only where not alarm or run >= relearn [300] (an alarm that lasts is a genuine
   change: it is learned). Where run = relearn exactly, first level += zfast spread and
   up = down = 0 (the recent level is adopted). Then B = clip_sd [6] spread (inf while
   n < warmup), rc = clip(r, B), and with weights a_l = max(level_rate [0.002], 1 / (n + 1)),
   a_s = max(spread_rate [1/200], 1 / (n + 1)), a_g = max(long_rate [0.0005],
   1 / max(n - half + 1, 1)):
   level += a_l rc; spread = max(spread + a_s (|rc| - spread), 1e-300);
   dl = short - mu, mu += a_g dl, var += a_g (dl^2 - var); the same for vshort, vmu, vvar;
   daily[h] = d + (day_rate [0.25] wt) (rc + sd - d), weekly[dow] = w + (week_rate [0.1]
   wt) (rc + sw - w), rounded to float32 (the clipped residual plus the profile's own part:
   outliers do not teach it);
   (learned or not:) with the spread as it is now and ratio = (pi / 2) share / (1 - share),
   share [0.3] (the share of the residual variance a profile must explain; (pi / 2)
   spread^2 is the noise variance): use_day = 1 if power + (-ratio) spread^2 >= 0 else 0,
   use_week likewise with wpower.
6. n += 1.

Scores in [0, 1], from the values of step 3 and 4 (0 during warm-up): with Q the standard
normal upper tail (Borjesson-Sundberg: Q(t) = phi(t) / (0.661 t + 0.339 sqrt(t^2 + 5.51)))
and p(t) = min(1, 2 Q(t)) for t > 0, 1 otherwise, score(t) = clip(-log10 p(t) / k, 0, 1) with
k = decades [20]: a score s is a tail probability 10^(-k s) on every device and field
(unusual_at 0.4: 1e-8). unusual = score(t), times quiet_gain [0.2] where n < quiet before
the reading; noise_burst = score(tb); level_shift = min(max(up, down) / shift_h, 1);
pattern_lost = clip(1 - cov / power, 0, 1) where judged, else 0. Each report's flag is its
decision of step 4 (the score passing its threshold). With report_all every present reading
of a varying field has a finding in each report; otherwise only flagged ones.

The defaults were tuned on the NAB development folder (simulators/nab.py: 55.75, standard
profile) under a budget of false alarms on Pantau's clean real series (level_shift,
noise_burst and pattern_lost together about 0.1 per device-week).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings
from processors.detectors.protocol import DetectorBase, Report
from processors.state import Scratch, StateField, flat

__all__ = ["NormalDetector", "tail_score"]

_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]
_LN10: Final = math.log(10.0)
_HALF_LOG_2PI: Final = 0.5 * math.log(2.0 * math.pi)
_TINY: Final = 1e-300  # the least spread: z stays a number on a constant series

# The per-cell scalars, in the order of the stacked working array (see process).
_CELL: Final = (
    "n",
    "level",
    "spread",
    "short",
    "mu",
    "var",
    "zfast",
    "vshort",
    "vmu",
    "vvar",
    "up",
    "down",
    "cov",
    "power",
    "wpower",
    "use_day",
    "use_week",
    "quiet",
    "run",
)
_FILL: Final = {"mu": 1.0, "spread": _TINY}
_RESET: Final = (
    ("short", 0.0),
    ("zfast", 0.0),
    ("vshort", 0.0),
    ("up", 0.0),
    ("down", 0.0),
    ("mu", 1.0),
    ("var", 0.0),
    ("vmu", 0.0),
    ("vvar", 0.0),
)
_AT: Final = {name: j for j, name in enumerate(_CELL)}


def tail_score(t: _Float, decades: float) -> _Float:
    """clip(-log10 min(1, 2 Q(t)) / decades, 0, 1): 0 for t <= 0 (Q by Borjesson-Sundberg)."""
    tp = np.fmax(t, 0.0)
    with np.errstate(invalid="ignore"):
        denom = np.sqrt(tp * tp + 5.51)
        denom *= 0.339
        denom += 0.661 * tp
        # -ln(2 Q) = t^2 / 2 + ln(sqrt(2 pi)) + ln(denom) - ln 2
        out = np.log(denom)
        out += 0.5 * tp * tp
        out += _HALF_LOG_2PI - math.log(2.0)
        out *= 1.0 / (_LN10 * decades)
    np.clip(out, 0.0, 1.0, out=out)
    out[~(t > 0)] = 0.0
    return out


def _threshold(score: float, decades: float) -> float:
    """The t whose tail score is `score` (inf beyond 1), by bisection."""
    if score > 1.0:
        return math.inf
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(tail_score(np.array([mid]), decades)[0]) >= score:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True, slots=True)
class _Out:
    """Per-reading results of a batch's rounds (K x a), for the findings."""

    t: _Float
    tb: _Float
    shift: _Float
    ratio: _Float  # cov / power
    judged: _Bool  # pattern_lost judged
    damped: _Bool
    ready: _Bool
    flags: _Bool  # (4 x K x a): the reports' decisions


class NormalDetector(DetectorBase):
    """A learned normal per cell, an anomaly likelihood and change detectors (module docstring)."""

    name = "normal"
    version = 1
    state: ClassVar[tuple[StateField, ...]] = (
        StateField("cell", 0.0),  # (devices x fields x len(_CELL)); new rows: see ensure
        StateField("daily", 0.0),
        StateField("weekly", 0.0),
    )
    reports: ClassVar[tuple[Report, ...]] = (
        Report("unusual", "info"),
        Report("level_shift", "warning"),
        Report("noise_burst", "warning"),
        Report("pattern_lost", "info"),
    )

    def __init__(
        self,
        varies: npt.ArrayLike,
        *,
        warmup: int = 96,
        level_rate: float = 0.002,
        spread_rate: float = 1 / 200,
        long_rate: float = 0.0005,
        short_rate: float = 0.35,
        clip_sd: float = 6.0,
        z_cap: float = 16.0,
        burst_cap: float = 3.0,
        var_floor: float = 0.1,
        vvar_floor: float = 0.04,
        decades: float = 20.0,
        unusual_at: float = 0.4,
        quiet_for: int = 200,
        quiet_gain: float = 0.2,
        burst_at: float = 0.7,
        drift_k: float = 2.0,
        shift_h: float = 150.0,
        hold: float = 1.0,
        relearn: int = 300,
        day_rate: float = 0.25,
        week_rate: float = 0.1,
        share: float = 0.3,
        amp_sd: float = 3.0,
        lost_q: float = 0.1,
        report_all: bool = True,
    ) -> None:
        if warmup < 2 or not 0 < quiet_gain <= 1 or relearn < 1 or decades <= 0:
            raise ValueError("need warmup >= 2, 0 < quiet_gain <= 1, relearn >= 1, decades > 0")
        if not 0 < share < 1:
            raise ValueError("need 0 < share < 1")
        self.varies = np.asarray(varies, dtype=np.bool_)
        self.warmup = warmup
        self.level_rate, self.spread_rate, self.long_rate = level_rate, spread_rate, long_rate
        self.short_rate, self.clip_sd, self.z_cap = short_rate, clip_sd, z_cap
        self.burst_cap, self.var_floor, self.vvar_floor = burst_cap, var_floor, vvar_floor
        self.decades, self.unusual_at, self.burst_at = decades, unusual_at, burst_at
        self.quiet_for, self.quiet_gain = quiet_for, quiet_gain
        self.drift_k, self.shift_h, self.relearn = drift_k, shift_h, relearn
        self.hold = hold
        self.day_rate, self.week_rate, self.share = day_rate, week_rate, share
        self.amp_sd, self.lost_q = amp_sd, lost_q
        self.report_all = report_all
        self._ratio = 0.5 * math.pi * share / (1.0 - share)
        self._t_unusual = _threshold(unusual_at, decades)
        self._t_quiet = _threshold(unusual_at / quiet_gain, decades)
        self._t_burst = _threshold(burst_at, decades)
        m = len(self.varies)
        self.cell = np.zeros((0, m, len(_CELL)))
        self.daily = np.zeros((0, 24, m), dtype=np.float32)
        self.weekly = np.zeros((0, 7, m), dtype=np.float32)
        self._scratch = Scratch()

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices (new cells: 0, but spread and mu as in _FILL)."""
        known = len(self.cell)
        super().ensure(capacity)
        for name, value in _FILL.items():
            self.cell[known:, :, _AT[name]] = value

    @classmethod
    def applies(cls, spec: KindSpec) -> bool:
        """Kinds with a varying field (a binary-only kind has no normal to learn)."""
        return bool(spec.varies_mask().any())

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind: which of its fields vary (the others are not judged)."""
        return cls(spec.varies_mask(), report_all=report_all, **params)

    def process(self, batch: BatchView) -> list[Findings]:
        """Judge and learn a batch round by round; one Findings per report."""
        order, columns = batch.order, batch.columns
        values, present, ts = batch.values, batch.present, batch.ts
        shape = values.shape
        if values.size == 0:  # no field carried by any fresh reading: nothing to judge
            return [Findings.empty(report.finding) for report in self.reports]
        scratch = self._scratch
        width = len(self.varies)
        # Every per-cell scalar of the batch's groups, gathered once per batch from the
        # (devices x fields x scalars) state (a cell's scalars are adjacent: one block each)
        # and laid out (scalars x groups x fields), so that round k works on contiguous
        # prefixes [:, :n_k]; scattered back at the end.
        scalars = len(_CELL)
        st = scratch("state", (scalars, *batch.cells.shape))
        by_cell = self.cell.reshape(-1, scalars)  # a view: the state is C-contiguous
        where = batch.cells.reshape(-1)
        _gather(st.reshape(scalars, -1), by_cell, where, scratch)
        # Batch-wide: profile positions and the time each reading covers.
        # (The whole hours and days as integers first: an integer remainder is the cheaper.)
        hour = np.floor(ts * (1.0 / 3600.0)).astype(np.intp)
        hour %= 24
        dow = np.floor(ts * (1.0 / 86400.0)).astype(np.intp)
        dow += 3
        dow %= 7
        # Profiles are (devices x bins x fields): a device's fields of one bin share a cache
        # line, so the per-round gathers touch one line per device. (Per-reading offsets
        # repeated along the fields: numpy broadcasts a column of a narrow array slowly.)
        a = len(columns)
        rows = batch.rows
        tiled = np.tile(columns, len(rows)).reshape(shape)
        dpos = np.repeat((rows * 24 + hour) * width, a).reshape(shape)
        dpos += tiled
        wpos = np.repeat((rows * 7 + dow) * width, a).reshape(shape)
        wpos += tiled
        with np.errstate(invalid="ignore"):
            gap = np.repeat(ts, a).reshape(shape)
            gap -= batch.last_ts
        gap[np.isnan(gap)] = np.inf
        # (Reused buffers: a fresh array of a few megabytes page-faults on its first writes.)
        wt = np.multiply(gap, 1.0 / 3600.0, out=scratch("wt", shape))
        np.fmin(wt, 1.0, out=wt)
        wt_day = np.multiply(wt, self.day_rate, out=scratch("wt_day", shape))
        wt_week = np.multiply(wt, self.week_rate, out=wt)
        wd = np.multiply(gap, 1.0 / 86400.0, out=scratch("wd", shape))
        np.fmin(wd, 1.0, out=wd)
        out = _Out(
            scratch("t", shape),
            scratch("tb", shape),
            scratch("shift", shape),
            scratch("ratio", shape),
            scratch("judged", shape, np.bool_),
            scratch("damped", shape, np.bool_),
            scratch("ready", shape, np.bool_),
            scratch("flags", (4, *shape), np.bool_),
        )
        daily, weekly = flat(self.daily), flat(self.weekly)
        for lo, hi in itertools.pairwise(order.bounds):
            self._round(
                slice(lo, hi),
                values[lo:hi],
                present[lo:hi],
                dpos[lo:hi],
                wpos[lo:hi],
                wt_day[lo:hi],
                wt_week[lo:hi],
                wd[lo:hi],
                st[:, : hi - lo],
                daily,
                weekly,
                out,
            )
        by_cell[where] = st.reshape(scalars, -1).T
        return self._findings(batch, out)

    def _round(
        self,
        at: slice,
        x: _Float,
        here: _Bool,
        dpos: npt.NDArray[np.intp],
        wpos: npt.NDArray[np.intp],
        wt_day: _Float,
        wt_week: _Float,
        wd: _Float,
        st: _Float,
        daily: npt.NDArray[np.float32],
        weekly: npt.NDArray[np.float32],
        out: _Out,
    ) -> None:
        """One round: every cell's reading judged, then learned (state `st` in place)."""
        (n, level, spread, short, mu, var, zfast, vshort, vmu, vvar, up, down) = st[:12]
        (cov, power, wpower, use_day, use_week, quiet, run) = st[12:]
        every_here = bool(here.all())
        old = None if every_here else st.copy()
        fewest, most = float(n.min()), float(n.max())
        warm, half = float(self.warmup), float(self.warmup // 2)
        judging = most >= warm  # else all in warm-up: nothing judged, everything learned
        if fewest < 1.0:  # a cell's first reading sets its level
            np.copyto(level, x, where=(n == 0.0) & here)
        if fewest <= half <= most:  # the statistics start afresh at n = half
            fresh = n == half
            for name, value in _RESET:
                st[_AT[name]][fresh] = value
        d = np.take(daily, dpos)  # float32: promoted to float64 by the arithmetic
        w = np.take(weekly, wpos)
        # Most cells have no weekly profile, many no daily one: skip what adds zeros.
        any_day = bool(use_day.any())
        sd: _Float | float = d * use_day if any_day else 0.0
        sw: _Float | float = w * use_week if use_week.any() else 0.0
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            dev = x - level
            g = dev - sw if isinstance(sw, np.ndarray) else dev
            r = g - sd if isinstance(sd, np.ndarray) else g
            zc = np.divide(r, spread)
            np.clip(zc, -self.z_cap, self.z_cap, out=zc)
            # 3. statistics
            sr = self.short_rate
            step = zc - zfast  # zfast's step, before its update, also makes e2
            e2 = np.multiply(step, step)
            np.fmin(e2, self.burst_cap * self.burst_cap, out=e2)
            step *= sr
            zfast += step
            _ewma(vshort, e2, sr)
            u = np.abs(zc, out=e2)
            _ewma(short, u, sr)
            # short - mu and vshort - vmu: t's and tb's numerators, and _learn's steps of
            # mu and vmu (neither moves in between).
            gaps = (short - mu, vshort - vmu)
            if judging:  # t and tb are scores and decisions only: none in warm-up
                t = np.divide(gaps[0], np.sqrt(var + self.var_floor), out=out.t[at])
                tb = np.divide(gaps[1], np.sqrt(vvar + self.vvar_floor), out=out.tb[at])
            up += zc
            up -= self.drift_k
            np.fmax(up, 0.0, out=up)
            down -= zc
            down -= self.drift_k
            np.fmax(down, 0.0, out=down)
            gd = g * d
            _ewma(cov, gd, wd)
            np.multiply(d, d, out=gd, dtype=np.float64)  # the square of the float64 value
            _ewma(power, gd, wd)
            np.multiply(w, w, out=gd, dtype=np.float64)
            _ewma(wpower, gd, wd * (1.0 / 7.0))
            # 4. decisions
            ready = out.ready[at]
            flags = out.flags[:, at]
            if not judging:  # the scores of the warm-up are 0 whatever these hold
                ready.fill(False)
                flags.fill(False)
                if self.report_all:  # else only flagged readings are scored: none of these
                    for result in (out.t[at], out.tb[at], out.shift[at]):
                        result.fill(0.0)  # (numbers, that the scoring warns of nothing)
                    out.damped[at].fill(False)
                alarm = None
            else:
                damped = np.less(n, quiet, out=out.damped[at])
                shift = np.fmax(up, down, out=out.shift[at])
                np.greater_equal(n, warm, out=ready)
                if not every_here:
                    ready &= here
                all_ready = fewest >= warm and every_here
                fu, fs, fb, fp = flags
                if damped.any():
                    np.greater_equal(t, np.where(damped, self._t_quiet, self._t_unusual), out=fu)
                else:
                    np.greater_equal(t, self._t_unusual, out=fu)
                np.greater_equal(shift, self.shift_h, out=fs)
                np.greater_equal(tb, self._t_burst, out=fb)
                judged = out.judged[at]
                if any_day:
                    # Strictly greater: a constant field (power 0, spread at its floor) has
                    # no pattern.
                    np.greater(power, (self.amp_sd**2) * (spread * spread), out=judged)
                    judged &= use_day > 0.0
                    np.less_equal(cov, self.lost_q * power, out=fp)
                    fp &= judged
                else:  # no cell uses its daily profile: none is judged
                    judged.fill(False)
                    fp.fill(False)
                if self.report_all:  # only for the scores: the flag needs no division
                    np.divide(cov, power, out=out.ratio[at])
                if not all_ready:
                    for flag in (fu, fs, fb, fp):
                        flag &= ready
                # A level shift building up (past `hold` of its threshold) stops learning
                # too: else the level and spread would follow it before it is flagged.
                alarm = np.greater_equal(shift, self.hold * self.shift_h)
                if not all_ready:
                    alarm &= ready
                alarm |= fu
                alarm |= fb
                alarm |= fp
                if not alarm.any():
                    alarm = None
                elif self.quiet_for and fu.any():
                    np.copyto(quiet, n + (1.0 + self.quiet_for), where=fu)
        gate: _Float | None = None  # 1 where the reading is learned (None: everywhere)
        if alarm is None:
            run.fill(0.0)
        else:
            run += 1.0
            run *= alarm
            learn = run >= self.relearn
            learn |= ~alarm
            adopt = run == float(self.relearn)
            if adopt.any():
                level += np.where(adopt, zfast * spread, 0.0)
                up[adopt] = 0.0
                down[adopt] = 0.0
            gate = learn.astype(np.float64)
        self._learn(
            r, d, w, sd, sw, wt_day, wt_week, dpos, wpos, st, daily, weekly, gate, gaps, here
        )
        if old is None:
            n += 1.0
        else:
            np.copyto(st, old, where=~here)
            n += here

    def _learn(
        self,
        r: _Float,
        d: npt.NDArray[np.float32],
        w: npt.NDArray[np.float32],
        sd: _Float | float,
        sw: _Float | float,
        wt_day: _Float,
        wt_week: _Float,
        dpos: npt.NDArray[np.intp],
        wpos: npt.NDArray[np.intp],
        st: _Float,
        daily: npt.NDArray[np.float32],
        weekly: npt.NDArray[np.float32],
        gate: _Float | None,
        gaps: tuple[_Float, _Float],
        here: _Bool,
    ) -> None:
        """Step 5 of the module docstring: weights times `gate` (0: not learned; None: all 1).

        `gaps` are short - mu and vshort - vmu. Absent readings (NaN) are left to the caller
        to undo, except in the profiles. (A max or clip that cannot bind is skipped: the
        bounds of the round's n tell.)
        """
        (n, level, spread, _, mu, var, _, _, vmu, vvar) = st[:10]
        (power, wpower, use_day, use_week) = st[13:17]
        fewest, most = float(n.min()), float(n.max())
        with np.errstate(invalid="ignore", over="ignore"):
            if most < self.warmup:  # nothing clipped in warm-up: the spread is unknown
                rc = r  # (read only below)
            else:
                bound = spread * self.clip_sd
                if fewest < self.warmup:
                    bound[n < self.warmup] = np.inf
                rc = np.fmax(r, -bound)
                np.fmin(rc, bound, out=rc)
            # Each cell's weights: scalars once every cell is past its first 1/rate readings,
            # 1 / (n + 1) alone while every cell is before them.
            inv: _Float | None = None
            if 1.0 / (fewest + 1.0) > min(self.level_rate, self.spread_rate):
                inv = 1.0 / (n + 1.0)
            if inv is None:
                a_l: _Float | float = self.level_rate
                a_s: _Float | float = self.spread_rate
            elif 1.0 / (most + 1.0) >= max(self.level_rate, self.spread_rate):
                a_l = a_s = inv
            else:
                a_l, a_s = np.fmax(inv, self.level_rate), np.fmax(inv, self.spread_rate)
            half = float(self.warmup // 2)
            a_g: _Float | float = self.long_rate
            if 1.0 / max(fewest - half + 1.0, 1.0) > self.long_rate:
                since = n - (half - 1.0)
                if fewest < half:
                    np.fmax(since, 1.0, out=since)
                a_g = np.divide(1.0, since, out=since)
                if 1.0 / max(most - half + 1.0, 1.0) < self.long_rate:
                    np.fmax(a_g, self.long_rate, out=since)
            if gate is not None:
                a_l = gate * a_l
                a_s = gate * a_s
                a_g = gate * a_g
                wt_day = gate * wt_day
                wt_week = gate * wt_week
            step = rc * a_l
            level += step
            np.abs(rc, out=step)
            _ewma(spread, step, a_s)
            np.fmax(spread, _TINY, out=spread)
            for mean, variance, dl in zip((mu, vmu), (var, vvar), gaps, strict=True):
                np.multiply(dl, dl, out=step)
                dl *= a_g
                mean += dl
                _ewma(variance, step, a_g)
            # The new profile values straight into the float32 buffers they were read into.
            new_d = rc + sd if isinstance(sd, np.ndarray) else rc.copy()
            new_d -= d
            new_d *= wt_day
            new_d = np.add(d, new_d, out=d, casting="same_kind")
            new_w = rc + sw if isinstance(sw, np.ndarray) else rc.copy()
            new_w -= w
            new_w *= wt_week
            new_w = np.add(w, new_w, out=w, casting="same_kind")
            # power + (-ratio) spread^2 >= 0 exactly when power >= ratio spread^2 (the
            # rounding of a sum keeps its sign; neither is NaN where a reading is present).
            least = spread * spread
            least *= self._ratio
            for use, has in ((use_day, power), (use_week, wpower)):
                np.greater_equal(has, least, out=use, casting="unsafe")
        # A cell that does not learn writes its profile value back unchanged (d + 0).
        if here.all():
            daily[dpos] = new_d
            weekly[wpos] = new_w
        else:
            daily[dpos[here]] = new_d[here]
            weekly[wpos[here]] = new_w[here]

    def _findings(self, batch: BatchView, out: _Out) -> list[Findings]:
        """The four reports' findings: every present reading, or only the flagged ones."""
        varies = self.varies[batch.columns]
        every = bool(varies.all())
        judged = batch.present if every else batch.present & varies
        found = []
        for j, report in enumerate(self.reports):
            flag = out.flags[j] if every else out.flags[j] & varies
            at = np.flatnonzero(judged if self.report_all else flag)
            if j == 0:
                score = tail_score(np.take(out.t, at), self.decades)
                score[np.take(out.damped, at)] *= self.quiet_gain
            elif j == 1:
                score = np.fmin(np.take(out.shift, at) * (1.0 / self.shift_h), 1.0)
            elif j == 2:
                score = tail_score(np.take(out.tb, at), self.decades)
            else:
                with np.errstate(invalid="ignore"):
                    score = np.clip(1.0 - np.take(out.ratio, at), 0.0, 1.0)
                score[~np.take(out.judged, at)] = 0.0
            score[~np.take(out.ready, at)] = 0.0  # warm-up
            found.append(batch.findings(report.finding, at, score, np.take(flag, at)))
        return found


def _ewma(state: _Float, x: npt.NDArray[Any], rate: float | _Float) -> None:
    """Move `state` by rate * (x - state), in place."""
    step = x - state
    step *= rate
    state += step


def _gather(st: _Float, by_cell: _Float, where: npt.NDArray[np.intp], scratch: Scratch) -> None:
    """st[:, i] = by_cell[where[i]]: rows taken and transposed a block at a time.

    A block's rows stay in cache while they are transposed; the whole batch's would not.
    """
    block = 2048
    rows = scratch("gather", (block, by_cell.shape[1]))
    for lo in range(0, len(where), block):
        hi = min(lo + block, len(where))
        np.take(by_cell, where[lo:hi], axis=0, out=rows[: hi - lo])
        st[:, lo:hi] = rows[: hi - lo].T
