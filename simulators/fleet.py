"""The simulated Purbalingga fleet as a device registry: the platform reads the same file."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Final

from pantau.registry import Device, Registry
from simulators.purbalingga import DISTRICTS, District

__all__ = ["DEFAULT_INTERVAL_S", "KIND_PREFIX", "purbalingga_fleet", "with_interval"]

KIND_PREFIX: Final = {"air_quality": "aq", "streetlight": "sl", "water_level": "wl"}
DEFAULT_INTERVAL_S: Final = {"air_quality": 60.0, "streetlight": 60.0, "water_level": 300.0}
# Devices per kind and district in deploy/registry.example.csv.
_EXAMPLE_LAYOUT: Final = {"air_quality": 1, "streetlight": 3, "water_level": 1}
_EXTRA_LAMP_WATTS: Final = (90.0, 60.0, 40.0, 120.0)
_GOLDEN_ANGLE: Final = math.pi * (3.0 - math.sqrt(5.0))
_PEER_GROUP: Final = {"air_quality": "airshed:{city}", "water_level": "river:{river}"}


def _position(district: District, kind: str, k: int) -> tuple[float, float]:
    """Where the k-th device of a kind stands in a district (the example's layout for k < 3)."""
    if kind == "streetlight":
        # Lamps every ~170 m along a road south-east of the station, as in the example.
        return district.lat - 0.0018 - 0.0008 * k, district.lon - 0.0027 + 0.0015 * k
    if kind == "water_level":
        # Further gauges stand downstream (south) along the district's river.
        return district.lat - 0.005 - 0.003 * k, district.lon - 0.0042 + 0.001 * k
    if k == 0:
        return district.lat, district.lon
    # Further stations on a golden-angle spiral, a few hundred metres apart.
    radius = 0.004 * math.sqrt(k)
    angle = k * _GOLDEN_ANGLE
    return district.lat + radius * math.cos(angle), district.lon + radius * math.sin(angle)


def _device(city: str, district: District, kind: str, k: int) -> Device:
    lat, lon = _position(district, kind, k)
    gauge = kind == "water_level"
    watts = district.lamp_watts + _EXTRA_LAMP_WATTS
    peers = _PEER_GROUP.get(kind)
    return Device(
        device_id=f"{KIND_PREFIX[kind]}-{district.name}-{k + 1:02d}",
        kind=kind,
        city=city,
        district=district.name,
        lat=round(lat, 4),
        lon=round(lon, 4),
        interval_s=DEFAULT_INTERVAL_S[kind],
        waspada_cm=district.waspada_cm if gauge else None,
        siaga_cm=district.siaga_cm if gauge else None,
        awas_cm=district.awas_cm if gauge else None,
        rated_w=watts[k % len(watts)] if kind == "streetlight" else None,
        river=district.river if gauge else None,
        # The drift detector's peers: a gauge's river, the city's airshed, a lamp's circuit
        # (the registry's default, its district). Further gauges of a district are not ordered.
        peer_group=peers.format(city=city, river=district.river.lower()) if peers else None,
        peer_order=district.peer_order if gauge and k == 0 else None,
    )


def _counts(devices_per_kind: int | None, kind: str, index: int) -> int:
    if devices_per_kind is None:
        return _EXAMPLE_LAYOUT[kind]
    # Round robin over the districts: the first `remainder` districts get one more.
    share, remainder = divmod(devices_per_kind, len(DISTRICTS))
    return share + (1 if index < remainder else 0)


def _devices(city: str, devices_per_kind: int | None) -> Iterator[Device]:
    for index, district in enumerate(DISTRICTS):
        for kind in ("air_quality", "streetlight", "water_level"):
            for k in range(_counts(devices_per_kind, kind, index)):
                yield _device(city, district, kind, k)


def purbalingga_fleet(city: str = "purbalingga", devices_per_kind: int | None = None) -> Registry:
    """The example registry's devices, or N devices per kind spread over the districts."""
    if devices_per_kind is not None and devices_per_kind < 1:
        raise ValueError(f"devices_per_kind must be >= 1, got {devices_per_kind}")
    return Registry(_devices(city, devices_per_kind))


def with_interval(registry: Registry, interval_s: float) -> Registry:
    """The same devices, all reporting every `interval_s` seconds."""
    return Registry(dataclasses.replace(d, interval_s=interval_s) for d in registry)
