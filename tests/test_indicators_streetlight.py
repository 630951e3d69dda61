"""Streetlight availability, day-burn and energy: a synthetic fleet at Purbalingga, and twins.

All streetlight data here is synthetic (the data README found no real per-lamp series).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.indicators.reference import lamp_working_ref, streetlight_daily_ref
from processors.indicators.streetlight import (
    LampFleet,
    StreetlightDaily,
    lamp_should_be_off,
    lamp_should_be_on,
    lamp_working,
    local_day,
    streetlight_daily,
)
from processors.sun import is_daylight, sunrise_sunset

WIB = timezone(timedelta(hours=7))
LAT, LON = -7.39, 109.36  # Purbalingga
DAY_START = datetime(2024, 6, 1, tzinfo=WIB).timestamp()  # 1 June: sunrise 05:48, sunset 17:32
STEP = 900.0
TS = DAY_START + np.arange(96) * STEP  # every 15 min over the local day
RATED = 100.0
SUNRISE, SUNSET = (float(x) for x in sunrise_sunset(LAT, LON, DAY_START + 7 * 3600.0))


def _fleet(n: int) -> LampFleet:
    return LampFleet(
        lat=np.full(n, LAT),
        lon=np.full(n, LON),
        rated_w=np.full(n, RATED),
        district=np.array([0, 0, 0, 1, 1, 1][:n]),
    )


def _lamp_day(
    on: np.ndarray, dim: np.ndarray, power: np.ndarray, base_wh: float
) -> dict[str, np.ndarray]:
    inc = np.where(on == 1.0, power, 0.0) * STEP / 3600.0  # Wh drawn until the next reading
    energy = base_wh + np.concatenate([[0.0], np.cumsum(inc[:-1])])
    return {"on": on, "dim": dim, "power": power, "energy": energy, "inc": inc}


def _synthetic_day() -> tuple[LampFleet, dict[str, np.ndarray], list[float]]:
    """Six lamps over one local day; the photocells switch exactly at sunrise and sunset."""
    dark = ((TS < SUNRISE) | (TS > SUNSET)).astype(np.float64)
    full = np.full(96, 100.0)
    lamps = [
        _lamp_day(dark, full, dark * 100.0, 1000.0),  # 0: healthy
        _lamp_day(np.zeros(96), full, np.zeros(96), 2000.0),  # 1: lamp out all night
        _lamp_day(np.ones(96), full, np.full(96, 100.0), 3000.0),  # 2: day-burner
        _lamp_day(dark, full, dark * 70.0, 4000.0),  # 3: power 30 % under rating
        _lamp_day(dark, np.full(96, 50.0), dark * 52.0, 5000.0),  # 4: dimmed to 50 %, draws 52 W
        _lamp_day(dark, full, dark * np.where(TS >= DAY_START + 20 * 3600, 0.0, 100.0), 0.0),
    ]
    # Lamp 4's controller reboots after the 03:00 reading: its counter restarts from zero.
    counter = lamps[4]["energy"].copy()
    counter[12:] = np.cumsum(lamps[4]["inc"])[11:-1] - np.cumsum(lamps[4]["inc"])[10]
    lamps[4]["energy"] = counter
    expected_energy = [float(lamp["inc"][:-1].sum()) for lamp in lamps]
    columns = {
        key: np.concatenate([lamp[key] for lamp in lamps])
        for key in ("on", "dim", "power", "energy")
    }
    columns["lamp"] = np.repeat(np.arange(6), 96)
    columns["ts"] = np.tile(TS, 6)
    return _fleet(6), columns, expected_energy


def _run(fleet: LampFleet, c: dict[str, np.ndarray], **kwargs: float) -> StreetlightDaily:
    return streetlight_daily(
        fleet, c["lamp"], c["ts"], c["on"], c["dim"], c["power"], c["energy"], **kwargs
    )


def test_night_and_day_readings_at_purbalingga_on_1_june() -> None:
    assert datetime.fromtimestamp(SUNRISE, WIB).strftime("%H:%M") == "05:48"  # domain.md 4.3
    assert datetime.fromtimestamp(SUNSET, WIB).strftime("%H:%M") == "17:31"  # 17:32 +-1 min
    night = lamp_should_be_on(LAT, LON, TS)
    day = lamp_should_be_off(LAT, LON, TS)
    # 30 min grace: night is up to 05:18 and from 18:02; day from 06:18 to 17:02.
    assert night.sum() == 22 + 23  # 00:00-05:15 and 18:15-23:45
    assert day.sum() == 43  # 06:30-17:00
    assert not (night & day).any()
    # Without grace: 00:00-05:45 and 17:45-23:45.
    assert lamp_should_be_on(LAT, LON, TS, grace_s=0.0).sum() == 24 + 25


def test_synthetic_fleet_over_one_day() -> None:
    fleet, columns, expected_energy = _synthetic_day()
    result = _run(fleet, columns)
    assert result.days.tolist() == [int(local_day(DAY_START))]
    availability = result.availability[:, 0]
    assert availability.tolist()[:5] == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert availability[5] == pytest.approx(29 / 45)  # out from 20:00: 16 of 45 night readings
    assert result.night_readings[:, 0].tolist() == [45] * 6
    assert result.day_burn_h[:, 0].tolist() == [0.0, 0.0, 43 * 0.25, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(result.energy_wh[:, 0], expected_energy)
    assert result.district_availability[:, 0].tolist() == pytest.approx(
        [2 / 3, (0.0 + 1.0 + 29 / 45) / 3]
    )
    assert result.district_lamps[:, 0].tolist() == [3, 3]
    assert result.district_day_burn_h[:, 0].tolist() == [10.75, 0.0]
    assert result.district_energy_wh[:, 0] == pytest.approx(
        [sum(expected_energy[:3]), sum(expected_energy[3:])]
    )


def test_tolerance_is_a_parameter() -> None:
    fleet, columns, _ = _synthetic_day()
    assert _run(fleet, columns, tolerance=0.35).availability[3, 0] == 1.0


def test_energy_across_midnight_goes_to_the_later_day() -> None:
    fleet = _fleet(1)
    ts = np.array([DAY_START - 1800.0, DAY_START - 900.0, DAY_START + 900.0])
    result = streetlight_daily(
        fleet, [0, 0, 0], ts, [1, 1, 1], [100, 100, 100], [100, 100, 100], [10.0, 35.0, 85.0]
    )
    assert result.days.size == 2
    assert result.energy_wh[0].tolist() == [25.0, 50.0]


def test_unknown_state_is_not_counted() -> None:
    fleet = _fleet(1)
    night_ts = DAY_START + np.array([1.0, 2.0, 3.0, 4.0]) * 3600.0
    result = streetlight_daily(
        fleet,
        [0, 0, 0, 0],
        night_ts,
        [1.0, math.nan, 1.0, 0.0],
        [100.0] * 4,
        [100.0, 100.0, math.nan, math.nan],  # off with unknown power: still known to be out
        [math.nan] * 4,
    )
    assert result.night_readings[0, 0] == 2
    assert result.availability[0, 0] == 0.5
    assert math.isnan(result.energy_wh[0, 0])
    assert math.isnan(result.district_energy_wh[0, 0])


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=-11.0, max_value=6.0),  # Indonesia, Sabang to Merauke
    st.floats(min_value=95.0, max_value=141.0),
    st.floats(min_value=DAY_START - 400 * 86400.0, max_value=DAY_START + 400 * 86400.0),
    st.sampled_from([0.0, 900.0, 1800.0, 3600.0]),
)
def test_night_and_day_agree_with_sun_elevation(
    lat: float, lon: float, ts: float, grace_s: float
) -> None:
    # The sunrise/sunset shortcut must say what the sun's elevation says at ts - grace, ts and
    # ts + grace, except within a minute of a horizon crossing (sun.py's stated accuracy).
    probes = ts + np.array([-grace_s, 0.0, grace_s])
    up = is_daylight(lat, lon, probes)
    near_crossing = is_daylight(lat, lon, probes - 60.0) != is_daylight(lat, lon, probes + 60.0)
    if near_crossing.any():
        return
    assert lamp_should_be_on(lat, lon, [ts], grace_s)[0] == (not up.any())
    assert lamp_should_be_off(lat, lon, [ts], grace_s)[0] == up.all()


@pytest.mark.parametrize(
    ("on", "dim", "power", "working"),
    [
        (1, 100, 100.0, True),
        (1, 100, 80.0, True),  # -20 % is inside the tolerance
        (1, 100, 120.0, True),
        (1, 100, 79.0, False),
        (1, 100, 121.0, False),
        (1, math.nan, 100.0, True),  # no dim reported: full output
        (1, 50, 50.0, True),
        (1, 50, 100.0, False),  # drawing full power while dimmed
        (1, 0, 0.0, False),  # dimmed to nothing gives no light
        (0, 100, 0.0, False),
        (1, 100, math.nan, False),
    ],
)
def test_lamp_working(on: float, dim: float, power: float, working: bool) -> None:
    assert lamp_working([on], [dim], [power], [100.0])[0] == working
    assert lamp_working_ref(on, dim, power, 100.0, 0.2) == working


def test_fleet_is_validated() -> None:
    with pytest.raises(ValueError, match="rated_w"):
        LampFleet(np.array([LAT]), np.array([LON]), np.array([0.0]), np.array([0]))
    with pytest.raises(ValueError, match="district rows"):
        LampFleet(np.array([LAT]), np.array([LON]), np.array([100.0]), np.array([2]), n_districts=2)
    with pytest.raises(ValueError, match="lamp rows"):
        streetlight_daily(_fleet(1), [1], [DAY_START], [1], [100], [100], [0])


# --- property tests: fast vs reference -------------------------------------------------------

_lamp_st = st.tuples(
    st.floats(min_value=-8.0, max_value=-6.0),
    st.floats(min_value=108.0, max_value=111.0),
    st.sampled_from([40.0, 100.0, 150.0]),
    st.integers(min_value=0, max_value=2),
)
_reading_st = st.tuples(
    st.integers(min_value=0, max_value=4),
    st.one_of(
        st.integers(0, 2 * 96).map(lambda k: DAY_START + k * STEP),
        st.floats(min_value=DAY_START - 3600.0, max_value=DAY_START + 2 * 86400.0),
    ),
    st.sampled_from([0.0, 1.0, math.nan]),
    st.sampled_from([math.nan, 0.0, 50.0, 100.0]),
    st.one_of(st.just(math.nan), st.floats(min_value=0.0, max_value=200.0)),
    st.one_of(st.just(math.nan), st.floats(min_value=0.0, max_value=1e5)),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_lamp_st, min_size=5, max_size=5),
    st.lists(_reading_st, max_size=50),
    st.sampled_from([0.0, 900.0, 1800.0]),
    st.sampled_from([600.0, 1800.0]),
    st.sampled_from([0.1, 0.2]),
)
def test_daily_matches_reference(
    lamps: list[tuple[float, float, float, int]],
    readings: list[tuple[int, float, float, float, float, float]],
    grace_s: float,
    max_hold_s: float,
    tolerance: float,
) -> None:
    lat, lon, rated, district = (list(col) for col in zip(*lamps, strict=True))
    fleet = LampFleet(np.array(lat), np.array(lon), np.array(rated), np.array(district), 3)
    cols = [np.array(c, dtype=np.float64) for c in zip(*readings, strict=True)]
    params = {
        "tolerance": tolerance,
        "grace_s": grace_s,
        "max_hold_s": max_hold_s,
        "utc_offset_s": 7 * 3600.0,
    }
    fast = streetlight_daily(fleet, *(cols or [np.empty(0)] * 6), **params)
    ref = streetlight_daily_ref(lat, lon, rated, district, readings, **params)
    days = {int(d): k for k, d in enumerate(fast.days)}

    def check(grid: np.ndarray, expected: dict[tuple[int, int], float]) -> None:
        for row in range(grid.shape[0]):
            for day, col in days.items():
                value = expected.get((row, day), math.nan)
                if math.isnan(value):
                    assert math.isnan(grid[row, col]), (row, day)
                else:
                    assert grid[row, col] == pytest.approx(value, rel=1e-9, abs=1e-9), (row, day)

    check(fast.availability, ref.availability)
    check(fast.day_burn_h, ref.day_burn_h)
    check(fast.energy_wh, ref.energy_wh)
    check(fast.district_availability, ref.district_availability)
    check(fast.district_day_burn_h, ref.district_day_burn_h)
    check(fast.district_energy_wh, ref.district_energy_wh)
    assert set(ref.day_burn_h) <= {(lamp, day) for lamp in range(5) for day in days}
