"""Anomalies and their acknowledgements in InfluxDB, shared by every API replica.

An acknowledgement is a point of measurement `anomaly_ack` with the anomaly's own tags and
time, so a filtered query for anomalies finds their acks with the same WHERE clause, and acking
twice just replaces the note.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from api.anomaly_ids import AnomalyKey, anomaly_id
from api.livestate import Anomaly
from api.queries import AnomalyFilter, acks_query, anomalies_query, anomaly_lookup_query
from pantau.derived import Ack, finite_number
from pantau.influx_async import AsyncInflux, rows
from pantau.lineprotocol import point

__all__ = ["AnomalyStore"]

_TAGS = ("city", "district", "device_id", "kind", "detector", "field", "severity")


def _anomaly(row: dict[str, Any]) -> Anomaly:
    ts_ns = int(row["time"])
    return Anomaly(
        id=anomaly_id(row["device_id"], row["detector"], row["field"], ts_ns),
        ts=ts_ns / 1e9,
        kind=row.get("kind") or "unknown",
        city=row.get("city") or "unknown",
        district=row.get("district") or "unknown",
        device_id=row["device_id"],
        detector=row["detector"],
        field=row["field"],
        severity=row.get("severity") or "warning",
        score=finite_number(row.get("score")),
        value=finite_number(row.get("value")),
        kept_out=str(row.get("kept_out") or ""),
    )


def _ack(row: dict[str, Any]) -> Ack:
    return Ack(str(row.get("by") or ""), float(row.get("at") or 0.0), str(row.get("note") or ""))


class AnomalyStore:
    """Reads anomalies with their acks; writes acks."""

    def __init__(self, influx: AsyncInflux) -> None:
        self.influx = influx

    async def find(self, flt: AnomalyFilter, limit: int) -> list[Anomaly]:
        """The newest anomalies matching the filter, acks applied."""
        found = [_anomaly(r) for r in rows(await self.influx.query(anomalies_query(flt, limit)))]
        if found:
            oldest = min(a.ts_ns for a in found)
            narrowed = dataclasses.replace(flt, since_ns=oldest)
            acks = {
                anomaly_id(r["device_id"], r["detector"], r["field"], int(r["time"])): _ack(r)
                for r in rows(await self.influx.query(acks_query(narrowed)))
            }
            for anomaly in found:
                anomaly.acknowledged = acks.get(anomaly.id)
        return found

    async def get(self, key: AnomalyKey) -> Anomaly | None:
        """One anomaly by key, with its ack; None if there is no such anomaly."""
        found = rows(await self.influx.query(anomaly_lookup_query(key)))
        if not found:
            return None
        anomaly = _anomaly(found[0])
        acks = rows(await self.influx.query(anomaly_lookup_query(key, "anomaly_ack")))
        if acks:
            anomaly.acknowledged = _ack(acks[0])
        return anomaly

    async def acknowledge(self, anomaly: Anomaly, ack: Ack) -> None:
        """Store an acknowledgement."""
        tags = {t: str(getattr(anomaly, t)) for t in _TAGS}
        fields: dict[str, float | str] = {"by": ack.by, "at": ack.at, "note": ack.note}
        await self.influx.write(point("anomaly_ack", tags, fields, anomaly.ts_ns))
