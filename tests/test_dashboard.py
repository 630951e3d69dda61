"""The operations dashboard in a real browser (Debian's chromium) against the real API.

A spike published by a simulated air station goes through the whole pipeline (broker ->
collector -> derived topic -> API -> SSE) and must show in the page's anomaly feed. The test
proves that it arrives (within a generous 15 s); the live path's latency target (p99 under 1 s)
is measured by tests/benchmarks/bench_feed.py, not on a loaded test machine.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pantau.influx import InfluxClient
from processors.catalog import CATALOG
from tests.browser import browser_page
from tests.ingest_helpers import count, publish_all, publisher, running_collector, wait_for

pytestmark = pytest.mark.integration
# Locator assertions poll from Python: no string is evaluated in the page, which its CSP forbids.
expect = pytest.importorskip("playwright.sync_api").expect

ARTIFACTS = Path(__file__).parent / "artifacts"
WARMUP = 20  # the spike detector learns a step scale from 10 readings first


@pytest.fixture
def browser() -> Iterator[tuple[Any, list[str]]]:
    """A 1280x800 page in headless Debian chromium (Playwright) and its uncaught JS errors."""
    with browser_page(800) as opened:
        yield opened


def _located_air_station(url: str, token: str) -> dict[str, Any]:
    """A registered air-quality station with a location, so it is drawn on the map."""
    response = httpx.get(
        f"{url}/api/v1/devices",
        params={"kind": "air_quality"},
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )
    response.raise_for_status()
    devices: list[dict[str, Any]] = response.json()["devices"]
    placed = [d for d in devices if d["lat"] is not None]
    assert placed, "the API knows no located air station: give api_server a registry"
    return placed[0]


def _reading(ts: float, pm25: float) -> dict[str, Any]:
    return {"ts": round(ts, 3), "pm25": pm25, "pm10": 50.0}


def test_dashboard_shows_devices_scores_and_a_live_anomaly(
    api_server: Any,
    broker: Any,
    influx: Any,
    influx_db: str,
    browser: tuple[Any, list[str]],
    tmp_path: Path,
) -> None:
    page, errors = browser
    station = _located_air_station(api_server.url, api_server.token)
    device_id = station["device_id"]
    topic = f"city/{station['city']}/{station['district']}/air_quality/{device_id}"
    now = time.time()
    warmup = [_reading(now - 1800 + i * 60, 30.0 + i % 3) for i in range(WARMUP)]

    # Our own collector on this one station's topic (a second one, if the fixture runs one
    # too, yields the same anomaly id: the page shows it once).
    with (
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=topic,
            log_path=tmp_path / "collector.log",
            spool_dir=tmp_path / "spool",
        ),
        publisher(broker.url) as pub,
        InfluxClient(influx.url, influx_db) as db,
    ):
        publish_all(pub, [(topic, json.dumps(warmup).encode())])
        # Rows in InfluxDB are the fact; a generous limit for a loaded machine.
        stored = wait_for(lambda: count(db, "air_quality", "pm25") >= WARMUP, timeout=120)
        assert stored, (tmp_path / "collector.log").read_text()[-2000:]

        page.goto(f"{api_server.url}/#token={api_server.token}")
        # The token moves from the address bar to localStorage.
        page.wait_for_url(lambda url: "token=" not in url)
        assert page.evaluate("localStorage.getItem('pantau.token')") == api_server.token
        page.wait_for_selector("#map circle[data-device-id][data-status]")
        page.wait_for_selector(f'#map circle[data-device-id="{device_id}"]')
        page.wait_for_selector("#dimensions [data-dimension]")
        expect(page.locator("#feed-state")).to_have_text("live")

        dimensions = page.eval_on_selector_all(
            "#dimensions [data-dimension]",
            "nodes => nodes.map(n => [n.dataset.dimension, n.dataset.measured,"
            " n.querySelector('.score').textContent])",
        )
        assert len(dimensions) == 6, dimensions
        for name, measured, score in dimensions:
            if measured == "true":
                float(score)  # a number
            else:
                assert score == "not measured", (name, score)
        assert page.locator("#regency-ispu").is_visible()
        assert page.locator("#flood-status").is_visible()

        # A spike, and the next reading that lets the detector decide it left and came back.
        spike = [_reading(now - 120, 900.0), _reading(now - 60, 31.0)]
        publish_all(pub, [(topic, json.dumps(spike).encode())])
        # 15 s, not 2 s: this proves the event arrives; its latency (p99 under 1 s, 2.65 s seen
        # on a loaded machine) belongs to the benchmarks.
        page.wait_for_selector(
            f'#anomaly-feed li[data-anomaly-id][data-device-id="{device_id}"]'
            '[data-detector="spike"][data-field="pm25"]',
            timeout=15_000,
        )
        # The device turns to "anomaly" at once, not at the next 5 s refresh: the page marks it
        # in the same task that lists the feed event, so it is checked now, with no window.
        circle = f'#map circle[data-device-id="{device_id}"]'
        assert page.get_attribute(circle, "data-status") == "anomaly"

        # Its chart and latest values on a click.
        page.locator(f'#map circle[data-device-id="{device_id}"]').dispatch_event("click")
        expect(page.locator("#device-title")).to_contain_text(device_id)
        page.wait_for_selector("#device-chart text")

        # Field names, units, the regency and the time zone come from the API.
        options = page.eval_on_selector_all(
            "#field-select option", "nodes => nodes.map(n => [n.value, n.dataset.unit])"
        )
        assert options == [[f.name, f.unit] for f in CATALOG["air_quality"].fields]
        title = page.text_content("#device-chart .chart-title") or ""
        assert title.startswith("pm25 (µg/m³): mean"), title
        assert page.text_content("#site-name") == "Kabupaten Purbalingga · operations"
        assert page.title() == "Pantau · Purbalingga operations"
        assert (page.text_content("#last-refresh") or "").endswith(" WIB")

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        assert errors == []


def _patch_json(page: Any, url: Any, change: Any) -> None:
    """Answer requests to `url` with the API's real JSON answer, changed by `change`."""

    def handle(route: Any) -> None:
        response = route.fetch()
        route.fulfill(response=response, json=change(response.json()))

    page.route(url, handle)


def test_dashboard_names_fields_units_and_times_as_the_api_says(
    api_server: Any, browser: tuple[Any, list[str]]
) -> None:
    """Nothing about kinds, units, the regency or its time zone is hard-coded in the page."""
    page, errors = browser
    station = _located_air_station(api_server.url, api_server.token)
    device_id = station["device_id"]

    def catalog(body: dict[str, Any]) -> dict[str, Any]:
        air = next(k for k in body["kinds"] if k["kind"] == "air_quality")
        pm1 = {**air["fields"][0], "name": "pm1", "unit": "mg/m3", "description": "PM1"}
        air["fields"].append(pm1)
        air["default_field"] = "pm1"  # charted first
        return body

    def site(_: dict[str, Any]) -> dict[str, Any]:
        return {"region_name": "Kota Contoh", "time_zone": "Asia/Jayapura", "time_zone_abbr": "WIT"}

    def history(route: Any) -> None:
        field = re.search(r"[?&]field=([a-z0-9_]+)", route.request.url)
        now = time.time()
        points = [
            {"ts": now - 3600 + i * 300, "mean": 2.0, "min": 1.0, "max": 3.0} for i in range(12)
        ]
        body = {"device_id": device_id, "field": field and field[1], "interval_s": 300}
        route.fulfill(json={**body, "points": points})

    _patch_json(page, "**/api/v1/catalog", catalog)
    _patch_json(page, "**/api/v1/settings/public", site)
    page.route(re.compile(r"/api/v1/devices/[^/?]+/history\?"), history)

    page.goto(f"{api_server.url}/#token={api_server.token}")
    page.wait_for_selector(f'#map circle[data-device-id="{device_id}"]')
    page.locator(f'#map circle[data-device-id="{device_id}"]').dispatch_event("click")
    page.wait_for_selector("#device-chart .chart-title")

    options = page.eval_on_selector_all(
        "#field-select option", "nodes => nodes.map(n => [n.value, n.dataset.unit])"
    )
    expected = [[f.name, f.unit] for f in CATALOG["air_quality"].fields]
    assert options == [["pm1", "mg/m3"], *expected]
    title = page.text_content("#device-chart .chart-title") or ""
    assert title.startswith("pm1 (mg/m³): mean"), title
    assert page.text_content("#site-name") == "Kota Contoh · operations"
    assert page.title() == "Pantau · Contoh operations"

    # Times are shown in the zone the API names, with its abbreviation.
    expect(page.locator("#last-refresh")).to_have_text(re.compile(r"WIT$"))
    shown = (page.text_content("#last-refresh") or "").removesuffix(" WIT")
    zone = zoneinfo.ZoneInfo("Asia/Jayapura")
    now = dt.datetime.now(zone)
    at = dt.datetime.combine(now.date(), dt.time.fromisoformat(shown), zone)
    assert min(abs((now - at).total_seconds() - d) for d in (-86400, 0, 86400)) < 60, shown
    assert errors == []
