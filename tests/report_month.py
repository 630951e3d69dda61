"""A simulated month for the report tests: a small registry and its readings as line protocol.

Two districts, each with one air station, one river gauge (a flood wave crosses its thresholds)
and two streetlights, every 20 minutes through October 2026 (WIB), with gaps, a failing lamp
and an energy counter reset. The figures are then recomputed by hand from the stored points.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from pantau.lineprotocol import point

WIB = ZoneInfo("Asia/Jakarta")
MONTH = "2026-10"
START = int(dt.datetime(2026, 10, 1, tzinfo=WIB).timestamp())
END = int(dt.datetime(2026, 11, 1, tzinfo=WIB).timestamp())
INTERVAL = 1200
DISTRICTS = ("alpha", "beta")
THRESHOLDS = (100.0, 150.0, 200.0)
RATED_W = 100.0
LAT, LON = -7.39, 109.36


@dataclass(frozen=True)
class SimDevice:
    """One device of the simulated registry."""

    device_id: str
    kind: str
    district: str


def devices() -> list[SimDevice]:
    """Per district: one station, one gauge, two lamps."""
    out = []
    for d in DISTRICTS:
        out += [
            SimDevice(f"aq-{d}", "air_quality", d),
            SimDevice(f"wl-{d}", "water_level", d),
            SimDevice(f"sl-{d}-1", "streetlight", d),
            SimDevice(f"sl-{d}-2", "streetlight", d),
        ]
    return out


def write_registry(
    path: Path, city: str, thresholds: tuple[float, float, float] = THRESHOLDS
) -> None:
    """The registry CSV of the simulated fleet."""
    header = "device_id,kind,city,district,lat,lon,interval_s,waspada_cm,siaga_cm,awas_cm,rated_w"
    rows = [header]
    for i, d in enumerate(devices()):
        lat, lon = LAT + 0.01 * i, LON + 0.01 * i
        limits = ",".join(str(t) for t in thresholds) if d.kind == "water_level" else ",,"
        rated = str(RATED_W) if d.kind == "streetlight" else ""
        rows.append(
            f"{d.device_id},{d.kind},{city},{d.district},{lat},{lon},{INTERVAL},{limits},{rated}"
        )
    path.write_text("\n".join(rows) + "\n")


def _local_hour(ts: float) -> float:
    local = dt.datetime.fromtimestamp(ts, WIB)
    return local.hour + local.minute / 60


def _gap(d: SimDevice, ts: float) -> bool:
    """The simulated outages."""
    day = (ts - START) // 86400  # 0 = 1 October (local)
    hour = (ts - START) // 3600
    if d.kind == "air_quality" and (day == 24 or (d.district == "alpha" and day == 4)):
        return True
    if d.kind == "water_level" and d.district == "alpha" and 200 <= hour < 207:
        return True
    return d.device_id == "sl-alpha-1" and day == 19 and _local_hour(ts) < 12


def _ispu(rng: random.Random, day: int, district: str, ts: float) -> float:
    peaks = (30.0, 50.4, 50.5, 75.0, 100.5, 150.0, 230.0, 320.0, 45.0, 99.0)
    peak = peaks[(day + (3 if district == "beta" else 0)) % len(peaks)]
    return round(peak * (0.6 + 0.4 * rng.random()), 1) if rng.random() < 0.97 else peak


def _level(district: str, ts: float) -> float:
    """A base flow with a flood wave around 10-11 October (higher in alpha)."""
    hours = (ts - START) / 3600
    height = 180.0 if district == "alpha" else 125.0
    return round(60.0 + height * math.exp(-(((hours - 230.0) / 12.0) ** 2)), 1)


def lines(city: str, seed: int = 7) -> list[str]:
    """Every point of the month: readings and the air stations' ISPU indicator."""
    rng = random.Random(seed)
    out: list[str] = []
    energy: dict[str, float] = {}
    for i, d in enumerate(devices()):
        tags = {"city": city, "district": d.district, "device_id": d.device_id}
        t = START + 60 * i  # devices report at their own offsets
        while t < END:
            day = int((t - START) // 86400)
            if _gap(d, t):
                t += INTERVAL
                continue
            ns = t * 10**9
            if d.kind == "air_quality":
                ispu = _ispu(rng, day, d.district, t)
                out.append(point("air_quality", tags, {"pm25": round(ispu / 3, 1)}, ns))
                itags = {**tags, "kind": "air_quality"}
                out.append(point("indicator", itags, {"ispu": ispu, "ispu_category": "x"}, ns))
            elif d.kind == "water_level":
                out.append(point("water_level", tags, {"level_cm": _level(d.district, t)}, ns))
            else:
                hour = _local_hour(t)
                on = 1.0 if hour >= 18 or hour < 6 else 0.0
                if d.device_id == "sl-alpha-1" and day == 3:
                    on = 0.0  # the lamp is out all night
                broken = d.device_id == "sl-beta-2" and 10 <= day < 15
                dim = 50.0 if d.device_id == "sl-alpha-2" and on and hour < 2 else 100.0
                power = (
                    0.0 if broken or not on else RATED_W * dim / 100 * (0.9 + 0.2 * rng.random())
                )
                e = energy.get(d.device_id, 1000.0 * (i + 1)) + power * INTERVAL / 3600
                if d.device_id == "sl-alpha-2" and day == 15 and 12 <= hour < 12 + 1 / 3:
                    e = 0.0  # the controller restarted: its counter starts again from zero
                energy[d.device_id] = e
                fields = {"lamp_on": on, "dim_pct": dim, "power_w": round(power, 1)}
                out.append(point("streetlight", tags, {**fields, "energy_wh": round(e, 3)}, ns))
            t += INTERVAL
    return out
