"""Indicators use only readings not flagged as faults, and the anomaly says what it kept out."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest

from api import models
from api.livestate import INDICATORS, LiveState
from ingest.batch import Batch, KindColumns
from ingest.derivation import Derivation
from pantau.derived import AnomalyEvent, ContractError
from processors.bank import KEPT_OUT, KindProcessor
from processors.catalog import CATALOG, DeviceFacts, KindSpec
from processors.detectors import Findings
from processors.indicators import ispu_index
from processors.live import INDICATOR_INPUTS

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, on the hour
AIR, WATER = CATALOG["air_quality"], CATALOG["water_level"]
GAUGE = {"wl-1": DeviceFacts(interval_s=300.0, waspada_cm=150.0, siaga_cm=200.0, awas_cm=250.0)}
_Float = npt.NDArray[np.float64]


def series(
    spec: KindSpec, field: str, ts: _Float, level: _Float
) -> tuple[_Float, _Float, npt.NDArray[np.bool_]]:
    """Readings of one field of a kind (the others absent)."""
    values = np.full((len(ts), len(spec.fields)), np.nan)
    present = np.zeros(values.shape, dtype=np.bool_)
    column = spec.column(field)
    values[:, column], present[:, column] = level, True
    return ts, values, present


def run(
    spec: KindSpec,
    device: str,
    readings: tuple[_Float, _Float, npt.NDArray[np.bool_]],
    *,
    live: bool,
    facts: dict[str, DeviceFacts] | None = None,
) -> tuple[KindProcessor, list[Findings]]:
    """Through a bank: the live path (one reading per batch) or the history path (one batch)."""
    ts, values, present = readings
    bank = KindProcessor(spec, facts, report_all=not live)
    ids = np.array([device] * len(ts))
    found: list[Findings] = []
    if live:
        for k in range(len(ts)):
            found += bank.process(
                ids[k : k + 1], ts[k : k + 1], values[k : k + 1], present[k : k + 1]
            )
    else:
        found += bank.process(ids, ts, values, present)
    return bank, found


def flagged(found: list[Findings], detector: str) -> _Float:
    """The observation times of the readings a detector flagged."""
    return np.concatenate([np.empty(0)] + [f.flagged().ts for f in found if f.detector == detector])


def by_device(bank: KindProcessor) -> npt.NDArray[np.intp]:
    """The bank's state rows in device id order (banks number devices as they come)."""
    return np.array([bank.table.row(d) for d in sorted(bank.table.ids)], dtype=np.intp)


def numbers(bank: KindProcessor) -> dict[str, _Float]:
    """The bank's indicators of its devices, in device id order."""
    bank._touched[: len(bank.table)] = True
    out = bank.indicators(0.0)
    order = np.argsort([bank.device_id(r) for r in out.rows.tolist()])
    return {name: value[order] for name, value in out.numbers.items()}


def assert_same(one: dict[str, _Float], other: dict[str, _Float]) -> None:
    assert one.keys() == other.keys()
    for name in one:
        np.testing.assert_array_equal(one[name], other[name], err_msg=name)


def pm25_hourly(hours: int = 30) -> tuple[_Float, _Float]:
    """Hourly PM2.5 of a smooth daily cycle (no reading of it looks like a fault)."""
    k = np.arange(hours, dtype=np.float64)
    pm25 = np.round(35.0 + 8.0 * np.sin(2 * np.pi * k / 24) + 0.3 * (k % 3), 1)
    return T0 + 3600.0 * k, pm25.astype(np.float64)


# -- air --------------------------------------------------------------------------------------


@pytest.mark.parametrize("live", [True, False], ids=["live", "history"])
def test_an_ispu_with_a_spike_equals_the_ispu_without_it(live: bool) -> None:
    ts, pm25 = pm25_hourly()
    spiked = pm25.copy()
    spiked[26] = 400.0
    without = np.arange(len(ts)) != 26
    bank, found = run(AIR, "aq-1", series(AIR, "pm25", ts, spiked), live=live)
    clean, clean_found = run(
        AIR, "aq-1", series(AIR, "pm25", ts[without], pm25[without]), live=live
    )
    np.testing.assert_array_equal(flagged(found, "spike"), [ts[26]])
    assert len(flagged(clean_found, "spike")) == 0
    assert_same(numbers(bank), numbers(clean))
    # (The bins differ only outside the day: the spike's bin left empty at hour 26, the clean
    # series' still holding hour 2.)
    # Kept in, the spike would have moved the index: the exclusion is what made them equal.
    day = slice(len(ts) - 24, len(ts))
    with_spike = ispu_index({"pm25": np.array([spiked[day].mean()])}).reported
    assert not np.array_equal(numbers(bank)["ispu"], with_spike)


def test_the_live_and_history_paths_give_the_same_air_indicators() -> None:
    ts, pm25 = pm25_hourly(40)
    pm25[[12, 30]] = [300.0, 5.0]  # a spike up, and one down
    readings = series(AIR, "pm25", ts, pm25)
    live, live_found = run(AIR, "aq-1", readings, live=True)
    history, history_found = run(AIR, "aq-1", readings, live=False)
    np.testing.assert_array_equal(flagged(live_found, "spike"), ts[[12, 30]])
    np.testing.assert_array_equal(flagged(history_found, "spike"), ts[[12, 30]])
    assert_same(numbers(live), numbers(history))
    np.testing.assert_array_equal(live.live.counts, history.live.counts)


def split_runs(
    spec: KindSpec,
    ids: npt.NDArray[Any],
    readings: tuple[_Float, _Float, npt.NDArray[np.bool_]],
    seed: int,
    facts: dict[str, DeviceFacts] | None = None,
) -> tuple[KindProcessor, KindProcessor]:
    """The same readings in random batches, each in any order (live), and in one (history)."""
    ts, values, present = readings
    rng = np.random.default_rng(seed)
    live = KindProcessor(spec, facts, report_all=False)
    cuts = np.sort(rng.choice(np.arange(1, len(ts)), size=len(ts) // 3, replace=False))
    for part in np.split(np.arange(len(ts)), cuts):
        part = rng.permutation(part)
        live.process(ids[part], ts[part], values[part], present[part])
    history = KindProcessor(spec, facts, report_all=True)
    history.process(ids, ts, values, present)
    return live, history


@pytest.mark.parametrize("seed", range(4))
def test_random_batches_give_the_indicators_of_one_batch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hours, stations = 40, 3
    ts, pm25 = pm25_hourly(hours)
    level = np.repeat(pm25[None, :], stations, axis=0) + np.arange(stations)[:, None]
    for s in range(stations):  # two lone spikes (two in a row are a plateau, not a spike)
        level[s, rng.choice(np.arange(12, hours - 1, 2), size=2, replace=False)] = 300.0
    ids = np.repeat([f"aq-{s}" for s in range(stations)], hours)
    readings = series(AIR, "pm25", np.tile(ts, stations), level.reshape(-1))
    live, history = split_runs(AIR, ids, readings, seed)
    assert_same(numbers(live), numbers(history))
    for name in ("hour", "sums", "counts"):
        one, other = getattr(live.live, name), getattr(history.live, name)
        np.testing.assert_array_equal(one[by_device(live)], other[by_device(history)])
    assert not np.isin(live.live.sums, 300.0).any()
    ts, depth = levels()
    depth[[40, 50]] += [80.0, -60.0]
    gauge = {"wl-1": GAUGE["wl-1"]}
    ids = np.array(["wl-1"] * len(ts))
    live, history = split_runs(WATER, ids, series(WATER, "level_cm", ts, depth), seed, gauge)
    assert_same(numbers(live), numbers(history))
    assert not np.isin(live.live.ring_level, depth[[40, 50]]).any()


@pytest.mark.parametrize("live", [True, False], ids=["live", "history"])
def test_a_stuck_runs_flagged_readings_are_kept_out(live: bool) -> None:
    ts, pm25 = pm25_hourly(60)
    pm25[36:] = 50.0  # frozen for a day
    bank, found = run(AIR, "aq-1", series(AIR, "pm25", ts, pm25), live=live)
    stuck = flagged(found, "stuck")
    assert len(stuck) >= 12
    hours = np.floor(ts / 3600.0).astype(np.int64)
    counts = bank.live.counts[0, 1]  # pm25 is the second pollutant of the ISPU
    held = bank.live.hour[0]
    for t, hour in zip(ts.tolist(), hours.tolist(), strict=True):
        slot = hour % 24
        if held[slot] != hour:
            continue  # an older day's hour, replaced since
        assert counts[slot] == (0.0 if t in set(stuck.tolist()) else 1.0)


def test_forgetting_takes_back_only_the_newest_summed_reading() -> None:
    ts, pm25 = pm25_hourly(3)
    bank, _ = run(AIR, "aq-1", series(AIR, "pm25", ts, pm25), live=True)
    pm = np.array([AIR.column("pm25")])
    row = np.zeros(1, dtype=np.intp)
    assert not bank.live.forget(row, ts[1:2], pm, pm25[1:2]).any()  # not the newest
    assert not bank.live.forget(row, ts[2:3], pm, pm25[2:3] + 1.0).any()  # another value
    assert bank.live.forget(row, ts[2:3], pm, pm25[2:3]).all()
    assert not bank.live.forget(row, ts[2:3], pm, pm25[2:3]).any()  # once only
    assert bank.live.counts[0, 1].sum() == 2.0


# -- flood ------------------------------------------------------------------------------------


def levels(n: int = 60) -> tuple[_Float, _Float]:
    """A gauge rising slowly every 5 minutes (more readings than its ring holds)."""
    k = np.arange(n, dtype=np.float64)
    level = np.round(120.0 + 0.2 * k + 0.6 * np.sin(0.7 * k), 2)
    return T0 + 300.0 * k, level.astype(np.float64)


@pytest.mark.parametrize("live", [True, False], ids=["live", "history"])
def test_a_gauges_spike_stays_out_of_its_level_and_rate(live: bool) -> None:
    ts, level = levels()
    spiked = level.copy()
    spiked[55] += 90.0
    without = np.arange(len(ts)) != 55
    readings = series(WATER, "level_cm", ts, spiked)
    bank, found = run(WATER, "wl-1", readings, live=live, facts=GAUGE)
    clean_readings = series(WATER, "level_cm", ts[without], level[without])
    clean, _ = run(WATER, "wl-1", clean_readings, live=live, facts=GAUGE)
    np.testing.assert_array_equal(flagged(found, "spike"), [ts[55]])
    got = numbers(bank)
    assert got["level_cm"][0] == level[-1]
    assert_same(got, numbers(clean))
    np.testing.assert_array_equal(bank.live.ring_level, clean.live.ring_level)


def test_a_gauges_spike_forgotten_does_not_stay_as_its_latest_level() -> None:
    ts, level = levels(20)
    level[-1] += 90.0
    bank, _ = run(WATER, "wl-1", series(WATER, "level_cm", ts, level), live=True, facts=GAUGE)
    assert numbers(bank)["level_cm"][0] == level[-1]
    column = np.array([WATER.column("level_cm")])
    taken = bank.live.forget(np.zeros(1, dtype=np.intp), ts[-1:], column, level[-1:])
    assert taken.all()
    assert numbers(bank)["level_cm"][0] == level[-2]


# -- the anomaly says what it kept out --------------------------------------------------------


def test_the_declared_inputs_are_what_the_indicators_read() -> None:
    assert INDICATOR_INPUTS["air_quality"]["pm25"] == ("ispu", "aqi")
    assert INDICATOR_INPUTS["air_quality"]["no2"] == ("ispu",)
    assert "temperature" not in INDICATOR_INPUTS["air_quality"]
    assert INDICATOR_INPUTS["water_level"] == {"level_cm": ("flood",)}
    assert frozenset({"impossible", "spike", "stuck", "drift"}) == KEPT_OUT
    assert frozenset({"ispu", "aqi", "flood", "streetlight"}) == INDICATORS


def air_batch(ts: _Float, pm25: _Float) -> Batch:
    _, values, present = series(AIR, "pm25", ts, pm25)
    n = len(ts)
    text = np.array(["x"] * n)
    columns = KindColumns(
        AIR,
        text,
        np.array(["aq-1"] * n),
        np.array(["purbalingga"] * n),
        np.array(["kalimanah"] * n),
        (ts * 1e9).astype(np.int64),
        values,
        present,
    )
    return Batch({"air_quality": columns}, [], n)


def test_an_anomaly_row_of_a_spike_carries_kept_out() -> None:
    ts, pm25 = pm25_hourly()
    pm25[26] = 400.0
    derivation = Derivation()
    lines: list[str] = []
    payloads: list[dict[str, Any]] = []
    for k in range(len(ts)):
        derived = derivation.process(air_batch(ts[k : k + 1], pm25[k : k + 1]))
        lines += [line for line in derived.lines if line.startswith("anomaly,")]
        payloads += [
            json.loads(m.payload) for m in derived.messages if m.topic.endswith("/anomaly")
        ]
    [spike] = [p for p in payloads if p["detector"] == "spike"]
    assert spike["kept_out"] == "ispu,aqi" and spike["field"] == "pm25"
    [line] = [line for line in lines if "detector=spike" in line]
    assert 'kept_out="ispu,aqi"' in line
    assert all("kept_out" in p for p in payloads if p["detector"] in KEPT_OUT)
    assert not any("kept_out" in p for p in payloads if p["detector"] not in KEPT_OUT)
    topic = "pantau/derived/purbalingga/kalimanah/air_quality/aq-1/anomaly"
    [event] = LiveState(open_anomaly_s=1e12).apply(topic, orjson.loads(orjson.dumps(spike)))
    assert event["kept_out"] == "ispu,aqi"
    assert models.AnomalyEvent.model_validate(event).kept_out == "ispu,aqi"


def test_the_derived_parser_accepts_kept_out_and_rejects_a_malformed_one() -> None:
    event = AnomalyEvent(
        1e9, "air_quality", "aq-1", "spike", "pm25", "warning", 0.9, 400.0, "ispu,aqi"
    )
    payload = event.as_json()
    parsed = AnomalyEvent.parse(
        payload, kind="air_quality", device_id="aq-1", indicators=INDICATORS
    )
    assert parsed == event
    plain = AnomalyEvent(1e9, "air_quality", "aq-1", "dropout", "device", "warning", None, None)
    assert "kept_out" not in plain.as_json()
    assert AnomalyEvent.parse(plain.as_json(), kind="air_quality", device_id="aq-1") == plain
    for bad in ("ISPU", "ispu,,aqi", "ispu,ispu", "ispu aqi", 5, ["ispu"], "a" * 40, "nope"):
        with pytest.raises(ContractError) as caught:
            AnomalyEvent.parse(
                {**payload, "kept_out": bad},
                kind="air_quality",
                device_id="aq-1",
                indicators=INDICATORS,
            )
        assert caught.value.reason == "kept_out"
    state = LiveState(open_anomaly_s=1e12)
    topic = "pantau/derived/purbalingga/kalimanah/air_quality/aq-1/anomaly"
    assert state.apply(topic, {**payload, "kept_out": "nope"}) == []
    assert state.rejected["kept_out"] == 1
