"""Reports for a simulated month, and the hourly area snapshots, against a real InfluxDB."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import math
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from api.app import create_app
from api.history_recorder import MEASUREMENT, HourlyRecorder, due_snapshots, lines_for_hour
from api.livestate import IndicatorEntry, LiveState
from api.problems import Problem
from api.reports.csv_out import DAILY_HEADER, MONTHLY_HEADER
from api.reports.figures import LampReadings, ReportDevice, ReportInputs, build_areas
from api.reports.period import daily_period, monthly_period
from api.routes import reports
from api.scoring import ScoringModel
from pantau.dev.influxdb import InfluxDBService
from pantau.dev.mosquitto import MosquittoService
from pantau.influx import InfluxClient
from pantau.influx_async import AsyncInflux, rows
from pantau.registry import Device, Registry
from pantau.settings import ApiSettings, InfluxSettings, Settings
from processors.indicators.streetlight import lamp_should_be_on
from tests import report_month as sim
from tests.api_helpers import make_tokens
from tests.ingest_helpers import pantau, running_collector, wait_for

MODEL = Path(__file__).parents[1] / "deploy" / "scoring-model.toml"
ISPU_NAMES = ("Baik", "Sedang", "Tidak Sehat", "Sangat Tidak Sehat", "Berbahaya")
FLOOD_NAMES = ("Normal", "Waspada", "Siaga", "Awas")


# -- the simulated month, stored once per module ---------------------------------------------


@pytest.fixture(scope="module")
def month_db(influx: InfluxDBService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A database holding the simulated month, and the registry CSV of its fleet."""
    folder = tmp_path_factory.mktemp("reports")
    city = "purbasim"
    registry = folder / "registry.csv"
    sim.write_registry(registry, city)
    db = "t_reports_month"
    with InfluxClient(influx.url, db) as client:
        client._post_query(f'DROP DATABASE "{db}"')
        client.create_database()
        points = sim.lines(city)
        for at in range(0, len(points), 5000):
            client.write(("\n".join(points[at : at + 5000]) + "\n").encode())
        yield influx.url, db, registry, city, client
        client._post_query(f'DROP DATABASE "{db}"')


def _settings(url: str, db: str, registry: Path, folder: Path) -> tuple[Settings, str]:
    """Settings of an API over that database and registry, and a READ token."""
    tokens = make_tokens(folder / "tokens.json")
    settings = Settings(
        influx=InfluxSettings(url=url, db=db),
        registry=registry,
        api=ApiSettings(tokens_file=folder / "tokens.json", rate_per_s=0),
    )
    return settings, tokens["read"]


@asynccontextmanager
async def _client(
    settings: Settings, registry: Path, token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan not run: no broker needed), its reports asked with a READ token."""
    app = create_app(settings, Registry.from_csv(registry))
    if not any(getattr(r, "path", "").startswith("/api/v1/reports") for r in app.routes):
        app.include_router(reports.router)  # until the lead adds it to api/app.py
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers, timeout=60
        ) as client:
            yield client
    finally:
        await app.state.ctx.influx.close()


def _get(
    month_db: Any, folder: Path, *requests: tuple[str, dict[str, str]]
) -> list[httpx.Response]:
    """Answers of the app to GET requests (path, params)."""
    url, db, registry, _, _ = month_db
    settings, token = _settings(url, db, registry, folder)

    async def run() -> list[httpx.Response]:
        async with _client(settings, registry, token) as client:
            return [await client.get(path, params=params) for path, params in requests]

    return asyncio.run(run())


# -- the figures by hand, from the stored points ---------------------------------------------


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, sim.WIB).date().isoformat()


def _category(ispu: float) -> str:
    published = math.floor(ispu + 0.5)  # P.14/2020 publishes integers, halves up
    for top, name in zip((50, 100, 200, 300), ISPU_NAMES, strict=False):
        if published <= top:
            return name
    return "Berbahaya"


def _flood(level: float, gauge: Device) -> str:
    if gauge.awas_cm is not None and level >= gauge.awas_cm:
        return "Awas"
    if gauge.siaga_cm is not None and level >= gauge.siaga_cm:
        return "Siaga"
    return "Waspada" if gauge.waspada_cm is not None and level >= gauge.waspada_cm else "Normal"


def _stored(client: InfluxClient, measurement: str, city: str) -> list[dict[str, Any]]:
    found = rows(client.query(f'SELECT * FROM "{measurement}" WHERE "city" = \'{city}\''))
    for row in found:
        row["ts"] = row["time"] / 1e9
    return found


def by_hand(client: InfluxClient, city: str, registry: Path) -> dict[str, dict[str, Any]]:
    """The month's figures per area, by plain loops over every stored point."""
    places = {d.device_id: d for d in Registry.from_csv(registry)}
    area_of = {d.device_id: ("regency", d.district) for d in places.values()}
    dates = [_date(sim.START + 86400 * k) for k in range(31)]
    out: dict[str, dict[str, Any]] = {}
    for area in ("regency", *sorted({d.district for d in places.values()})):
        out[area] = {
            "dates": dates,
            "ispu": {},  # date -> max
            "gauge_hours": defaultdict(dict),  # gauge -> hour slot -> max level
            "night": 0,
            "work": 0,
            "night_day": defaultdict(int),
            "work_day": defaultdict(int),
            "energy_day": defaultdict(float),
            "received": defaultdict(int),
            "received_day": defaultdict(int),
        }
    for row in _stored(client, "indicator", city):
        if row["kind"] == "air_quality" and row["device_id"] in places and row["ispu"] is not None:
            for area in area_of[row["device_id"]]:
                day = _date(row["ts"])
                out[area]["ispu"][day] = max(out[area]["ispu"].get(day, -1.0), row["ispu"])
    for row in _stored(client, "water_level", city):
        if row["level_cm"] is None:
            continue
        slot = int(row["ts"] - sim.START) // 3600
        for area in area_of[row["device_id"]]:
            hours = out[area]["gauge_hours"][row["device_id"]]
            hours[slot] = max(hours.get(slot, -1e9), row["level_cm"])
    lamps = defaultdict(list)
    for row in _stored(client, "streetlight", city):
        lamps[row["device_id"]].append(row)
    for device, readings in lamps.items():
        readings.sort(key=lambda r: r["ts"])
        place = places[device]
        before = None
        for r in readings:
            day = _date(r["ts"])
            on, power = r["lamp_on"], r["power_w"]
            known = on is not None and (on != 1 or power is not None)
            night = known and bool(lamp_should_be_on(place.lat, place.lon, r["ts"]))
            dim = 100.0 if r["dim_pct"] is None else r["dim_pct"]
            expected_w = (place.rated_w or 0.0) * dim / 100
            works = on == 1 and expected_w > 0 and abs(power - expected_w) <= 0.2 * expected_w
            step = 0.0
            if r["energy_wh"] is not None:
                if before is not None:  # a drop is a reset: the new value counts from zero
                    step = r["energy_wh"] - before if r["energy_wh"] >= before else r["energy_wh"]
                before = r["energy_wh"]
            for area in area_of[device]:
                fig = out[area]
                fig["night"] += night
                fig["work"] += night and works
                fig["night_day"][day] += night
                fig["work_day"][day] += night and works
                fig["energy_day"][day] += step
    for measurement in ("air_quality", "water_level", "streetlight"):
        for row in _stored(client, measurement, city):
            for area in area_of[row["device_id"]]:
                out[area]["received"][row["device_id"]] += 1
                out[area]["received_day"][_date(row["ts"])] += 1
    return out


def check_month(report: dict[str, Any], hand: dict[str, dict[str, Any]], registry: Path) -> None:
    """Every figure of a monthly report equals the one computed by hand."""
    devices = list(Registry.from_csv(registry))
    gauges = {d.device_id: d for d in devices}
    assert report["period"] == "monthly" and report["month"] == sim.MONTH
    assert (report["start"], report["end"]) == (sim.START, sim.END)
    assert report["time_zone"] == "Asia/Jakarta"
    assert [a["area"] for a in report["areas"]] == list(hand)
    for area in report["areas"]:
        fig = hand[area["area"]]
        members = [d for d in devices if area["area"] in ("regency", d.district)]
        assert area["district"] == ("" if area["area"] == "regency" else area["area"])
        # ISPU days per category.
        ispu_days = dict.fromkeys((*ISPU_NAMES, "Tidak ada data"), 0)
        for day in fig["dates"]:
            value = fig["ispu"].get(day)
            ispu_days[_category(value) if value is not None else "Tidak ada data"] += 1
        assert area["ispu_days"] == ispu_days
        # Gauge-hours per flood level.
        flood = dict.fromkeys((*FLOOD_NAMES, "Tidak ada data"), 0)
        n_gauges = sum(d.kind == "water_level" for d in members)
        flood["Tidak ada data"] = n_gauges * 31 * 24
        for gauge, hours in fig["gauge_hours"].items():
            for level in hours.values():
                flood[_flood(level, gauges[gauge])] += 1
            flood["Tidak ada data"] -= len(hours)
        assert area["flood_hours"] == flood
        # Streetlights.
        light = area["streetlight"]
        assert light["lamps"] == sum(d.kind == "streetlight" for d in members)
        assert light["night_availability"] == pytest.approx(fig["work"] / fig["night"], abs=1e-12)
        total_wh = sum(fig["energy_day"].values())
        assert light["energy_kwh"] == pytest.approx(total_wh / 1000, rel=1e-9)
        # Completeness.
        expected_each = {d.device_id: round(31 * 86400 / d.interval_s) for d in members}
        received = sum(fig["received"].values())
        assert area["completeness"] == {
            "expected": sum(expected_each.values()),
            "received": received,
            "share": pytest.approx(min(1, received / sum(expected_each.values())), abs=1e-12),
        }
        assert [d["device_id"] for d in area["devices"]] == sorted(
            expected_each, key=lambda i: (gauges[i].district, gauges[i].kind, i)
        )
        for device in area["devices"]:
            due = expected_each[device["device_id"]]
            assert device["expected"] == due
            assert device["received"] == fig["received"][device["device_id"]]
            assert device["share"] == pytest.approx(min(1, device["received"] / due))
        # Per day.
        assert [d["date"] for d in area["days"]] == fig["dates"]
        for k, day in enumerate(area["days"]):
            date = day["date"]
            value = fig["ispu"].get(date)
            assert day["ispu_max"] == value
            assert day["ispu_category"] == (None if value is None else _category(value))
            levels = [
                _flood(level, gauges[gauge])
                for gauge, hours in fig["gauge_hours"].items()
                for slot, level in hours.items()
                if k * 24 <= slot < (k + 1) * 24
            ]
            worst = max((FLOOD_NAMES.index(x) for x in levels), default=None)
            assert day["flood_worst"] == (None if worst is None else FLOOD_NAMES[worst])
            siaga = sum(x in ("Siaga", "Awas") for x in levels)
            assert day["flood_hours_siaga_or_above"] == siaga
            night, work = fig["night_day"][date], fig["work_day"][date]
            assert day["night_availability"] == (pytest.approx(work / night) if night else None)
            assert day["energy_kwh"] == pytest.approx(fig["energy_day"][date] / 1000, abs=1e-9)
            due_day = sum(86400 / d.interval_s for d in members)
            assert day["completeness"] == pytest.approx(min(1, fig["received_day"][date] / due_day))


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.integration
def test_monthly_report_matches_the_figures_computed_by_hand(month_db: Any, tmp_path: Path) -> None:
    _, _, registry, city, client = month_db
    (answer,) = _get(month_db, tmp_path, ("/api/v1/reports/monthly", {"month": sim.MONTH}))
    assert answer.status_code == 200, answer.text
    report = answer.json()
    hand = by_hand(client, city, registry)
    assert list(hand) == ["regency", *sim.DISTRICTS]
    check_month(report, hand, registry)
    # The month has what the figures must cope with: no-data days, gaps, floods, failed lamps.
    regency, alpha, beta = report["areas"]
    assert (alpha["ispu_days"]["Tidak ada data"], beta["ispu_days"]["Tidak ada data"]) == (2, 1)
    assert regency["ispu_days"]["Tidak ada data"] == 1
    assert alpha["flood_hours"]["Tidak ada data"] == 7 and beta["flood_hours"]["Awas"] == 0
    assert alpha["flood_hours"]["Awas"] > 0 and beta["flood_hours"]["Siaga"] > 0
    assert len({v for a in report["areas"] for v, n in a["ispu_days"].items() if n}) == 6
    assert all(0.5 < a["streetlight"]["night_availability"] < 1.0 for a in report["areas"])
    assert all(a["completeness"]["share"] < 1.0 for a in report["areas"])


@pytest.mark.integration
def test_reports_as_csv_open_with_the_documented_headers(month_db: Any, tmp_path: Path) -> None:
    monthly, daily, district, month_json, day_json = _get(
        month_db,
        tmp_path,
        ("/api/v1/reports/monthly", {"month": sim.MONTH, "format": "csv"}),
        ("/api/v1/reports/daily", {"date": "2026-10-10", "format": "csv"}),
        ("/api/v1/reports/monthly", {"month": sim.MONTH, "district": "beta"}),
        ("/api/v1/reports/monthly", {"month": sim.MONTH}),
        ("/api/v1/reports/daily", {"date": "2026-10-10"}),
    )
    # A day's report is that day of the month's report.
    day_report = day_json.json()
    assert (day_report["period"], day_report["date"], day_report["month"]) == (
        "daily",
        "2026-10-10",
        None,
    )
    for whole, one in zip(month_json.json()["areas"], day_report["areas"], strict=True):
        assert one["days"] == [whole["days"][9]]
        assert sum(one["flood_hours"].values()) == 24 * (2 if one["area"] == "regency" else 1)
    assert monthly.status_code == 200, monthly.text
    assert monthly.headers["content-type"] == "text/csv; charset=utf-8"
    assert monthly.headers["content-disposition"].startswith("attachment;")
    table = list(csv.DictReader(io.StringIO(monthly.text)))
    assert tuple(csv.DictReader(io.StringIO(monthly.text)).fieldnames or ()) == MONTHLY_HEADER
    assert [row["area"] for row in table] == ["regency", *sim.DISTRICTS]
    beta = district.json()["areas"]
    assert [a["area"] for a in beta] == ["beta"]
    row = table[2]
    assert row["month"] == sim.MONTH
    assert int(row["ispu_days_no_data"]) == beta[0]["ispu_days"]["Tidak ada data"]
    assert int(row["flood_hours_siaga"]) == beta[0]["flood_hours"]["Siaga"]
    assert float(row["energy_kwh"]) == pytest.approx(beta[0]["streetlight"]["energy_kwh"], rel=1e-6)
    assert int(row["received_readings"]) == beta[0]["completeness"]["received"]

    assert daily.status_code == 200, daily.text
    reader = csv.DictReader(io.StringIO(daily.text))
    assert tuple(reader.fieldnames or ()) == DAILY_HEADER
    days = list(reader)
    assert [(r["area"], r["date"]) for r in days] == [
        (a, "2026-10-10") for a in ("regency", *sim.DISTRICTS)
    ]
    assert days[1]["flood_worst"] in ("Siaga", "Awas")
    assert int(days[1]["expected_readings"]) == 4 * 86400 // sim.INTERVAL


@pytest.mark.integration
def test_bad_month_date_or_district_is_a_clear_422(month_db: Any, tmp_path: Path) -> None:
    answers = _get(
        month_db,
        tmp_path,
        ("/api/v1/reports/monthly", {"month": "2026-13"}),
        ("/api/v1/reports/monthly", {"month": "2026-1"}),
        ("/api/v1/reports/monthly", {"month": "2999-01"}),
        ("/api/v1/reports/daily", {"date": "2026-02-30"}),
        ("/api/v1/reports/monthly", {"month": sim.MONTH, "district": "nowhere"}),
        ("/api/v1/reports/monthly", {"month": sim.MONTH, "district": "Bad'One"}),
        ("/api/v1/reports/monthly", {"month": sim.MONTH, "format": "xlsx"}),
    )
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    details = [a.json()["detail"] for a in answers]
    assert details[0].startswith("month:") and details[2].endswith("is in the future")
    assert details[3] == "date: not a calendar date"
    assert details[4] == "district: no registered device there"


@pytest.mark.integration
def test_without_a_month_or_date_the_report_is_of_this_month_or_today(
    month_db: Any, tmp_path: Path
) -> None:
    month, day = _get(
        month_db, tmp_path, ("/api/v1/reports/monthly", {}), ("/api/v1/reports/daily", {})
    )
    today = dt.datetime.now(sim.WIB).date()
    assert month.status_code == 200, month.text
    assert month.json()["month"] == today.strftime("%Y-%m")
    assert month.json()["areas"][0]["days"][-1]["date"] == today.isoformat()
    assert day.json()["date"] == today.isoformat()
    assert day.json()["end"] <= dt.datetime.now().timestamp() + 1


def test_a_running_month_ends_now_and_days_follow_the_time_zone() -> None:
    now = sim.START + 3 * 86400 + 5 * 3600 + 30
    period = monthly_period(sim.MONTH, "Asia/Jakarta", now)
    assert (period.start, period.end, len(period.days), period.hours) == (
        sim.START,
        now,
        4,
        3 * 24 + 6,
    )
    assert period.days[0].date == "2026-10-01" and period.days[-1].end == now
    assert period.utc_offset_s == 7 * 3600
    for bad in ("9999-12", "1999-12", "2026-00", "26-10", "2026-10-01"):
        with pytest.raises(Problem) as found:
            monthly_period(bad, "Asia/Jakarta", now)
        assert found.value.status == 422
    for bad in ("9999-12-31", "2026-10-32", "2026-1-1", "2026-11-01"):
        with pytest.raises(Problem):
            daily_period(bad, "Asia/Jakarta", now)
    assert daily_period("2026-10-04", "Asia/Jakarta", now).hours == 6


def test_devices_without_an_interval_or_thresholds_stay_out_of_their_figures() -> None:
    period = daily_period("2026-10-02", "Asia/Jakarta", sim.END)
    day = period.start
    devices = [
        ReportDevice("wl-1", "water_level", "c", "d", interval_s=600.0, siaga_cm=10.0),
        ReportDevice("wl-2", "water_level", "c", "d", interval_s=None),  # no thresholds
        ReportDevice("sl-1", "streetlight", "c", "d", -7.4, 109.4, None, rated_w=None),
    ]
    inputs = ReportInputs(
        level={"wl-1": {day: 5.0, day + 3600: 12.0}, "wl-2": {day: 50.0}},
        counts={"wl-1": {day: 100}, "wl-2": {day: 7}, "sl-1": {day: 3}},
        lamps={
            "sl-1": LampReadings(
                ts=np.array([day + 3600.0, day + 7200.0, day + 10800.0]),
                lamp_on=np.array([1.0, 1.0, 1.0]),
                dim_pct=np.array([np.nan] * 3),
                power_w=np.array([100.0] * 3),
                energy_wh=np.array([10.0, 110.0, 5.0]),
            )
        },
    )
    (area,) = build_areas(devices, inputs, period, "d")
    assert area["flood_hours"] == {
        "Normal": 1, "Waspada": 0, "Siaga": 1, "Awas": 0, "Tidak ada data": 22
    }  # fmt: skip
    assert area["completeness"] == {"expected": 144, "received": 100, "share": 100 / 144}
    assert [d["expected"] for d in area["devices"]] == [None, 144, None]
    # A lamp without a rating is never judged working or not; its energy still counts.
    assert area["streetlight"] == {"night_availability": None, "energy_kwh": 0.105, "lamps": 1}
    assert area["days"][0]["flood_worst"] == "Siaga"
    assert area["days"][0]["flood_hours_siaga_or_above"] == 1


# -- hourly area snapshots --------------------------------------------------------------------


def test_due_snapshots_are_the_hour_boundaries_crossed() -> None:
    assert due_snapshots(None, None) == (None, [])
    assert due_snapshots(None, 7200.5) == (7200, [])  # the first hour was not seen ending
    assert due_snapshots(7200, 10799.0) == (7200, [])
    assert due_snapshots(7200, 10800.0) == (10800, [10800])
    assert due_snapshots(7200, 18000.1) == (18000, [10800, 14400, 18000])
    last, hours = due_snapshots(0, 100 * 3600.0)
    assert last == 100 * 3600 and len(hours) == 24 and hours[-1] == 100 * 3600


def _entry(kind: str, district: str, device: str, ts: float, **values: Any) -> IndicatorEntry:
    return IndicatorEntry(kind, "purbasim", district, device, ts, values)


def _feed(state: LiveState, ts: float, ispu: float, status: str) -> None:
    for district, bump in (("alpha", 0.0), ("beta", 40.0)):
        for entry in (
            _entry("air_quality", district, f"aq-{district}", ts, ispu=ispu + bump),
            _entry("water_level", district, f"wl-{district}", ts, flood_status=status),
            _entry(
                "streetlight",
                district,
                "_district",
                ts,
                lamps_due=2,
                availability=0.5,
                lamps_reporting=2,
                energy_today_wh=100.0,
                day_burn_h_today=0.0,
            ),
        ):
            state.indicators[(entry.kind, entry.district, entry.device_id)] = entry


def test_lines_for_hour_name_their_fields_and_use_the_state_as_of_the_hour() -> None:
    state = LiveState()
    model = ScoringModel.load(MODEL)
    _feed(state, 3600 * 10 - 30.0, 80.0, "Siaga")
    lines = lines_for_hour(state.indicators.values(), 36000, model)
    assert [line.split(" ")[0] for line in lines] == [
        f"{MEASUREMENT},area=regency,city=purbasim",
        f"{MEASUREMENT},area=alpha,city=purbasim",
        f"{MEASUREMENT},area=beta,city=purbasim",
    ]
    assert "air_quality__ispu_max=120.0" in lines[0] and "dim_smart_environment=" in lines[0]
    assert all(line.endswith(f" {36000 * 10**9}") for line in lines)
    assert lines_for_hour(state.indicators.values(), 36000 - 3600, model) == []  # all newer


@pytest.mark.integration
def test_hourly_recorder_writes_every_hour_boundary_crossed(
    influx: InfluxDBService, influx_db: str, tmp_path: Path
) -> None:
    hour = 1_790_787_600  # 2026-10-01 00:00 WIB
    settings = Settings(influx=InfluxSettings(url=influx.url, db=influx_db))
    model = ScoringModel.load(MODEL)

    async def scenario() -> None:
        influx_client = AsyncInflux(settings)
        state = LiveState()
        # Two replicas fed the same messages write the same points: one series, not two.
        recorder = HourlyRecorder(state, model, influx_client)
        replica = HourlyRecorder(state, model, influx_client)

        async def step() -> int:
            written = await recorder.step()
            assert await replica.step() == written
            return written

        try:
            _feed(state, hour + 3600 - 30, 80.0, "Normal")  # 00:59:30
            assert await step() == 0  # the first hour began before the recorder
            _feed(state, hour + 3600 + 10, 250.0, "Awas")  # 01:00:10: hour 01:00 crossed
            assert await step() == 3
            assert await step() == 0
            _feed(state, hour + 3 * 3600 + 1800, 30.0, "Siaga")  # 03:30: 02:00 and 03:00
            assert await step() == 6
            stored = rows(
                await influx_client.query(
                    f'SELECT * FROM "{MEASUREMENT}" GROUP BY "area" ORDER BY time ASC'
                )
            )
            assert len(stored) == 9
        finally:
            await influx_client.close()
        regency = [r for r in stored if r["area"] == "regency"]
        assert [r["time"] // 10**9 for r in regency] == [hour + k * 3600 for k in (1, 2, 3)]
        # As of 01:00 the stations had said 80 and 120 (the 01:00:10 values came later).
        assert regency[0]["air_quality__ispu_max"] == 120.0
        assert regency[1]["air_quality__ispu_max"] == 290.0
        assert regency[0]["water_level__worst_level"] == 0.0
        assert regency[1]["water_level__worst_level"] == 3.0
        assert all(r["city"] == "purbasim" for r in stored)
        assert {r["area"] for r in stored} == {"regency", "alpha", "beta"}
        assert all(isinstance(r.get("dim_smart_environment"), int | float) for r in stored)

    asyncio.run(scenario())
    # The scores endpoint serves them.
    registry = tmp_path / "registry.csv"
    sim.write_registry(registry, "purbasim")
    settings_api, token = _settings(influx.url, influx_db, registry, tmp_path)

    async def ask() -> httpx.Response:
        async with _client(settings_api, registry, token) as client:
            params = {"district": "alpha", "start": str(hour), "end": str(hour + 86400)}
            return await client.get("/api/v1/reports/scores", params=params)

    answer = asyncio.run(ask())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["area"] == "alpha" and body["source"] == "area_hourly"
    assert [p["ts"] for p in body["points"]] == [hour + k * 3600 for k in (1, 2, 3)]
    assert body["points"][0]["metrics"]["air_quality.ispu_max"] == 80.0
    assert "Smart Environment" in body["points"][0]["dimensions"]


@pytest.mark.integration
def test_reports_of_a_month_from_the_collector_match_by_hand(
    broker: MosquittoService,
    influx: InfluxDBService,
    influx_db: str,
    unique_city: str,
    tmp_path: Path,
) -> None:
    """The real path: `pantau simulate --fast` publishes a month, `pantau ingest` stores it."""
    registry = tmp_path / "fleet.csv"
    # Siaga just above Waspada, so the simulated October rain crosses both.
    sim.write_registry(registry, unique_city, thresholds=(100.0, 105.0, 140.0))
    topic = f"city/{unique_city}/#"
    with running_collector(broker.url, influx.url, influx_db, topic=topic, registry=registry):
        done = pantau(
            "simulate", "--mqtt", broker.url, "--registry", str(registry),
            "--start", str(sim.START), "--duration", str(sim.END - sim.START),
            "--fast", "--batch", "100", "--seed", "3", "--faults", "dropout=0.01,lamp_out=0.02",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        published = int(re.search(r"readings=(\d+)", done.stdout).group(1))  # type: ignore[union-attr]
        with InfluxClient(influx.url, influx_db) as client:

            def stored() -> int:
                return sum(
                    len(_stored(client, m, unique_city))
                    for m in ("air_quality", "water_level", "streetlight")
                )

            assert wait_for(lambda: stored() == published, timeout=60), (stored(), published)
            (answer,) = _get(
                (influx.url, influx_db, registry, unique_city, client),
                tmp_path,
                ("/api/v1/reports/monthly", {"month": sim.MONTH}),
            )
            assert answer.status_code == 200, answer.text
            report = answer.json()
            check_month(report, by_hand(client, unique_city, registry), registry)
    regency = report["areas"][0]
    assert regency["flood_hours"]["Siaga"] + regency["flood_hours"]["Awas"] > 0
    assert regency["completeness"]["share"] < 1.0  # the dropouts
    assert regency["ispu_days"]["Tidak ada data"] < 31
