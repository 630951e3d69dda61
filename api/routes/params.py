"""Query and path parameter types the routes share: checked before any handler runs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

__all__ = ["DeviceId", "Kind", "Segment"]

# The catalog's kinds (processors.catalog.KINDS), spelled out so OpenAPI lists them.
Kind = Literal["air_quality", "water_level", "streetlight"]
# A topic segment: city, district or device id.
Segment = Annotated[str, Query(pattern=r"^[a-z0-9_-]{1,64}$")]
DeviceId = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}$")]
