"""Drift of a station against the other stations of its district.

Each device's field is standardised against its own slow baseline (EWMA mean and variance,
about two weeks); the residual r = z - mean z of the district's other devices (their latest
values) removes weather and pollution episodes that move the whole district. A drifting
sensor moves r away from its own slow level: the fast EWMA of r (about half a day) departs
from the slow one by more than `threshold` times r's usual dispersion. While a drift is
flagged nothing is learned, so the baseline does not follow the fault. Devices without at
least one peer are never judged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.detectors.base import Findings
from processors.state import grow

__all__ = ["DriftDetector"]


class DriftDetector:
    """Peer-relative drift detector over (devices x fields)."""

    name = "drift"
    report_all = True  # False: findings only for flagged readings (the live path)

    def __init__(
        self,
        n_fields: int,
        *,
        threshold: float = 4.0,
        fast: float = 1 / 12,
        slow: float = 1 / 336,
        warmup: int = 336,
    ) -> None:
        self.threshold = threshold
        self.fast = fast
        self.slow = slow
        self.warmup = warmup
        m = n_fields
        self.mean = np.full((0, m), np.nan)
        self.var = np.full((0, m), np.nan)
        self.z = np.full((0, m), np.nan)  # latest standardised value, for the peers
        self.r_fast = np.full((0, m), np.nan)
        self.r_slow = np.full((0, m), np.nan)
        self.r_spread = np.full((0, m), np.nan)
        self.seen = np.zeros((0, m), dtype=np.int64)
        # Derived: per district and field, the sum and count of the devices' latest z.
        self._sums = np.zeros((0, m))
        self._counts = np.zeros((0, m))
        self._codes = np.zeros(0, dtype=np.intp)  # district code each row was counted under

    def _rebuild(self, district: npt.NDArray[np.intp], n_codes: int) -> None:
        """Recount the district sums from scratch (new districts, rows or a restore)."""
        m = self.z.shape[1]
        codes = district[: len(self.z)]
        known = ~np.isnan(self.z)
        self._sums = np.zeros((max(n_codes, 1), m))
        self._counts = np.zeros((max(n_codes, 1), m))
        np.add.at(self._sums, codes, np.where(known, self.z, 0.0))
        np.add.at(self._counts, codes, known.astype(np.float64))
        self._codes = codes.copy()

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        for name in ("mean", "var", "z", "r_fast", "r_slow", "r_spread"):
            setattr(self, name, grow(getattr(self, name), capacity, np.nan))
        self.seen = grow(self.seen, capacity, 0)

    def step(
        self,
        rows: npt.NDArray[np.intp],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
        ref: npt.NDArray[np.int64],
        district: npt.NDArray[np.intp],
    ) -> Findings:
        """One round; `district` gives the district code of every state row."""
        mean, var, seen = self.mean[rows], self.var[rows], self.seen[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (values - mean) / np.sqrt(var)
        # Until the baseline has settled, z is meaningless (the first variances are ~0).
        z = np.where(present & (var > 0) & (seen >= self.warmup // 2), z, np.nan)
        # Peers: the latest z of every other device in the district, per field. The district
        # sums are kept up to date incrementally (only this round's devices change them).
        m = self.z.shape[1]
        codes_here = district[rows]
        n_codes = int(district.max()) + 1 if len(district) else 1
        if (
            self._sums.shape[0] < n_codes
            or self._codes.shape[0] < len(self.z)
            or np.any(self._codes[rows] != codes_here)
        ):
            self._rebuild(district, n_codes)
        sums, counts = self._sums, self._counts
        own = ~np.isnan(self.z[rows])
        peer_sum = sums[district[rows]] - np.where(own, self.z[rows], 0.0)
        # Code 0 means "district unknown": such devices have no peers.
        peer_n = np.where((district[rows] > 0)[:, None], counts[district[rows]] - own, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(peer_n > 0, z - peer_sum / peer_n, np.nan)
            r_slow, r_spread = self.r_slow[rows], self.r_spread[rows]
            r_fast = np.where(
                np.isnan(self.r_fast[rows]),
                r,
                self.r_fast[rows] + self.fast * (r - self.r_fast[rows]),
            )
            departure = np.abs(r_fast - r_slow) / np.fmax(r_spread, 0.05)
            judged = ~np.isnan(r) & (seen >= self.warmup) & ~np.isnan(r_slow)
            drift = judged & (departure > self.threshold)
            score = np.clip(departure / (2 * self.threshold), 0.0, 1.0)
            # One drifting station shifts its peers' residuals too (it is in their reference):
            # in each district only the station that departs most is blamed.
            strongest = np.zeros((sums.shape[0], m))
            np.maximum.at(strongest, district[rows], np.where(judged, departure, 0.0))
            drift &= departure >= strongest[district[rows]]
        # Stop learning as soon as a departure builds up (half the threshold), not only once
        # it is flagged: a slow drift would otherwise drag the baseline along with it.
        learn = present & ~(judged & (departure > self.threshold / 2))
        with np.errstate(invalid="ignore"):
            new_slow = np.where(np.isnan(r_slow), r, r_slow + self.slow * (r - r_slow))
            new_spread = np.where(
                np.isnan(r_spread),
                np.abs(r - r_slow),
                r_spread + self.slow * (np.abs(r - r_slow) - r_spread),
            )
            delta = values - mean
            new_mean = np.where(np.isnan(mean), values, mean + self.slow * delta)
            new_var = np.where(
                np.isnan(var), 0.0, (1 - self.slow) * (var + self.slow * delta * delta)
            )
        have_r = learn & ~np.isnan(r)
        self.r_fast[rows] = np.where(~np.isnan(r), r_fast, self.r_fast[rows])
        self.r_slow[rows] = np.where(have_r, new_slow, r_slow)
        self.r_spread[rows] = np.where(have_r & ~np.isnan(new_spread), new_spread, r_spread)
        self.mean[rows] = np.where(learn, new_mean, mean)
        self.var[rows] = np.where(learn, new_var, var)
        old_z = self.z[rows]
        new_z = np.where(present & ~np.isnan(z), z, old_z)
        self.z[rows] = new_z
        np.add.at(self._sums, codes_here, np.nan_to_num(new_z) - np.nan_to_num(old_z))
        np.add.at(
            self._counts, codes_here, (~np.isnan(new_z)).astype(np.float64) - (~np.isnan(old_z))
        )
        self.seen[rows] = seen + present
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
