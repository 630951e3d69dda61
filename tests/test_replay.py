"""Replay of recorded sensor files: format quirks, units, gaps, pacing, and a real ingest."""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pantau.influx import InfluxClient
from simulators.cli import replay
from simulators.formats import (
    FORMATS,
    Record,
    Skipped,
    parse_ea,
    parse_ispu,
    parse_pintu_air,
    parse_prsa,
    parse_uci,
)
from simulators.replay import DeviceNaming, replay_file
from tests.ingest_helpers import PANTAU, rows, running_collector, wait_for
from tests.shared_data import committed_data, shared_data

# The first 40 rows of two shared files, committed so that these tests run in every clone
# (tests/data/README.md gives their sources); `test_slices_are_the_heads_of_the_shared_files`
# checks them against ../shared/data when it is there.
SLICE_ROWS = 40
UCI_FILE = committed_data("replay", "AirQualityUCI_head40.csv")
EA_FILE = committed_data("replay", "Hebden-Bridge-level-15min-Qualified_head40.csv")
SLICE_SOURCES = {
    UCI_FILE: ("air_quality", "uci_airquality", "AirQualityUCI_2004-03-10_to_2004-09-30.csv"),
    EA_FILE: ("water_level", "uk_ea_calder", "Hebden-Bridge-level-15min-Qualified.csv"),
}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def parsed(parser: Any, text: str, source: str = "", offset: float = 0.0) -> list[Any]:
    return list(parser(io.StringIO(text, newline=""), source, offset))


# --- parsers --------------------------------------------------------------------------------

UCI_HEADER = (
    "Date,Time,CO_GT,PT08_S1_CO,NMHC_GT,C6H6_GT,PT08_S2_NMHC,NOx_GT,PT08_S3_NOx,NO2_GT,"
    "PT08_S4_NO2,PT08_S5_O3,T,RH,AH\n"
)


def test_uci_converts_co_to_ug_and_turns_minus_200_into_gaps() -> None:
    text = (
        "\ufeff" + UCI_HEADER + "10/03/2004,18:00:00,2.6,1360,150,11.9,1046,166,1056,113,1692,"
        "1268,13.6,48.9,0.7578\n"
        # Day and hour not zero-padded; leading spaces; -200 (and -200.0) mean missing.
        "1/05/2004, 0:00:00,-200,1000,-200.0,5.0,800,-200,900,-200,1400,900, 15.0,60.1,0.9\n"
        "1/05/2004,3:00:00,-200,-200,-200,-200,-200,-200,-200,-200,-200,-200,-200,-200,-200\n"
    )
    first, second, third = parsed(parse_uci, text, offset=1.0)
    assert first == Record(
        "uci",
        2,
        utc("2004-03-10T17:00:00"),  # 18:00 CET
        {"co": 2600.0, "no2": 113.0, "hc": 150.0, "temperature": 13.6, "humidity": 48.9},
    )
    assert isinstance(second, Record) and second.ts == utc("2004-04-30T23:00:00")
    assert second.fields == {"temperature": 15.0, "humidity": 60.1}  # gaps, never zeros
    assert set(second.gaps) == {"co", "no2", "hc"}
    assert isinstance(third, Skipped) and third.reason == "all_missing" and third.line == 4


def test_prsa_reads_beijing_time_and_na_gaps() -> None:
    text = (
        '"No","year","month","day","hour","PM2.5","PM10","SO2","NO2","CO","O3","TEMP","PRES",'
        '"DEWP","RAIN","wd","WSPM","station"\r\n'
        '1,2013,3,1,0,4,4,4,7,300,77,-0.7,1023,-18.8,0,"NNW",4.4,"Aotizhongxin"\r\n'
        '2,2013,3,1,1,NA,NA,NA,NA,NA,NA,-1.1,1023.2,-18.2,0,"N",4.7,"Aotizhongxin"\r\n'
        '3,2013,3,1,2,NA,NA,NA,NA,NA,NA,NA,1023.5,-18.2,0,"NNW",5.6,"Aotizhongxin"\r\n'
    )
    first, outage, empty = parsed(parse_prsa, text, offset=8.0)
    assert first.stream == "aotizhongxin" and first.ts == utc("2013-02-28T16:00:00")
    assert first.fields == {
        "pm25": 4.0, "pm10": 4.0, "so2": 4.0, "no2": 7.0, "co": 300.0, "o3": 77.0,
        "temperature": -0.7,
    }  # fmt: skip
    assert outage.fields == {"temperature": -1.1} and len(outage.gaps) == 6
    assert isinstance(empty, Skipped) and empty.reason == "all_missing"


def test_pintu_air_gives_one_device_per_gauge_in_wib() -> None:
    text = (
        "Tanggal,Katulampa (air),Katulampa (cuaca),Depok (air),Depok (cuaca),"
        "Manggarai (air),Manggarai (cuaca)\n"
        "2022-10-09 20:00:00,200.0,Hujan,310.0,Hujan,700.0,Mendung\n"
        "2022-10-09 21:00:00,,Hujan, NA,Hujan,705.0,Mendung\n"
    )
    items = parsed(parse_pintu_air, text, offset=7.0)
    assert [(i.stream, type(i).__name__) for i in items] == [
        ("katulampa", "Record"), ("depok", "Record"), ("manggarai", "Record"),
        ("katulampa", "Skipped"), ("depok", "Skipped"), ("manggarai", "Record"),
    ]  # fmt: skip
    assert items[0].ts == utc("2022-10-09T13:00:00") and items[0].fields == {"level_cm": 200.0}
    assert items[5].fields == {"level_cm": 705.0}


def test_ea_converts_metres_to_centimetres_and_keeps_negative_stages() -> None:
    uri = "http://environment.data.gov.uk/hydrology/id/measures/x-level-i-900-m-qualified"
    text = (
        '"measure","dateTime","date","value","completeness","quality","qcode"\n'
        f'"{uri}","2025-08-16T00:00:00","2025-08-16","-0.062","","Unchecked",""\n'
        f'"{uri}","2025-08-16T00:15:00Z","2025-08-16","1.381","","Unchecked",""\n'
        f'"{uri}","2025-08-16T00:30:00","2025-08-16","","","Missing",""\n'
    )
    low, high, missing = parsed(parse_ea, text, source="Hebden-Bridge-level-15min-Qualified.csv")
    assert low.stream == "hebden-bridge" and low.ts == utc("2025-08-16T00:00:00")
    assert low.fields == {"level_cm": -6.2} and high.fields == {"level_cm": 138.1}
    assert high.ts == utc("2025-08-16T00:15:00")
    assert isinstance(missing, Skipped) and missing.reason == "all_missing"


def test_ispu_reads_both_date_orders_and_separators() -> None:
    per_station = (
        "tanggal,stasiun,pm10,so2,co,o3,no2,max,critical,categori\r\n"
        "11/27/2012,DKI5 (Kebon Jeruk),84,,42,47,16,84,PM10,SEDANG\r\n"
    )
    (one,) = parsed(parse_ispu, per_station, offset=7.0)
    assert one.stream == "dki5" and one.ts == utc("2012-11-26T17:00:00")  # M/D/YYYY
    assert one.fields == {"pm10": 84.0, "co": 42.0, "o3": 47.0, "no2": 16.0}
    assert one.gaps == ("so2",)
    worst_station = (
        "tanggal;stasiun;pm25;pm10;so2;co;o3;no2;max;critical;categori\r\n"
        "01/02/2022;DKI4 (Lubang Buaya);85.0;;48.0;13.0;34.0;18.0;85.0;PM25;SEDANG\r\n"
    )
    (two,) = parsed(parse_ispu, worst_station, offset=7.0)
    assert two.stream == "dki4" and two.ts == utc("2022-01-31T17:00:00")  # DD/MM/YYYY
    assert two.fields["pm25"] == 85.0 and two.gaps == ("pm10",)


def test_bad_rows_are_skipped_with_a_reason_and_wrong_files_are_named() -> None:
    text = UCI_HEADER + "32/13/2004,18:00:00,2.6,1,1,1,1,1,1,1,1,1,1,1,1\n10/03/2004,18:00:00,x\n"
    reasons = [i.reason for i in parsed(parse_uci, text)]
    assert reasons == ["bad_timestamp", "short_row"]
    with pytest.raises(ValueError, match="not a PRSA file"):
        parsed(parse_prsa, UCI_HEADER)


def test_device_naming() -> None:
    uci, pintu = FORMATS["uci"], FORMATS["pintu_air"]
    assert DeviceNaming().device(uci, "uci") == ("uci", "uci-01")
    assert DeviceNaming().device(pintu, "depok") == ("depok", "pintu-air-depok")
    named = DeviceNaming("jakarta", "ciliwung", "pa")
    assert named.device(pintu, "depok") == ("ciliwung", "pa-depok")
    assert named.device(uci, "uci") == ("ciliwung", "pa")


def test_slices_are_the_heads_of_the_shared_files() -> None:
    for piece, parts in SLICE_SOURCES.items():
        whole = shared_data(*parts)
        with whole.open("rb") as source:
            head = b"".join(itertools.islice(source, SLICE_ROWS + 1))
        assert piece.read_bytes() == head, f"{piece.name} is not the head of {whole.name}"


def test_ispu_is_refused_with_the_reason(tmp_path: Path) -> None:
    # Refused before the file is read: the header of a per-station file is enough.
    ispu_file = tmp_path / "ispu_dki1.csv"
    ispu_file.write_text("tanggal,stasiun,pm10,so2,co,o3,no2,max,critical,categori\n")
    result = CliRunner().invoke(replay, [str(ispu_file), "--format", "ispu"])
    assert result.exit_code == 1
    assert "sub-index" in result.output and "not concentrations" in result.output


class Recorder:
    """A sink that keeps what it is given; the broker 'acknowledges' at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, bytes]] = []

    @property
    def published(self) -> int:
        return len(self.sent)

    @property
    def acked(self) -> int:
        return len(self.sent)

    def publish(self, device_id: str, topic: str, payload: bytes) -> None:
        self.sent.append((time.monotonic(), topic, payload))

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def flush(self, timeout_s: float) -> int:
        return 0


def test_replay_keeps_the_pace_of_the_observations() -> None:
    sink = Recorder()
    began = time.monotonic()
    summary = replay_file(
        UCI_FILE, FORMATS["uci"], sink, naming=DeviceNaming(), speed=7200.0, limit=3
    )
    # Three hourly rows at 7200x: the second is due 0.5 s after the first, the third 1.0 s.
    offsets = [t - began for t, _, _ in sink.sent]
    assert len(offsets) == 3 and summary.rows == 3
    # The pacing, exact however loaded the machine: a row goes out only once it is due, and
    # the replay's clock starts after `began` (the old 0.4-0.5 s windows also bounded lateness).
    assert offsets[1] >= 0.5 and offsets[2] >= 1.0
    # Not held back far beyond its time: generous slack (3 s) for a loaded 2-core machine.
    assert offsets[2] < 4.0


# --- through a real collector into InfluxDB -----------------------------------------------


def csv_rows(path: Path, limit: int) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as source:
        return list(itertools.islice(csv.DictReader(source), limit))


def summary_counts(output: str) -> dict[str, int]:
    line = next(x for x in output.splitlines() if x.startswith("rows="))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@pytest.mark.integration
def test_replayed_slices_land_complete_in_influxdb_with_times_and_units(
    broker: Any, influx: Any, influx_db: str, unique_city: str, tmp_path: Path
) -> None:
    limit = SLICE_ROWS  # the whole committed slices
    with (
        InfluxClient(influx.url, influx_db) as client,
        running_collector(
            broker.url,
            influx.url,
            influx_db,
            topic=f"city/{unique_city}/+/+/+",
            log_path=tmp_path / "collector.log",
        ),
    ):
        done = {}
        for fmt, path in (("uci", UCI_FILE), ("ea", EA_FILE)):
            result = subprocess.run(
                [PANTAU, "replay", str(path), "--format", fmt, "--mqtt", broker.url, "--fast",
                 "--city", unique_city, "--limit", str(limit)],
                capture_output=True, text=True, timeout=180, check=False,  # generous: loaded
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-2000:]
            done[fmt] = summary_counts(result.stdout)
        uci, ea = done["uci"], done["ea"]
        assert uci["rows"] == ea["rows"] == limit
        assert uci["sent"] == uci["acked"] == limit - uci["skipped"]
        assert ea["sent"] == ea["acked"] == limit - ea["skipped"]

        def stored() -> bool:
            return (
                len(rows(client, "air_quality")) == uci["sent"]
                and len(rows(client, "water_level")) == ea["sent"]
            )

        # Rows in InfluxDB are the fact; a generous limit for a loaded machine.
        assert wait_for(stored, timeout=120), (tmp_path / "collector.log").read_text()[-2000:]
        air = {r["time"]: r for r in rows(client, "air_quality")}
        water = {r["time"]: r for r in rows(client, "water_level")}

    checked_gap = 0
    for raw in csv_rows(UCI_FILE, limit):
        day, month, year = (int(p) for p in raw["Date"].split("/"))
        hour = int(raw["Time"].split(":")[0])
        ts = datetime(year, month, day, hour, tzinfo=UTC).timestamp() - 3600  # CET
        values = {"co": raw["CO_GT"], "no2": raw["NO2_GT"], "temperature": raw["T"]}
        point = air.get(round(ts * 1e9))
        if all(float(v) == -200 for v in (*values.values(), raw["NMHC_GT"], raw["RH"])):
            assert point is None  # nothing left to send: skipped, not stored as zeros
            continue
        assert point is not None, raw
        assert point["device_id"] == "uci-01" and point["city"] == unique_city
        for name, cell in values.items():
            if float(cell) == -200:
                assert point[name] is None  # a gap, never a zero
                checked_gap += 1
            else:
                factor = 1000.0 if name == "co" else 1.0  # CO_GT is mg/m3
                assert point[name] == pytest.approx(float(cell) * factor)
    assert checked_gap > 0
    for raw in csv_rows(EA_FILE, limit):
        ts = datetime.fromisoformat(raw["dateTime"]).replace(tzinfo=UTC).timestamp()
        point = water[round(ts * 1e9)]
        assert point["level_cm"] == pytest.approx(float(raw["value"]) * 100)
        assert point["device_id"] == "ea-hebden-bridge"
    assert not math.isnan(sum(p["level_cm"] for p in water.values()))


def test_ispu_2020_export_is_inverted_to_daily_mean_concentrations() -> None:
    from simulators.formats import Record, Skipped, parse_ispu_2020

    lines = [
        "tanggal;stasiun;pm25;pm10;so2;co;o3;no2;max;critical;categori\r\n",
        "01/01/2022;DKI4 (Lubang Buaya);100.0;50.0;;;;;100.0;PM25;SEDANG\r\n",
        "02/01/2022;DKI4 (Lubang Buaya);75.0;;;;;;75.0;PM25;SEDANG\r\n",
    ]
    items = list(parse_ispu_2020(lines, "ispu.csv", 7.0))
    assert all(isinstance(item, Record) for item in items)
    first, second = items
    assert first.fields == {"pm25": 55.4, "pm10": 50.0}  # the P.14/2020 band edges
    assert second.fields == {"pm25": 35.45}
    assert "so2" in first.gaps
    old = [
        "tanggal,stasiun,pm10,so2,co,o3,no2,max,critical,categori\n",
        "3/15/2015,DKI1 (Bunderan HI),60,20,30,40,10,60,PM10,SEDANG\n",
    ]
    assert [type(i) for i in parse_ispu_2020(old, "dki1.csv", 7.0)] == [Skipped]
