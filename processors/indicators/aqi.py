"""US EPA AQI (2024 revision) beside ISPU, same API shape, from concentrations in ug/m3.

Sources are the sections of shared/reference/domain.md:

- 2: breakpoints of EPA-454/B-24-002 (May 2024), with the February 2024 PM2.5 change (Good now
  ends at 9.0 ug/m3, and the 301-500 band runs 225.5-325.4; before 2024 the edges were 12.0 /
  35.4 / 55.4 / 150.4 / 250.4 / 350.4 / 500.4 and many libraries still use them).
- 2: EPA's rules: concentrations are truncated to the table's precision, the sub-index is
  interpolated inside the band, the AQI is the highest sub-index (the critical pollutant) and is
  published as an integer. 8-h O3 does not define an AQI above 300 and 1-h SO2 none above 200:
  such values are capped there and flagged; pass `o3_1h` / `so2_24h` for the higher bands.
  1-h O3 is defined only from 0.125 ppm (AQI 101) and 24-h SO2 only from 305 ppb (AQI 201); below
  those their sub-index is NaN and the 8-h O3 / 1-h SO2 value governs.
- Above the top breakpoint the AQI is capped at 500 and flagged, as for ISPU (EPA's handling of
  "beyond the AQI" values is not in domain.md: [UNVERIFIED]).
- 1.3: unit conversions at 25 C and 1 atm (ITU U4SSC manual): NO2 1 ppb = 1.9 ug/m3 (others use
  1.88), SO2 1 ppb = 2.62 ug/m3, O3 1 ppb = 1.96 ug/m3; CO 1 ppm = 1145 ug/m3 (28.01 / 24.45,
  standard arithmetic, no source retrieved).

Averaging periods follow the table headings. They are plain rolling means here; EPA's NowCast for
hourly PM and O3 reports is not implemented.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from processors.indicators.ispu import CategoryScale, IndexResult, combine_subindices

__all__ = [
    "AQI_AVERAGING_S",
    "AQI_BANDS",
    "AQI_DECIMALS",
    "AQI_POLLUTANTS",
    "AQI_SCALE",
    "AQI_UGM3_PER_UNIT",
    "AQI_UNITS",
    "AqiResult",
    "aqi_index",
    "aqi_subindex",
    "to_aqi_units",
    "truncate",
]

_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]

# Table column order; it also breaks ties for the critical pollutant.
AQI_POLLUTANTS: Final = ("pm25", "pm10", "o3_8h", "o3_1h", "co", "so2", "so2_24h", "no2")
AQI_UNITS: Final = MappingProxyType(
    {
        "pm25": "ug/m3",
        "pm10": "ug/m3",
        "o3_8h": "ppm",
        "o3_1h": "ppm",
        "co": "ppm",
        "so2": "ppb",
        "so2_24h": "ppb",
        "no2": "ppb",
    }
)
# ug/m3 per table unit (domain.md 1.3); O3 is tabled in ppm, so 1.96 ug/m3 per ppb * 1000.
AQI_UGM3_PER_UNIT: Final = MappingProxyType(
    {
        "pm25": 1.0,
        "pm10": 1.0,
        "o3_8h": 1960.0,
        "o3_1h": 1960.0,
        "co": 1145.0,
        "so2": 2.62,
        "so2_24h": 2.62,
        "no2": 1.9,
    }
)
# EPA truncates each concentration to the precision of its breakpoints before the lookup.
AQI_DECIMALS: Final = MappingProxyType(
    {"pm25": 1, "pm10": 0, "o3_8h": 3, "o3_1h": 3, "co": 1, "so2": 0, "so2_24h": 0, "no2": 0}
)
# (C_lo, C_hi, I_lo, I_hi) per band, in table units (domain.md 2).
AQI_BANDS: Final = MappingProxyType(
    {
        "pm25": (
            (0.0, 9.0, 0, 50),
            (9.1, 35.4, 51, 100),
            (35.5, 55.4, 101, 150),
            (55.5, 125.4, 151, 200),
            (125.5, 225.4, 201, 300),
            (225.5, 325.4, 301, 500),
        ),
        "pm10": (
            (0.0, 54.0, 0, 50),
            (55.0, 154.0, 51, 100),
            (155.0, 254.0, 101, 150),
            (255.0, 354.0, 151, 200),
            (355.0, 424.0, 201, 300),
            (425.0, 604.0, 301, 500),
        ),
        "o3_8h": (
            (0.0, 0.054, 0, 50),
            (0.055, 0.070, 51, 100),
            (0.071, 0.085, 101, 150),
            (0.086, 0.105, 151, 200),
            (0.106, 0.200, 201, 300),
        ),
        "o3_1h": (
            (0.125, 0.164, 101, 150),
            (0.165, 0.204, 151, 200),
            (0.205, 0.404, 201, 300),
            (0.405, 0.604, 301, 500),
        ),
        "co": (
            (0.0, 4.4, 0, 50),
            (4.5, 9.4, 51, 100),
            (9.5, 12.4, 101, 150),
            (12.5, 15.4, 151, 200),
            (15.5, 30.4, 201, 300),
            (30.5, 50.4, 301, 500),
        ),
        "so2": (
            (0.0, 35.0, 0, 50),
            (36.0, 75.0, 51, 100),
            (76.0, 185.0, 101, 150),
            (186.0, 304.0, 151, 200),
        ),
        "so2_24h": (
            (305.0, 604.0, 201, 300),
            (605.0, 1004.0, 301, 500),
        ),
        "no2": (
            (0.0, 53.0, 0, 50),
            (54.0, 100.0, 51, 100),
            (101.0, 360.0, 101, 150),
            (361.0, 649.0, 151, 200),
            (650.0, 1249.0, 201, 300),
            (1250.0, 2049.0, 301, 500),
        ),
    }
)
_HOUR = 3600.0
AQI_AVERAGING_S: Final = MappingProxyType(
    {
        "pm25": 24 * _HOUR,
        "pm10": 24 * _HOUR,
        "o3_8h": 8 * _HOUR,
        "o3_1h": _HOUR,
        "co": 8 * _HOUR,
        "so2": _HOUR,
        "so2_24h": 24 * _HOUR,
        "no2": _HOUR,
    }
)
AQI_SCALE: Final = CategoryScale(
    lower=(0, 51, 101, 151, 201, 301),
    names=(
        "Good",
        "Moderate",
        "Unhealthy for Sensitive Groups",
        "Unhealthy",
        "Very Unhealthy",
        "Hazardous",
    ),
    colours=("green", "yellow", "orange", "red", "purple", "maroon"),
    hex=("#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#8F3F97", "#7E0023"),
)

AqiResult = IndexResult


def to_aqi_units(pollutant: str, conc_ugm3: npt.ArrayLike) -> _Float:
    """Concentration in ug/m3 converted to the unit of the pollutant's AQI table."""
    _check_pollutant(pollutant)
    result: _Float = np.asarray(conc_ugm3, dtype=np.float64) / AQI_UGM3_PER_UNIT[pollutant]
    return result


def truncate(conc: npt.ArrayLike, decimals: int) -> _Float:
    """Truncate to `decimals` places as EPA does, forgiving float noise (0.07 stays 0.070)."""
    scale = 10.0**decimals
    # The 1e-6 (of one last-place unit) absorbs representation error from unit conversion.
    result: _Float = np.floor(np.asarray(conc, dtype=np.float64) * scale + 1e-6) / scale
    return result


def aqi_subindex(pollutant: str, conc_ugm3: npt.ArrayLike) -> _Float:
    """AQI sub-index of one pollutant from ug/m3, unrounded; NaN stays NaN, capped at the top."""
    return _subindex_and_capped(pollutant, conc_ugm3)[0]


def _subindex_and_capped(pollutant: str, conc_ugm3: npt.ArrayLike) -> tuple[_Float, _Bool]:
    """AQI sub-index and whether the concentration was above the table's top (capped)."""
    _check_pollutant(pollutant)
    bands = np.asarray(AQI_BANDS[pollutant], dtype=np.float64)
    c_lo, c_hi, i_lo, i_hi = bands.T
    c = truncate(np.maximum(to_aqi_units(pollutant, conc_ugm3), 0.0), AQI_DECIMALS[pollutant])
    band = np.searchsorted(c_lo, c, side="right") - 1
    k = np.clip(band, 0, len(bands) - 1)
    inside = (i_hi[k] - i_lo[k]) / (c_hi[k] - c_lo[k]) * (c - c_lo[k]) + i_lo[k]
    capped = c > c_hi[-1]
    # band < 0: below a table that starts above zero (1-h O3, 24-h SO2); NaN also stays NaN.
    value = np.where(capped, i_hi[-1], np.where(band >= 0, inside, np.nan))
    return np.asarray(value, dtype=np.float64), np.asarray(capped, dtype=np.bool_)


def aqi_index(concentrations: Mapping[str, npt.ArrayLike]) -> IndexResult:
    """US AQI per station from concentrations (ug/m3) keyed by AQI pollutant, broadcast together."""
    unknown = sorted(set(concentrations) - set(AQI_POLLUTANTS))
    if unknown or not concentrations:
        raise ValueError(
            f"pollutants must be some of {', '.join(AQI_POLLUTANTS)}; got {sorted(concentrations)}"
        )
    known = [p for p in AQI_POLLUTANTS if p in concentrations]
    arrays = np.broadcast_arrays(*(np.asarray(concentrations[p], dtype=np.float64) for p in known))
    subindices: dict[str, _Float] = {}
    capped = np.zeros(arrays[0].shape, dtype=np.bool_)
    for p, a in zip(
        known, arrays, strict=True
    ):  # one pass per pollutant (8 at most), never per station
        subindices[p], over = _subindex_and_capped(p, a)
        capped |= over
    return combine_subindices(subindices, capped, AQI_SCALE)


def _check_pollutant(pollutant: str) -> None:
    """ValueError naming the known pollutants."""
    if pollutant not in AQI_BANDS:
        raise ValueError(f"unknown AQI pollutant {pollutant!r}; known: {', '.join(AQI_POLLUTANTS)}")
