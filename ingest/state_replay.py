"""Bring the processors' state up to what InfluxDB holds, before the first live batch.

The processors' snapshot is saved only while their state equals the durable stream, and at
most every minute; a crash loses the batches after it, and a device that moves to this
collector (a new partition layout) arrives with no state at all. Replaying the stored readings
newer than the state, oldest first, makes the state what an uninterrupted collector would
have. What the processors derive on the way is dropped: it was stored with the readings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from ingest.batch import Batch, KindColumns
from ingest.derivation import Derivation
from pantau.influx import InfluxClient, quote_identifier
from pantau.lineprotocol import series_key
from processors.catalog import CATALOG, KindSpec

__all__ = ["StateCatchUp", "replay_start", "replay_stored"]

log = logging.getLogger(__name__)

_WINDOW_S: Final = 3600.0  # one query per kind and hour of readings


@dataclass(frozen=True)
class StateCatchUp:
    """What a collector replays at start: from where, from which InfluxDB, which districts."""

    influx: InfluxClient
    since: float  # reading time, epoch seconds (see replay_start)
    owns: Callable[[str], bool]  # district -> whether this collector processes it
    spool_budget_s: float = 60.0  # how long the spool may drain into InfluxDB first


def replay_start(derivation: Derivation, now: float, *, hours: float, complete: bool) -> float:
    """The reading time to replay from: the oldest state of a recently active device.

    `complete` False (no snapshot, or one from another partition layout): every device may
    lack state, so the whole window of `hours` is replayed.
    """
    floor = now - hours * 3600.0
    if not complete:
        return floor
    newest = [
        bank.last_ts[: len(bank.table)] for bank in derivation.banks.values() if len(bank.table)
    ]
    if not newest:
        return floor
    last = np.concatenate(newest)
    active = last[np.isfinite(last) & (last >= floor)]
    return float(active.min()) if len(active) else floor


def replay_stored(
    derivation: Derivation,
    influx: InfluxClient,
    *,
    since: float,
    until: float,
    owns: Callable[[str], bool],
) -> int:
    """Feed the stored readings in (since, until] of the districts `owns` accepts; count them.

    Raises pantau.influx.InfluxClientError when InfluxDB cannot answer.
    """
    fed = 0
    began = time.monotonic()
    start = since
    while start < until:
        stop = min(start + _WINDOW_S, until)
        for kind, spec in CATALOG.items():
            for columns in _stored_columns(influx, spec, start, stop, owns):
                derivation.process(Batch({kind: columns}, [], 0))
                fed += len(columns)
        start = stop
    log.info(
        "processor state replayed from InfluxDB",
        extra={"readings": fed, "since": round(since, 3), "s": round(time.monotonic() - began, 2)},
    )
    return fed


def _stored_columns(
    influx: InfluxClient, spec: KindSpec, start: float, stop: float, owns: Callable[[str], bool]
) -> Iterator[KindColumns]:
    """The readings of one kind stored with times in (start, stop], oldest first."""
    query = (
        f"SELECT * FROM {quote_identifier(spec.kind)} "
        f"WHERE time > {round(start * 1e9)} AND time <= {round(stop * 1e9)}"
    )
    for part in influx.query(query):
        rows = _owned_rows(part, owns)
        if rows:
            yield _columns(spec, part["columns"], rows)


def _owned_rows(part: dict[str, Any], owns: Callable[[str], bool]) -> list[list[Any]]:
    columns: list[str] = part["columns"]
    if "district" not in columns or "device_id" not in columns:
        return []
    at = columns.index("district")
    return [row for row in part.get("values", []) if isinstance(row[at], str) and owns(row[at])]


def _columns(spec: KindSpec, names: list[str], rows: list[list[Any]]) -> KindColumns:
    """KindColumns of query rows (time, tags and fields by column name)."""
    at = {name: i for i, name in enumerate(names)}
    rows.sort(key=lambda row: row[at["time"]])
    n, m = len(rows), len(spec.fields)
    values = np.full((n, m), np.nan)
    for j, name in enumerate(spec.field_names):
        if name in at:
            column = at[name]
            values[:, j] = [
                float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
                for v in (row[column] for row in rows)
            ]
    present = ~np.isnan(values)
    cities = [str(row[at["city"]]) if "city" in at else "" for row in rows]
    districts = [str(row[at["district"]]) for row in rows]
    devices = [str(row[at["device_id"]]) for row in rows]
    series = [
        series_key(spec.kind, {"city": c, "district": d, "device_id": i}, plain=True)
        for c, d, i in zip(cities, districts, devices, strict=True)
    ]
    text = np.dtypes.StringDType()
    return KindColumns(
        spec,
        np.array(series, dtype=text),
        np.array(devices, dtype=text),
        np.array(cities, dtype=text),
        np.array(districts, dtype=text),
        np.array([int(row[at["time"]]) for row in rows], dtype=np.int64),
        values,
        present,
    )
