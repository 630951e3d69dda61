"""The slow, obviously correct twin of NormalDetector, written from its module docstring.

Plain Python, one reading at a time per device and field, a dict of cells; numpy only to round
the profile values to float32 as the docstring states. Batches have KindProcessor's semantics
(sorted by device and time, repeats and readings not newer than the device's last processed
one skipped); tests/test_normal_reference.py checks that the bank gives the same scores and
flags with hypothesis.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from processors.catalog import KindSpec
from processors.detectors.normal import NormalDetector
from processors.detectors.reference import Verdict

__all__ = ["REPORTS", "ReferenceNormal", "normal_defaults", "score"]

REPORTS = ("unusual", "level_shift", "noise_burst", "pattern_lost")


def normal_defaults() -> dict[str, Any]:
    """NormalDetector's keyword parameters and their defaults (read, never repeated here)."""
    return {
        name: p.default
        for name, p in inspect.signature(NormalDetector).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "report_all"
    }


def score(t: float, k: float) -> float:
    """clip(-log10 p(t) / k, 0, 1), p(t) = min(1, 2 Q(t)) for t > 0, else 1.

    Q(t) = phi(t) / (0.661 t + 0.339 sqrt(t^2 + 5.51)) (Borjesson-Sundberg), taken in logs:
    phi underflows long before the score reaches 1.
    """
    if not t > 0:
        return 0.0
    log_phi = -0.5 * t * t - 0.5 * math.log(2.0 * math.pi)
    log_q = log_phi - math.log(0.661 * t + 0.339 * math.sqrt(t * t + 5.51))
    minus_log10_p = -(math.log(2.0) + log_q) / math.log(10.0)  # min(1, .): clipped below
    return min(max(minus_log10_p / k, 0.0), 1.0)


def threshold(s: float, k: float) -> float:
    """T(s): the least t whose score is s (inf above 1), by bisection to adjacent floats."""
    if s > 1.0:
        return math.inf
    lo, hi = 0.0, 1.0
    while score(hi, k) < s:
        hi *= 2.0
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            return hi
        if score(mid, k) >= s:
            hi = mid
        else:
            lo = mid


def _clip(a: float, bound: float) -> float:
    """The value clipped to [-bound, bound]."""
    return min(max(a, -bound), bound)


def _ratio(a: float, b: float) -> float:
    """The quotient a / b with IEEE semantics (0 / 0: NaN, a / 0: +-inf), as numpy divides."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _f32(x: float) -> float:
    """The value rounded to float32 (the profiles' storage)."""
    return float(np.float32(x))


@dataclass
class _Cell:
    """One device and field: the docstring's state, a new cell's values."""

    n: int = 0
    level: float = 0.0
    spread: float = 1e-300
    short: float = 0.0
    mu: float = 1.0
    var: float = 0.0
    zfast: float = 0.0
    vshort: float = 0.0
    vmu: float = 0.0
    vvar: float = 0.0
    up: float = 0.0
    down: float = 0.0
    cov: float = 0.0
    power: float = 0.0
    wpower: float = 0.0
    use_day: int = 0
    use_week: int = 0
    quiet: float = 0.0
    run: int = 0
    daily: list[float] = field(default_factory=lambda: [0.0] * 24)
    weekly: list[float] = field(default_factory=lambda: [0.0] * 7)
    last_ts: float | None = None  # the previous usable reading's time


class ReferenceNormal:
    """The reference twin of NormalDetector in KindProcessor (report_all: every reading)."""

    def __init__(self, spec: KindSpec, **params: Any) -> None:
        defaults = normal_defaults()
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(f"unknown parameters {sorted(unknown)}")
        self.spec = spec
        self.p: dict[str, Any] = {**defaults, **params}
        p = self.p
        self.t_unusual = threshold(p["unusual_at"], p["decades"])
        self.t_quiet = threshold(p["unusual_at"] / p["quiet_gain"], p["decades"])
        self.t_burst = threshold(p["burst_at"], p["decades"])
        self.last_ts: dict[str, float] = {}
        self.cells: dict[tuple[str, int], _Cell] = {}

    def process(
        self,
        device_ids: list[str],
        ts: list[float],
        values: list[list[float]],
        present: list[list[bool]],
    ) -> list[Verdict]:
        """Judge a batch reading by reading, in (device, time) order: four verdicts per cell."""
        verdicts: list[Verdict] = []
        order = sorted(range(len(ts)), key=lambda i: (device_ids[i], ts[i]))
        previous: tuple[str, float] | None = None
        for i in order:
            device = device_ids[i]
            duplicate = (device, ts[i]) == previous  # the first delivered is kept
            previous = (device, ts[i])
            if duplicate or ts[i] <= self.last_ts.get(device, -math.inf):
                continue
            self.last_ts[device] = ts[i]
            for j, spec in enumerate(self.spec.fields):
                x = values[i][j]
                usable = present[i][j] and math.isfinite(x) and spec.low <= x <= spec.high
                if not usable or not spec.varies:
                    continue
                cell = self.cells.setdefault((device, j), _Cell())
                scores, flags = self._reading(cell, ts[i], x)
                verdicts += [
                    Verdict(name, i, j, flag, s)
                    for name, flag, s in zip(REPORTS, flags, scores, strict=True)
                ]
        return verdicts

    def _reading(
        self, c: _Cell, ts: float, x: float
    ) -> tuple[tuple[float, float, float, float], tuple[bool, bool, bool, bool]]:
        """Steps 1 to 6 of the docstring for one present reading; its scores and flags."""
        p = self.p
        warmup, half = p["warmup"], p["warmup"] // 2
        gap = math.inf if c.last_ts is None else ts - c.last_ts
        c.last_ts = ts
        wt, wd = min(gap / 3600.0, 1.0), min(gap / 86400.0, 1.0)
        # 1. the residual
        if c.n == 0:
            c.level = x
        h = int(math.floor(ts / 3600.0) % 24)
        dow = int((math.floor(ts / 86400.0) + 3) % 7)
        d, w = c.daily[h], c.weekly[dow]
        sd, sw = c.use_day * d, c.use_week * w
        dev = x - c.level
        g = dev - sw
        r = g - sd
        z = r / c.spread
        zc = _clip(z, p["z_cap"])
        # 2. the statistics start afresh
        if c.n == half:
            c.short = c.zfast = c.vshort = c.up = c.down = c.var = c.vmu = c.vvar = 0.0
            c.mu = 1.0
        # 3. statistics
        sr = p["short_rate"]
        u = abs(zc)
        e2 = min((zc - c.zfast) ** 2, p["burst_cap"] ** 2)
        c.short += sr * (u - c.short)
        c.zfast += sr * (zc - c.zfast)
        c.vshort += sr * (e2 - c.vshort)
        t = (c.short - c.mu) / math.sqrt(c.var + p["var_floor"])
        tb = (c.vshort - c.vmu) / math.sqrt(c.vvar + p["vvar_floor"])
        c.up = max(0.0, c.up + zc - p["drift_k"])
        c.down = max(0.0, c.down - zc - p["drift_k"])
        c.cov += wd * (g * d - c.cov)
        c.power += wd * (d * d - c.power)
        c.wpower += wd / 7.0 * (w * w - c.wpower)
        # 4. decisions
        ready = c.n >= warmup
        damped = c.n < c.quiet
        shift = max(c.up, c.down)
        judged = c.use_day == 1 and c.power > (p["amp_sd"] * c.spread) ** 2
        unusual = level_shift = noise_burst = pattern_lost = alarm = False
        if ready:
            unusual = t >= (self.t_quiet if damped else self.t_unusual)
            level_shift = shift >= p["shift_h"]
            noise_burst = tb >= self.t_burst
            pattern_lost = judged and c.cov <= p["lost_q"] * c.power
            alarm = unusual or level_shift or noise_burst or pattern_lost
            alarm = alarm or shift >= p["hold"] * p["shift_h"]
        c.run = c.run + 1 if alarm else 0
        if unusual:
            c.quiet = c.n + 1 + p["quiet_for"]
        # 5. learning
        if not alarm or c.run >= p["relearn"]:
            self._learn(c, r, d, w, sd, sw, h, dow, wt)
        ratio = 0.5 * math.pi * p["share"] / (1.0 - p["share"])
        c.use_day = 1 if c.power + (-ratio) * c.spread**2 >= 0 else 0
        c.use_week = 1 if c.wpower + (-ratio) * c.spread**2 >= 0 else 0
        # 6.
        c.n += 1
        scores = (0.0, 0.0, 0.0, 0.0)
        if ready:
            lost = 0.0
            if judged:
                q = 1.0 - _ratio(c.cov, c.power)
                lost = q if math.isnan(q) else min(max(q, 0.0), 1.0)  # clip keeps a NaN
            scores = (
                score(t, p["decades"]) * (p["quiet_gain"] if damped else 1.0),
                min(shift / p["shift_h"], 1.0),
                score(tb, p["decades"]),
                lost,
            )
        return scores, (unusual, level_shift, noise_burst, pattern_lost)

    def _learn(
        self,
        c: _Cell,
        r: float,
        d: float,
        w: float,
        sd: float,
        sw: float,
        h: int,
        dow: int,
        wt: float,
    ) -> None:
        """Step 5 where the reading is learned."""
        p = self.p
        half = p["warmup"] // 2
        if c.run == p["relearn"]:  # the recent level is adopted
            c.level += c.zfast * c.spread
            c.up = c.down = 0.0
        bound = p["clip_sd"] * c.spread if c.n >= p["warmup"] else math.inf
        rc = _clip(r, bound)
        a_l = max(p["level_rate"], 1 / (c.n + 1))
        a_s = max(p["spread_rate"], 1 / (c.n + 1))
        a_g = max(p["long_rate"], 1 / max(c.n - half + 1, 1))
        c.level += a_l * rc
        c.spread = max(c.spread + a_s * (abs(rc) - c.spread), 1e-300)
        dl = c.short - c.mu
        c.mu += a_g * dl
        c.var += a_g * (dl**2 - c.var)
        dl = c.vshort - c.vmu
        c.vmu += a_g * dl
        c.vvar += a_g * (dl**2 - c.vvar)
        c.daily[h] = _f32(d + (p["day_rate"] * wt) * (rc + sd - d))
        c.weekly[dow] = _f32(w + (p["week_rate"] * wt) * (rc + sw - w))
