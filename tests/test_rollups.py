"""Retention and rollups on the real InfluxDB 1.6: setup, backfill, CQs, the history source."""

from __future__ import annotations

import asyncio
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.queries import history_query
from pantau.cli import main
from pantau.dev import InfluxDBService, MosquittoService
from pantau.influx import InfluxClient
from pantau.influx_async import AsyncInflux
from pantau.registry import Device, Registry
from pantau.rollups import (
    RAW_MAX_SPAN_S,
    ROLLUPS,
    Rollup,
    Source,
    backfill,
    backfill_statements,
    cq_statement,
    ensure_rollups,
    ensure_rollups_async,
    pick_source,
    plan_rollups,
    rollup_statements,
    split_range,
)
from pantau.settings import Settings
from tests.api_helpers import running_api
from tests.ingest_helpers import wait_for

DAY = 86400
HOUR = 3600


def _settings(influx: InfluxDBService, db: str, **history: str) -> Settings:
    flat = {f"history_{k}": v for k, v in history.items()}
    return Settings.from_options(influx_url=influx.url, influx_db=db, **flat)


@pytest.fixture
def client(influx: InfluxDBService, influx_db: str) -> Iterator[InfluxClient]:
    """A client on the test's fresh database."""
    with InfluxClient(influx.url, influx_db, timeout_s=60.0) as c:
        yield c


def _policies(client: InfluxClient) -> dict[str, str]:
    series = client.query(f'SHOW RETENTION POLICIES ON "{client.database}"')
    return {row[0]: row[1] for s in series for row in s["values"]}


# -- pure parts -------------------------------------------------------------------------------


def test_short_ranges_read_raw_and_long_ones_the_coarsest_fitting_rollup() -> None:
    assert pick_source(6 * HOUR, 60) is Source.RAW
    assert pick_source(30 * HOUR, 6 * HOUR) is Source.RAW  # short: raw even for coarse intervals
    assert pick_source(RAW_MAX_SPAN_S + 1, 600) is Source.RAW  # finer than an hour
    assert pick_source(30 * DAY, 2 * HOUR) is Source.ROLLUP_1H
    assert pick_source(30 * DAY, 5400) is Source.RAW  # not whole hours
    assert pick_source(365 * DAY, DAY) is Source.ROLLUP_1D
    assert pick_source(365 * DAY, 7 * DAY) is Source.ROLLUP_1D
    assert pick_source(365 * DAY, 12 * HOUR) is Source.ROLLUP_1H


def test_a_range_is_split_into_raw_head_rollup_middle_and_raw_tail() -> None:
    now = 1_000 * DAY + 5 * HOUR
    start = 600 * DAY + 3 * HOUR
    parts = split_range(Source.ROLLUP_1D, start, now, DAY, now)
    assert parts == [
        (Source.RAW, start, 601 * DAY),
        (Source.ROLLUP_1D, 601 * DAY, 999 * DAY),  # yesterday's CQ may not have run yet
        (Source.RAW, 999 * DAY, now),
    ]
    assert split_range(Source.RAW, start, now, DAY, now) == [(Source.RAW, start, now)]
    # A range wholly in the past and aligned is served by the rollup alone.
    assert split_range(Source.ROLLUP_1H, 10 * DAY, 20 * DAY, HOUR, now) == [
        (Source.ROLLUP_1H, 10 * DAY, 20 * DAY)
    ]
    # Too recent for the rollup: raw only.
    assert split_range(Source.ROLLUP_1D, now - 2 * DAY, now, DAY, now) == [
        (Source.RAW, now - 2 * DAY, now)
    ]


def test_history_query_reads_the_rollup_fields() -> None:
    q = history_query("air_quality", "pm25", "aq-1", 0, 10, DAY, Source.ROLLUP_1D)
    assert 'mean("mean_pm25") AS "mean"' in q
    assert 'last("last_pm25") AS "last"' in q
    assert 'FROM "rollup_1d"."air_quality"' in q
    raw = history_query("air_quality", "pm25", "aq-1", 0, 10, 60)
    assert 'mean("pm25") AS "mean"' in raw and 'FROM "air_quality"' in raw


def test_backfill_is_widened_to_whole_points_and_chunked() -> None:
    settings = Settings.from_options(influx_db="pantau")
    statements = backfill_statements(settings, 10 * DAY + 1800, 40 * DAY + 1800)
    hourly = [s for s in statements if "rollup_1h" in s and '"air_quality"' in s]
    assert f"time >= {10 * DAY}s" in hourly[0]  # widened down to the hour
    assert f"time < {40 * DAY + HOUR}s" in hourly[-1]  # and up to the next one
    assert len(hourly) == math.ceil((30 * DAY + HOUR) / (7 * DAY))
    daily = [s for s in statements if "rollup_1d" in s]
    assert {s.split("FROM ")[1].split(" ")[0] for s in daily} == {
        f'"pantau"."autogen"."{m}"'
        for m in ("air_quality", "water_level", "streetlight", "indicator", "area_hourly")
    }


# -- against InfluxDB -------------------------------------------------------------------------


@pytest.mark.integration
def test_setup_is_idempotent_and_follows_changed_settings(
    influx: InfluxDBService, influx_db: str, client: InfluxClient
) -> None:
    settings = _settings(influx, influx_db, raw_retention="90d")
    first = ensure_rollups(client, settings)
    assert len(first) == len(rollup_statements(settings))
    assert ensure_rollups(client, settings) == []  # nothing left to change
    policies = _policies(client)
    assert policies["autogen"] == "2160h0m0s"  # raw retention alters the default RP
    assert policies["rollup_1h"] == policies["rollup_1d"] == "0s"  # INF
    cqs = {row[0] for s in client.query("SHOW CONTINUOUS QUERIES") for row in s.get("values", [])}
    assert {"cq_1h_air_quality", "cq_1h_indicator", "cq_1d_area_hourly"} <= cqs
    assert "cq_1h_area_hourly" not in cqs  # area snapshots are hourly already

    changed = _settings(influx, influx_db, raw_retention="INF", daily_retention="520w")
    assert ensure_rollups(client, changed) == [
        f'ALTER RETENTION POLICY "autogen" ON "{influx_db}" DURATION INF',
        f'ALTER RETENTION POLICY "rollup_1d" ON "{influx_db}" DURATION 520w',
    ]
    assert _policies(client)["autogen"] == "0s"

    # A continuous query edited by hand is dropped and created again as declared.
    client.execute(f'DROP CONTINUOUS QUERY "cq_1h_water_level" ON "{influx_db}"')
    rollup = ROLLUPS[0]
    odd = Rollup(rollup.source, "1h", HOUR, "5h", ("water_level",), DAY)
    client.execute(cq_statement(changed, odd, "water_level"))
    again = ensure_rollups(client, changed)
    assert again[0] == f'DROP CONTINUOUS QUERY "cq_1h_water_level" ON "{influx_db}"'
    assert again[1] == cq_statement(changed, rollup, "water_level")
    assert ensure_rollups(client, changed) == []


@pytest.mark.integration
def test_the_api_start_up_setup_is_the_same_and_idempotent(
    influx: InfluxDBService, influx_db: str, client: InfluxClient
) -> None:
    settings = _settings(influx, influx_db, hourly_retention="52w")

    async def twice() -> tuple[list[str], list[str]]:
        influx_async = AsyncInflux(settings)
        try:
            return (
                await ensure_rollups_async(influx_async, settings),
                await ensure_rollups_async(influx_async, settings),
            )
        finally:
            await influx_async.close()

    first, second = asyncio.run(twice())
    assert (len(first), second) == (len(rollup_statements(settings)) - 1, [])  # autogen: INF
    assert _policies(client)["rollup_1h"] == "8736h0m0s"
    assert ensure_rollups(client, settings) == []


def test_plan_from_an_empty_database_is_every_statement() -> None:
    settings = Settings.from_options(influx_db="pantau")
    policies = [{"name": "autogen", "duration": "1h0m0s"}]
    assert plan_rollups(settings, policies, {}) == rollup_statements(settings)


@pytest.mark.integration
def test_rollup_fields_keep_tags_and_treat_strings_and_booleans_as_influxdb_does(
    influx: InfluxDBService, influx_db: str, client: InfluxClient
) -> None:
    settings = _settings(influx, influx_db)
    ensure_rollups(client, settings)
    t0 = 1_700_000_000 // HOUR * HOUR
    lines = [
        f'indicator,city=c,district=k,device_id=d1 ispu=50,category="baik",ok=true {t0}',
        f'indicator,city=c,district=k,device_id=d1 ispu=70,category="sedang",ok=false {t0 + 60}',
    ]
    client.write("\n".join(lines).encode(), precision="s")
    assert backfill(client, settings, t0, t0 + 60) == 2  # one hourly and one daily point
    series = client.query('SELECT * FROM "rollup_1h"."indicator"', epoch="s")
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    assert (row["city"], row["district"], row["device_id"]) == ("c", "k", "d1")
    assert (row["mean_ispu"], row["min_ispu"], row["max_ispu"], row["last_ispu"]) == (
        60,
        50,
        70,
        70,
    )
    assert row["last_category"] == "sedang"  # last keeps strings; mean/min/max skip them
    assert "mean_category" not in row and "mean_ok" not in row
    assert row["max_ok"] is True and row["last_ok"] is False  # min/max/last keep booleans


@pytest.mark.integration
def test_continuous_queries_run_on_the_dev_server(
    influx: InfluxDBService, influx_db: str, client: InfluxClient
) -> None:
    # The real CQs group by the hour and day: too slow to wait for here. The same statement with
    # one-second groups shows the dev server runs CQs; backfill tests the hourly SELECT itself.
    settings = _settings(influx, influx_db)
    ensure_rollups(client, settings)
    fast = Rollup(Source.ROLLUP_1H, "1s", 1, "3s", ("air_quality",), DAY)
    client.execute(cq_statement(settings, fast, "air_quality"))
    now = time.time()
    client.write(
        f"air_quality,city=c,district=k,device_id=cq pm25=42 {int(now)}".encode(), precision="s"
    )

    def rolled() -> bool:
        series = client.query(
            'SELECT "mean_pm25" FROM "rollup_1h"."air_quality" WHERE "device_id" = \'cq\''
        )
        return bool(series) and series[0]["values"][0][1] == 42

    assert wait_for(rolled, 20)


# -- one year of history through the API ------------------------------------------------------


@pytest.mark.integration
def test_a_year_of_history_is_served_from_the_daily_rollup(
    broker: MosquittoService,
    influx: InfluxDBService,
    influx_db: str,
    client: InfluxClient,
    unique_city: str,
    tmp_path: Path,
) -> None:
    settings = _settings(influx, influx_db)
    now = time.time()
    last_hour = math.floor(now / HOUR) * HOUR - HOUR
    times = [last_hour - i * HOUR for i in range(366 * 24)][::-1]
    values = {t: float(10 + (t // HOUR) % 24 + (t // DAY) % 30) for t in times}
    series = f"air_quality,city={unique_city},district=bobotsari,device_id=aq-y"
    body = "\n".join(f"{series} pm25={v} {t}" for t, v in values.items())
    client.write(body.encode(), precision="s")

    def by_hand(start: float, end: float) -> dict[float, float]:
        days: dict[float, list[float]] = defaultdict(list)
        for t, v in values.items():
            if start <= t < end:
                days[float(t // DAY * DAY)].append(v)
        return {d: sum(vs) / len(vs) for d, vs in sorted(days.items())}

    path = tmp_path / "registry.csv"
    Registry(
        [Device("aq-y", "air_quality", unique_city, "bobotsari", -7.3, 109.3, 3600.0)]
    ).write_csv(path)
    with running_api(broker.url, influx.url, influx_db, city=unique_city, registry=path) as api:
        with api.client("read") as http:

            def year(start: float) -> tuple[dict[float, float], str, str]:
                response = http.get(
                    "/api/v1/devices/aq-y/history",
                    params={"field": "pm25", "start": f"{start:.3f}", "end": f"{now:.3f}"},
                )
                assert response.status_code == 200, response.text
                answer = response.json()
                assert answer["interval_s"] == DAY
                means = {p["ts"]: p["mean"] for p in answer["points"]}
                return means, answer["source"], response.headers["x-pantau-source"]

            start = now - 365 * DAY
            if "rollup_1d" not in _policies(client):
                # No rollups set up yet (the API did not at start): raw points answer instead.
                means, source, _ = year(start)
                assert source == "raw"
                assert means == pytest.approx(by_hand(start, now))
            ensure_rollups(client, settings)
            written = backfill(client, settings, times[0], now)
            assert written >= len(times) + 366  # every hour and every day

            # An unaligned start: the partial first day comes from raw points, as raw would.
            means, source, header = year(start)
            assert source == header == "rollup_1d"
            assert means == pytest.approx(by_hand(start, now))

            # Raw points older than 30 days changed (DELETE would hit every RP): the year still
            # shows the values rolled up before, so they come from the rollup, not from raw.
            changed = "\n".join(
                f"{series} pm25={v + 1000} {t}" for t, v in values.items() if t < now - 30 * DAY
            )
            client.write(changed.encode(), precision="s")
            start = math.floor((now - 364 * DAY) / DAY) * DAY
            means, source, _ = year(start)
            assert source == "rollup_1d"
            assert len(means) == 365
            assert means == pytest.approx(by_hand(start, now))

            short = http.get(
                "/api/v1/devices/aq-y/history",
                params={"field": "pm25", "start": f"{now - 6 * HOUR:.3f}", "end": f"{now:.3f}"},
            )
            assert short.json()["source"] == short.headers["x-pantau-source"] == "raw"
            assert short.json()["points"]
        log = wait_for(lambda: "rollup_1d" in api.log_path.read_text() and api.log(), 10)
        assert 'msg="history served"' in log and "source=rollup_1d" in log and "query_ms=" in log


@pytest.mark.integration
def test_the_history_command_sets_up_backfills_and_reports(
    influx: InfluxDBService, influx_db: str, client: InfluxClient
) -> None:
    runner = CliRunner()
    where = ["--influx", influx.url, "--db", influx_db]
    first = runner.invoke(main, ["history", "setup", *where, "--raw-retention", "30d"], env={})
    assert first.exit_code == 0, first.output
    assert f'ALTER RETENTION POLICY "autogen" ON "{influx_db}" DURATION 30d' in first.output
    again = runner.invoke(main, ["history", "setup", *where, "--raw-retention", "30d"], env={})
    assert again.exit_code == 0 and "nothing changed" in again.output
    t0 = int(time.time()) // DAY * DAY - 2 * DAY
    client.write(
        f"water_level,city=c,district=k,device_id=w level_cm=5 {t0}".encode(), precision="s"
    )
    filled = runner.invoke(main, ["history", "backfill", *where, "--start", str(t0 - DAY)])
    assert filled.exit_code == 0, filled.output
    assert "2 rollup point(s) written" in filled.output
    status = runner.invoke(main, ["history", "status", *where])
    assert status.exit_code == 0, status.output
    assert "autogen: duration 720h0m0s (default)" in status.output
    assert "cq_1d_area_hourly" in status.output
    assert "rollup_1d.water_level: 1" in status.output
