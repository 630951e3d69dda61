"""The printable monthly report page and the dashboard's alerts panel, in a real browser.

Debian's chromium (Playwright) against a real `pantau api` whose InfluxDB holds a small month
(October 2026, WIB) written as line protocol: one air station, one gauge, one lamp in one
kecamatan, hourly readings on the first ten days only. The figures the page must show are
worked out by hand below from what is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pantau.derived import derived_topic
from pantau.influx import InfluxClient
from pantau.lineprotocol import point
from tests.api_helpers import ApiProcess, running_api
from tests.browser import browser_page
from tests.ingest_helpers import publish_all, publisher, wait_for

pytestmark = pytest.mark.integration
# Locator assertions poll from Python: no string is evaluated in the page, which its CSP forbids.
expect = pytest.importorskip("playwright.sync_api").expect

ARTIFACTS = Path(__file__).parent / "artifacts"
WIB = zoneinfo.ZoneInfo("Asia/Jakarta")
MONTH = "2026-10"
DISTRICT = "bobotsari"
DAYS_WITH_DATA = 10
HOURS_IN_MONTH = 31 * 24
REGISTRY = """\
device_id,kind,city,district,lat,lon,interval_s,waspada_cm,siaga_cm,awas_cm,rated_w,river,peer_group,peer_order
aq-rp-01,air_quality,purbalingga,bobotsari,-7.291,109.4252,3600,,,,,,,
wl-rp-01,water_level,purbalingga,bobotsari,-7.2950,109.4230,3600,100,150,200,,klawing,,
sl-rp-01,streetlight,purbalingga,bobotsari,-7.2928,109.4225,3600,,,,100,,,
"""
# One rule, no hold time, no recipients: a Siaga indicator opens an episode at once.
RULES = """\
[rules.banjir_siaga]
title = "Tinggi muka air mencapai Siaga"
type = "indicator"
kind = "water_level"
indicator = "flood_level"
at_or_above = "Siaga"
severity = "critical"
"""
RECENT_HOURS = 48
# ISPU indicator per day (days 1..10): Baik 0-50, Sedang 51-100, Tidak Sehat 101-200.
DAY_ISPU = [40.0] * 5 + [80.0] * 3 + [150.0] * 2
# Gauge on day 3 from 00:30 WIB: 6 h at Siaga, 2 h at Awas, 2 h at Waspada; else Normal.
DAY3_LEVELS = [160.0] * 6 + [210.0] * 2 + [120.0] * 2


@pytest.fixture
def browser() -> Iterator[tuple[Any, list[str]]]:
    """A 1280x900 page in headless Debian chromium (Playwright) and its uncaught JS errors."""
    with browser_page(900) as opened:
        yield opened


def _month_lines() -> list[str]:
    """The seeded month: hourly readings at hh:30 WIB on days 1..10, one ISPU per day."""
    tags = {"city": "purbalingga", "district": DISTRICT}
    lines = []
    energy = 0.0
    for day in range(1, DAYS_WITH_DATA + 1):
        noon = dt.datetime(2026, 10, day, 12, 0, tzinfo=WIB).timestamp()
        lines.append(
            point(
                "indicator",
                {**tags, "device_id": "aq-rp-01", "kind": "air_quality"},
                {"ispu": DAY_ISPU[day - 1]},
                int(noon) * 10**9,
            )
        )
        for hour in range(24):
            ts = int(dt.datetime(2026, 10, day, hour, 30, tzinfo=WIB).timestamp()) * 10**9
            level = DAY3_LEVELS[hour] if day == 3 and hour < len(DAY3_LEVELS) else 50.0
            energy += 100.0
            lines.append(
                point("air_quality", {**tags, "device_id": "aq-rp-01"}, {"pm25": 20.0}, ts)
            )
            lines.append(
                point("water_level", {**tags, "device_id": "wl-rp-01"}, {"level_cm": level}, ts)
            )
            lamp = {"lamp_on": 1.0, "dim_pct": 100.0, "power_w": 100.0, "energy_wh": energy}
            lines.append(point("streetlight", {**tags, "device_id": "sl-rp-01"}, lamp, ts))
    return lines


def _recent_lines(now: float) -> list[str]:
    """The last 48 hours' stored regency scores (api/history_recorder.py), an ISPU a minute ago."""
    hour = int(now // 3600) * 3600
    lines = [
        point(
            "area_hourly",
            {"city": "purbalingga", "area": "regency"},
            {"dim_smart_environment": 60.0 + i / 2},
            (hour - (48 - i) * 3600) * 10**9,
        )
        for i in range(RECENT_HOURS)
    ]
    tags = {"city": "purbalingga", "district": DISTRICT, "device_id": "aq-rp-01"}
    ispu = point(
        "indicator", {**tags, "kind": "air_quality"}, {"ispu": 75.0}, int(now - 60) * 10**9
    )
    return [*lines, ispu]


@pytest.fixture
def report_api(broker: Any, influx: Any, influx_db: str, tmp_path: Path) -> Iterator[ApiProcess]:
    """`pantau api` over the three-device registry and one alert rule, with the month stored."""
    registry = tmp_path / "registry.csv"
    registry.write_text(REGISTRY)
    rules = tmp_path / "alerts.toml"
    rules.write_text(RULES)
    with InfluxClient(influx.url, influx_db) as db:
        db.write("\n".join(_month_lines() + _recent_lines(time.time())).encode())
    env = {"PANTAU_ALERTS_RULES": str(rules)}
    with running_api(broker.url, influx.url, influx_db, registry=registry, env=env) as api:
        yield api


def _cells(page: Any, selector: str) -> dict[str, str]:
    """Row key -> shown text of the value cells of a figures table."""
    pairs = page.eval_on_selector_all(
        selector,
        "rows => rows.map(r => [r.querySelector('th').textContent,"
        " r.querySelector('td.value').textContent])",
    )
    return dict(pairs)


def test_report_page_shows_the_month_of_a_kecamatan(
    report_api: ApiProcess, browser: tuple[Any, list[str]]
) -> None:
    page, errors = browser
    with report_api.client("read") as client:
        answer = client.get(
            "/api/v1/reports/monthly", params={"month": MONTH, "district": DISTRICT}
        )
    assert answer.status_code == 200, answer.text
    area = next(a for a in answer.json()["areas"] if a["district"] == DISTRICT)

    # The HTML needs no token; the data calls use the read token from the address.
    assert httpx.get(f"{report_api.url}/reports/monthly", trust_env=False).status_code == 200
    url = f"{report_api.url}/reports/monthly?district={DISTRICT}&month={MONTH}"
    page.goto(f"{url}#token={report_api.tokens['read']}")
    page.wait_for_selector('#report[data-state="ready"]')

    expect(page.locator("#report-title")).to_have_text("Kecamatan Bobotsari")
    expect(page.locator("#report-period")).to_contain_text("Laporan bulanan Oktober 2026")
    assert "Oktober 2026" in page.title()

    # By hand: 5 days at 40, 3 at 80, 2 at 150 of 31 days.
    assert _cells(page, "#ispu-days tbody tr") == {
        "Baik": "5",
        "Sedang": "3",
        "Tidak Sehat": "2",
        "Sangat Tidak Sehat": "0",
        "Berbahaya": "0",
        "Tidak ada data": "21",
    }
    # By hand: 240 gauge-hours with a reading, 10 of them above Normal on day 3.
    assert _cells(page, "#flood-hours tbody tr") == {
        "Normal": "230",
        "Waspada": "2",
        "Siaga": "6",
        "Awas": "2",
        "Tidak ada data": str(HOURS_IN_MONTH - 240),
    }
    # The lamp: shown as the API computes it (its figures are tests/test_reports.py's subject).
    lights = _cells(page, "#streetlight tbody tr")
    assert lights["Jumlah lampu"] == "1"
    kwh = area["streetlight"]["energy_kwh"]
    assert abs(kwh - 23.9) <= 1.0, kwh  # 239 steps of 100 Wh, less any cut at midnights
    assert lights["Energi terpakai (kWh)"] == f"{kwh:.1f}".rstrip("0").rstrip(".").replace(".", ",")
    night = area["streetlight"]["night_availability"]
    assert night == 1.0, area["streetlight"]  # on, at full power, every night reading
    assert lights["Ketersediaan lampu pada malam hari"] == "100%"

    # Completeness: 240 of 744 hourly readings per device (32.3%), three devices.
    devices = page.eval_on_selector_all(
        "#completeness tbody tr, #completeness tfoot tr",
        "rows => rows.map(r => [r.dataset.deviceId,"
        " ...[...r.querySelectorAll('td.num')].map(c => c.textContent)])",
    )
    assert devices == [
        ["aq-rp-01", "744", "240", "32,3%"],
        ["sl-rp-01", "744", "240", "32,3%"],
        ["wl-rp-01", "744", "240", "32,3%"],
        ["", "2.232", "720", "32,3%"],
    ]

    # Daily trend charts: one bar per day with data, coloured by its ISPU category.
    bars = page.eval_on_selector_all(
        '#trends svg[data-trend="ispu_max"] rect.bar',
        "nodes => nodes.map(n => [n.dataset.date, n.dataset.value, n.getAttribute('class')])",
    )
    assert [b[0] for b in bars] == [f"2026-10-{d:02d}" for d in range(1, 11)]
    assert [float(b[1]) for b in bars] == DAY_ISPU
    assert bars[0][2] == "bar cat-baik" and bars[-1][2] == "bar cat-tidak-sehat"
    assert page.locator("#trends svg.trend").count() == 5

    # The CSV link downloads the API's CSV (with the token) under its documented header.
    with page.expect_download() as download:
        page.click("#csv-link")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and rows[0]["area"] == DISTRICT and rows[0]["ispu_days_baik"] == "5"

    # Printed: A4, no navigation.
    page.emulate_media(media="print")
    assert not page.locator("nav.controls").is_visible()
    pdf = page.pdf(prefer_css_page_size=True)  # the page's @page rule: A4 portrait
    media_box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", pdf)
    assert media_box and [round(float(v)) for v in media_box.groups()] == [595, 842]
    page.emulate_media(media="screen")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-page.png"), full_page=True)
    assert errors == []


def test_regency_report_lists_every_kecamatan(
    report_api: ApiProcess, browser: tuple[Any, list[str]]
) -> None:
    page, errors = browser
    page.goto(f"{report_api.url}/reports/monthly?month={MONTH}#token={report_api.token}")
    page.wait_for_selector('#report[data-state="ready"]')
    expect(page.locator("#report-title")).to_have_text("Kabupaten Purbalingga")
    rows = page.eval_on_selector_all(
        "#districts tbody tr",
        "rows => rows.map(r => [r.dataset.district,"
        " ...[...r.querySelectorAll('td')].slice(0, 5).map(c => c.textContent)])",
    )
    assert rows == [[DISTRICT, "5", "3", "2", "6", "2"]]
    assert page.get_attribute("#districts a", "href") == (
        f"/reports/monthly?month={MONTH}&district={DISTRICT}"
    )
    assert errors == []


def test_report_page_asks_for_a_token_and_names_a_bad_month(
    report_api: ApiProcess, browser: tuple[Any, list[str]]
) -> None:
    page, errors = browser
    page.goto(f"{report_api.url}/reports/monthly?month={MONTH}")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token-input", report_api.tokens["read"])
    page.click("#token-form button[type=submit]")
    page.wait_for_selector('#report[data-state="ready"]')
    # A district the registry does not know: the API's 422 is shown, in words.
    page.goto(f"{report_api.url}/reports/monthly?month={MONTH}&district=nowhere")
    page.wait_for_selector('#report[data-state="error"]')
    expect(page.locator("#status")).to_contain_text(
        re.compile(r"Laporan tidak dapat dimuat: .*422")
    )
    assert errors == []


def test_dashboard_shows_the_alerts_panel_and_a_report_link(
    report_api: ApiProcess, browser: tuple[Any, list[str]]
) -> None:
    """The panel lists the API's open episodes; an ack by a read-only token shows the 403."""
    page, errors = browser
    with report_api.client("read") as client:
        listed = client.get("/api/v1/alerts", params={"state": "open"})
    assert listed.status_code == 200, listed.text
    real = listed.json()["alerts"]

    page.goto(f"{report_api.url}/#token={report_api.tokens['read']}")
    page.wait_for_selector('#alert-list[data-loaded="true"]')
    if real:
        page.wait_for_selector("#alert-list li[data-alert-id]")
    else:
        expect(page.locator("#alert-list li.empty")).to_have_text("No open alerts.")
    expect(page.locator("#feed-state")).to_have_text("live")
    link = page.get_attribute("#report-link", "href") or ""
    assert re.fullmatch(r"/reports/monthly\?month=\d{4}-\d{2}", link), link

    # Trends: the stored scores of the last 30 days and this month's daily figures.
    env = page.locator('#trends .trend-row[data-dimension="Smart Environment"]')
    expect(env).to_have_attribute("data-points", str(RECENT_HOURS))
    assert env.locator(".trend-last").text_content() == "83.5"  # 60 + 47 / 2
    assert page.locator("#trends .trend-row").count() == 6
    bars = page.eval_on_selector_all(
        '#trends svg[data-figure="ispu_max"] rect.trend-bar', "nodes => nodes.length"
    )
    assert bars == 1
    assert errors == []


def test_alerts_panel_lists_a_live_episode_and_shows_the_ack_refusal(
    report_api: ApiProcess, broker: Any, browser: tuple[Any, list[str]]
) -> None:
    """A Siaga indicator from the broker opens an episode; the page shows it from the live feed.

    A read-only token's acknowledgement gets the API's 403, shown beside the button.
    """
    page, errors = browser
    page.goto(f"{report_api.url}/#token={report_api.tokens['read']}")
    expect(page.locator("#feed-state")).to_have_text("live")
    page.wait_for_selector('#alert-list[data-loaded="true"]')

    # What a collector publishes for a gauge at Siaga (pantau/derived.py's contract).
    topic = derived_topic("purbalingga", DISTRICT, "water_level", "wl-rp-01", "indicator")
    payload = {"ts": time.time(), "level_cm": 160.0, "flood_level": 2, "flood_status": "Siaga"}
    with publisher(broker.url) as pub:
        publish_all(pub, [(topic, json.dumps(payload).encode())])

    # The API's list is the fact the page follows.
    with report_api.client("read") as client:

        def opened() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = client.get("/api/v1/alerts?state=open").json()["alerts"]
            return found

        episodes = wait_for(opened, timeout=30)
    assert len(episodes) == 1, report_api.log()
    item = page.locator(f'#alert-list li[data-alert-id="{episodes[0]["id"]}"]')
    expect(item).to_have_attribute("data-severity", "critical")
    assert item.get_attribute("data-device-id") == "wl-rp-01"
    assert item.get_attribute("data-district") == DISTRICT
    expect(item).to_contain_text("Kec. Bobotsari")
    expect(page.locator("#alert-count")).to_have_text("1")

    item.locator("input").fill("dicek petugas")
    item.locator("button[type=submit]").click()
    expect(item.locator(".problem")).to_contain_text("403")

    # An operator's token acknowledges it: who and the note show in the panel.
    page.goto("about:blank")  # a new document: only the address's #fragment would change
    page.goto(f"{report_api.url}/#token={report_api.tokens['operate']}")
    item = page.locator('#alert-list li[data-alert-id^="banjir_siaga."]')
    item.locator("input").fill("dicek petugas")
    item.locator("button[type=submit]").click()
    expect(item.locator(".ack")).to_contain_text("dicek petugas")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-alerts.png"))

    # A notification's link opens the device on the dashboard (the token is remembered).
    page.goto("about:blank")
    page.goto(f"{report_api.url}/#device=wl-rp-01")
    expect(page.locator("#device-title")).to_contain_text("wl-rp-01")
    assert errors == []
