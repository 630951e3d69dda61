"""ISPU (P.14/2020): hand-computed cases from the regulation table, and fast vs reference twins."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.indicators.ispu import (
    ISPU_AVERAGING_S,
    ISPU_BREAKPOINTS,
    ISPU_INDEX_POINTS,
    ISPU_POLLUTANTS,
    ISPU_SCALE,
    combine_subindices,
    ispu_averages,
    ispu_index,
    ispu_subindex,
    rolling_mean,
)
from processors.indicators.reference import (
    ispu_ref,
    ispu_subindex_ref,
    level_ref,
    rolling_mean_ref,
)

# --- sub-index: hand-computed from domain.md 1.3 / 1.5 --------------------------------------


@pytest.mark.parametrize(
    ("pollutant", "conc", "expected"),
    [
        ("pm25", 0.0, 0.0),
        ("pm25", 15.5, 50.0),
        ("pm25", 55.4, 100.0),
        ("pm25", 35.45, 75.0),  # midpoint of 15.5-55.4 -> midpoint of 50-100
        ("pm25", 150.4, 200.0),
        ("pm25", 250.4, 300.0),
        ("pm25", 375.2, 400.0),  # midpoint of the last segment 250.4-500 -> 300-500
        ("pm25", 500.0, 500.0),
        ("pm10", 50.0, 50.0),
        ("pm10", 100.0, 75.0),
        ("pm10", 150.0, 100.0),
        ("pm10", 350.0, 200.0),
        ("pm10", 420.0, 300.0),
        ("pm10", 460.0, 400.0),
        ("so2", 52.0, 50.0),
        ("so2", 1000.0, 400.0),  # 800 -> 300, top 1200 -> 500 ([CONFLICT] resolved: not 1000)
        ("so2", 1200.0, 500.0),
        ("co", 4000.0, 50.0),
        ("co", 6000.0, 75.0),
        ("co", 8000.0, 100.0),
        ("co", 45000.0, 500.0),
        ("o3", 235.0, 100.0),
        ("no2", 80.0, 50.0),  # [CONFLICT] resolved: 80/200, not 160/400
        ("no2", 140.0, 75.0),
        ("no2", 200.0, 100.0),
        ("hc", 45.0, 50.0),
        ("hc", 648.0, 500.0),
    ],
)
def test_subindex_hand_computed(pollutant: str, conc: float, expected: float) -> None:
    assert ispu_subindex(pollutant, [conc])[0] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("pollutant", ISPU_POLLUTANTS)
def test_every_breakpoint_maps_exactly_to_its_band_value(pollutant: str) -> None:
    result = ispu_subindex(pollutant, ISPU_BREAKPOINTS[pollutant])
    assert result.tolist() == list(ISPU_INDEX_POINTS)


def test_above_top_is_capped_at_500_and_flagged() -> None:
    result = ispu_index({"pm25": [499.9, 500.0, 600.0, 5000.0]})
    assert result.index.tolist()[1:] == [500.0, 500.0, 500.0]
    assert result.capped.tolist() == [False, False, True, True]
    assert result.category.tolist()[2:] == ["Berbahaya", "Berbahaya"]


def test_negative_concentration_clamps_to_zero_and_nan_stays_nan() -> None:
    result = ispu_subindex("pm10", [-3.0, math.nan])
    assert result[0] == 0.0
    assert math.isnan(result[1])


def test_discrete_edge_convention_differs_by_about_one_point() -> None:
    # Continuous segments: 15.6 is just above 50; the discrete-edge reading (15.6-55.4 -> 51-100)
    # would give exactly 51. The difference stays within about one index point (domain.md 1.5).
    continuous = ispu_subindex("pm25", [15.6])[0]
    discrete = 51 + (100 - 51) / (55.4 - 15.6) * (15.6 - 15.6)
    assert continuous == pytest.approx(50 + 50 * 0.1 / 39.9, abs=1e-9)
    assert abs(continuous - discrete) <= 1.0


def test_unknown_pollutant_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"pm2\.5"):
        ispu_subindex("pm2.5", [1.0])
    with pytest.raises(ValueError, match="pollutants must be"):
        ispu_index({"pm25": [1.0], "lead": [1.0]})
    with pytest.raises(ValueError, match="pollutants must be"):
        ispu_index({})


# --- categories and colours (domain.md 1.2) ------------------------------------------------


@pytest.mark.parametrize(
    ("index", "category", "colour", "hex_code"),
    [
        (0.0, "Baik", "hijau", "#00cc00"),
        (50.0, "Baik", "hijau", "#00cc00"),
        (50.49, "Baik", "hijau", "#00cc00"),  # rounds to 50
        (50.5, "Sedang", "biru", "#0000cc"),  # rounds half up to 51
        (51.0, "Sedang", "biru", "#0000cc"),
        (100.0, "Sedang", "biru", "#0000cc"),
        (100.5, "Tidak Sehat", "kuning", "#cccc00"),
        (101.0, "Tidak Sehat", "kuning", "#cccc00"),
        (200.0, "Tidak Sehat", "kuning", "#cccc00"),
        (201.0, "Sangat Tidak Sehat", "merah", "#cc0000"),
        (300.0, "Sangat Tidak Sehat", "merah", "#cc0000"),
        (300.4, "Sangat Tidak Sehat", "merah", "#cc0000"),
        (301.0, "Berbahaya", "hitam", "#000000"),
        (500.0, "Berbahaya", "hitam", "#000000"),
    ],
)
def test_category_bands_2020(index: float, category: str, colour: str, hex_code: str) -> None:
    subindices = {"pm25": np.array([index])}
    result = combine_subindices(subindices, np.array([False]), ISPU_SCALE)
    assert result.category[0] == category
    assert result.colour[0] == colour
    assert result.colour_hex[0] == hex_code
    assert result.reported[0] == math.floor(index + 0.5)


def test_category_from_concentrations_at_band_edges() -> None:
    # PM10 concentrations whose sub-index is 50, 51, 100, 101, 200, 201, 300, 301.
    conc = [50.0, 52.0, 150.0, 152.0, 350.0, 350.0 + 70 / 100, 420.0, 420.0 + 80 / 200]
    result = ispu_index({"pm10": conc})
    assert result.reported.tolist() == [50, 51, 100, 101, 200, 201, 300, 301]
    assert result.level.tolist() == [0, 1, 1, 2, 2, 3, 3, 4]


# --- overall index, critical pollutant, NaN -------------------------------------------------


def test_overall_is_max_and_names_the_critical_pollutant() -> None:
    result = ispu_index(
        {
            "pm25": [80.0, 10.0, math.nan, math.nan, 55.4],
            "pm10": [200.0, 20.0, 100.0, math.nan, 150.0],
            "co": [1000.0, 9000.0, math.nan, math.nan, 0.0],
        }
    )
    # Station 0: PM2.5 100 + 100 * 24.6 / 95 = 125.89 beats PM10 125.0.
    assert result.index[0] == pytest.approx(100 + 100 * (80 - 55.4) / (150.4 - 55.4))
    assert result.critical.tolist() == ["pm25", "co", "pm10", "", "pm10"]
    assert result.index[2] == pytest.approx(75.0)  # only PM10 present
    assert math.isnan(result.index[3])  # nothing measured
    assert result.level[3] == -1
    assert result.category[3] == ""
    assert result.colour_hex[3] == ""
    # Station 4: PM10 150 and PM2.5 55.4 both give 100; the tie goes to PM10 (regulation order).
    assert result.index[4] == 100.0
    assert list(result.subindices) == ["pm10", "pm25", "co"]


def test_scalar_broadcasts_against_station_arrays() -> None:
    result = ispu_index({"pm25": [10.0, 100.0], "co": 8000.0})
    assert result.index.shape == (2,)
    assert result.critical.tolist() == ["co", "pm25"]


def test_ten_thousand_stations_take_a_few_milliseconds() -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    conc = {p: rng.uniform(0, ISPU_BREAKPOINTS[p][-1] * 1.1, n) for p in ISPU_POLLUTANTS}
    conc["o3"][rng.random(n) < 0.3] = np.nan
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        ispu_index(conc)
        best = min(best, time.perf_counter() - start)
    assert best < 0.05, f"ISPU for 10k stations took {best * 1000:.1f} ms"


# --- property tests: fast vs reference -------------------------------------------------------

conc_values = st.one_of(
    st.just(math.nan),
    st.floats(min_value=-10.0, max_value=60000.0, allow_nan=False),
    st.sampled_from([bp for p in ISPU_POLLUTANTS for bp in ISPU_BREAKPOINTS[p]]),
)


@settings(deadline=None)  # timing varies on shared CI machines
@given(st.sampled_from(ISPU_POLLUTANTS), st.lists(conc_values, max_size=40))
def test_subindex_matches_reference(pollutant: str, values: list[float]) -> None:
    fast = ispu_subindex(pollutant, values)
    ref = [ispu_subindex_ref(pollutant, v) for v in values]
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-9, equal_nan=True)


@settings(deadline=None)
@given(
    st.lists(st.sampled_from(ISPU_POLLUTANTS), min_size=1, max_size=7, unique=True),
    st.integers(min_value=1, max_value=30),
    st.data(),
)
def test_ispu_matches_reference_per_station(
    pollutants: list[str], n_stations: int, data: st.DataObject
) -> None:
    conc = {
        p: data.draw(st.lists(conc_values, min_size=n_stations, max_size=n_stations))
        for p in pollutants
    }
    fast = ispu_index(conc)
    for i in range(n_stations):
        ref = ispu_ref({p: conc[p][i] for p in pollutants})
        if math.isnan(ref.index):
            assert math.isnan(fast.index[i])
        else:
            assert fast.index[i] == pytest.approx(ref.index, rel=1e-12, abs=1e-9)
        if abs(ref.index % 1.0 - 0.5) > 1e-9:  # rounding at an exact .5 is float-order sensitive
            assert fast.level[i] == ref.level
            assert fast.category[i] == ref.category
            assert fast.colour[i] == ref.colour
            assert fast.colour_hex[i] == ref.colour_hex
        assert fast.capped[i] == ref.capped
        present = sorted(
            v for v in (ispu_subindex_ref(p, conc[p][i]) for p in pollutants) if not math.isnan(v)
        )
        # Exact ties must go to the first pollutant; near-ties within float noise may go either way.
        if len(present) < 2 or present[-1] == present[-2] or present[-1] - present[-2] > 1e-9:
            assert fast.critical[i] == ref.critical


@settings(deadline=None)
@given(st.floats(min_value=0.0, max_value=600.0), st.floats(min_value=0.0, max_value=600.0))
def test_subindex_is_monotonic(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    sub = ispu_subindex("pm25", [lo, hi])
    assert sub[0] <= sub[1]


@settings(deadline=None)
@given(st.floats(min_value=0.0, max_value=600.0, allow_nan=False))
def test_level_matches_reference(index: float) -> None:
    assert ISPU_SCALE.level([index])[0] == level_ref(index, ISPU_SCALE)


# --- averaging windows (domain.md 1.4) -----------------------------------------------------

HOUR = 3600.0


def test_default_windows_are_24h_for_every_pollutant() -> None:
    assert set(ISPU_AVERAGING_S) == set(ISPU_POLLUTANTS)
    assert set(ISPU_AVERAGING_S.values()) == {24 * HOUR}


def test_rolling_mean_coverage_rule() -> None:
    # Hourly readings: 18 of 24 in the window (75 %) give a mean, 17 do not.
    ts = np.arange(24) * HOUR
    values = np.arange(24, dtype=np.float64)
    values[:6] = np.nan  # 18 valid readings, hours 6..23
    mean = rolling_mean(np.zeros(24), ts, values, window_s=24 * HOUR, interval_s=HOUR)
    assert mean[-1] == pytest.approx(np.mean(np.arange(6, 24)))
    assert np.isnan(mean[-2])  # 17 valid readings at hour 22
    assert np.isnan(mean[:-1]).all()


def test_rolling_mean_window_is_left_open_right_closed() -> None:
    ts = np.array([0.0, HOUR, 2 * HOUR])
    mean = rolling_mean(
        [1, 1, 1], ts, [10.0, 20.0, 30.0], window_s=2 * HOUR, interval_s=HOUR, min_coverage=0.0
    )
    assert mean.tolist() == [10.0, 15.0, 25.0]  # the reading exactly 2 h before is outside


def test_rolling_mean_keeps_stations_apart_and_input_order() -> None:
    station = [2, 1, 2, 1]
    ts = [HOUR, HOUR, 0.0, 0.0]
    mean = rolling_mean(
        station, ts, [4.0, 10.0, 2.0, 30.0], window_s=2 * HOUR, interval_s=HOUR, min_coverage=0.5
    )
    assert mean.tolist() == [3.0, 20.0, 2.0, 30.0]


def test_ispu_averages_applies_each_window() -> None:
    ts = np.arange(10) * HOUR
    conc = {"pm25": np.full(10, 40.0), "co": np.arange(10, dtype=np.float64)}
    windows = {**ISPU_AVERAGING_S, "co": 8 * HOUR}
    avg = ispu_averages(np.zeros(10), ts, conc, interval_s=HOUR, windows=windows, min_coverage=0.0)
    assert avg["pm25"].tolist() == [40.0] * 10
    assert avg["co"][-1] == pytest.approx(np.mean(np.arange(2, 10)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.one_of(
                st.integers(min_value=0, max_value=40).map(lambda k: k * 900.0),
                st.floats(min_value=0.0, max_value=36000.0),
            ),
            st.one_of(st.just(math.nan), st.floats(min_value=0.0, max_value=1000.0)),
        ),
        max_size=60,
    ),
    st.sampled_from([900.0, 3600.0, 7200.0, 8 * HOUR]),
    st.sampled_from([300.0, 900.0, 1800.0]),
    st.sampled_from([0.0, 0.5, 0.75, 1.0]),
)
def test_rolling_mean_matches_reference(
    readings: list[tuple[int, float, float]],
    window_s: float,
    interval_s: float,
    min_coverage: float,
) -> None:
    station = [r[0] for r in readings]
    ts = [r[1] for r in readings]
    values = [r[2] for r in readings]
    fast = rolling_mean(
        station, ts, values, window_s=window_s, interval_s=interval_s, min_coverage=min_coverage
    )
    ref = rolling_mean_ref(
        station,
        ts,
        values,
        window_s=window_s,
        interval_s=[interval_s] * len(ts),
        min_coverage=min_coverage,
    )
    np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-7, equal_nan=True)


# --- the live 24-hour means of a detector bank ------------------------------------------------


def test_live_air_indicators_are_the_24_hour_means_of_the_readings() -> None:
    # Stations report a few times an hour, skip hours (bins older than a day stay behind in
    # the hourly ring), miss pollutants and come in batches of several hours, shuffled. The
    # live ISPU and AQI must be those of the plain 24-hour means of every reading processed:
    # the station's newest hour and the 23 before it, a mean only with 18 of them reported,
    # as of the station's newest reading.
    # Values are halves, so every sum is exact whatever the order of the additions.
    from processors.bank import KindProcessor
    from processors.catalog import CATALOG
    from processors.indicators.aqi import aqi_index

    spec = CATALOG["air_quality"]
    pollutants = [p for p in ISPU_POLLUTANTS if p != "hc"]  # hc: never reported
    columns = [spec.column(p) for p in pollutants]
    rng = np.random.default_rng(21)
    bank = KindProcessor(spec, report_all=False)
    seen: list[tuple[int, float, np.ndarray, np.ndarray]] = []  # station, ts, values, present
    hour = 0
    while hour < 70:
        span = int(rng.integers(1, 5))
        ids, ts, values, present = [], [], [], []
        for station in range(12):
            reports = rng.random() < (0.95 if station < 8 else 0.6)  # 8-11: often silent
            for h in range(hour, hour + span):
                for minute in rng.choice(60, int(rng.integers(0, 4)) if reports else 0, False):
                    row = np.full(len(spec.fields), np.nan)
                    row[columns] = rng.integers(0, 800, len(columns)) / 2
                    here = np.zeros(len(spec.fields), dtype=np.bool_)
                    here[columns] = rng.random(len(columns)) < 0.85
                    ids.append(f"s{station}")
                    ts.append(1.7e9 + h * 3600.0 + float(minute) * 60.0)
                    values.append(row)
                    present.append(here)
                    seen.append((station, ts[-1], row, here))
        hour += span
        if not ids:
            continue
        order = rng.permutation(len(ids))
        bank.process(
            np.array(ids)[order],
            np.array(ts)[order],
            np.array(values)[order],
            np.array(present)[order],
        )
        out = bank.indicators(0.0)
        means = {p: np.full(len(out.rows), np.nan) for p in ISPU_POLLUTANTS}
        for k, row in enumerate(out.rows.tolist()):
            station = int(bank.device_id(row)[1:])
            mine = [(t, v, h) for s, t, v, h in seen if s == station]
            newest = max(math.floor(t / 3600.0) for t, _, _ in mine)
            window = [(t, v, h) for t, v, h in mine if math.floor(t / 3600.0) > newest - 24]
            for p, column in zip(pollutants, columns, strict=True):
                got = [(math.floor(t / 3600.0), v[column]) for t, v, h in window if h[column]]
                if len({hr for hr, _ in got}) >= 18:
                    means[p][k] = sum(x for _, x in got) / len(got)
        ispu = ispu_index(means)
        aqi = aqi_index({"pm25": means["pm25"], "pm10": means["pm10"]})
        np.testing.assert_array_equal(out.numbers["ispu"], ispu.reported)
        np.testing.assert_array_equal(out.numbers["aqi"], aqi.reported)
        assert out.labels["ispu_critical"].tolist() == ispu.critical.tolist()
        assert out.labels["ispu_category"].tolist() == ispu.category.tolist()
        assert out.labels["aqi_category"].tolist() == aqi.category.tolist()
        # Each station's indicators are as of its newest reading (not ahead of it).
        newest_ts = [
            max(t for s, t, _, _ in seen if s == int(bank.device_id(r)[1:])) for r in out.rows
        ]
        assert out.ts.tolist() == newest_ts
