"""The API against a real pipeline: broker, InfluxDB, collector and `pantau api` processes."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from pantau.registry import Device, Registry
from processors.sun import solar_elevation_deg
from tests.api_helpers import ApiProcess, running_api
from tests.conftest import influx_admin
from tests.ingest_helpers import publish_all, publisher, running_collector, wait_for

pytestmark = pytest.mark.integration


@dataclass
class Pipeline:
    """A collector and an API over one city's data."""

    city: str
    db: str
    registry: Path
    api: ApiProcess
    mqtt_url: str
    influx_url: str
    start: float


def _registry(city: str) -> Registry:
    return Registry(
        [
            Device(
                "wl-1",
                "water_level",
                city,
                "kemangkon",
                -7.45,
                109.3,
                300.0,
                waspada_cm=150.0,
                siaga_cm=250.0,
                awas_cm=350.0,
                river="Klawing",
            ),
            Device("aq-1", "air_quality", city, "bobotsari", -7.3, 109.3, 3600.0),
            Device("aq-2", "air_quality", city, "kalimanah", -7.4, 109.4, 3600.0),
            Device("aq-9", "air_quality", city, "kalimanah", -7.41, 109.41, 3600.0),  # silent
            Device("sl-1", "streetlight", city, "purbalingga", -7.39, 109.36, 300.0, rated_w=60.0),
        ]
    )


def _messages(city: str, start: float) -> list[tuple[str, bytes]]:
    messages = []
    # A gauge rising through Waspada into Siaga in its last hour (5-minute readings).
    for i in range(40):
        level = 100.0 + (i - 28) * 15.0 if i >= 28 else 100.0 + (i % 2)
        payload = {"ts": start + 20 * 3600 + 300 * 12 + i * 300, "level_cm": level}
        messages.append((f"city/{city}/kemangkon/water_level/wl-1", json.dumps(payload).encode()))
    # Two air stations with a day of hourly PM readings; aq-1 has one spike.
    for h in range(30):
        for device, district, base in (("aq-1", "bobotsari", 30.0), ("aq-2", "kalimanah", 60.0)):
            pm25 = base + (h % 3) if (device, h) != ("aq-1", 25) else 900.0
            payload = {"ts": start + h * 3600, "pm25": pm25, "pm10": 50.0}
            messages.append(
                (f"city/{city}/{district}/air_quality/{device}", json.dumps(payload).encode())
            )
    # A healthy lamp at any hour of the run: lit when the sun is down, dark when it is up.
    ts = start + 29 * 3600
    night = float(solar_elevation_deg(-7.39, 109.36, ts)) < 0.0
    payload = {"ts": ts, "lamp_on": int(night), "power_w": 60.0 if night else 0.0}
    messages.append((f"city/{city}/purbalingga/streetlight/sl-1", json.dumps(payload).encode()))
    return messages


@pytest.fixture(scope="module")
def pipeline(
    broker: Any, influx: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """Readings of one city through a collector, then an API over them."""
    city = f"c{uuid.uuid4().hex[:10]}"
    db = f"t_{uuid.uuid4().hex[:12]}"
    folder = tmp_path_factory.mktemp("api")
    influx_admin(influx, f'CREATE DATABASE "{db}"')
    path = folder / "registry.csv"
    _registry(city).write_csv(path)
    start = time.time() - 29 * 3600 - 60  # the newest readings are a minute old
    with (
        running_collector(
            broker.url,
            influx.url,
            db,
            topic=f"city/{city}/#",
            registry=path,
            log_path=folder / "collector.log",
        ),
        publisher(broker.url) as pub,
    ):
        publish_all(pub, _messages(city, start))
        # The spike is 4 hours old: show devices as "anomaly" for 6 hours, not the default 1.
        status_window = {"PANTAU_API_ANOMALY_STATUS_S": "21600"}
        with running_api(
            broker.url, influx.url, db, city=city, registry=path, env=status_window
        ) as api:
            with api.client("read") as http:

                def settled() -> bool:
                    anomalies = http.get("/api/v1/anomalies").json()["anomalies"]
                    regency = http.get("/api/v1/indicators/regency").json()
                    return (
                        bool(anomalies)
                        and regency["water_level"] is not None
                        and (
                            regency["air_quality"] is not None
                            and regency["air_quality"]["stations"] == 2
                        )
                    )

                assert wait_for(settled, 60), api.log()  # generous: a loaded machine
            yield Pipeline(city, db, path, api, broker.url, influx.url, start)
    influx_admin(influx, f'DROP DATABASE "{db}"')


# -- access -----------------------------------------------------------------------------------


def test_health_is_open_and_everything_else_needs_a_token(pipeline: Pipeline) -> None:
    url = pipeline.api.url
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/health/ready").json()
    assert ready["checks"] == {"broker": True, "feed": True, "influxdb": True}
    for path in (
        "/api/v1/devices",
        "/api/v1/indicators/regency",
        "/api/v1/dimensions",
        "/api/v1/anomalies",
        "/metrics",
        "/api/v1/feed/sse",
    ):
        response = httpx.get(f"{url}{path}")
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"] == "Unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{url}/api/v1/devices", headers={"Authorization": "Bearer pantau_x_y"})
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "unknown or revoked token"


def test_a_read_token_cannot_acknowledge(pipeline: Pipeline) -> None:
    with pipeline.api.client("read") as http:
        anomaly = http.get("/api/v1/anomalies").json()["anomalies"][0]
        response = http.post(f"/api/v1/anomalies/{anomaly['id']}/ack", json={"note": "x"})
    assert response.status_code == 403
    assert "operate" in response.json()["detail"]


# -- devices and history ----------------------------------------------------------------------


def test_devices_list_filters_and_statuses(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        devices = {d["device_id"]: d for d in http.get("/api/v1/devices").json()["devices"]}
        assert set(devices) == {"wl-1", "aq-1", "aq-2", "aq-9", "sl-1"}
        assert devices["aq-9"]["status"] == "unknown"  # registered, never reported
        assert devices["aq-1"]["status"] == "anomaly"  # the open spike
        assert devices["aq-2"]["status"] == "ok"
        assert devices["aq-1"]["district"] == "bobotsari"
        air = http.get("/api/v1/devices", params={"kind": "air_quality"}).json()
        assert {d["device_id"] for d in air["devices"]} == {"aq-1", "aq-2", "aq-9"}
        calm = http.get("/api/v1/devices", params={"district": "kalimanah", "status": "ok"})
        assert [d["device_id"] for d in calm.json()["devices"]] == ["aq-2"]


def test_one_device_has_latest_reading_indicators_and_open_anomalies(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        body = http.get("/api/v1/devices/aq-1").json()
    assert body["latest"]["values"] == {"pm25": 32.0, "pm10": 50.0}  # hour 29: 30 + 29 % 3
    assert body["latest"]["ts"] == pytest.approx(pipeline.start + 29 * 3600)
    assert body["indicators"]["values"]["ispu_critical"] in ("pm25", "pm10")
    assert [(a["detector"], a["field"], a["value"]) for a in body["anomalies"]] == [
        ("spike", "pm25", 900.0)
    ]
    with pipeline.api.client() as http:
        missing = http.get("/api/v1/devices/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_history_is_downsampled_by_influxql(pipeline: Pipeline) -> None:
    start = pipeline.start
    with pipeline.api.client() as http:
        body = http.get(
            "/api/v1/devices/aq-1/history",
            params={
                "field": "pm25",
                "start": f"{start - 1:.3f}",
                "end": f"{start + 30 * 3600:.3f}",
                "interval": 6 * 3600,
            },
        ).json()
    assert body["interval_s"] == 6 * 3600
    means = [p["mean"] for p in body["points"]]
    assert len(means) >= 5
    assert max(p["max"] for p in body["points"]) == 900.0
    assert min(p["min"] for p in body["points"]) == 30.0
    with pipeline.api.client() as http:
        default = http.get("/api/v1/devices/wl-1/history").json()
    assert default["field"] == "level_cm"
    assert default["points"]  # the last 24 h by default


HOSTILE_HISTORY: list[dict[str, Any]] = [
    {"field": 'pm25") FROM air_quality; DROP DATABASE x --'},
    {"field": 'pm25" OR 1=1'},
    {"field": "level_cm"},  # a field of another kind
    {"start": "yesterday"},
    {"start": "2026-01-01T00:00:00"},  # no zone
    {"start": "1e400"},
    {"start": "0", "end": "2000000000"},  # 63 years
    {"start": "100", "end": "50"},
    {"interval": "0"},
    {"interval": "1", "start": "0", "end": "86400000"},
    {"start": "x" * 5000},
]


@pytest.mark.parametrize("params", HOSTILE_HISTORY)
def test_hostile_history_queries_get_a_clean_4xx(
    pipeline: Pipeline, params: dict[str, Any]
) -> None:
    with pipeline.api.client() as http:
        response = http.get("/api/v1/devices/aq-1/history", params=params)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == response.status_code and body["detail"]
    assert "DROP" not in response.text and "x" * 100 not in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/devices/aq-1'%20OR%20'1'='1/history",
        "/api/v1/devices/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/devices/%22aq-1%22",
        "/api/v1/devices/" + "a" * 300,
        "/api/v1/anomalies?district=x'%20OR%20'1'='1",
        "/api/v1/anomalies?device_id=a%5C'",
        "/api/v1/anomalies?since=1e999",
        "/api/v1/anomalies?limit=100000000",
        "/api/v1/anomalies?kind=bogus",
        "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_hostile_paths_and_filters_get_a_clean_4xx(pipeline: Pipeline, path: str) -> None:
    with pipeline.api.client() as http:
        response = http.get(path)
    assert 400 <= response.status_code < 500, response.text
    assert "root:" not in response.text


def test_database_is_untouched_by_hostile_queries(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        http.get("/api/v1/devices/aq-1/history", params={"field": "pm25; DROP DATABASE x"})
        assert http.get("/api/v1/anomalies").json()["count"] >= 1
        assert http.get("/api/v1/devices/aq-1/history", params={"field": "pm25"}).status_code == 200


def test_oversized_and_malformed_bodies_are_refused(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        ident = http.get("/api/v1/anomalies").json()["anomalies"][0]["id"]
        path = f"/api/v1/anomalies/{ident}/ack"
        big = http.post(
            path,
            content=b'{"note": "' + b"x" * 100_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413
        broken = http.post(path, content=b'{"note": ', headers={"Content-Type": "application/json"})
        assert broken.status_code == 422
        extra = http.post(path, json={"note": "x", "admin": True})
        assert extra.status_code == 422
        long_note = http.post(path, json={"note": "x" * 501})
        assert long_note.status_code == 422
        fake = http.post("/api/v1/anomalies/aq-1.spike.pm25.1/ack", json={"note": "x"})
        assert fake.status_code == 404
        body = http.get("/api/v1/anomalies", params={"device_id": "aq-1"}).json()
    assert body["anomalies"][0]["acknowledged"] is None  # nothing changed


# -- indicators and dimensions ----------------------------------------------------------------


def test_indicators_per_device_district_and_regency(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        devices = http.get("/api/v1/indicators").json()["indicators"]
        regency = http.get("/api/v1/indicators/regency").json()
        districts = http.get("/api/v1/indicators/districts").json()["districts"]
    by_device = {e["device_id"]: e for e in devices}
    assert by_device["wl-1"]["values"]["flood_status"] == "Siaga"
    assert regency["water_level"]["worst_status"] == "Siaga"
    assert regency["water_level"]["counts"] == {"Normal": 0, "Waspada": 0, "Siaga": 1, "Awas": 0}
    ispus = [by_device[d]["values"]["ispu"] for d in ("aq-1", "aq-2")]
    assert regency["air_quality"]["ispu_max"] == max(ispus)
    assert regency["air_quality"]["ispu_mean"] == pytest.approx(sum(ispus) / 2)
    assert districts["kalimanah"]["air_quality"]["stations"] == 1
    assert districts["kemangkon"]["water_level"]["gauges"] == 1


def test_dimensions_carry_contributions_and_say_what_is_not_measured(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        body = http.get("/api/v1/dimensions").json()
        one = http.get("/api/v1/dimensions/kemangkon").json()
    regency = {d["dimension"]: d for d in body["regency"]["dimensions"]}
    assert set(regency) == {
        "smart_governance",
        "smart_economy",
        "smart_living",
        "smart_environment",
        "smart_society",
        "smart_branding",
    }
    for name in ("smart_governance", "smart_economy", "smart_branding"):
        assert regency[name]["score"] is None and regency[name]["measured"] is False
        assert regency[name]["reason"]
    environment = regency["smart_environment"]
    used = [c for c in environment["contributions"] if c["contribution"] is not None]
    assert environment["score"] == pytest.approx(sum(c["contribution"] for c in used))
    assert all(c["age_s"] is not None and c["age_s"] < 7200 for c in used)
    society = regency["smart_society"]
    worst = next(c for c in society["contributions"] if c["indicator"] == "flood_worst_level")
    assert worst["value"] == 2.0  # Siaga
    assert worst["normalised"] == pytest.approx(100 / 3)
    kemangkon = {d["dimension"]: d for d in one["dimensions"]}
    assert kemangkon["smart_society"]["score"] == pytest.approx(society["score"])


# -- anomalies --------------------------------------------------------------------------------


def test_anomalies_filter_and_acknowledge(pipeline: Pipeline) -> None:
    with pipeline.api.client("operate") as http:
        spikes = http.get(
            "/api/v1/anomalies", params={"detector": "spike", "district": "bobotsari"}
        ).json()["anomalies"]
        assert [(a["device_id"], a["field"]) for a in spikes] == [("aq-1", "pm25")]
        spike = spikes[0]
        assert spike["severity"] == "warning" and spike["acknowledged"] is None
        assert http.get("/api/v1/anomalies", params={"kind": "streetlight"}).json()["count"] == 0
        acked = http.post(f"/api/v1/anomalies/{spike['id']}/ack", json={"note": "dust storm"})
        assert acked.status_code == 200, acked.text
        ack = acked.json()["acknowledged"]
        assert ack["by"] == "test-operate" and ack["note"] == "dust storm"
        listed = http.get("/api/v1/anomalies", params={"device_id": "aq-1"}).json()
        assert listed["anomalies"][0]["acknowledged"]["note"] == "dust storm"
        assert (
            http.get(
                "/api/v1/anomalies", params={"acknowledged": "false", "device_id": "aq-1"}
            ).json()["count"]
            == 0
        )
        # Acknowledged: no longer open, so the device is no longer in "anomaly" (generous limit).
        assert wait_for(
            lambda: http.get("/api/v1/devices/aq-1").json()["device"]["status"] == "ok", 30
        )


# -- live feed --------------------------------------------------------------------------------


def test_websocket_and_sse_feeds_deliver_filtered_events(pipeline: Pipeline) -> None:
    ws_url = pipeline.api.url.replace("http", "ws") + "/api/v1/feed/ws"
    token = pipeline.api.tokens["read"]
    frames: list[dict[str, Any]] = []
    sse_lines: list[str] = []
    connected = threading.Event()

    def read_sse() -> None:
        with httpx.stream(
            "GET",
            f"{pipeline.api.url}/api/v1/feed/sse",
            params={"types": "reading", "kind": "air_quality", "access_token": token},
            timeout=30,  # generous: a loaded machine
        ) as response:
            assert response.status_code == 200
            connected.set()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    sse_lines.append(line[6:])
                    return

    reader = threading.Thread(target=read_sse, daemon=True)
    reader.start()
    with ws_connect(f"{ws_url}?types=reading,anomaly&device_id=aq-2&access_token={token}") as ws:
        assert connected.wait(30)  # the SSE client is subscribed before its 200 (generous)

        def websocket_subscribed() -> bool:
            # The socket is accepted before its feed subscription: wait for the API's gauge,
            # raised once it is subscribed, instead of a guessed 0.3 s.
            with pipeline.api.client("read") as http:
                text = http.get("/metrics").text
            return any(
                line.startswith('pantau_api_feed_clients{transport="websocket"}')
                and float(line.rpartition(" ")[2]) >= 1
                for line in text.splitlines()
            )

        assert wait_for(websocket_subscribed, 30, interval=0.05), pipeline.api.log()
        now = time.time()
        with publisher(pipeline.mqtt_url) as pub:
            publish_all(
                pub,
                [
                    (
                        f"city/{pipeline.city}/kalimanah/air_quality/aq-2",
                        json.dumps({"ts": now, "pm25": 61.0}).encode(),
                    ),
                    (
                        f"city/{pipeline.city}/kemangkon/water_level/wl-1",
                        json.dumps({"ts": now, "level_cm": 266.0}).encode(),
                    ),
                ],
            )
        frames.append(json.loads(ws.recv(timeout=30)))  # generous: a loaded machine
    reader.join(30)
    events = frames[0]["events"]
    assert [(e["type"], e["device_id"]) for e in events] == [("reading", "aq-2")]
    assert events[0]["values"]["pm25"] == 61.0
    assert frames[0]["dropped"] == 0
    sse = json.loads(sse_lines[0])
    assert {e["kind"] for e in sse["events"]} == {"air_quality"}


def test_websocket_without_a_token_is_closed(pipeline: Pipeline) -> None:
    ws_url = pipeline.api.url.replace("http", "ws") + "/api/v1/feed/ws"
    with pytest.raises(InvalidStatus, match="403"), ws_connect(ws_url) as ws:
        ws.recv(timeout=5)


# -- replicas ---------------------------------------------------------------------------------


def test_a_new_replica_knows_the_current_state_and_agrees(pipeline: Pipeline) -> None:
    """A second API started now learns indicators (retained) and anomalies (InfluxDB) at once."""
    tokens_file = pipeline.api.log_path.parent / "tokens.json"
    with running_api(
        pipeline.mqtt_url,
        pipeline.influx_url,
        pipeline.db,
        city=pipeline.city,
        registry=pipeline.registry,
        tokens_file=tokens_file,
        env={"PANTAU_API_ANOMALY_STATUS_S": "21600"},  # as the first replica
    ) as second:
        headers = {"Authorization": f"Bearer {pipeline.api.tokens['read']}"}
        paths = [
            "/api/v1/indicators/regency",
            "/api/v1/indicators",
            "/api/v1/devices",
            "/api/v1/anomalies",
        ]

        def same() -> bool:
            for path in paths:
                a = httpx.get(pipeline.api.url + path, headers=headers).json()
                b = httpx.get(second.url + path, headers=headers).json()
                a.pop("ts", None)
                b.pop("ts", None)
                if a != b:
                    return False
            return True

        # Known at once, as far as the retained messages go: a device's retained latest reading
        # is refreshed at most every 10 s, and a newer one held back meanwhile goes out with the
        # collector's next sweep (every 10 s), so the replicas agree within one sweep. The
        # limit allows several sweeps: a loaded machine may delay one.
        assert wait_for(same, 60), second.log()
        first = httpx.get(pipeline.api.url + "/api/v1/dimensions", headers=headers).json()
        again = httpx.get(second.url + "/api/v1/dimensions", headers=headers).json()
        assert _scores(first) == _scores(again)


def _scores(body: dict[str, Any]) -> list[tuple[str, float | None]]:
    return [
        (d["dimension"], d["score"] and round(d["score"], 6)) for d in body["regency"]["dimensions"]
    ]


def test_metrics_count_requests(pipeline: Pipeline) -> None:
    with pipeline.api.client() as http:
        http.get("/api/v1/indicators/regency")
        text = http.get("/metrics").text
    assert 'pantau_api_requests_total{route="/api/v1/indicators/regency",status="200"}' in text
    assert "pantau_api_derived_messages_total" in text
