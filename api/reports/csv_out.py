"""Reports as CSV: one row per area (monthly) or per area and date (daily), header first."""

from __future__ import annotations

import csv
import io
from typing import Any, Final

__all__ = ["DAILY_HEADER", "MONTHLY_HEADER", "report_csv"]

MONTHLY_HEADER: Final = (
    "area",
    "month",
    "ispu_days_baik",
    "ispu_days_sedang",
    "ispu_days_tidak_sehat",
    "ispu_days_sangat_tidak_sehat",
    "ispu_days_berbahaya",
    "ispu_days_no_data",
    "flood_hours_normal",
    "flood_hours_waspada",
    "flood_hours_siaga",
    "flood_hours_awas",
    "flood_hours_no_data",
    "night_availability",
    "energy_kwh",
    "expected_readings",
    "received_readings",
    "completeness",
)
DAILY_HEADER: Final = (
    "area",
    "date",
    "ispu_max",
    "ispu_category",
    "flood_worst",
    "flood_hours_siaga_or_above",
    "night_availability",
    "energy_kwh",
    "expected_readings",
    "received_readings",
    "completeness",
)
_ISPU: Final = (
    "Baik",
    "Sedang",
    "Tidak Sehat",
    "Sangat Tidak Sehat",
    "Berbahaya",
    "Tidak ada data",
)
_FLOOD: Final = ("Normal", "Waspada", "Siaga", "Awas", "Tidak ada data")


def _cell(value: Any) -> str | int:
    """Empty for null; floats rounded to 6 places (spreadsheets read them as numbers)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return value if isinstance(value, int) else str(value)


def _monthly_row(report: dict[str, Any], area: dict[str, Any]) -> list[str | int]:
    done = area["completeness"]
    return [
        _cell(v)
        for v in (
            area["area"],
            report["month"],
            *(area["ispu_days"][c] for c in _ISPU),
            *(area["flood_hours"][c] for c in _FLOOD),
            area["streetlight"]["night_availability"],
            area["streetlight"]["energy_kwh"],
            done["expected"],
            done["received"],
            done["share"],
        )
    ]


def _daily_rows(area: dict[str, Any]) -> list[list[str | int]]:
    done = area["completeness"]
    # The daily report's period is its one day: the area's completeness counts are the day's.
    return [
        [
            _cell(v)
            for v in (
                area["area"],
                day["date"],
                day["ispu_max"],
                day["ispu_category"],
                day["flood_worst"],
                day["flood_hours_siaga_or_above"],
                day["night_availability"],
                day["energy_kwh"],
                done["expected"],
                done["received"],
                day["completeness"],
            )
        ]
        for day in area["days"]
    ]


def report_csv(report: dict[str, Any]) -> str:
    """The report as CSV text with the documented header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if report["period"] == "monthly":
        writer.writerow(MONTHLY_HEADER)
        for area in report["areas"]:
            writer.writerow(_monthly_row(report, area))
    else:
        writer.writerow(DAILY_HEADER)
        for area in report["areas"]:
            writer.writerows(_daily_rows(area))
    return buffer.getvalue()
