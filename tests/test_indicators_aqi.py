"""US EPA AQI (2024): hand-computed cases from domain.md section 2, and fast vs reference twins."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.indicators.aqi import (
    AQI_AVERAGING_S,
    AQI_BANDS,
    AQI_POLLUTANTS,
    AQI_SCALE,
    AQI_UGM3_PER_UNIT,
    aqi_index,
    aqi_subindex,
    to_aqi_units,
    truncate,
)
from processors.indicators.ispu import ispu_index
from processors.indicators.reference import aqi_ref, aqi_subindex_ref, level_ref


def ug(pollutant: str, value_in_table_units: float) -> float:
    """A concentration given in the table's unit (ppm/ppb) expressed in ug/m3."""
    return value_in_table_units * AQI_UGM3_PER_UNIT[pollutant]


@pytest.mark.parametrize(
    ("pollutant", "table_value", "expected"),
    [
        # PM2.5, 2024 breakpoints: Good ends at 9.0 (was 12.0 before 2024).
        ("pm25", 0.0, 0.0),
        ("pm25", 9.0, 50.0),
        ("pm25", 9.05, 50.0),  # truncated to 9.0
        ("pm25", 9.1, 51.0),
        ("pm25", 12.0, 51 + 49 / 26.3 * 2.9),  # 2018 table would say 50
        ("pm25", 35.4, 100.0),
        ("pm25", 35.45, 100.0),
        ("pm25", 35.5, 101.0),
        ("pm25", 55.4, 150.0),
        ("pm25", 125.4, 200.0),
        ("pm25", 225.4, 300.0),
        ("pm25", 225.5, 301.0),
        ("pm25", 325.4, 500.0),
        ("pm10", 54.0, 50.0),
        ("pm10", 55.0, 51.0),
        ("pm10", 154.0, 100.0),
        ("pm10", 604.0, 500.0),
        ("o3_8h", 0.054, 50.0),
        ("o3_8h", 0.070, 100.0),
        ("o3_8h", 0.200, 300.0),
        ("o3_1h", 0.125, 101.0),
        ("o3_1h", 0.604, 500.0),
        ("co", 4.4, 50.0),
        ("co", 9.4, 100.0),
        ("co", 50.4, 500.0),
        ("so2", 35.0, 50.0),
        ("so2", 75.0, 100.0),
        ("so2", 304.0, 200.0),
        ("so2_24h", 305.0, 201.0),
        ("so2_24h", 1004.0, 500.0),
        ("no2", 53.0, 50.0),
        ("no2", 100.0, 100.0),
        ("no2", 2049.0, 500.0),
    ],
)
def test_subindex_hand_computed(pollutant: str, table_value: float, expected: float) -> None:
    result = aqi_subindex(pollutant, [ug(pollutant, table_value)])[0]
    assert result == pytest.approx(expected, abs=1e-9)


def test_unit_conversions_from_domain_1_3() -> None:
    assert to_aqi_units("no2", [190.0])[0] == pytest.approx(100.0)  # 1.9 ug/m3 per ppb
    assert to_aqi_units("so2", [262.0])[0] == pytest.approx(100.0)  # 2.62
    assert to_aqi_units("o3_8h", [137.2])[0] == pytest.approx(0.070)  # 1.96 per ppb, in ppm
    assert to_aqi_units("co", [1145.0])[0] == pytest.approx(1.0)  # 1145 per ppm
    assert to_aqi_units("pm25", [12.3])[0] == 12.3


def test_truncation_forgives_conversion_noise() -> None:
    assert truncate([0.07 * (1 - 1e-15), 0.0709], 3).tolist() == [0.07, 0.07]
    assert truncate([35.49], 1)[0] == 35.4


def test_undefined_and_capped_rules() -> None:
    # 1-h O3 below 0.125 ppm and 24-h SO2 below 305 ppb have no sub-index.
    assert math.isnan(aqi_subindex("o3_1h", [ug("o3_1h", 0.1)])[0])
    assert math.isnan(aqi_subindex("so2_24h", [ug("so2_24h", 200.0)])[0])
    # 8-h O3 stops at 300 and 1-h SO2 at 200: capped and flagged.
    result = aqi_index({"o3_8h": [ug("o3_8h", 0.3)], "so2": [ug("so2", 500.0)]})
    assert result.subindices["o3_8h"][0] == 300.0
    assert result.subindices["so2"][0] == 200.0
    assert result.capped[0]
    # With the 1-h O3 value given, it sets the higher AQI.
    both = aqi_index({"o3_8h": [ug("o3_8h", 0.3)], "o3_1h": [ug("o3_1h", 0.505)]})
    assert both.critical[0] == "o3_1h"
    assert both.reported[0] == 401  # 301 + 199 / 0.199 * (0.505 - 0.405)


def test_above_top_capped_at_500() -> None:
    result = aqi_index({"pm25": [400.0, math.nan]})
    assert result.index[0] == 500.0
    assert result.capped.tolist() == [True, False]
    assert math.isnan(result.index[1])
    assert result.critical.tolist() == ["pm25", ""]


@pytest.mark.parametrize(
    ("index", "category", "hex_code"),
    [
        (50.0, "Good", "#00E400"),
        (51.0, "Moderate", "#FFFF00"),
        (100.0, "Moderate", "#FFFF00"),
        (101.0, "Unhealthy for Sensitive Groups", "#FF7E00"),
        (150.0, "Unhealthy for Sensitive Groups", "#FF7E00"),
        (151.0, "Unhealthy", "#FF0000"),
        (200.0, "Unhealthy", "#FF0000"),
        (201.0, "Very Unhealthy", "#8F3F97"),
        (300.0, "Very Unhealthy", "#8F3F97"),
        (301.0, "Hazardous", "#7E0023"),
    ],
)
def test_category_bands(index: float, category: str, hex_code: str) -> None:
    level = AQI_SCALE.level([index])[0]
    assert AQI_SCALE.names[level] == category
    assert AQI_SCALE.hex[level] == hex_code


def test_ispu_and_aqi_disagree_as_domain_2_says() -> None:
    # PM2.5 35.45 ug/m3: ISPU 75 "Sedang" (blue) but US AQI 100 "Moderate" (yellow);
    # 50 ug/m3 is still ISPU "Sedang" but US "Unhealthy for Sensitive Groups".
    conc = {"pm25": [35.45, 50.0]}
    assert ispu_index(conc).category.tolist() == ["Sedang", "Sedang"]
    assert aqi_index(conc).category.tolist() == ["Moderate", "Unhealthy for Sensitive Groups"]


def test_averaging_periods_follow_the_table() -> None:
    assert set(AQI_AVERAGING_S) == set(AQI_POLLUTANTS)
    assert AQI_AVERAGING_S["pm25"] == 24 * 3600.0
    assert AQI_AVERAGING_S["o3_8h"] == AQI_AVERAGING_S["co"] == 8 * 3600.0
    assert AQI_AVERAGING_S["no2"] == AQI_AVERAGING_S["so2"] == 3600.0


def test_bands_are_contiguous_at_table_precision() -> None:
    decimals = {"pm25": 0.1, "pm10": 1.0, "o3_8h": 0.001, "o3_1h": 0.001, "co": 0.1}
    for pollutant, bands in AQI_BANDS.items():
        step = decimals.get(pollutant, 1.0)
        for (_, hi, _, i_hi), (lo, _, i_lo, _) in itertools.pairwise(bands):
            assert lo == pytest.approx(hi + step), pollutant
            assert i_lo == i_hi + 1, pollutant


def test_unknown_pollutant_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown AQI pollutant"):
        aqi_subindex("o3", [1.0])
    with pytest.raises(ValueError, match="pollutants must be"):
        aqi_index({"o3": [1.0]})


# --- property tests: fast vs reference -------------------------------------------------------

ugm3 = st.one_of(
    st.just(math.nan),
    st.floats(min_value=-5.0, max_value=5000.0, allow_nan=False),
    st.sampled_from([ug(p, b[k]) for p, bands in AQI_BANDS.items() for b in bands for k in (0, 1)]),
)


@settings(deadline=None)  # timing varies on shared CI machines
@given(st.sampled_from(AQI_POLLUTANTS), st.lists(ugm3, max_size=40))
def test_subindex_matches_reference(pollutant: str, values: list[float]) -> None:
    fast = aqi_subindex(pollutant, values)
    ref = [aqi_subindex_ref(pollutant, v) for v in values]
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-9, equal_nan=True)


@settings(deadline=None)
@given(
    st.lists(st.sampled_from(AQI_POLLUTANTS), min_size=1, max_size=8, unique=True),
    st.integers(min_value=1, max_value=30),
    st.data(),
)
def test_aqi_matches_reference_per_station(
    pollutants: list[str], n_stations: int, data: st.DataObject
) -> None:
    conc = {
        p: data.draw(st.lists(ugm3, min_size=n_stations, max_size=n_stations)) for p in pollutants
    }
    fast = aqi_index(conc)
    for i in range(n_stations):
        ref = aqi_ref({p: conc[p][i] for p in pollutants})
        if math.isnan(ref.index):
            assert math.isnan(fast.index[i])
            assert fast.critical[i] == ""
        else:
            assert fast.index[i] == pytest.approx(ref.index, rel=1e-12, abs=1e-9)
        if abs(ref.index % 1.0 - 0.5) > 1e-9:
            assert fast.level[i] == ref.level == level_ref(ref.index, AQI_SCALE)
            assert fast.category[i] == ref.category
        assert fast.capped[i] == ref.capped
        present = sorted(
            v for v in (aqi_subindex_ref(p, conc[p][i]) for p in pollutants) if not math.isnan(v)
        )
        if len(present) < 2 or present[-1] == present[-2] or present[-1] - present[-2] > 1e-9:
            assert fast.critical[i] == ref.critical
