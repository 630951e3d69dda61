"""Alert episodes: the list, one episode, acknowledgement, the dead-letter list, the replicas."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.alerts.episode import EPISODE_ID, Episode
from api.alerts.service import AlertService
from api.alerts.store import EpisodeFilter
from api.auth import require
from api.context import context
from api.models import AlertEpisode, AlertList, AlertStatus, DeadLetterList
from api.problems import OrjsonResponse, Problem, influx_problem
from api.queries import parse_time
from api.routes.params import Segment
from api.tokens import Scope, TokenRecord
from pantau.derived import Ack
from pantau.influx import InfluxError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

_DEFAULT_DAYS = 7.0
_MAX_DAYS = 400.0


class AlertAckBody(BaseModel):
    """What the operator says when acknowledging an episode."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)


def _service(request: Request) -> AlertService:
    service = context(request).alerts
    if service is None:
        raise Problem(503, "alert rules are off on this API (PANTAU_ALERTS_ENABLED=false)")
    return service


def _newest_first(episodes: list[Episode]) -> list[Episode]:
    return sorted(episodes, key=lambda e: (e.opened_at, e.id), reverse=True)


@router.get("", response_model=AlertList, dependencies=[Depends(require(Scope.READ))])
async def list_alerts(
    request: Request,
    state: Literal["open", "closed", "all"] = "all",
    district: Segment | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,64}$")] = None,
    since: Annotated[str | None, Query(max_length=40, description="epoch s or RFC 3339")] = None,
    until: Annotated[str | None, Query(max_length=40, description="epoch s or RFC 3339")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Alert episodes opened in the range (default: the last 7 days), newest first.

    Episodes this replica holds are the live truth; older ones come from InfluxDB.
    """
    service = _service(request)
    until_s = parse_time(until, "until") if until is not None else time.time() + 3600
    since_s = parse_time(since, "since") if since is not None else until_s - _DEFAULT_DAYS * 86400
    if since_s >= until_s:
        raise Problem(422, "since must be before until")
    if until_s - since_s > _MAX_DAYS * 86400:
        raise Problem(422, f"the range may span at most {_MAX_DAYS:g} days")
    flt = EpisodeFilter(since_s, until_s, state, district, severity, rule)
    try:
        stored = await service.store.find(flt, limit)
    except InfluxError as exc:
        raise influx_problem(exc, "alert history") from None
    found = {e.id: e for e in stored}
    for e in service.engine.episodes():
        if (
            since_s <= e.opened_at <= until_s
            and (state == "all" or e.is_open == (state == "open"))
            and district in (None, e.subject.district)
            and severity in (None, e.severity)
            and rule in (None, e.rule)
        ):
            found[e.id] = e
    if state != "all":
        found = {k: e for k, e in found.items() if e.is_open == (state == "open")}
    episodes = _newest_first(list(found.values()))[:limit]
    return OrjsonResponse({"count": len(episodes), "alerts": [e.as_json() for e in episodes]})


@router.get(
    "/dead-letters", response_model=DeadLetterList, dependencies=[Depends(require(Scope.READ))]
)
async def dead_letters(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    """Notifications given up after their tries (the last 30 days), newest first."""
    service = _service(request)
    try:
        found = await service.store.dead_letters(time.time() - 30 * 86400, limit)
    except InfluxError as exc:
        raise influx_problem(exc, "dead letters") from None
    return OrjsonResponse({"count": len(found), "dead_letters": found})


@router.get("/status", response_model=AlertStatus, dependencies=[Depends(require(Scope.READ))])
async def status(request: Request) -> Response:
    """The replica answering, the live replicas it hears, and its notification queue."""
    service = _service(request)
    now = time.time()
    return OrjsonResponse(
        {
            "replica": service.replicas.me,
            "replicas": service.replicas.live(now),
            "rules": len(service.rules.rules),
            "open": sum(1 for e in service.engine.episodes() if e.is_open),
            "pending_notifications": service.outbox.pending(),
            "dead_letters": len(service.outbox.dead_letters()),
        }
    )


@router.get(
    "/{episode_id}", response_model=AlertEpisode, dependencies=[Depends(require(Scope.READ))]
)
async def get_alert(
    request: Request,
    episode_id: Annotated[str, Path(max_length=90, description="rule.16hex")],
) -> Response:
    """One episode as this replica holds it."""
    service = _service(request)
    episode = service.engine.get(episode_id) if EPISODE_ID.fullmatch(episode_id) else None
    if episode is None:
        raise Problem(404, "no such open or recent episode (ids look like rule.16hex)")
    return OrjsonResponse(episode.as_json())


@router.post("/{episode_id}/ack", response_model=AlertEpisode)
async def acknowledge(
    request: Request,
    episode_id: Annotated[str, Path(max_length=90, description="rule.16hex")],
    body: AlertAckBody,
    token: Annotated[TokenRecord, Depends(require(Scope.OPERATE))],
) -> Response:
    """Acknowledge an episode (who, when, note): it stops escalating; again replaces the note."""
    service = _service(request)
    if not EPISODE_ID.fullmatch(episode_id):
        raise Problem(404, "no such episode (ids look like rule.16hex)")
    by = (token.name or f"token:{token.token_id}")[:200]
    try:
        episode = await service.acknowledge(episode_id, Ack(by=by, at=time.time(), note=body.note))
    except InfluxError as exc:
        raise influx_problem(exc, "acknowledging") from None
    if episode is None:
        raise Problem(404, "no such open or recent episode")
    return OrjsonResponse(episode.as_json())
