"""What clients need to present data: the sensor catalog and the site's public settings."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Final

from fastapi import APIRouter, Depends, Request

from api.auth import require
from api.context import context
from api.models import CatalogAnswer, FieldAnswer, KindAnswer, SiteAnswer
from api.routes.devices import DEFAULT_FIELD
from api.tokens import Scope
from pantau.settings import ApiSettings
from processors.catalog import CATALOG, KindSpec

__all__ = ["router", "site"]

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require(Scope.READ))])


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
