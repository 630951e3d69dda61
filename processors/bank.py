"""The detector bank of one device kind: per-device state in arrays, one batch at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors import (
    DriftDetector,
    Findings,
    RateDetector,
    SilenceDetector,
    SpikeDetector,
    StuckDetector,
    streetlight_findings,
)
from processors.live import Indicators, LiveIndicators
from processors.state import DeviceTable, grow, order_batch

__all__ = ["SEVERITY", "DeviceFacts", "KindProcessor"]

# How urgent each finding is for the operations centre.
SEVERITY: Final = {
    "impossible": "critical",
    "flood_rise": "critical",
    "spike": "warning",
    "stuck": "warning",
    "rate_of_change": "warning",
    "dropout": "warning",
    "drift": "warning",
    "lamp_out": "warning",
    "power_off_rating": "warning",
    "day_burn": "info",
    "dim_not_honoured": "info",
}


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the registry knows of a device (NaN where it knows nothing)."""

    lat: float = float("nan")
    lon: float = float("nan")
    interval_s: float = float("nan")
    rated_w: float = float("nan")
    waspada_cm: float = float("nan")
    siaga_cm: float = float("nan")
    awas_cm: float = float("nan")


_FACTS: Final = tuple(f.name for f in fields(DeviceFacts))


class KindProcessor:
    """All detectors of one kind over all its devices; state survives via snapshot/restore."""

    def __init__(
        self,
        spec: KindSpec,
        facts: Mapping[str, DeviceFacts] | None = None,
        *,
        report_all: bool = True,
    ) -> None:
        self.spec = spec
        self.report_all = report_all  # False: only flagged findings (faster; the live path)
        self.facts = dict(facts or {})
        self.table = DeviceTable()
        self.last_ts = np.full(0, np.nan)
        self.device_facts = {name: np.full(0, np.nan) for name in _FACTS}
        self.spike = SpikeDetector(spec.resolutions())
        self.stuck = StuckDetector(spec.varies_mask())
        names = spec.field_names
        self.rate = RateDetector(
            spec.max_rates_per_h(),
            rise_field=names.index("level_cm") if "level_cm" in names else None,
            rain_field=names.index("rain_mm") if "rain_mm" in names else None,
        )
        self.silence = SilenceDetector()
        self.drift = DriftDetector(len(spec.fields))
        self._district_codes: dict[str, int] = {}
        self.district_code = np.zeros(0, dtype=np.intp)
        for detector in (self.spike, self.stuck, self.rate, self.silence, self.drift):
            detector.report_all = report_all
        self.live = LiveIndicators(spec)
        self.districts = np.full(0, "", dtype=object)
        self._touched: set[int] = set()
        self._lows, self._highs = spec.lows(), spec.highs()

    def _ensure(self, rows: npt.NDArray[np.intp]) -> None:
        known = len(self.last_ts)
        capacity = len(self.table)
        if capacity <= known:
            return
        capacity = max(capacity, 2 * known)
        self.last_ts = grow(self.last_ts, capacity, np.nan)
        for name in _FACTS:
            self.device_facts[name] = grow(self.device_facts[name], capacity, np.nan)
        for detector in (self.spike, self.stuck, self.rate, self.silence, self.drift, self.live):
            detector.ensure(capacity)
        self.districts = grow(self.districts, capacity, "")
        self.district_code = grow(self.district_code, capacity, 0)
        for row in range(known, len(self.table)):
            facts = self.facts.get(self.table.device_id(row))
            if facts is not None:
                for name in _FACTS:
                    self.device_facts[name][row] = getattr(facts, name)
        self.silence.known[known : len(self.table)] = self.device_facts["interval_s"][
            known : len(self.table)
        ]

    def process(
        self,
        device_ids: npt.ArrayLike,
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
        districts: npt.ArrayLike | None = None,
    ) -> list[Findings]:
        """Score one batch (any order, repeats allowed) and learn from its new readings."""
        rows = self.table.rows(device_ids)
        self._ensure(rows)
        if districts is not None:
            names = np.asarray(districts, dtype=object)
            self.districts[rows] = names
            codes = self._district_codes
            unique, inverse = np.unique(names.astype(str), return_inverse=True)
            known = np.array([codes.setdefault(str(d), len(codes) + 1) for d in unique], np.intp)
            self.district_code[rows] = known[inverse.reshape(-1)]
        n = len(rows)
        ref_all = np.arange(n, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            possible = (values >= self._lows) & (values <= self._highs) & np.isfinite(values)
        impossible = present & ~possible
        r, f = np.nonzero(present if self.report_all else impossible)
        findings = [
            Findings(
                "impossible",
                ref_all[r],
                rows[r],
                f.astype(np.intp),
                ts[r],
                values[r, f],
                impossible[r, f].astype(np.float64),
                impossible[r, f],
            )
        ]
        usable = present & possible
        ordered = order_batch(rows, ts, self.last_ts)
        spikes, stucks, rates, floods, gaps, drifts = [], [], [], [], [], []
        for positions in ordered.rounds:
            idx = ordered.index[positions]
            rr, tt, vv, pp = rows[idx], ts[idx], values[idx], usable[idx]
            ref = idx.astype(np.int64)
            spikes.append(self.spike.step(rr, tt, vv, pp, ref))
            stucks.append(self.stuck.step(rr, tt, vv, pp, ref))
            rate, flood = self.rate.step(rr, tt, vv, pp, ref)
            rates.append(rate)
            floods.append(flood)
            gaps.append(self.silence.step(rr, tt, ref))
            drifts.append(self.drift.step(rr, tt, vv, pp, ref, self.district_code))
            self.live.step(rr, tt, vv, pp, self.device_facts)
            self.last_ts[rr] = tt
        self._touched.update(rows[ordered.index].tolist())
        findings += [
            Findings.concat("spike", spikes),
            Findings.concat("stuck", stucks),
            Findings.concat("rate_of_change", rates),
            Findings.concat("flood_rise", floods),
            Findings.concat("dropout", gaps),
            Findings.concat("drift", drifts),
        ]
        if self.spec.kind == "streetlight" and len(ordered.index):
            idx = ordered.index
            findings += streetlight_findings(
                rows[idx],
                ts[idx],
                values[idx],
                usable[idx],
                idx.astype(np.int64),
                lat=self.device_facts["lat"],
                lon=self.device_facts["lon"],
                rated_w=self.device_facts["rated_w"],
            )
        return findings

    def indicators(self, now: float) -> Indicators:
        """Indicators of the devices (and districts) that got new readings since the last call."""
        rows = np.fromiter(self._touched, dtype=np.intp, count=len(self._touched))
        self._touched.clear()
        return self.live.compute(rows, self.device_facts, self.districts, now)

    def sweep(self, now: float) -> Findings:
        """Devices gone silent by `now` (each reported once per silence)."""
        return self.silence.sweep(now)

    def device_id(self, row: int) -> str:
        """The device id of a state row."""
        return self.table.device_id(row)

    # -- surviving a restart ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, npt.NDArray[Any]]:
        """Every state array, by name, for saving (e.g. numpy.savez)."""
        arrays: dict[str, npt.NDArray[Any]] = {
            "ids": np.array(self.table.ids, dtype=str),
            "last_ts": self.last_ts,
        }
        for detector in (self.spike, self.stuck, self.rate, self.silence, self.drift, self.live):
            for name, value in vars(detector).items():
                if isinstance(value, np.ndarray) and value.shape[:1] == self.last_ts.shape[:1]:
                    arrays[f"{_label(detector)}.{name}"] = value
        arrays["districts"] = self.districts.astype(str)
        return arrays

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Load state saved by snapshot() (same kind); devices keep their rows."""
        self.table = DeviceTable(str(d) for d in arrays["ids"])
        self.last_ts = np.array(arrays["last_ts"], dtype=np.float64)
        rows = np.arange(len(self.table), dtype=np.intp)
        for detector in (self.spike, self.stuck, self.rate, self.silence, self.drift, self.live):
            for name, value in vars(detector).items():
                key = f"{_label(detector)}.{name}"
                if isinstance(value, np.ndarray) and key in arrays:
                    setattr(detector, name, np.array(arrays[key], dtype=value.dtype))
        if "districts" in arrays:
            self.districts = np.array(arrays["districts"], dtype=object)
        self.districts = grow(self.districts, len(rows), "")
        self._district_codes = {}
        self.district_code = np.zeros(len(rows), dtype=np.intp)
        for row, name in enumerate(self.districts[: len(rows)].tolist()):
            if name:
                code = self._district_codes.setdefault(str(name), len(self._district_codes) + 1)
                self.district_code[row] = code
        self.device_facts = {name: np.full(len(rows), np.nan) for name in _FACTS}
        for row in rows.tolist():
            facts = self.facts.get(self.table.device_id(row))
            if facts is not None:
                for name in _FACTS:
                    self.device_facts[name][row] = getattr(facts, name)


def _label(part: object) -> str:
    return str(getattr(part, "name", type(part).__name__))
