"""Every route's answer is described in `/openapi.json`, and real answers match the description.

The app is built in-process (`create_app`, lifespan not started: no broker, no InfluxDB), its
live state fed the derived messages a collector publishes, InfluxDB replaced by canned answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api import models
from api.anomaly_ids import anomaly_id, ts_to_ns
from api.app import create_app
from api.feed import FeedFilter, FeedHub
from api.livestate import LiveState
from pantau.registry import Registry
from pantau.settings import ApiSettings, Settings
from tests.api_helpers import make_tokens
from tests.conftest import EXAMPLE_REGISTRY

NOW = time.time()
CITY = "purbalingga"
AIR = "aq-bobotsari-01"
ANOMALY_NS = ts_to_ns(NOW - 600)
ANOMALY_ID = anomaly_id(AIR, "spike", "pm25", ANOMALY_NS)


def _derived(district: str, kind: str, device: str, what: str) -> str:
    return f"pantau/derived/{CITY}/{district}/{kind}/{device}/{what}"


def messages() -> list[tuple[str, dict[str, Any]]]:
    """What collectors publish: readings, indicators (device and district), anomalies, an ack."""
    readings = [
        {"ts": NOW - 30, "device_id": AIR, "district": "bobotsari", "readings": 3,
         "values": {"pm25": 35.5, "pm10": 50}},
        {"ts": NOW - 20, "device_id": "aq-kalimanah-01", "district": "kalimanah", "readings": 1,
         "values": {"pm25": 80.0}},
    ]  # fmt: skip
    lamp = {"ts": NOW - 10, "device_id": "sl-bobotsari-01", "district": "bobotsari",
            "values": {"power_w": 0, "lamp_on": 0}}  # fmt: skip
    gauge = {"ts": NOW - 100, "device_id": "wl-bobotsari-01", "district": "bobotsari",
             "values": {"level_cm": 260}}  # fmt: skip
    return [
        (f"pantau/derived/{CITY}/_all/air_quality/_all/readings", {"readings": readings}),
        (f"pantau/derived/{CITY}/_all/streetlight/_all/readings", {"readings": [lamp]}),
        (_derived("bobotsari", "water_level", "wl-bobotsari-01", "reading"), gauge),
        (
            _derived("bobotsari", "air_quality", AIR, "indicator"),
            {"ts": NOW - 30, "ispu": 101, "aqi": 120.5, "ispu_category": "Tidak Sehat",
             "ispu_colour": "#ffff00", "ispu_critical": "pm25", "aqi_category": "USG"},
        ),
        (
            _derived("kalimanah", "air_quality", "aq-kalimanah-01", "indicator"),
            {"ts": NOW - 20, "ispu": 40.0, "aqi": 30, "ispu_category": "Baik",
             "ispu_colour": "#00ff00", "ispu_critical": "pm10", "aqi_category": "Good"},
        ),
        (
            _derived("bobotsari", "water_level", "wl-bobotsari-01", "indicator"),
            {"ts": NOW - 100, "flood_status": "Siaga", "level_cm": 260, "rate_cm_h": 12.5},
        ),
        (
            _derived("bobotsari", "streetlight", "_district", "indicator"),
            {"ts": NOW - 60, "lamps_due": 3.0, "lamps_reporting": 3.0, "availability": 0.6667,
             "energy_today_wh": 0, "day_burn_h_today": 0.5},
        ),
        (
            _derived("bobotsari", "air_quality", AIR, "anomaly"),
            {"ts": ANOMALY_NS / 1e9, "detector": "spike", "field": "pm25",
             "severity": "critical", "score": 7.5, "value": 900},
        ),
        (
            _derived("bobotsari", "air_quality", AIR, "anomaly"),
            {"ts": NOW - 300, "detector": "stuck", "field": "pm10", "score": None},
        ),
        (
            f"pantau/ops/ack/{anomaly_id(AIR, 'stuck', 'pm10', ts_to_ns(NOW - 300))}",
            {"by": "ops desk", "at": NOW - 100, "note": "sensor cleaned"},
        ),
    ]  # fmt: skip


class CannedInflux:
    """InfluxDB's answers to the API's queries (history, anomalies, acks), and no writes."""

    async def query(self, influxql: str) -> list[dict[str, Any]]:
        if 'FROM "anomaly_ack"' in influxql or 'FROM "alert_' in influxql:
            return []
        if 'FROM "anomaly"' in influxql:
            tags = {"city": CITY, "district": "bobotsari", "device_id": AIR,
                    "kind": "air_quality", "detector": "spike", "field": "pm25",
                    "severity": "critical"}  # fmt: skip
            columns = ["time", *tags, "score", "value"]
            return [{"name": "anomaly", "columns": columns,
                     "values": [[ANOMALY_NS, *tags.values(), 7.5, 900.0]]}]  # fmt: skip
        start = int((NOW - 3600) * 1e9)
        return [
            {
                "name": "air_quality",
                "columns": ["time", "mean", "min", "max", "last"],
                "values": [[start, 35.25, 30, 41.5, 41.5], [start + 60 * 10**9, 12, 12, 12, 12]],
            }
        ]

    async def write(self, lines: str) -> None:
        pass

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        pass


class Client:
    """Requests to the app in-process (ASGI; its lifespan, broker link and all, not started)."""

    def __init__(self, app: FastAPI, token: str) -> None:
        self.app = app
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, url: str, json: Any = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=self.headers
            ) as client:
                return await client.request(method, url, json=json)

        return asyncio.run(send())

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)


def build(tmp_path: Path, *, fed: bool) -> Client:
    tokens = make_tokens(tmp_path / "tokens.json")
    settings = Settings(api=ApiSettings(tokens_file=tmp_path / "tokens.json", rate_per_s=0))
    app = create_app(settings, Registry.from_csv(EXAMPLE_REGISTRY))
    ctx = app.state.ctx
    ctx.influx = ctx.anomalies.influx = ctx.alerts.store.influx = CannedInflux()
    if fed:
        for topic, payload in messages():
            ctx.state.apply(topic, payload)
    return Client(app, tokens["admin"])


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    client = build(tmp_path_factory.mktemp("spec"), fed=False)
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


def reachable(spec: dict[str, Any], schema: Any, seen: set[str]) -> Iterator[tuple[str, Any]]:
    """Every (name, schema) of a component the schema uses, transitively."""
    if isinstance(schema, list):
        for item in schema:
            yield from reachable(spec, item, seen)
    elif isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                component = spec["components"]["schemas"][name]
                yield name, component
                yield from reachable(spec, component, seen)
        for value in schema.values():
            yield from reachable(spec, value, seen)


def test_every_json_route_declares_its_200_body(spec: dict[str, Any]) -> None:
    json_routes = set()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            content = operation["responses"]["200"].get("content")
            assert content, f"{where}: no 200 content declared"
            for media, body in content.items():
                if media == "application/json":
                    json_routes.add(where)
                    schema = resolve(spec, body["schema"])
                    # Not `{}` and not a bare `dict[str, Any]`: named, typed properties.
                    assert schema.get("type") == "object", where
                    assert schema.get("properties"), f"{where}: {schema}"
                    for name, component in reachable(spec, body["schema"], set()):
                        for prop, prop_schema in component.get("properties", {}).items():
                            assert prop_schema, f"{where}: {name}.{prop} has an empty schema"
                elif media == "text/event-stream":
                    data = body["itemSchema"]["properties"]["data"]
                    assert data["contentSchema"]["properties"]["events"], where
                else:
                    assert media == "text/plain" and body["schema"] == {"type": "string"}, where
    assert set(MODELS) <= json_routes, set(MODELS) - json_routes
    assert spec["paths"]["/health/ready"]["get"]["responses"]["503"]["content"]


# Concrete requests for the routes with path parameters; parameterless GETs are found in the spec.
REQUESTS = [
    ("GET", "/api/v1/devices?status=anomaly", "/api/v1/devices"),
    ("GET", f"/api/v1/devices/{AIR}", "/api/v1/devices/{device_id}"),
    ("GET", "/api/v1/devices/sl-rembang-02", "/api/v1/devices/{device_id}"),
    ("GET", f"/api/v1/devices/{AIR}/history", "/api/v1/devices/{device_id}/history"),
    ("GET", "/api/v1/indicators/districts/bobotsari", "/api/v1/indicators/districts/{district}"),
    ("GET", "/api/v1/dimensions/bobotsari", "/api/v1/dimensions/{district}"),
    ("GET", "/api/v1/anomalies?acknowledged=false", "/api/v1/anomalies"),
    ("POST", f"/api/v1/anomalies/{ANOMALY_ID}/ack", "/api/v1/anomalies/{anomaly_id}/ack"),
]


# Our routes' models (other routes are checked against the spec only).
MODELS: dict[str, type[BaseModel]] = {
    "GET /health": models.Health,
    "GET /health/ready": models.Readiness,
    "GET /api/v1/devices": models.DeviceList,
    "GET /api/v1/devices/{device_id}": models.DeviceDetail,
    "GET /api/v1/devices/{device_id}/history": models.History,
    "GET /api/v1/indicators": models.IndicatorList,
    "GET /api/v1/indicators/regency": models.RegencySummary,
    "GET /api/v1/indicators/districts": models.DistrictSummaries,
    "GET /api/v1/indicators/districts/{district}": models.DistrictSummary,
    "GET /api/v1/dimensions": models.Scores,
    "GET /api/v1/dimensions/{district}": models.DistrictScores,
    "GET /api/v1/anomalies": models.AnomalyList,
    "POST /api/v1/anomalies/{anomaly_id}/ack": models.Anomaly,
    "GET /api/v1/alerts": models.AlertList,
    "GET /api/v1/alerts/dead-letters": models.DeadLetterList,
    "GET /api/v1/alerts/status": models.AlertStatus,
}


@pytest.mark.parametrize("fed", [True, False], ids=["fed", "empty"])
def test_answers_match_the_spec_and_their_models(
    tmp_path: Path, spec: dict[str, Any], fed: bool
) -> None:
    client = build(tmp_path, fed=fed)
    plain = [
        ("GET", path, path)
        for path, operations in spec["paths"].items()
        if "get" in operations
        and "{" not in path
        and "application/json" in operations["get"]["responses"]["200"].get("content", {})
    ]
    checked = set()
    for method, url, path in plain + REQUESTS:
        if not fed and path.endswith(("{device_id}/history", "{district}", "{anomaly_id}/ack")):
            continue  # 404 without data: problem details, not the 200 body
        body = {"note": "seen"} if method == "POST" else None
        answer = client.request(method, url, json=body)
        where = f"{method} {url} ({'fed' if fed else 'empty'})"
        status = str(answer.status_code)
        assert status in ("200", "503"), f"{where}: {answer.status_code} {answer.text[:300]}"
        assert answer.headers["content-type"] == "application/json", where
        data = answer.json()
        declared = spec["paths"][path][method.lower()]["responses"][status]
        schema = {**declared["content"]["application/json"]["schema"], **spec}
        errors = [e.message for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(data)]
        assert not errors, f"{where}: {errors[:5]}"
        # The model takes the body and gives it back unchanged: no key missing, none extra.
        model = MODELS.get(f"{method} {path}")
        if model is not None:
            assert model.model_validate(data).model_dump(mode="json") == data, where
        checked.add(f"{method} {path}")
    assert set(MODELS) <= checked if fed else len(checked) >= 9, set(MODELS) - checked


def test_a_fed_state_fills_every_part_of_the_answers(tmp_path: Path) -> None:
    client = build(tmp_path, fed=True)
    device = client.get(f"/api/v1/devices/{AIR}").json()
    assert device["latest"]["values"] == {"pm25": 35.5, "pm10": 50}
    assert device["indicators"]["values"]["ispu"] == 101
    assert [a["severity"] for a in device["anomalies"]] == ["critical"]
    regency = client.get("/api/v1/indicators/regency").json()
    assert all(regency[part] is not None for part in ("air_quality", "water_level", "streetlight"))
    assert regency["streetlight"]["energy_today_wh"] == 0
    dims = client.get("/api/v1/dimensions").json()
    assert any(d["measured"] for d in dims["regency"]["dimensions"])
    assert any(not d["measured"] for d in dims["regency"]["dimensions"])
    # Integers stay integers: the routes hand their JSON to orjson, unvalidated and uncoerced.
    assert b'"pm10":50}' in client.get(f"/api/v1/devices/{AIR}").content


def test_feed_frames_match_the_feed_frame_model() -> None:
    state = LiveState()
    hub = FeedHub()
    subscription = hub.subscribe(FeedFilter())
    for topic, payload in messages():
        for event in state.apply(topic, payload):
            hub.publish(event)
    hub.flush()
    body = json.loads(asyncio.run(subscription.next_frame()) or b"null")
    assert {e["type"] for e in body["events"]} == {"reading", "indicator", "anomaly", "ack"}
    assert models.FeedFrame.model_validate(body).model_dump(mode="json") == body
