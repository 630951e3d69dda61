"""The InfluxQL of the reports: aggregated per device and hour or day, from checked names only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from api.queries import check_segment
from pantau.influx import quote_identifier, quote_literal

__all__ = [
    "ENERGY_LOOKBACK_S",
    "Scope",
    "counts_query",
    "energy_before_query",
    "ispu_query",
    "lamp_query",
    "level_query",
]

# The energy step into a period starts from each lamp's last counter value at most this long
# before it (a lamp silent longer starts the period from its first reading in it).
ENERGY_LOOKBACK_S = 7 * 86400

_LAMP_FIELDS = ("lamp_on", "dim_pct", "power_w", "energy_wh")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which points a report reads: a time range, the cities and optionally one district."""

    start: int  # epoch s, inclusive
    end: int  # epoch s, exclusive
    cities: tuple[str, ...]
    district: str | None
    time_zone: str

    def where(self, start: int | None = None, end: int | None = None) -> str:
        """The WHERE clause (without the word); `start`/`end` override the period's."""
        since = self.start if start is None else start
        until = self.end if end is None else end
        parts = [f"time >= {int(since) * 10**9}", f"time < {int(until) * 10**9}"]
        if self.cities:
            cities = " OR ".join(
                f'"city" = {quote_literal(check_segment(c, "city"))}' for c in self.cities
            )
            parts.append(f"({cities})")
        if self.district is not None:
            parts.append(f'"district" = {quote_literal(check_segment(self.district, "district"))}')
        return " AND ".join(parts)

    def tz(self) -> str:
        """The time zone clause: buckets start at local midnights and hours."""
        return f"tz({quote_literal(self.time_zone)})"


def ispu_query(scope: Scope) -> str:
    """Highest stored ISPU indicator per air station and local day."""
    return (
        f'SELECT max("ispu") AS "ispu" FROM "indicator" '
        f"WHERE \"kind\" = 'air_quality' AND {scope.where()} "
        f'GROUP BY time(1d), "device_id" fill(none) {scope.tz()}'
    )


def level_query(scope: Scope) -> str:
    """Highest raw water level per gauge and hour."""
    return (
        f'SELECT max("level_cm") AS "level_cm" FROM "water_level" WHERE {scope.where()} '
        f'GROUP BY time(1h), "device_id" fill(none) {scope.tz()}'
    )


def lamp_query(scope: Scope) -> str:
    """Every lamp reading's state, power and energy counter (night and energy need each one)."""
    fields = ", ".join(quote_identifier(f) for f in _LAMP_FIELDS)
    return f'SELECT {fields} FROM "streetlight" WHERE {scope.where()} GROUP BY "device_id"'


def energy_before_query(scope: Scope) -> str:
    """Each lamp's last energy counter value before the period (its first step's start)."""
    where = scope.where(scope.start - ENERGY_LOOKBACK_S, scope.start)
    return (
        f'SELECT last("energy_wh") AS "energy_wh" FROM "streetlight" WHERE {where} '
        'GROUP BY "device_id"'
    )


def counts_query(kind: str, fields: Iterable[str], scope: Scope) -> str:
    """Readings received per device and local day: per field, their counts (max = readings)."""
    counted = ", ".join(f"count({quote_identifier(f)}) AS {quote_identifier(f)}" for f in fields)
    return (
        f"SELECT {counted} FROM {quote_identifier(kind)} WHERE {scope.where()} "
        f'GROUP BY time(1d), "device_id" fill(none) {scope.tz()}'
    )
