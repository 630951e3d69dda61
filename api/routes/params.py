"""Query and path parameter types the routes share: checked before any handler runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from processors.catalog import KINDS

__all__ = ["DeviceId", "Kind", "Segment"]

# One of the catalog's kinds; OpenAPI lists them as an enum.
Kind = Annotated[
    str, Query(pattern=f"^({'|'.join(KINDS)})$", json_schema_extra={"enum": list(KINDS)})
]
# A topic segment: city, district or device id.
Segment = Annotated[str, Query(pattern=r"^[a-z0-9_-]{1,64}$")]
DeviceId = Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,64}$")]
