"""Request limits: sizes (413) and time limits for slow and stuck clients.

A body over the limit is refused with 413 before it is read whole; a request that does not
arrive in time, or a client that stops reading, loses its connection.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from api.problems import problem_response

__all__ = ["BodyLimitMiddleware", "timed_http_protocol", "timed_ws_protocol"]

log = logging.getLogger(__name__)


class _TooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies larger than `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, receive, send)
                return
        seen = 0
        started = False

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLargeError
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except _TooLargeError:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, f"request bodies are limited to {self.max_bytes} bytes")
        await response(scope, receive, send)


class _Stall:
    """Aborts a connection whose client takes no data for `timeout_s` while some is waiting.

    asyncio pauses a protocol's writing when the transport's buffer passes its high-water
    mark and resumes it when the client has read enough; a client that stops reading keeps it
    paused for ever, and holds its sender (a live feed, a big answer) with it. `close()` would
    wait for the buffer to drain, which never happens: the connection is aborted instead.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None

    def paused(self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport) -> None:
        self.cancel()
        self._timer = loop.call_later(self.timeout_s, self._abort, transport)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _abort(self, transport: asyncio.BaseTransport) -> None:
        self._timer = None
        if isinstance(transport, asyncio.WriteTransport):
            log.info("dropping a client that takes no data", extra={"timeout_s": self.timeout_s})
            transport.abort()


def _close(transport: asyncio.WriteTransport) -> None:
    """Close, or abort if data is still waiting for a client that is not reading."""
    if transport.get_write_buffer_size():
        transport.abort()
    elif not transport.is_closing():
        transport.close()


class _DropsStalledClients(asyncio.Protocol):
    """Writing paused by a client that stops reading: it has `send_timeout_s` to read on."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _stall: _Stall

    def pause_writing(self) -> None:
        """The client is not keeping up: start its clock."""
        super().pause_writing()
        self._stall.paused(self.loop, self.transport)

    def resume_writing(self) -> None:
        """The client reads again."""
        self._stall.cancel()
        super().resume_writing()


class _TimedHttpToolsProtocol(_DropsStalledClients, HttpToolsProtocol):
    """uvicorn's HTTP protocol, with a whole-request time limit and a stalled-client limit.

    uvicorn times out idle keep-alive connections only between requests: a client that
    connects and sends nothing, or half a request line, or a body a byte at a time, holds its
    connection for ever. Here a timer starts when the connection opens and when each request
    begins, and stops when the request (line, headers and body) is complete or the connection
    becomes a WebSocket (which has its own ping timeout). A client that stops reading an
    answer (an SSE feed) is dropped after `send_timeout_s`.
    """

    request_timeout_s: float = 10.0
    send_timeout_s: float = 20.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request."""
        self._request_timer: asyncio.TimerHandle | None = None
        self._stall = _Stall(self.send_timeout_s)
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """A request begins: it has `request_timeout_s` to arrive."""
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        """The request is in; the application takes over."""
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        """A WebSocket now owns the connection."""
        self._disarm()
        self._stall.cancel()
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the timers."""
        self._disarm()
        self._stall.cancel()
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        """An idle keep-alive connection ends (aborted if a stuck client left data unread)."""
        _close(self.transport)

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.request_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        timer = getattr(self, "_request_timer", None)
        if timer is not None:
            timer.cancel()
            self._request_timer = None

    def _timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            log.info(
                "closing a connection whose request did not arrive in time",
                extra={"timeout_s": self.request_timeout_s},
            )
            _close(self.transport)


class _TimedWebSocketProtocol(_DropsStalledClients, WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, dropping a client that stops reading."""

    send_timeout_s: float = 20.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start without a stall."""
        self._stall = _Stall(self.send_timeout_s)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the timer."""
        self._stall.cancel()
        super().connection_lost(exc)

    def keepalive_timeout(self) -> None:
        """No pong in time: close, or abort if the client is not reading either."""
        super().keepalive_timeout()
        _close(self.transport)


def timed_http_protocol(request_timeout_s: float, send_timeout_s: float) -> type[asyncio.Protocol]:
    """The `http=` protocol class for uvicorn, with a whole-request time limit (slow clients)."""
    attrs = {"request_timeout_s": request_timeout_s, "send_timeout_s": send_timeout_s}
    return type("TimedHttpProtocol", (_TimedHttpToolsProtocol,), attrs)


def timed_ws_protocol(send_timeout_s: float) -> type[asyncio.Protocol]:
    """The `ws=` protocol class for uvicorn, dropping clients that stop reading."""
    return type(
        "TimedWebSocketProtocol", (_TimedWebSocketProtocol,), {"send_timeout_s": send_timeout_s}
    )
