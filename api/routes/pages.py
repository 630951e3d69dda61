"""Pages of the dashboard beyond its start page: the printable monthly report (no token needed).

The page itself is static; its data comes from /api/v1/reports/..., which needs a token, read
by the page exactly as the dashboard reads it (address bar `#token=...`, then localStorage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["router"]

STATIC: Final = Path(__file__).parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/reports/monthly")
async def monthly_report_page() -> FileResponse:
    """The printable monthly report page (`?district=NAME&month=YYYY-MM` is read by the page)."""
    return FileResponse(STATIC / "report.html")
