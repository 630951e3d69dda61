"""Drift of a station against the other stations of its district (peer-based).

What drift means here, per device and field:

1. The device's value is standardised against its own slow baseline: z = (x - mean) / spread,
   mean an EWMA over about `1 / slow` readings (two weeks of hourly data), spread the mean
   absolute deviation over about `1 / spread_rate` readings (eight weeks: slower, so a drift
   that slips in before learning stops cannot inflate it much). z is undefined until
   `warmup` readings have been learned.
2. The district reference is the median of the latest z of every device of the district
   (the device itself included) that reported that field within `max_lag_s` of the district's
   newest such reading. With at least `min_stations` (3) devices the median sits between
   healthy stations, so one faulty station cannot drag it; its residual r = z - median then
   holds the station's own departure and none of the weather or pollution episodes that move
   the whole district.
3. r has a slow baseline (mean and mean absolute deviation, same rates) and a fast EWMA
   (about `1 / fast` readings: two days, so flood waves and daily cycles average out while a
   drift over days to weeks still shows). Drift is flagged when the fast EWMA departs from
   the slow baseline by more than `threshold` baseline deviations, once `warmup` residuals
   are learned. Weak, uncorrelated peers (a managed gate among river gauges) make r noisy
   and drift harder to see.
4. While the departure exceeds half the threshold nothing is learned (neither the value
   baseline nor the residual baseline), so a slow drift cannot drag its own reference along.
   The flag therefore persists until the station comes back (e.g. is recalibrated).

What it cannot find: a drift shared by the whole district (or by half of it or more, which
moves the median), a drift in a district with fewer than `min_stations` stations reporting
the field (with two, either could be the one drifting, so neither is judged), a device with
no district, a drift slower than the baseline (slower than about `1 / slow` readings per
threshold), and a drift that starts during warm-up (it becomes the baseline).

Rounds are judged as the bank delivers them: each round first stores the z of its readings,
then computes the district medians, so peers reported in the same round are compared with
each other. `processors.detectors.reference.ReferenceDrift` is the slow twin.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from processors.detectors.base import Findings
from processors.state import OrderedBatch, grow

__all__ = ["MIN_STATIONS", "DriftDetector", "district_medians"]

# With two stations either could be the drifting one; from three on the median is a healthy one.
MIN_STATIONS: Final = 3
# A spread below this share of the level is no variation at all (and would overflow z).
_TINY: Final = 1e-9

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.intp]


def district_medians(
    codes: _Int, z: _Float, z_ts: _Float, max_lag_s: float, n_codes: int
) -> tuple[_Float, npt.NDArray[np.int64]]:
    """Per (district code, field): median of the fresh latest z and how many devices gave it.

    Code 0 (district unknown) gets no median. A z is fresh when its time is within `max_lag_s`
    of the newest z time of its district and field.
    """
    m = z.shape[1]
    valid = ~np.isnan(z) & (codes > 0)[:, None]
    newest = np.full((n_codes, m), -np.inf)
    np.maximum.at(newest, codes, np.where(valid, z_ts, -np.inf))
    fresh = valid & (z_ts >= newest[codes] - max_lag_s)
    r_idx, f_idx = np.nonzero(fresh)
    group = codes[r_idx] * m + f_idx
    values = z[r_idx, f_idx]
    order = np.lexsort((values, group))
    ordered = values[order]
    counts = np.bincount(group, minlength=n_codes * m).astype(np.int64)
    starts = np.cumsum(counts) - counts
    have = counts > 0
    lo = np.where(have, starts + (counts - 1) // 2, 0)
    hi = np.where(have, starts + counts // 2, 0)
    medians = np.full(n_codes * m, np.nan)
    medians[have] = (ordered[lo[have]] + ordered[hi[have]]) / 2.0
    return medians.reshape(n_codes, m), counts.reshape(n_codes, m)


def learn_baseline(
    x: _Float,
    n: npt.NDArray[np.int64],
    mean: _Float,
    spread: _Float,
    rate: float,
    spread_rate: float,
) -> tuple[_Float, _Float]:
    """Mean and mean absolute deviation after learning x (the n-th value learned, from 0).

    Both start as plain running averages (rate 1/n) and settle into EWMAs at `rate` and the
    slower `spread_rate`: unbiased from the first values, and a slow drift that slips in
    before the detector stops learning inflates the spread only a little.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        new_mean = np.where(n == 0, x, mean + np.fmax(rate, 1.0 / (n + 1)) * (x - mean))
        dev = np.abs(x - mean)
        new_spread = np.where(
            n == 0,
            np.nan,
            np.where(
                np.isnan(spread),
                dev,
                spread + np.fmax(spread_rate, 1.0 / np.fmax(n, 1)) * (dev - spread),
            ),
        )
    return new_mean, new_spread


class DriftDetector:
    """Peer-relative drift detector over (devices x fields); see the module docstring."""

    name = "drift"
    report_all = True  # False: findings only for flagged readings (the live path)

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
    ) -> None:
        self.threshold = threshold
        self.fast = fast
        self.slow = slow
        self.spread_rate = spread_rate
        self.warmup = warmup
        self.min_stations = min_stations
        self.max_lag_s = max_lag_s
        self.floor = floor  # least residual spread (z units): a near-identical twin station
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

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        for name in ("mean", "spread", "z", "z_ts", "r_fast", "r_base", "r_spread"):
            setattr(self, name, grow(getattr(self, name), capacity, np.nan))
        self.learned = grow(self.learned, capacity, 0)
        self.r_learned = grow(self.r_learned, capacity, 0)

    def process(
        self,
        order: OrderedBatch,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        ref: npt.NDArray[np.int64],
        district: _Int,
    ) -> Findings:
        """A batch, round-major (see order_batch); `district` gives every state row's code."""
        parts = []
        for lo, hi in zip(order.bounds[:-1], order.bounds[1:], strict=True):
            parts.append(
                self.step(
                    order.rows[: hi - lo],
                    ts[lo:hi],
                    values[lo:hi],
                    present[lo:hi],
                    ref[lo:hi],
                    district,
                )
            )
        return Findings.concat(self.name, parts)

    def step(
        self,
        rows: _Int,
        ts: _Float,
        values: _Float,
        present: npt.NDArray[np.bool_],
        ref: npt.NDArray[np.int64],
        district: _Int,
    ) -> Findings:
        """One round; `district` gives the district code (0: none) of every state row."""
        mean, spread, n = self.mean[rows], self.spread[rows], self.learned[rows]
        # Masked-out cells (no or a vanishing spread) may overflow: they are discarded.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            z = np.where(
                present & (n >= self.warmup) & (spread > _TINY * np.fmax(1.0, np.abs(mean))),
                (values - mean) / spread,
                np.nan,
            )
        # Store this round's z first, so devices reporting together are each other's peers.
        known = ~np.isnan(z)
        self.z[rows] = np.where(known, z, self.z[rows])
        self.z_ts[rows] = np.where(known, ts[:, None], self.z_ts[rows])
        codes = district[: len(self.z)]
        n_codes = int(codes.max()) + 1 if len(codes) else 1
        medians, counts = district_medians(codes, self.z, self.z_ts, self.max_lag_s, n_codes)
        here = district[rows]
        r = np.where(known & (counts[here] >= self.min_stations), z - medians[here], np.nan)
        have_r = ~np.isnan(r)
        r_fast, r_base, r_spread = self.r_fast[rows], self.r_base[rows], self.r_spread[rows]
        r_n = self.r_learned[rows]
        r_fast = np.where(
            have_r, np.where(np.isnan(r_fast), r, r_fast + self.fast * (r - r_fast)), r_fast
        )
        judged = have_r & (r_n >= self.warmup) & (r_spread >= 0)
        with np.errstate(invalid="ignore"):
            departure = np.where(
                judged, np.abs(r_fast - r_base) / np.fmax(r_spread, self.floor), 0.0
            )
        drift = judged & (departure > self.threshold)
        score = np.clip(departure / (2 * self.threshold), 0.0, 1.0)
        # Stop learning as soon as a departure builds up (half the threshold), not only once
        # it is flagged: a slow drift would otherwise drag the baselines along with it.
        learn = present & ~(judged & (departure > self.threshold / 2))
        learn_r = learn & have_r
        new_mean, new_spread = learn_baseline(values, n, mean, spread, self.slow, self.spread_rate)
        new_base, new_r_spread = learn_baseline(
            r, r_n, r_base, r_spread, self.slow, self.spread_rate
        )
        self.mean[rows] = np.where(learn, new_mean, mean)
        self.spread[rows] = np.where(learn, new_spread, spread)
        self.learned[rows] = n + learn
        self.r_fast[rows] = r_fast
        self.r_base[rows] = np.where(learn_r, new_base, r_base)
        self.r_spread[rows] = np.where(learn_r, new_r_spread, r_spread)
        self.r_learned[rows] = r_n + learn_r
        pick = judged if self.report_all else drift
        r_, f_ = np.nonzero(pick)
        return Findings(
            self.name,
            np.broadcast_to(ref[:, None], present.shape)[r_, f_],
            rows[r_],
            f_.astype(np.intp),
            ts[r_],
            values[r_, f_],
            score[r_, f_],
            drift[r_, f_],
        )
