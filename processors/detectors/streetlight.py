"""Streetlight faults, per reading: dark at night, lit by day, power off the lamp's rating.

Day and night come from the sun's elevation at each lamp (processors.sun). Around sunrise and
sunset photocells legitimately differ by minutes, so only readings with the sun more than
`margin_deg` above or below the horizon are judged. The power tolerance (default 20 %) is a
practice value, not a standard (domain.md 4.4).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from processors.catalog import CATALOG, KindSpec
from processors.detectors.base import BatchView, Findings
from processors.detectors.protocol import DetectorBase, Report
from processors.sun import solar_elevation_deg

__all__ = ["StreetlightDetector", "streetlight_findings"]

_SPEC = CATALOG["streetlight"]
_ON, _DIM, _POWER = _SPEC.column("lamp_on"), _SPEC.column("dim_pct"), _SPEC.column("power_w")


class StreetlightDetector(DetectorBase):
    """The streetlight schedule and power checks (no state of their own)."""

    name = "streetlight"
    reports: ClassVar[tuple[Report, ...]] = (
        Report("lamp_out", "warning"),
        Report("day_burn", "info"),
        Report("power_off_rating", "warning"),
        Report("dim_not_honoured", "info"),
    )

    def __init__(self, *, tolerance: float = 0.2, margin_deg: float = 3.0) -> None:
        self.tolerance = tolerance
        self.margin_deg = margin_deg

    @classmethod
    def applies(cls, spec: KindSpec) -> bool:
        """Streetlights only."""
        return spec.kind == "streetlight"

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector (it judges every lit or dark reading whatever `report_all`)."""
        return cls(**params)

    def process(self, batch: BatchView) -> list[Findings]:
        """The fresh readings' findings, against each lamp's place and rating."""
        return streetlight_findings(
            batch.rows,
            batch.ts,
            batch.full,
            batch.usable,
            batch.ref,
            lat=batch.facts["lat"],
            lon=batch.facts["lon"],
            rated_w=batch.facts["rated_w"],
            tolerance=self.tolerance,
            margin_deg=self.margin_deg,
        )


def streetlight_findings(
    rows: npt.NDArray[np.intp],
    ts: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    present: npt.NDArray[np.bool_],
    ref: npt.NDArray[np.int64],
    *,
    lat: npt.NDArray[np.float64],
    lon: npt.NDArray[np.float64],
    rated_w: npt.NDArray[np.float64],
    tolerance: float = 0.2,
    margin_deg: float = 3.0,
) -> list[Findings]:
    """Findings `lamp_out`, `day_burn`, `power_off_rating`, `dim_not_honoured` (per row facts)."""
    elevation = solar_elevation_deg(lat[rows], lon[rows], ts)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        day, night = elevation > margin_deg, elevation < -margin_deg
        has_on = present[:, _ON]
        on = has_on & (values[:, _ON] == 1.0)
        off = has_on & (values[:, _ON] == 0.0)
        dim = np.where(present[:, _DIM], values[:, _DIM], 100.0)
        expected = rated_w[rows] * dim / 100.0
        power = np.where(present[:, _POWER], values[:, _POWER], np.nan)
        judged_power = on & ~np.isnan(power) & ~np.isnan(expected) & (expected > 0)
        deviation = np.abs(power - expected) / expected
        dark = off | (judged_power & (power < 0.1 * expected))
        off_rating = judged_power & (deviation > tolerance) & ~dark
        dim_ignored = off_rating & (dim < 100.0) & (power > expected)
        off_score = np.clip(np.nan_to_num(deviation, posinf=1.0) / (2 * tolerance), 0, 1)
    judged_light = has_on & (day | night)
    return [
        _findings("lamp_out", rows, ts, ref, power, judged_light & night, dark),
        _findings("day_burn", rows, ts, ref, values[:, _ON], judged_light & day, on),
        _findings(
            "power_off_rating",
            rows,
            ts,
            ref,
            power,
            judged_power,
            off_rating & ~dim_ignored,
            off_score,
        ),
        _findings("dim_not_honoured", rows, ts, ref, power, judged_power, dim_ignored),
    ]


def _findings(
    name: str,
    rows: npt.NDArray[np.intp],
    ts: npt.NDArray[np.float64],
    ref: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    judged: npt.NDArray[np.bool_],
    flag: npt.NDArray[np.bool_],
    score: npt.NDArray[np.float64] | None = None,
) -> Findings:
    keep = judged
    scores = flag.astype(np.float64) if score is None else score
    return Findings(
        name,
        ref[keep],
        rows[keep],
        np.full(int(keep.sum()), -1, dtype=np.intp),
        ts[keep],
        value[keep],
        scores[keep],
        (flag & judged)[keep],
    )
