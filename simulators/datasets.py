"""Loaders of the shared real data sets as numeric series for evaluation (no MQTT involved)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pantau.timestamps import parse_time

__all__ = [
    "Series",
    "load_beijing",
    "load_ea",
    "load_pintu_air",
    "load_skab",
    "load_uci",
]


@dataclass(frozen=True, slots=True)
class Series:
    """One device's readings: observation times (epoch s) and one column per field."""

    name: str
    kind: str
    fields: tuple[str, ...]
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]  # (n, len(fields)); NaN = not reported
    labels: npt.NDArray[np.bool_] | None = None  # labelled anomalies (SKAB)

    def __len__(self) -> int:
        return len(self.ts)


def _number(text: str, *missing: str) -> float:
    text = text.strip()
    if text in ("", "NA", *missing):
        return float("nan")
    return float(text)


def _epoch(moment: datetime, utc_offset_h: float) -> float:
    return moment.replace(tzinfo=timezone(timedelta(hours=utc_offset_h))).timestamp()


def load_beijing(path: Path) -> Series:
    """Beijing PRSA hourly file (UTC+8, ug/m3, NA missing); rows with no pollutant dropped."""
    columns = {"pm25": "PM2.5", "pm10": "PM10", "so2": "SO2", "no2": "NO2", "co": "CO", "o3": "O3"}
    ts: list[float] = []
    values: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            moment = datetime(
                int(row["year"]), int(row["month"]), int(row["day"]), int(row["hour"])
            )
            ts.append(_epoch(moment, 8))
            values.append([_number(row[c]) for c in columns.values()])
    return _series(
        f"beijing-{path.stem.split('_')[2].lower()}", "air_quality", tuple(columns), ts, values
    )


def load_uci(path: Path) -> Series:
    """UCI air quality (local time, taken as UTC+1; CO mg/m3 -> ug/m3; -200 missing)."""
    ts: list[float] = []
    values: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            day, month, year = (int(x) for x in row["Date"].split("/"))
            hour = int(row["Time"].split(":")[0])
            ts.append(_epoch(datetime(year, month, day, hour), 1))
            co = _number(row["CO_GT"], "-200")
            values.append([co * 1000.0, _number(row["NO2_GT"], "-200")])
    return _series("uci-italy", "air_quality", ("co", "no2"), ts, values)


def load_ea(path: Path) -> Series:
    """UK Environment Agency 15-minute stage (UTC, metres -> cm)."""
    ts: list[float] = []
    values: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            ts.append(parse_time(row["dateTime"], epoch=False, naive_utc_offset_h=0))
            values.append([_number(row["value"]) * 100.0])
    return _series(
        f"ea-{path.stem.split('-level')[0].lower()}", "water_level", ("level_cm",), ts, values
    )


def load_pintu_air(path: Path) -> list[Series]:
    """Jakarta water gates (hourly, WIB = UTC+7, cm): one series per gauge."""
    gauges = ("Katulampa", "Depok", "Manggarai")
    ts: list[float] = []
    values: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as source:
        for row in csv.DictReader(source):
            ts.append(parse_time(row["Tanggal"], epoch=False, naive_utc_offset_h=7))
            values.append([_number(row[f"{g} (air)"]) for g in gauges])
    array = np.array(values, dtype=np.float64)
    return [
        _series(f"jakarta-{g.lower()}", "water_level", ("level_cm",), ts, array[:, [i]].tolist())
        for i, g in enumerate(gauges)
    ]


def load_skab(path: Path) -> Series:
    """A SKAB experiment (';' separated, ~1 Hz, local time taken as UTC+3) with its labels."""
    ts: list[float] = []
    values: list[list[float]] = []
    labels: list[bool] = []
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source, delimiter=";")
        channels = [
            c for c in reader.fieldnames or [] if c not in ("datetime", "anomaly", "changepoint")
        ]
        for row in reader:
            ts.append(parse_time(row["datetime"], epoch=False, naive_utc_offset_h=3))
            values.append([_number(row[c]) for c in channels])
            labels.append(row.get("anomaly", "0").strip() in ("1", "1.0"))
    series = _series(f"skab-{path.parent.name}-{path.stem}", "generic", tuple(channels), ts, values)
    return Series(
        series.name,
        series.kind,
        series.fields,
        series.ts,
        series.values,
        np.array(labels, dtype=np.bool_),
    )


def _series(
    name: str, kind: str, fields: tuple[str, ...], ts: list[float], values: list[list[float]]
) -> Series:
    t = np.array(ts, dtype=np.float64)
    v = np.array(values, dtype=np.float64).reshape(len(t), len(fields))
    keep = ~np.isnan(v).all(axis=1)  # a reading with no value was never sent
    order = np.argsort(t[keep], kind="stable")
    return Series(name, kind, fields, t[keep][order], v[keep][order])
