"""Flood alert levels, rate of rise and time to the next level: Ciliwung gauges and twins."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.indicators.flood import (
    AWAS,
    FLOOD_LABELS,
    NORMAL,
    SIAGA,
    WASPADA,
    FloodThresholds,
    alert_labels,
    flood_level,
    flood_status,
    latest_reading,
    next_level,
    rate_of_rise,
    time_to_next_level,
)
from processors.indicators.reference import (
    flood_level_ref,
    latest_reading_ref,
    next_level_ref,
    rate_of_rise_ref,
    time_to_next_level_ref,
)
from tests.shared_data import shared_data

HOUR = 3600.0
T0 = 1_665_316_800.0  # 2022-10-09 19:00 WIB, the evening of the Ciliwung flood in the data README

# Siaga 3 / 2 / 1 (cm) from informasi_pintu_air.csv: Siaga 3 = Waspada, 2 = Siaga, 1 = Awas.
GAUGES = ("Katulampa", "Depok", "Manggarai")
SIAGA3, SIAGA2, SIAGA1 = (80.0, 200.0, 750.0), (150.0, 270.0, 850.0), (200.0, 350.0, 950.0)
CILIWUNG = FloodThresholds.from_jakarta_siaga(SIAGA3, SIAGA2, SIAGA1)

PINTU_AIR = ("water_level", "jakarta_pintu_air")


def test_thresholds_match_informasi_pintu_air_csv() -> None:
    path = shared_data(*PINTU_AIR, "informasi_pintu_air.csv")
    with path.open(newline="", encoding="utf-8") as source:
        rows = {row["Lokasi"]: row for row in csv.DictReader(source)}
    for i, gauge in enumerate(GAUGES):
        row = rows[gauge]
        assert float(row["Siaga 3"]) == CILIWUNG.waspada[i]
        assert float(row["Siaga 2"]) == CILIWUNG.siaga[i]
        assert float(row["Siaga 1"]) == CILIWUNG.awas[i]


@pytest.mark.parametrize(
    ("gauge", "level", "expected"),
    [
        (0, 10.0, NORMAL),
        (0, 79.9, NORMAL),
        (0, 80.0, WASPADA),  # exactly at Siaga 3 enters it
        (0, 149.9, WASPADA),
        (0, 150.0, SIAGA),
        (0, 199.9, SIAGA),
        (0, 200.0, AWAS),
        (0, 250.0, AWAS),
        (1, 199.0, NORMAL),
        (1, 200.0, WASPADA),
        (1, 269.0, WASPADA),
        (1, 270.0, SIAGA),
        (1, 349.0, SIAGA),
        (1, 350.0, AWAS),
        (2, 749.0, NORMAL),
        (2, 750.0, WASPADA),
        (2, 849.0, WASPADA),
        (2, 850.0, SIAGA),
        (2, 949.0, SIAGA),
        (2, 950.0, AWAS),
    ],
)
def test_level_band_edges(gauge: int, level: float, expected: int) -> None:
    levels = np.full(3, np.nan)
    levels[gauge] = level
    alert = flood_level(levels, CILIWUNG)
    assert alert[gauge] == expected
    assert (np.delete(alert, gauge) == -1).all()  # NaN level: unknown, not Normal


def test_jakarta_labels_run_opposite_to_severity() -> None:
    alert = np.append(flood_level([10.0, 200.0, 850.0], CILIWUNG), -1)  # -1: level unknown
    assert alert_labels(alert, FLOOD_LABELS["dki_jakarta"]).tolist() == [
        "Siaga 4",
        "Siaga 3",
        "Siaga 2",
        "",
    ]
    assert alert_labels(alert).tolist() == ["Normal", "Waspada", "Siaga", ""]
    assert alert_labels([AWAS], FLOOD_LABELS["dki_jakarta_roman"]).tolist() == ["Siaga I"]
    agency = ("Aman", "Waspada", "Siaga", "Bahaya")  # labels are per agency
    assert alert_labels([AWAS], agency).tolist() == ["Bahaya"]


def test_undefined_threshold_is_never_entered() -> None:
    # Depok with Siaga II / I treated as unknown ([UNVERIFIED] in domain.md 3.2).
    depok = FloodThresholds.from_jakarta_siaga([200.0], [math.nan], [math.nan])
    assert flood_level([400.0], depok).tolist() == [WASPADA]
    assert next_level([250.0], depok)[0].tolist() == [-1]
    gap = FloodThresholds.from_jakarta_siaga([80.0], [math.nan], [200.0])
    assert flood_level([210.0], gap).tolist() == [AWAS]
    nxt, threshold = next_level([100.0], gap)
    assert (nxt[0], threshold[0]) == (AWAS, 200.0)


def test_thresholds_must_rise() -> None:
    with pytest.raises(ValueError, match="rise strictly"):
        FloodThresholds.from_jakarta_siaga([80.0], [80.0], [200.0])
    with pytest.raises(ValueError, match="rise strictly"):
        FloodThresholds.from_jakarta_siaga([300.0], [math.nan], [200.0])
    with pytest.raises(ValueError, match="one shape"):
        FloodThresholds.from_jakarta_siaga([80.0, 90.0], [150.0], [200.0])


# --- rate of rise and time to the next level -----------------------------------------------


def test_rate_of_rise_on_an_irregular_ramp() -> None:
    # Katulampa rose from 50 cm at 07:00 to 160 cm at 10:00 (Antara 2009): 36.67 cm/h.
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 3 * HOUR, 40))
    level = 50.0 + 110.0 / (3 * HOUR) * t
    rate = rate_of_rise(np.zeros(40, dtype=int), T0 + t, level, 1)
    assert rate[0] == pytest.approx(110.0 / 3, rel=1e-9)


def test_rate_of_rise_window_and_degenerate_cases() -> None:
    gauge = [0, 0, 0, 0, 1, 2, 2, 3, 3]
    ts = [T0, T0 + 3 * HOUR, T0 + 3.5 * HOUR, T0 + 4 * HOUR, T0, T0, T0, T0, T0 + 600]
    level = [500.0, 100.0, 110.0, 120.0, 42.0, 10.0, 20.0, 60.0, 60.0]
    rate = rate_of_rise(gauge, ts, level, 5)
    assert rate[0] == pytest.approx(20.0)  # the old 500 cm reading is outside the 1 h window
    assert math.isnan(rate[1])  # one reading
    assert math.isnan(rate[2])  # two readings at one timestamp
    assert rate[3] == 0.0  # flat
    assert math.isnan(rate[4])  # no readings
    wide = rate_of_rise(gauge, ts, level, 5, window_s=5 * HOUR)
    assert wide[0] < 0  # the 500 cm reading now pulls the slope down


def test_rate_of_rise_window_is_left_open() -> None:
    ts = [T0, T0 + 1800.0, T0 + HOUR]
    rate = rate_of_rise([0, 0, 0], ts, [0.0, 100.0, 110.0], 1, window_s=HOUR)
    assert rate[0] == pytest.approx(20.0)  # the reading exactly 1 h before the end is outside


def test_rate_of_rise_one_timestamp_is_nan_despite_rounding() -> None:
    # Three readings 0.1 s before the end: their mean time (-0.30000000000000004 / 3) carries
    # rounding noise, so a test on sxx > 0 would give a huge slope; the span test gives NaN.
    rate = rate_of_rise([0, 0, 0], [0.0] * 3, [1.0, 2.0, 9.0], 1, end_ts=0.1)
    assert math.isnan(rate[0])


def test_rate_of_rise_at_a_given_end_time_ignores_later_readings() -> None:
    ts = T0 + np.arange(7) * 600.0
    level = np.array([100.0, 110.0, 120.0, 130.0, 500.0, 500.0, 500.0])
    rate = rate_of_rise(np.zeros(7, dtype=int), ts, level, 1, end_ts=T0 + 1800.0)
    assert rate[0] == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("gauge", "level", "rate", "expected"),
    [
        (0, 140.0, 30.0, 1 / 3),  # Katulampa Waspada -> Siaga at 150 in 20 min
        (0, 80.0, 35.0, 2.0),  # exactly at Waspada: next is Siaga at 150
        (0, 10.0, 35.0, 2.0),  # Normal -> Waspada at 80
        (1, 300.0, 25.0, 2.0),  # Depok Siaga -> Awas at 350
        (2, 845.0, 10.0, 0.5),  # Manggarai at its 2022 peak, 5 cm below Siaga
        (0, 140.0, 0.0, math.inf),  # steady
        (0, 140.0, -5.0, math.inf),  # falling
        (0, 200.0, 30.0, math.nan),  # already Awas
        (0, 140.0, math.nan, math.nan),  # rate unknown
        (0, math.nan, 30.0, math.nan),  # level unknown
    ],
)
def test_time_to_next_level(gauge: int, level: float, rate: float, expected: float) -> None:
    levels = np.full(3, 0.0)
    rates = np.full(3, 1.0)
    levels[gauge], rates[gauge] = level, rate
    hours = time_to_next_level(levels, rates, CILIWUNG)[gauge]
    if math.isnan(expected):
        assert math.isnan(hours)
    else:
        assert hours == pytest.approx(expected)


def test_flood_status_puts_it_together() -> None:
    # Katulampa rises 30 cm/h through 140 cm; Depok falls; Manggarai has one reading.
    t = np.arange(7) * 600.0
    gauge = np.concatenate([np.zeros(7, int), np.ones(7, int), [2]])
    ts = np.concatenate([T0 + t, T0 + t, [T0]])
    level = np.concatenate([110.0 + t / 120.0, 300.0 - t / 360.0, [845.0]])
    status = flood_status(gauge, ts, level, CILIWUNG)
    assert status.level_cm.tolist() == [140.0, 290.0, 845.0]
    assert status.alert.tolist() == [WASPADA, SIAGA, WASPADA]
    assert status.rate_cm_h[0] == pytest.approx(30.0)
    assert status.rate_cm_h[1] == pytest.approx(-10.0)
    assert math.isnan(status.rate_cm_h[2])
    assert status.next_alert.tolist() == [SIAGA, AWAS, SIAGA]
    assert status.hours_to_next[0] == pytest.approx(1 / 3)
    assert status.hours_to_next[1] == math.inf
    assert math.isnan(status.hours_to_next[2])


def test_hours_at_or_above_each_level_match_the_data_readme() -> None:
    path = shared_data(*PINTU_AIR, "pintu_air_hourly_2021-10-16_to_2023-12-31.csv")
    wib = timezone(timedelta(hours=7))
    ts, levels = [], []
    with path.open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            ts.append(datetime.fromisoformat(row["Tanggal"]).replace(tzinfo=wib).timestamp())
            levels.append([float(row[f"{g} (air)"]) for g in GAUGES])
    alert = flood_level(np.array(levels), CILIWUNG)  # (hours, gauges) against per-gauge thresholds
    counts = [[int((alert[:, g] >= k).sum()) for k in (WASPADA, SIAGA, AWAS)] for g in range(3)]
    assert counts == [[101, 5, 1], [106, 11, 1], [311, 0, 0]]  # data README table
    first_awas = datetime.fromtimestamp(ts[int(np.argmax(alert[:, 0] == AWAS))], wib)
    assert first_awas == datetime(2022, 10, 9, 20, tzinfo=wib)


# --- property tests: fast vs reference -------------------------------------------------------

thresholds_st = st.lists(
    st.tuples(
        st.one_of(st.just(math.nan), st.integers(0, 300).map(float)),
        st.one_of(st.just(math.nan), st.integers(301, 600).map(float)),
        st.one_of(st.just(math.nan), st.integers(601, 900).map(float)),
    ),
    min_size=1,
    max_size=8,
)
level_st = st.one_of(
    st.just(math.nan),
    st.floats(min_value=-50.0, max_value=1000.0),
    st.integers(0, 900).map(float),  # lands exactly on thresholds often
)


@settings(deadline=None)  # timing varies on shared CI machines
@given(thresholds_st, st.data())
def test_levels_and_time_to_next_match_reference(
    gauges: list[tuple[float, float, float]], data: st.DataObject
) -> None:
    n = len(gauges)
    thr = FloodThresholds(*(np.array(col) for col in zip(*gauges, strict=True)))
    levels = data.draw(st.lists(level_st, min_size=n, max_size=n))
    rates = data.draw(
        st.lists(
            st.one_of(st.just(math.nan), st.floats(-100.0, 100.0), st.just(0.0)),
            min_size=n,
            max_size=n,
        )
    )
    alert = flood_level(levels, thr)
    nxt, nxt_threshold = next_level(levels, thr)
    hours = time_to_next_level(levels, rates, thr)
    for i, (w, s, a) in enumerate(gauges):
        assert alert[i] == flood_level_ref(levels[i], w, s, a)
        ref_next, ref_threshold = next_level_ref(levels[i], w, s, a)
        assert nxt[i] == ref_next
        assert nxt_threshold[i] == ref_threshold or (
            math.isnan(nxt_threshold[i]) and math.isnan(ref_threshold)
        )
        ref_hours = time_to_next_level_ref(levels[i], rates[i], w, s, a)
        if math.isnan(ref_hours):
            assert math.isnan(hours[i])
        else:
            assert hours[i] == pytest.approx(ref_hours, rel=1e-12)


readings_st = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=5),
        st.one_of(
            st.integers(0, 18).map(lambda k: T0 + k * 600.0),  # repeats and window-edge hits
            st.floats(min_value=T0, max_value=T0 + 3 * HOUR),  # ragged
        ),
        st.one_of(st.just(math.nan), st.floats(min_value=0.0, max_value=1000.0)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    readings_st,
    st.sampled_from([1800.0, HOUR, 2 * HOUR]),
    st.integers(min_value=2, max_value=4),
    st.booleans(),
)
def test_rate_of_rise_matches_reference(
    readings: list[tuple[int, float, float]], window_s: float, min_points: int, fixed_end: bool
) -> None:
    gauge = [r[0] for r in readings]
    ts = [r[1] for r in readings]
    level = [r[2] for r in readings]
    n = 6
    end = [T0 + 2 * HOUR - 300.0 * g for g in range(n)] if fixed_end else None
    fast = rate_of_rise(gauge, ts, level, n, window_s=window_s, end_ts=end, min_points=min_points)
    ref = rate_of_rise_ref(
        gauge, ts, level, n, window_s=window_s, end_ts=end, min_points=min_points
    )
    np.testing.assert_allclose(fast, ref, rtol=1e-7, atol=1e-9, equal_nan=True)


@settings(deadline=None)
@given(readings_st)
def test_latest_reading_matches_reference(readings: list[tuple[int, float, float]]) -> None:
    gauge = [r[0] for r in readings]
    ts = [r[1] for r in readings]
    level = [r[2] for r in readings]
    fast_t, fast_v = latest_reading(gauge, ts, level, 6)
    ref_t, ref_v = latest_reading_ref(gauge, ts, level, 6)
    np.testing.assert_array_equal(fast_t, ref_t)
    np.testing.assert_array_equal(fast_v, ref_v)
