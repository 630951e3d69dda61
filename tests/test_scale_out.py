"""Scale-out keeps per-device state whole: partitions, refused layouts, state rebuilt from InfluxDB.

One seeded stream of all three kinds (spikes, stuck sensors, a rising gauge, a dark lamp) goes
to several collectors at once, each with its own session and database: one collector alone,
and the same stream divided over partitions. Their anomalies and latest indicator levels must
be equal, and must contain every planted fault.
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingest.partition import Partition, district_partition
from pantau.influx import InfluxClient
from pantau.registry import Device, Registry
from processors.sun import solar_elevation_deg
from tests.conftest import influx_admin
from tests.ingest_helpers import (
    count,
    pantau,
    publish_all,
    publisher,
    rows,
    running_collector,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DISTRICTS = ("bobotsari", "kalimanah", "kemangkon", "mrebet", "padamara", "rembang")
READINGS = 160  # per device, every 10 minutes: about 27 hours
SPACING_S = 600.0
LAT, LON = -7.39, 109.36


def _registry(city: str) -> Registry:
    devices = []
    for d, district in enumerate(DISTRICTS):
        lat = LAT + d * 0.01
        for i in range(3):
            devices.append(
                Device(f"aq-{d}-{i}", "air_quality", city, district, lat, LON, SPACING_S)
            )
        devices.append(
            Device(
                f"wl-{d}",
                "water_level",
                city,
                district,
                lat,
                LON,
                SPACING_S,
                waspada_cm=150.0,
                siaga_cm=250.0,
                awas_cm=350.0,
                river="Klawing",
            )
        )
        for i in range(2):
            devices.append(
                Device(
                    f"sl-{d}-{i}", "streetlight", city, district, lat, LON, SPACING_S, rated_w=60.0
                )
            )
    return Registry(devices)


def _stream(city: str, start: float, *, seed: int = 20261202) -> list[tuple[str, bytes]]:
    """Readings of every device, oldest first, with faults planted at known places."""
    rng = random.Random(seed)
    messages: list[tuple[int, str, bytes]] = []
    for d, district in enumerate(DISTRICTS):
        for i in range(READINGS):
            ts = start + i * SPACING_S
            for s in range(3):
                pm25 = 30.0 + 10 * d + rng.gauss(0, 3)
                if s == 0 and i == 140:
                    pm25 = 700.0  # a spike after a long steady history
                if s == 1 and d % 2 == 0 and 120 <= i < 140:
                    pm25 = 42.0  # a stuck sensor: 20 identical readings
                payload = {"ts": ts, "pm25": round(pm25, 1), "pm10": round(pm25 * 1.6, 1)}
                topic = f"city/{city}/{district}/air_quality/aq-{d}-{s}"
                messages.append((i, topic, json.dumps(payload).encode()))
            level = 100.0 + rng.gauss(0, 2)
            if d == 0 and i >= READINGS - 20:
                level = 100.0 + (i - (READINGS - 20)) * 12.0  # rising through Siaga
            payload = {"ts": ts, "level_cm": round(level, 1)}
            messages.append(
                (i, f"city/{city}/{district}/water_level/wl-{d}", json.dumps(payload).encode())
            )
            night = float(solar_elevation_deg(LAT + d * 0.01, LON, ts)) < -6.0
            day = float(solar_elevation_deg(LAT + d * 0.01, LON, ts)) > 6.0
            for s in range(2):
                on = night and not (d == 1 and s == 0)  # lamp sl-1-0 stays dark at night
                if not (night or day):
                    on = False  # twilight: not judged
                payload = {"ts": ts, "lamp_on": int(on), "power_w": 60.0 if on else 0.0}
                topic = f"city/{city}/{district}/streetlight/sl-{d}-{s}"
                messages.append((i, topic, json.dumps(payload).encode()))
    messages.sort(key=lambda m: m[0])  # round by round, as a fleet publishes
    return [(topic, payload) for _, topic, payload in messages]


def _anomalies(client: InfluxClient) -> set[tuple[str, str, str, int]]:
    return {(r["device_id"], r["field"], r["detector"], r["time"]) for r in rows(client, "anomaly")}


def _levels(client: InfluxClient) -> dict[tuple[str, str], tuple[Any, ...]]:
    """The newest indicator levels per (district, device): what a level change sends at once."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(rows(client, "indicator"), key=lambda r: r["time"]):
        latest[(r["district"], r["device_id"])] = r
    keys = ("ispu", "ispu_category", "flood_status", "working")
    return {k: tuple(r.get(name) for name in keys) for k, r in latest.items()}


@contextmanager
def _database(influx: Any) -> Iterator[str]:
    db = f"t_{uuid.uuid4().hex[:12]}"
    influx_admin(influx, f'CREATE DATABASE "{db}"')
    try:
        yield db
    finally:
        influx_admin(influx, f'DROP DATABASE "{db}"')


@dataclass
class _Runner:
    """Collectors of one city's stream, each with its own identity, log and spool folder."""

    broker: Any
    influx: Any
    city: str
    registry: Path
    folder: Path

    def __call__(
        self, db: str, name: str, partition: str | None = None
    ) -> AbstractContextManager[Any]:
        return running_collector(
            self.broker.url,
            self.influx.url,
            db,
            topic=f"city/{self.city}/+/+/+",
            registry=self.registry,
            client_id=name,
            log_path=self.folder / f"{name}.log",
            spool_dir=self.folder / f"spool-{name}",
            extra_args=["--partition", partition] if partition else [],
        )


def _stored(client: InfluxClient) -> int:
    return sum(
        count(client, kind, field)
        for kind, field in (
            ("air_quality", "pm25"),
            ("water_level", "level_cm"),
            ("streetlight", "lamp_on"),
        )
    )


def test_partitions_give_the_anomalies_and_indicators_of_one_collector(
    broker: Any, influx: Any, tmp_path: Path
) -> None:
    city = f"c{uuid.uuid4().hex[:10]}"
    registry = tmp_path / "registry.csv"
    _registry(city).write_csv(registry)
    start = math.floor(time.time() - READINGS * SPACING_S)
    messages = _stream(city, start)
    # Both partitions must have districts, or the comparison proves little.
    assert {district_partition(d, 2) for d in DISTRICTS} == {1, 2}
    with ExitStack() as stack:
        single, parted = (
            stack.enter_context(_database(influx)),
            stack.enter_context(_database(influx)),
        )

        run = _Runner(broker, influx, city, registry, tmp_path)
        stack.enter_context(run(single, f"single-{uuid.uuid4().hex[:6]}"))
        stack.enter_context(run(parted, f"part-1-{uuid.uuid4().hex[:6]}", "1/2"))
        stack.enter_context(run(parted, f"part-2-{uuid.uuid4().hex[:6]}", "2/2"))
        with publisher(broker.url) as pub:
            publish_all(pub, messages, timeout=120)
        with InfluxClient(influx.url, single) as a, InfluxClient(influx.url, parted) as b:
            assert wait_for(lambda: _stored(a) == len(messages), 120)
            assert wait_for(lambda: _stored(b) == len(messages), 120)
            # Derived points go in the same write as their readings: all there now.
            one, many = _anomalies(a), _anomalies(b)
            found = {(device, detector) for device, _, detector, _ in one}
            planted = {("aq-0-0", "spike"), ("aq-0-1", "stuck"), ("sl-1-0", "lamp_out")}
            assert planted <= found, sorted(found)
            assert many == one, (sorted(one - many), sorted(many - one))
            levels = _levels(a)
            assert levels[("bobotsari", "wl-0")][2] in ("Siaga", "Awas"), levels
            assert any(level[0] is not None for level in levels.values()), levels  # ISPU
            assert _levels(b) == levels


def test_partition_one_rejects_unknown_districts_and_skips_the_others(
    broker: Any, influx: Any, influx_db: str, tmp_path: Path
) -> None:
    city = f"c{uuid.uuid4().hex[:10]}"
    registry = tmp_path / "registry.csv"
    _registry(city).write_csv(registry)
    plan = Partition.plan(1, 2, f"city/{city}/+/+/+", DISTRICTS)
    other = sorted(plan.others)[0]
    with (
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{city}/+/+/+",
            registry=registry,
            extra_args=["--partition", "1/2"],
        ),
        publisher(broker.url) as pub,
    ):
        ts = time.time() - 60
        body = json.dumps({"ts": ts, "pm25": 20.0}).encode()
        publish_all(
            pub,
            [
                (f"city/{city}/nowhere/air_quality/aq-x", body),  # a district nobody registered
                (f"city/{city}/{other}/air_quality/aq-{DISTRICTS.index(other)}-0", body),
            ],
        )
        with InfluxClient(influx.url, influx_db) as client:
            assert wait_for(lambda: count(client, "rejected", "detail") == 1, 30)
            rejected = rows(client, "rejected")
            assert rejected[0]["reason"] == "unknown_device"
            assert count(client, "air_quality", "pm25") == 0  # partition 2's reading


def test_layouts_that_split_devices_are_refused(tmp_path: Path) -> None:
    done = pantau("ingest", "--share-group", "g", "--db", "x")
    assert done.returncode != 0
    assert "round-robin" in done.stderr and "partition" in done.stderr
    done = pantau("ingest", "--partition", "1/2", "--db", "x")
    assert done.returncode != 0 and "registry" in done.stderr
    registry = tmp_path / "r.csv"
    _registry("c1").write_csv(registry)
    args = ["--registry", str(registry), "--topic", "city/+/bobotsari/#", "--partition", "2/2"]
    done = pantau("ingest", "--db", "x", *args)
    assert done.returncode != 0 and "district level" in done.stderr


def test_partition_filters_cover_every_district_once() -> None:
    for n in (1, 2, 3, 5):
        plans = [Partition.plan(k, n, "city/+/+/+/+", DISTRICTS) for k in range(1, n + 1)]
        owners = [sum(p.owns_district(d) for p in plans) for d in (*DISTRICTS, "unlisted")]
        assert owners == [1] * (len(DISTRICTS) + 1)
        assert plans[0].filters == ("city/+/+/+/+",)
        for p in plans[1:]:
            assert all(f.split("/")[2] in p.mine for f in p.filters)
    assert Partition.plan(2, 2, "city/#", ["x", "y", "z"]).filters[0].startswith("city/+/")


def test_without_the_catch_all_each_message_reaches_one_partition() -> None:
    """`catch_all=False`: partition 1 narrows to its own districts like the others."""
    for n in (1, 2, 3):
        plans = [
            Partition.plan(k, n, "city/+/+/+/+", DISTRICTS, catch_all=False)
            for k in range(1, n + 1)
        ]
        filters = [f for p in plans for f in p.filters]
        assert sorted(f.split("/")[2] for f in filters) == sorted(DISTRICTS)
        assert [sum(p.owns_district(d) for p in plans) for d in DISTRICTS] == [1] * len(DISTRICTS)
        assert not any(p.owns_district("unlisted") for p in plans)
        assert all(p.owns(f"city/x/{d}/air_quality/a") for p in plans for d in p.mine)


def _city_stream(tmp_path: Path) -> tuple[str, Path, list[tuple[str, bytes]], int]:
    """A new city's registry file and stream, and the split point of the restart tests.

    The split falls before the spike, the stuck run's end and the rise.
    """
    city = f"c{uuid.uuid4().hex[:10]}"
    registry = tmp_path / "registry.csv"
    _registry(city).write_csv(registry)
    messages = _stream(city, math.floor(time.time() - READINGS * SPACING_S))
    return city, registry, messages, len(messages) * 3 // 4


def test_state_is_rebuilt_from_influxdb_after_a_crash(
    broker: Any, influx: Any, tmp_path: Path
) -> None:
    """A collector killed before any snapshot finds the same anomalies after its restart."""
    city, registry, messages, half = _city_stream(tmp_path)
    with ExitStack() as stack:
        ref, crashed = (
            stack.enter_context(_database(influx)),
            stack.enter_context(_database(influx)),
        )

        collector = _Runner(broker, influx, city, registry, tmp_path)
        stack.enter_context(collector(ref, "reference"))
        victim = stack.enter_context(collector(crashed, "victim"))
        with publisher(broker.url) as pub, InfluxClient(influx.url, crashed) as b:
            publish_all(pub, messages[:half], timeout=120)
            assert wait_for(lambda: _stored(b) == half, 120)
            victim.send_signal(signal.SIGKILL)  # no snapshot yet: saved once a minute
            victim.wait(10)
            assert not (tmp_path / "spool-victim" / "processors.npz").exists()
            publish_all(pub, messages[half:], timeout=120)
            stack.enter_context(collector(crashed, "victim"))
            with InfluxClient(influx.url, ref) as a:
                assert wait_for(lambda: _stored(a) == len(messages), 120)
                assert wait_for(lambda: _stored(b) == len(messages), 120)
                one, again = _anomalies(a), _anomalies(b)
                assert {d for d, _, det, _ in one if det == "spike"} >= {"aq-0-0"}
                assert again == one, (sorted(one - again), sorted(again - one))
                # The 24-hour ISPU needs 18 hours of readings: only a rebuilt state has them.
                assert _levels(b) == _levels(a)
    log = (tmp_path / "victim.log").read_text()
    assert "processor state replayed from InfluxDB" in log


def test_scaling_out_mid_stream_rebuilds_the_state_of_devices_that_move(
    broker: Any, influx: Any, tmp_path: Path
) -> None:
    """One collector, then two partitions from the middle of the stream: results unchanged."""
    city, registry, messages, half = _city_stream(tmp_path)
    with ExitStack() as stack:
        ref, grown = stack.enter_context(_database(influx)), stack.enter_context(_database(influx))

        collector = _Runner(broker, influx, city, registry, tmp_path)
        stack.enter_context(collector(ref, "reference"))
        with publisher(broker.url) as pub, InfluxClient(influx.url, grown) as b:
            with collector(grown, "first"):  # stopped cleanly: its snapshot is saved
                publish_all(pub, messages[:half], timeout=120)
                assert wait_for(lambda: _stored(b) == half, 120)
            assert (tmp_path / "spool-first" / "processors.npz").exists()
            stack.enter_context(collector(grown, "first", "1/2"))  # same identity and spool
            stack.enter_context(collector(grown, "second", "2/2"))
            publish_all(pub, messages[half:], timeout=120)
            with InfluxClient(influx.url, ref) as a:
                assert wait_for(lambda: _stored(a) == len(messages), 120)
                assert wait_for(lambda: _stored(b) == len(messages), 120)
                one, again = _anomalies(a), _anomalies(b)
                assert again == one, (sorted(one - again), sorted(again - one))
                assert _levels(b) == _levels(a)
    assert "rebuilding the processors' state" in (tmp_path / "first.log").read_text()
