"""InfluxQL the API runs, built only from checked identifiers and escaped literals."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final

from api.anomaly_ids import AnomalyKey
from api.problems import Problem
from pantau import timestamps
from pantau.influx import quote_identifier, quote_literal
from pantau.rollups import Source
from processors.catalog import CATALOG

__all__ = [
    "AnomalyFilter",
    "acks_query",
    "anomalies_query",
    "anomaly_lookup_query",
    "check_segment",
    "history_query",
    "parse_time",
]

SEGMENT: Final = re.compile(r"[a-z0-9_-]{1,64}")
_SEVERITIES: Final = frozenset({"critical", "warning", "info"})
_AGGREGATES: Final = ("mean", "min", "max", "last")


def parse_time(text: str, name: str) -> float:
    """Epoch seconds from epoch seconds or an RFC 3339 time with a zone; 422 otherwise."""
    try:
        value = timestamps.parse_time(text)
    except timestamps.TimestampError as exc:
        raise Problem(422, f"{name}: {exc}") from None
    if not math.isfinite(value) or not 0 <= value < 2**33:
        raise Problem(422, f"{name}: out of range")
    return value


def check_segment(value: str, name: str) -> str:
    """A topic segment (device id, district, city): [a-z0-9_-]{1,64}, else 422."""
    if not SEGMENT.fullmatch(value):
        raise Problem(422, f"{name}: must match [a-z0-9_-]{{1,64}}")
    return value


def history_query(
    kind: str,
    field: str,
    device_id: str,
    start_ns: int,
    end_ns: int,
    interval_s: int,
    source: Source = Source.RAW,
) -> str:
    """Mean, min, max and last of one field of one device per interval, from raw or a rollup."""
    if field not in CATALOG[kind].field_names:
        raise Problem(422, f"field: {kind} has no field {field!r}")
    if source is Source.RAW:
        columns = {name: quote_identifier(field) for name in _AGGREGATES}
        measurement = quote_identifier(kind)
    else:
        # A rollup point holds mean_f, min_f, max_f and last_f of its hour or day.
        columns = {name: quote_identifier(f"{name}_{field}") for name in _AGGREGATES}
        measurement = f"{quote_identifier(source.value)}.{quote_identifier(kind)}"
    selected = ", ".join(f'{name}({col}) AS "{name}"' for name, col in columns.items())
    return (
        f"SELECT {selected} FROM {measurement} "
        f'WHERE "device_id" = {quote_literal(check_segment(device_id, "device_id"))} '
        f"AND time >= {int(start_ns)} AND time < {int(end_ns)} "
        f"GROUP BY time({int(interval_s)}s) fill(none)"
    )


@dataclass(frozen=True, slots=True)
class AnomalyFilter:
    """Which anomalies a client asks for."""

    since_ns: int
    until_ns: int
    kind: str | None = None
    district: str | None = None
    severity: str | None = None
    device_id: str | None = None
    detector: str | None = None

    def where(self) -> str:
        """The WHERE clause."""
        parts = [f"time >= {int(self.since_ns)}", f"time <= {int(self.until_ns)}"]
        if self.kind is not None:
            if self.kind not in CATALOG:
                raise Problem(422, f"kind: one of {', '.join(sorted(CATALOG))}")
            parts.append(f'"kind" = {quote_literal(self.kind)}')
        if self.severity is not None:
            if self.severity not in _SEVERITIES:
                raise Problem(422, f"severity: one of {', '.join(sorted(_SEVERITIES))}")
            parts.append(f'"severity" = {quote_literal(self.severity)}')
        for name in ("district", "device_id", "detector"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f'"{name}" = {quote_literal(check_segment(value, name))}')
        return " AND ".join(parts)


def anomalies_query(flt: AnomalyFilter, limit: int) -> str:
    """The newest anomalies matching the filter."""
    return f'SELECT * FROM "anomaly" WHERE {flt.where()} ORDER BY time DESC LIMIT {int(limit)}'


def acks_query(flt: AnomalyFilter) -> str:
    """Acknowledgements of anomalies matching the filter (stored at the anomaly's time)."""
    return f'SELECT * FROM "anomaly_ack" WHERE {flt.where()}'


def anomaly_lookup_query(key: AnomalyKey, measurement: str = "anomaly") -> str:
    """The one anomaly (or its ack) with this key."""
    return (
        f"SELECT * FROM {quote_identifier(measurement)} "
        f'WHERE "device_id" = {quote_literal(key.device_id)} '
        f'AND "detector" = {quote_literal(key.detector)} '
        f'AND "field" = {quote_literal(key.field)} AND time = {int(key.ts_ns)}'
    )
