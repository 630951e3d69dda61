"""Alert episodes and dead letters in InfluxDB, shared by every API replica.

An episode is one point of measurement `alert_episode` at its open time, tagged with its rule
and subject: every write of the same episode (by any replica) lands on the same point, so it
is updated in place, never duplicated. Dead letters are points of `alert_dead_letter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from api.alerts.episode import EPISODE_ID, Episode, Subject
from pantau.derived import Ack, finite_number
from pantau.influx import quote_literal
from pantau.influx_async import AsyncInflux, rows
from pantau.lineprotocol import point

__all__ = ["AlertStore", "EpisodeFilter"]

_SEVERITIES: Final = ("info", "warning", "critical")
_TIMES: Final = ("started_at", "opened_at", "updated_at", "closed_at", "escalated_at")


def _ns(ts: float) -> int:
    return round(ts * 1e6) * 1000


@dataclass(frozen=True, slots=True)
class EpisodeFilter:
    """Which stored episodes a client asks for (values already validated)."""

    since_s: float
    until_s: float
    state: Literal["open", "closed", "all"] = "all"
    district: str | None = None
    severity: str | None = None
    rule: str | None = None

    def where(self) -> str:
        """The WHERE clause (tags and time only: fields are filtered after the query)."""
        parts = [f"time >= {_ns(self.since_s)}", f"time <= {_ns(self.until_s)}"]
        for name in ("district", "severity", "rule"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f'"{name}" = {quote_literal(value)}')
        return " AND ".join(parts)


def _fields(episode: Episode) -> dict[str, float | int | str]:
    fields: dict[str, float | int | str] = {
        "id": episode.id,
        "state": "open" if episode.is_open else "closed",
        "detail": episode.detail,
        "level": episode.level,
    }
    for name in _TIMES:
        value = getattr(episode, name)
        if value is not None:
            fields[name] = float(value)
    for name in ("value", "peak"):
        value = getattr(episode, name)
        if finite_number(value) is not None:
            fields[name] = float(value)
    if episode.ack is not None:
        fields.update(ack_by=episode.ack.by, ack_at=episode.ack.at, ack_note=episode.ack.note)
    return fields


def episode_line(episode: Episode) -> str:
    """The episode's point (the same series and time on every write)."""
    s = episode.subject
    tags = {
        "city": s.city,
        "district": s.district or "_regency",
        "kind": s.kind,
        "device_id": s.device_id or "_area",
        "rule": episode.rule,
        "severity": episode.severity,
    }
    return point("alert_episode", tags, _fields(episode), _ns(episode.opened_at))


def _episode(row: dict[str, Any]) -> Episode | None:
    """A stored episode; None for a row that is not one (never trust what is stored)."""
    ident, severity = row.get("id"), row.get("severity")
    if not isinstance(ident, str) or not EPISODE_ID.fullmatch(ident) or severity not in _SEVERITIES:
        return None
    district = str(row.get("district") or "")
    device = str(row.get("device_id") or "")
    times = {name: finite_number(row.get(name)) for name in _TIMES}
    if times["started_at"] is None or times["opened_at"] is None:
        return None
    ack = None
    if isinstance(row.get("ack_by"), str) and row["ack_by"]:
        ack = Ack(row["ack_by"], float(row.get("ack_at") or 0.0), str(row.get("ack_note") or ""))
    level = finite_number(row.get("level"))
    return Episode(
        id=ident,
        rule=str(row.get("rule") or ""),
        severity=severity,
        subject=Subject(
            kind=str(row.get("kind") or ""),
            city=str(row.get("city") or ""),
            district="" if district == "_regency" else district,
            device_id="" if device == "_area" else device,
        ),
        started_at=times["started_at"],
        opened_at=times["opened_at"],
        updated_at=times["updated_at"] or times["opened_at"],
        value=finite_number(row.get("value")),
        peak=finite_number(row.get("peak")),
        detail=str(row.get("detail") or ""),
        closed_at=times["closed_at"],
        level=int(level or 0),
        escalated_at=times["escalated_at"],
        ack=ack,
    )


class AlertStore:
    """Writes and reads episodes and dead letters."""

    def __init__(self, influx: AsyncInflux) -> None:
        self.influx = influx

    async def save(self, episodes: list[Episode]) -> None:
        """Store the episodes' current state (one write)."""
        if episodes:
            await self.influx.write("\n".join(episode_line(e) for e in episodes))

    async def find(self, flt: EpisodeFilter, limit: int) -> list[Episode]:
        """Stored episodes matching the filter, newest first."""
        query = (
            f'SELECT * FROM "alert_episode" WHERE {flt.where()} '
            f"ORDER BY time DESC LIMIT {int(limit) * 4 if flt.state != 'all' else int(limit)}"
        )
        found = [e for e in map(_episode, rows(await self.influx.query(query))) if e is not None]
        if flt.state != "all":
            found = [e for e in found if e.is_open == (flt.state == "open")]
        return found[:limit]

    async def dead_letter(self, fields: dict[str, float | int | str], at: float) -> None:
        """Store one notification that could not be delivered."""
        tags = {"channel": str(fields.get("channel", "")), "event": str(fields.get("event", ""))}
        rest = {k: v for k, v in fields.items() if k not in tags}
        await self.influx.write(point("alert_dead_letter", tags, rest, _ns(at)))

    async def dead_letters(self, since_s: float, limit: int) -> list[dict[str, Any]]:
        """Stored dead letters, newest first."""
        query = (
            f'SELECT * FROM "alert_dead_letter" WHERE time >= {_ns(since_s)} '
            f"ORDER BY time DESC LIMIT {int(limit)}"
        )
        out = []
        for row in rows(await self.influx.query(query)):
            out.append(
                {
                    "key": str(row.get("key") or ""),
                    "episode_id": str(row.get("episode_id") or ""),
                    "event": str(row.get("event") or ""),
                    "channel": str(row.get("channel") or ""),
                    "address": str(row.get("address") or ""),
                    "tries": int(finite_number(row.get("tries")) or 0),
                    "last_error": str(row.get("last_error") or ""),
                    "at": int(row["time"]) / 1e9,
                }
            )
        return out
