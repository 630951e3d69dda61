"""Simulated Purbalingga fleet: physics, determinism, fault ground truth, CLI, load mode."""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from pantau.settings import mqtt_endpoint
from processors.catalog import CATALOG
from processors.sun import sunrise_sunset
from simulators.air import AirQualityModel
from simulators.engine import FleetSimulator, Outgoing
from simulators.faults import FaultEvent, read_ground_truth
from simulators.fleet import purbalingga_fleet, with_interval
from simulators.injector import parse_fault_spec
from simulators.load import LoadPlan, run_load
from simulators.model import local_hour
from simulators.purbalingga import DISTRICTS
from simulators.river import RiverModel
from tests.ingest_helpers import count, pantau, rows, running_collector, wait_for

REPO = Path(__file__).resolve().parents[1]
DEC_1_2024 = 1733011200.0  # 2024-12-01T00:00:00Z, 07:00 WIB, wet season
ALL_FAULTS = (
    "spike=0.004,stuck=0.002,drift=0.001,noise_burst=0.002,dropout=0.002,lamp_out=0.002,"
    "day_burn=0.002,power_off_rating=0.001,duplicate=0.005,out_of_order=0.005,malformed=0.005"
)


def of_kind(registry: Registry, kind: str) -> Registry:
    return Registry(d for d in registry if d.kind == kind)


def decoded(messages: list[Outgoing]) -> Iterator[tuple[Outgoing, dict[str, Any]]]:
    """Each well-formed reading with the message that carried it."""
    for message in messages:
        if message.readings == 0:
            continue
        body = json.loads(message.payload)
        for reading in body if isinstance(body, list) else [body]:
            yield message, reading


def covered(events: list[FaultEvent], device_id: str, ts: float, *faults: str) -> bool:
    return any(
        e.device_id == device_id and e.fault in faults and e.start <= ts <= e.end for e in events
    )


# --- the fleet ------------------------------------------------------------------------------


def test_default_fleet_is_the_example_registry() -> None:
    example = Registry.from_csv(REPO / "deploy" / "registry.example.csv")
    assert purbalingga_fleet() == example


def test_n_devices_per_kind_are_spread_over_the_eighteen_kecamatan(tmp_path: Path) -> None:
    fleet = purbalingga_fleet("purbalingga", devices_per_kind=40)
    for kind in CATALOG:
        devices = fleet.by_kind(kind)
        assert len(devices) == 40
        per_district = Counter(d.district for d in devices)
        assert len(per_district) == 18 and set(per_district.values()) == {2, 3}
    assert fleet.get("aq-bobotsari-01") is not None and fleet.get("wl-rembang-02") is not None
    # The platform reads the very same file.
    fleet.write_csv(tmp_path / "fleet.csv")
    assert Registry.from_csv(tmp_path / "fleet.csv") == fleet


# --- determinism ----------------------------------------------------------------------------


def _run(seed: int, hours: float = 2.0, batch: int = 1) -> list[Outgoing]:
    simulator = FleetSimulator(
        purbalingga_fleet(),
        seed=seed,
        start=DEC_1_2024,
        end=DEC_1_2024 + hours * 3600,
        faults=parse_fault_spec(ALL_FAULTS),
        batch=batch,
    )
    return list(simulator.messages())


def test_same_seed_gives_the_same_messages_and_other_seeds_differ() -> None:
    first, again, other = _run(7), _run(7), _run(8)
    assert first == again
    assert [m.payload for m in first] != [m.payload for m in other]
    # Messages come out in the order they are due.
    assert all(a.emit_at <= b.emit_at for a, b in itertools.pairwise(first))


def test_gateway_batches_carry_k_readings() -> None:
    messages = _run(3, hours=1.0, batch=5)
    sizes = Counter(len(json.loads(m.payload)) for m in messages if m.readings)
    assert sizes.most_common(1)[0][0] == 5


# --- physics --------------------------------------------------------------------------------


def test_readings_stay_within_the_catalog_ranges_and_units() -> None:
    afternoon = DEC_1_2024 + 6 * 3600  # 13:00 WIB, through the evening into the night
    simulator = FleetSimulator(purbalingga_fleet(), seed=1, start=afternoon, end=afternoon + 43200)
    messages = list(simulator.messages())
    seen: dict[str, list[float]] = defaultdict(list)
    for message, reading in decoded(messages):
        kind = message.topic.split("/")[3]
        spec = CATALOG[kind]
        assert set(reading) == {"ts", *spec.field_names}
        for f in spec.fields:
            assert f.low <= reading[f.name] <= f.high, (f.name, reading)
            seen[f"{kind}.{f.name}"].append(reading[f.name])
    assert 10 < np.median(seen["air_quality.pm25"]) < 80  # ug/m3 of a Central Java town
    assert 200 < np.median(seen["air_quality.co"]) < 5000  # ug/m3, not mg/m3
    assert 20 < np.median(seen["air_quality.temperature"]) < 32
    assert min(seen["streetlight.voltage_v"]) >= 220 and max(seen["streetlight.voltage_v"]) <= 230


def test_air_quality_has_rush_hours_and_evening_burning() -> None:
    stations = purbalingga_fleet().by_kind("air_quality")
    model = AirQualityModel(stations, 2, {d.name: d for d in DISTRICTS})
    ts = np.repeat(DEC_1_2024 + np.arange(0.0, 14 * 86400, 600.0), len(stations))
    device = np.tile(np.arange(len(stations)), ts.size // len(stations))
    values = model.sample(device, ts, np.random.default_rng(0))
    hour = local_hour(ts).astype(int)
    pm = np.array([np.median(values[hour == h, 0]) for h in range(24)])
    assert pm[7] > 1.5 * pm[2] and pm[19] > 1.5 * pm[13]  # morning rush; evening burning
    temp = np.array([values[hour == h, 7].mean() for h in range(24)])
    assert 12 <= temp.argmax() <= 16 and temp.argmin() <= 6
    humidity = np.array([values[hour == h, 8].mean() for h in range(24)])
    assert humidity.argmin() == temp.argmax()


def test_rain_raises_rivers_upstream_first_and_sometimes_past_waspada() -> None:
    gauges = of_kind(purbalingga_fleet(), "water_level").by_kind("water_level")
    model = RiverModel(gauges, seed=11)
    ts = DEC_1_2024 + np.arange(0.0, 60 * 86400, 300.0)
    rng = np.random.default_rng(0)
    levels = {d.device_id: model.sample(np.full(ts.size, i), ts, rng) for i, d in enumerate(gauges)}
    top, bottom = levels["wl-karangjambu-01"][:, 0], levels["wl-kemangkon-01"][:, 0]
    lags = range(0, 200)  # 5-minute steps
    best = max(lags, key=lambda k: np.corrcoef(top[: ts.size - k], bottom[k:])[0, 1])
    expected = model.lag_s(gauges.index(Registry(gauges).get("wl-kemangkon-01"))) / 300
    assert 0.5 * expected < best < 1.5 * expected + 24  # the wave's peak adds its own delay
    crossed = sum(bool(np.any(levels[d.device_id][:, 0] >= (d.waspada_cm or 0))) for d in gauges)
    assert crossed >= 3  # wet season: several gauges reach Waspada in two months
    rain = np.concatenate([v[:, 1] for v in levels.values()])
    assert rain.min() >= 0 and 0.05 < np.mean(rain > 0) < 0.5
    battery = levels["wl-bobotsari-01"][:, 2]
    assert battery.min() > 11.5 and battery.max() < 14.5
    assert np.abs(np.diff(battery)).max() < 0.2  # slowly varying


def test_lamps_are_on_only_between_sunset_and_sunrise_except_injected_faults() -> None:
    lamps = Registry(
        d
        for d in purbalingga_fleet()
        if d.device_id.startswith("sl-") and d.device_id.endswith("-01")
    )
    simulator = FleetSimulator(
        lamps,
        seed=5,
        start=DEC_1_2024,
        end=DEC_1_2024 + 2 * 86400,
        faults=parse_fault_spec("lamp_out=0.004,day_burn=0.004,power_off_rating=0.002"),
    )
    messages = list(simulator.messages())
    truth = simulator.ground_truth
    assert {e.fault for e in truth} == {"lamp_out", "day_burn", "power_off_rating"}
    devices = list(lamps)
    index = {d.device_id: i for i, d in enumerate(devices)}
    got = [(index[m.device_id], r) for m, r in decoded(messages)]
    device = np.array([i for i, _ in got])
    columns = {
        name: np.array([r[name] for _, r in got])
        for name in ["ts", *CATALOG["streetlight"].field_names]
    }
    ts = columns["ts"]
    lat = np.array([d.lat for d in devices])[device]
    lon = np.array([d.lon for d in devices])[device]
    day = np.floor(ts / 86400) * 86400
    windows = [sunrise_sunset(lat, lon, day + k * 86400) for k in (-1, 0, 1)]
    daylight = np.any([(rise < ts) & (ts < sset) for rise, sset in windows], axis=0)
    edge = np.min([np.abs(ts - e) for w in windows for e in w], axis=0)
    clear = edge > 120  # sun.py's two algorithms may differ by a minute at the edges
    wrong = clear & (columns["lamp_on"] != np.where(daylight, 0, 1))
    assert clear.sum() > 5000 and wrong.any()
    for k in np.flatnonzero(wrong):
        fault = "day_burn" if daylight[k] else "lamp_out"
        assert covered(truth, devices[device[k]].device_id, float(ts[k]), fault), (k, fault)
    # Working lamps at night: full power until 23:00 WIB, half until 04:00, ~ rated * dim.
    rated = np.array([d.rated_w or 0.0 for d in devices])[device]
    night = clear & ~daylight & ~wrong
    faulty = np.array(
        [
            covered(truth, devices[d].device_id, float(t), "power_off_rating")
            for d, t in zip(device, ts, strict=True)
        ]
    )
    ok = night & ~faulty
    hour = local_hour(ts)
    dimmed = (hour >= 23) | (hour < 4)
    assert np.all(columns["dim_pct"][ok] == np.where(dimmed[ok], 50, 100))
    want = rated * columns["dim_pct"] / 100
    assert np.all(np.abs(columns["power_w"][ok] - want[ok]) <= 0.1 * want[ok])  # 1.5 % noise
    assert np.all(columns["power_w"][clear & daylight & ~wrong] < 1.0)  # controller standby
    assert np.allclose(columns["current_a"], columns["power_w"] / columns["voltage_v"], atol=1.1e-3)
    deep_night = ok & ((hour >= 20) | (hour < 4))
    assert np.all(columns["lux"][deep_night] < 5)
    assert np.median(columns["lux"][daylight & clear]) > 5000
    for d in range(len(devices)):
        energy = columns["energy_wh"][device == d]
        assert np.all(np.diff(energy) >= 0)  # a counter
        # About rated * (full hours + dimmed hours / 2) per night, two nights.
        assert (
            0.5 * rated[device == d][0] * 18
            < energy[-1] - energy[0]
            < 1.2 * rated[device == d][0] * 24
        )


# --- fault ground truth ---------------------------------------------------------------------


def test_ground_truth_matches_the_messages_produced() -> None:
    simulator = FleetSimulator(
        purbalingga_fleet(),
        seed=9,
        start=DEC_1_2024 + 8 * 3600,  # 15:00 WIB: day and night
        end=DEC_1_2024 + 14 * 3600,
        faults=parse_fault_spec(ALL_FAULTS),
    )
    messages = list(simulator.messages())
    truth = simulator.ground_truth
    kinds = Counter(e.fault for e in truth)
    assert set(kinds) == set(parse_fault_spec(ALL_FAULTS).rates), kinds
    readings: dict[str, list[tuple[Outgoing, dict[str, Any]]]] = defaultdict(list)
    for message, reading in decoded(messages):
        readings[message.device_id].append((message, reading))
    malformed = {(m.device_id, m.newest_ts) for m in messages if m.readings == 0}
    registry_intervals = {d.device_id: d.interval_s for d in purbalingga_fleet()}
    overtaken = 0
    for event in truth:
        mine = readings[event.device_id]
        inside = [r for _, r in mine if event.start <= r["ts"] <= event.end]
        if event.fault == "dropout":
            assert not inside, event
        elif event.fault == "stuck":
            values = {r[event.field] for r in inside}
            assert len(values) <= 1, (event, values)
        elif event.fault == "malformed":
            assert (event.device_id, event.end) in malformed
        elif event.fault == "duplicate":
            assert sum(r["ts"] == event.start for r in inside) == 2, event
        elif event.fault == "out_of_order":
            order = [r["ts"] for _, r in mine]
            late = order.index(event.start)
            carrier = mine[late][0]
            interval = registry_intervals[event.device_id]
            assert carrier.emit_at - carrier.newest_ts >= 2 * interval, event
            # Later readings overtake it, unless the device went silent meanwhile.
            overtaken += any(ts > event.start for ts in order[:late])
    assert overtaken >= 0.8 * kinds["out_of_order"]
    # Nothing else is duplicated or delivered late beyond the recorded events.
    for device_id, items in readings.items():
        stamps = [r["ts"] for _, r in items]
        for ts, n in Counter(stamps).items():
            assert n == 1 or covered(truth, device_id, ts, "duplicate")
        for earlier, later in itertools.pairwise(stamps):
            # Arriving before an earlier observation: only a delayed or resent reading.
            assert later > earlier or covered(truth, device_id, later, "out_of_order", "duplicate")


def test_fault_spec_is_checked() -> None:
    assert parse_fault_spec("").rates == {}
    assert parse_fault_spec(" spike=0.01 , stuck=0.5").get("stuck") == 0.5
    for bad in ("sparks=0.1", "spike", "spike=x", "spike=2", "duplicate=0.6,malformed=0.6"):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


# --- over a real broker ---------------------------------------------------------------------


@contextmanager
def capture(mqtt_url: str, topic: str) -> Iterator[list[tuple[str, bytes]]]:
    """Everything published on `topic` (QoS 1), in arrival order."""
    endpoint = mqtt_endpoint(mqtt_url)
    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"cap-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_connect = lambda c, *args: c.subscribe(topic, qos=1)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    try:
        assert subscribed.wait(60)  # the SUBACK; generous for a loaded machine
        yield got
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.integration
def test_cli_publishes_exactly_the_seeded_messages_and_their_ground_truth(
    broker: Any, unique_city: str, tmp_path: Path
) -> None:
    start = math.floor(time.time()) - 3 * 3600.0
    args = ["--start", str(start), "--duration", "3600", "--fast", "--seed", "4"]
    args += ["--city", unique_city, "--faults", ALL_FAULTS]
    with capture(broker.url, f"city/{unique_city}/#") as got:
        done = pantau(
            "simulate",
            "--mqtt",
            broker.url,
            *args,
            "--ground-truth",
            str(tmp_path / "truth.csv"),
            "--write-registry",
            str(tmp_path / "fleet.csv"),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        registry = Registry.from_csv(tmp_path / "fleet.csv")
        simulator = FleetSimulator(
            registry, seed=4, start=start, end=start + 3600, faults=parse_fault_spec(ALL_FAULTS)
        )
        expected = [(m.topic, m.payload) for m in simulator.messages()]
        # Messages received are the fact; a generous limit for a loaded machine.
        assert wait_for(lambda: len(got) >= len(expected), timeout=120)
    assert got == expected  # same seed, same messages, in the same order, through the broker
    assert read_ground_truth(tmp_path / "truth.csv") == sorted(
        simulator.ground_truth, key=lambda e: (e.start, e.device_id, e.fault)
    )
    assert f"sent={len(expected)} acked={len(expected)} unacked=0" in done.stdout


@pytest.mark.integration
def test_fleet_lands_in_influxdb_through_the_collector_with_its_registry(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    start = math.floor(time.time()) - 2 * 3600.0
    registry_path = tmp_path / "fleet.csv"
    faults = "spike=0.01,dropout=0.005,duplicate=0.01,malformed=0.01"
    registry = purbalingga_fleet(unique_city, devices_per_kind=20)
    registry.write_csv(registry_path)
    simulator = FleetSimulator(
        registry, seed=1, start=start, end=start + 1800, faults=parse_fault_spec(faults)
    )
    messages = list(simulator.messages())
    stored = {(m.topic.split("/")[3], m.device_id, r["ts"]) for m, r in decoded(messages)}
    bad = sum(m.readings == 0 for m in messages)
    with (
        InfluxClient(influx.url, influx_db) as client,
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{unique_city}/+/+/+",
            registry=registry_path,
            log_path=tmp_path / "collector.log",
        ),
    ):
        done = pantau(
            "simulate",
            "--mqtt",
            broker.url,
            "--registry",
            str(registry_path),
            "--start",
            str(start),
            "--duration",
            "1800",
            "--fast",
            "--seed",
            "1",
            "--faults",
            faults,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        per_kind = Counter(kind for kind, _, _ in stored)

        def all_stored() -> bool:
            return all(len(rows(client, k)) == n for k, n in per_kind.items())

        # Rows in InfluxDB are the fact; generous limits for a loaded machine.
        assert wait_for(all_stored, timeout=120), (tmp_path / "collector.log").read_text()[-2000:]
        assert wait_for(lambda: count(client, "rejected", "detail") >= bad, timeout=60)
        assert count(client, "rejected", "detail") == bad  # only the malformed messages
        got = {
            (kind, row["device_id"], row["time"] / 1e9)
            for kind in per_kind
            for row in rows(client, kind)
        }
    assert {(k, d, round(t, 3)) for k, d, t in got} == stored


@pytest.mark.integration
def test_per_device_credentials_open_one_connection_per_device(
    broker: Any, unique_city: str, tmp_path: Path
) -> None:
    devices = [
        Device(f"aq-{unique_city}-{i}", "air_quality", unique_city, "bobotsari", -7.29, 109.42, 60)
        for i in range(3)
    ]
    Registry(devices).write_csv(tmp_path / "fleet.csv")
    lines = ["device_id,username,password"] + [
        f"{d.device_id},u{i},p{i}" for i, d in enumerate(devices)
    ]
    (tmp_path / "logins.csv").write_text("\n".join(lines) + "\n")
    with capture(broker.url, f"city/{unique_city}/#") as got:
        done = pantau(
            "simulate",
            "--registry",
            str(tmp_path / "fleet.csv"),
            "--credentials",
            str(tmp_path / "logins.csv"),
            "--duration",
            "600",
            "--fast",
            env={"PANTAU_MQTT_URL": broker.url},  # the default for --mqtt
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert wait_for(lambda: len(got) >= 30, timeout=60)  # generous: a loaded machine
    log = broker.log_path.read_text()
    for i, d in enumerate(devices):
        assert f"as {d.device_id} " in log and f"u'u{i}'" in log
    (tmp_path / "logins.csv").write_text("device_id,username,password\nsomeone,u,p\n")
    refused = pantau(
        "simulate",
        "--mqtt",
        broker.url,
        "--registry",
        str(tmp_path / "fleet.csv"),
        "--credentials",
        str(tmp_path / "logins.csv"),
        "--duration",
        "60",
        "--fast",
    )
    assert refused.returncode != 0 and "no credentials for 3 device(s)" in refused.stderr


@pytest.mark.integration
def test_load_mode_holds_two_thousand_messages_per_second(broker: Any, unique_city: str) -> None:
    # 6 s rather than 3: the median then spans 4 whole seconds, not 1 or 2.
    plan = LoadPlan(broker.url, devices_per_kind=50, rate=2000, duration_s=6.0, city=unique_city)
    result = run_load(plan)
    assert result.messages == pytest.approx(12_000, abs=2)
    assert result.acked == result.messages and result.unacked == 0
    # ±25 %, not ±5 %: on a loaded 2-core machine the publisher loses whole slices of a second.
    # Still proof of pacing (not as fast as possible) and of keeping up; the ±5 % target is
    # measured by tests/benchmarks/bench_load.py.
    assert 0.75 < result.ratio < 1.25, result
    assert abs(result.median_per_second() - 2000) <= 0.25 * 2000, result.per_second


def test_rate_sets_each_devices_interval() -> None:
    plan = LoadPlan("mqtt://127.0.0.1:1", devices_per_kind=10, rate=300, batch=2)
    fleet = plan.fleet()
    assert {d.interval_s for d in fleet} == {30 / 600}  # 30 devices, 300 msg/s of 2 readings
    device = with_interval(fleet, 5.0).get("aq-bobotsari-01")
    assert device is not None and device.interval_s == 5.0
