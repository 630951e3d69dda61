"""Live feeds over Server-Sent Events and WebSocket, with filters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.websockets import WebSocketState

from api.auth import authorize, require
from api.context import ApiContext, context
from api.feed import EVENT_TYPES, FeedFilter, Subscription
from api.models import FeedFrame
from api.problems import Problem
from api.routes.params import Kind, Segment
from api.tokens import Scope, TokenRecord

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/feed", tags=["feed"])

_HEARTBEAT_S: Final = 15.0


class EventStreamResponse(StreamingResponse):
    """A Server-Sent Events stream (so OpenAPI names its media type)."""

    media_type = "text/event-stream"


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its `$defs` references replaced by the definitions themselves."""
    if isinstance(schema, list):
        return [_inline(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _inline(defs[ref.removeprefix("#/$defs/")], defs)
    # The discriminator's mapping names $defs; the `type` constants say the same inline.
    return {k: _inline(v, defs) for k, v in schema.items() if k not in ("$defs", "discriminator")}


def _frame_schema() -> dict[str, Any]:
    schema = FeedFrame.model_json_schema()
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


# OpenAPI 3.2 style (as FastAPI documents its own SSE routes): each item is one SSE event.
_SSE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "An endless stream of `frame` events; comments are heartbeats.",
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "const": "frame"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": _frame_schema(),
                        },
                    },
                    "required": ["event", "data"],
                }
            }
        },
    }
}


def _filter(
    types: str | None, kind: str | None, district: str | None, device_id: str | None
) -> FeedFilter:
    wanted = frozenset(t for t in (types or "").split(",") if t) or EVENT_TYPES
    unknown = wanted - EVENT_TYPES
    if unknown:
        raise Problem(
            422,
            f"types: unknown {', '.join(sorted(unknown))}; use {', '.join(sorted(EVENT_TYPES))}",
        )
    return FeedFilter(wanted, kind, district, device_id)


Types = Annotated[
    str | None, Query(max_length=100, description="comma-separated: anomaly,indicator,reading,ack")
]


class _Revocation:
    """Ends a live feed when its token is revoked (`TokenStore.watch`)."""

    def __init__(self, ctx: ApiContext, token: TokenRecord, subscription: Subscription) -> None:
        self.revoked = False
        self._hub = ctx.hub
        self._subscription = subscription
        self.stop = ctx.tokens.watch(token.token_id, self._on_revoked)

    def _on_revoked(self) -> None:
        self.revoked = True
        # The feed's loop sees its subscription closed and ends.
        self._hub.unsubscribe(self._subscription)


@router.get(
    "/sse",
    response_class=EventStreamResponse,
    responses=_SSE_RESPONSES,
)
async def sse(
    request: Request,
    token: Annotated[TokenRecord, Depends(require(Scope.READ, allow_query=True))],
    types: Types = None,
    kind: Kind | None = None,
    district: Segment | None = None,
    device_id: Segment | None = None,
    access_token: Annotated[str | None, Query(max_length=200)] = None,
) -> StreamingResponse:
    """Server-Sent Events: one `frame` event per flush, its data a `FeedFrame`.

    The stream ends when the token is revoked (the client's reconnect then gets a 401).
    """
    ctx = context(request)
    subscription = ctx.hub.subscribe(_filter(types, kind, district, device_id))
    revocation = _Revocation(ctx, token, subscription)
    gauge = ctx.metrics.feed_clients.labels("sse")

    async def stream() -> AsyncIterator[bytes]:
        gauge.inc()
        try:
            yield b": pantau live feed\nretry: 2000\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(subscription.next_frame(), _HEARTBEAT_S)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                if frame is None:
                    if revocation.revoked:
                        log.info("live feed closed: token revoked", extra=_who(token, "sse"))
                        yield b": token revoked\n\n"
                    return
                yield b"event: frame\ndata: " + frame + b"\n\n"
        finally:
            revocation.stop()
            ctx.hub.unsubscribe(subscription)
            gauge.dec()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.websocket("/ws")
async def websocket(
    socket: WebSocket,
    types: Types = None,
    kind: Kind | None = None,
    district: Segment | None = None,
    device_id: Segment | None = None,
) -> None:
    """WebSocket: one text message per frame, a `FeedFrame` ({seq, dropped, events}).

    Closed with 1008 "token revoked" when the token is revoked.
    """
    try:
        token = authorize(socket, Scope.READ, allow_query=True)
        feed_filter = _filter(types, kind, district, device_id)
    except Problem as exc:
        # 1008 policy violation; the reason says which problem (no HTTP status on a socket).
        await socket.close(code=1008, reason=f"{exc.status}: {exc.detail}"[:120])
        return
    await socket.accept()
    ctx = context(socket)
    subscription = ctx.hub.subscribe(feed_filter)
    revocation = _Revocation(ctx, token, subscription)
    gauge = ctx.metrics.feed_clients.labels("websocket")
    gauge.inc()

    async def watch_close() -> None:
        # Clients only listen; reading tells us when they leave, which ends the sending loop.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await socket.receive_text()
        ctx.hub.unsubscribe(subscription)

    watcher = asyncio.create_task(watch_close(), name="feed-ws-watch")
    try:
        while (frame := await subscription.next_frame()) is not None:
            await socket.send_text(frame.decode())
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left: normal, nothing to report
    finally:
        revocation.stop()
        watcher.cancel()
        ctx.hub.unsubscribe(subscription)
        gauge.dec()
        await _close(socket, revocation.revoked, token)


async def _close(socket: WebSocket, revoked: bool, token: TokenRecord) -> None:
    """Close a feed's WebSocket unless the client already left (a normal end, not an error)."""
    if (
        socket.application_state != WebSocketState.CONNECTED
        or socket.client_state != WebSocketState.CONNECTED
    ):
        log.debug("live-feed client left", extra=_who(token, "websocket"))
        return
    if revoked:
        log.info("live feed closed: token revoked", extra=_who(token, "websocket"))
    code, reason = (1008, "token revoked") if revoked else (1001, "")
    try:
        await socket.close(code=code, reason=reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        log.debug("live-feed client left", extra=_who(token, "websocket"))


def _who(token: TokenRecord, transport: str) -> dict[str, str]:
    return {"token_id": token.token_id, "feed": transport}
