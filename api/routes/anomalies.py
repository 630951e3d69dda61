"""Anomalies: recent ones with filters, and acknowledgement by the operations centre."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.anomaly_ids import parse_anomaly_id
from api.auth import require
from api.context import context
from api.models import Anomaly, AnomalyList
from api.problems import OrjsonResponse, Problem, influx_problem
from api.queries import AnomalyFilter, parse_time
from api.routes.params import Kind, Segment
from api.tokens import Scope, TokenRecord
from pantau.derived import Ack, ack_topic
from pantau.influx import InfluxError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/anomalies", tags=["anomalies"])

_WEEK = 7 * 86400.0


class AckBody(BaseModel):
    """What the operator says when acknowledging."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)


@router.get("", response_model=AnomalyList, dependencies=[Depends(require(Scope.READ))])
async def list_anomalies(
    request: Request,
    kind: Kind | None = None,
    district: Segment | None = None,
    severity: Literal["critical", "warning", "info"] | None = None,
    device_id: Segment | None = None,
    detector: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    since: Annotated[str | None, Query(max_length=40, description="epoch s or RFC 3339")] = None,
    until: Annotated[str | None, Query(max_length=40, description="epoch s or RFC 3339")] = None,
    acknowledged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Recent anomalies (default: the last 7 days), newest first, with their acks."""
    until_s = parse_time(until, "until") if until is not None else time.time() + 3600
    since_s = parse_time(since, "since") if since is not None else until_s - _WEEK - 3600
    if since_s >= until_s:
        raise Problem(422, "since must be before until")
    flt = AnomalyFilter(
        since_ns=int(since_s * 1e9),
        until_ns=int(until_s * 1e9),
        kind=kind,
        district=district,
        severity=severity,
        device_id=device_id,
        detector=detector,
    )
    try:
        found = await context(request).anomalies.find(flt, limit)
    except InfluxError as exc:
        raise influx_problem(exc, "anomaly history") from None
    if acknowledged is not None:
        found = [a for a in found if (a.acknowledged is not None) == acknowledged]
    return OrjsonResponse({"count": len(found), "anomalies": [a.as_json() for a in found]})


@router.post("/{anomaly_id}/ack", response_model=Anomaly)
async def acknowledge(
    request: Request,
    anomaly_id: Annotated[str, Path(max_length=160, description="device.detector.field.ns")],
    body: AckBody,
    token: Annotated[TokenRecord, Depends(require(Scope.OPERATE))],
) -> Response:
    """Acknowledge one anomaly (who, when, note); acknowledging again replaces the note."""
    key = parse_anomaly_id(anomaly_id)
    if key is None:
        raise Problem(404, "no such anomaly (ids look like device.detector.field.ns)")
    ctx = context(request)
    try:
        anomaly = await ctx.anomalies.get(key)
        if anomaly is None:
            raise Problem(404, "no such anomaly")
        # Replicas refuse an ack whose `by` is longer than 200 characters (pantau.derived.Ack).
        by = (token.name or f"token:{token.token_id}")[:200]
        ack = Ack(by=by, at=time.time(), note=body.note)
        await ctx.anomalies.acknowledge(anomaly, ack)
    except InfluxError as exc:
        raise influx_problem(exc, "acknowledging") from None
    anomaly.acknowledged = ack
    payload = ack.as_json()
    ctx.state.add_anomalies([anomaly])
    events = ctx.state.apply(ack_topic(anomaly.id), payload)
    try:
        # Other replicas learn at once; they would also find it in InfluxDB on their next query.
        await ctx.link.publish(ack_topic(anomaly.id), payload)
    except ConnectionError:
        for event in events:
            ctx.hub.publish(event)
    return OrjsonResponse(anomaly.as_json())
