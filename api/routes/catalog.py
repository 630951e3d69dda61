"""What clients need to present data: the sensor catalog and the site's public settings."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Final

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require
from api.context import context
from api.routes.devices import DEFAULT_FIELD
from api.tokens import Scope
from pantau.settings import ApiSettings
from processors.catalog import CATALOG, KindSpec

__all__ = ["CatalogAnswer", "FieldAnswer", "KindAnswer", "SiteAnswer", "router"]

# Until `ApiSettings` has these fields (PANTAU_API_REGION_NAME, PANTAU_API_TIME_ZONE).

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require(Scope.READ))])

_FROZEN = ConfigDict(frozen=True)


class FieldAnswer(BaseModel):
    """One measured field of a kind."""

    model_config = _FROZEN

    name: str = Field(examples=["pm25"])
    unit: str = Field(description="as stored, e.g. ug/m3, C, cm; 0/1 for binary fields")
    low: float = Field(description="lowest value a working sensor can physically report")
    high: float = Field(description="highest value a working sensor can physically report")
    binary: bool = Field(description="only 0 or 1 is valid")
    description: str


class KindAnswer(BaseModel):
    """A device kind and its fields, in column order."""

    model_config = _FROZEN

    kind: str = Field(examples=["air_quality"])
    fields: list[FieldAnswer]
    default_field: str = Field(
        description="the field a device's history shows when none is asked for", examples=["pm25"]
    )


class CatalogAnswer(BaseModel):
    """Every device kind the platform knows."""

    model_config = _FROZEN

    kinds: list[KindAnswer]


class SiteAnswer(BaseModel):
    """The deployment's public settings: what a page needs to name the area and show times."""

    model_config = _FROZEN

    region_name: str = Field(examples=["Kabupaten Purbalingga"])
    time_zone: str = Field(description="IANA time zone name", examples=["Asia/Jakarta"])
    time_zone_abbr: str = Field(
        description="its abbreviation now (WIB, WITA, WIT), or the UTC offset", examples=["WIB"]
    )


def _kind(spec: KindSpec) -> KindAnswer:
    return KindAnswer(
        kind=spec.kind,
        fields=[
            FieldAnswer(
                name=f.name,
                unit=f.unit,
                low=f.low,
                high=f.high,
                binary=f.binary,
                description=f.description,
            )
            for f in spec.fields
        ],
        default_field=DEFAULT_FIELD.get(spec.kind, spec.fields[0].name),
    )


_CATALOG: Final = CatalogAnswer(kinds=[_kind(spec) for spec in CATALOG.values()])


@router.get("/catalog", tags=["catalog"])
async def catalog() -> CatalogAnswer:
    """The sensor catalog: each kind's fields, units and physically valid ranges."""
    return _CATALOG


def site(settings: ApiSettings) -> SiteAnswer:
    """The public part of the API's settings."""
    # The settings refuse an unknown zone at start-up, so this cannot fail.
    zone = settings.time_zone
    abbr = dt.datetime.now(zoneinfo.ZoneInfo(zone)).tzname() or zone
    return SiteAnswer(region_name=settings.region_name, time_zone=zone, time_zone_abbr=abbr)


@router.get("/settings/public", tags=["settings"])
async def public_settings(request: Request) -> SiteAnswer:
    """The regency's name and its time zone, for the dashboard."""
    return site(context(request).settings.api)
