"""Security parts of the API on their own: log redaction, revocation watches, rate-limit
memory, a stuck reader dropped by the server, 500s that say nothing, /docs off by default.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from api.app import create_app
from api.limits import timed_http_protocol
from api.ratelimit import RateLimiter
from api.tokens import Scope as TokenScope
from api.tokens import TokenStore
from pantau.dev import free_port
from pantau.logs import LogfmtFormatter, redact
from pantau.settings import ApiSettings, Settings

TOKEN = "pantau_0c5e9a28_cHuEH2lliJYJ0tjuiq-VfmJLgk-7f7mBWF7RIkjm_IU"


def test_redaction_removes_tokens_credentials_and_url_passwords() -> None:
    line = redact(
        f'127.0.0.1:1 - "WebSocket /api/v1/feed/ws?types=reading&access_token={TOKEN}" 403 '
        f"Authorization: Bearer {TOKEN} url=mqtt://api:s3cret@127.0.0.1:1883 bare {TOKEN}"
    )
    assert "cHuEH2lliJYJ" not in line and "s3cret" not in line
    assert "types=reading&access_token=[redacted]" in line
    assert "pantau_0c5e9a28_[redacted]" in line  # the public id stays, for the record
    assert "mqtt://api:[redacted]@127.0.0.1:1883" in line
    # Ordinary words and fields are left alone.
    plain = "no API tokens yet tokens_file=/x token_id=0c5e9a28 url=http://127.0.0.1:8080/"
    assert redact(plain) == plain


def test_log_lines_are_redacted_whoever_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]', None, None
    )
    record.args = ("127.0.0.1:5", f"/api/v1/feed/ws?access_token={TOKEN}")
    record.detail = f"?access_token={TOKEN}"
    line = LogfmtFormatter().format(record)
    assert "cHuEH2" not in line and "access_token=[redacted]" in line


def test_control_characters_cannot_forge_a_log_line() -> None:
    record = logging.LogRecord("ingest", logging.WARNING, "", 0, "rejected", None, None)
    record.topic = "city/a\rts=forged level=info\nmsg=x\x1b[2J"
    record.plain = "a\nb"
    line = LogfmtFormatter().format(record)
    assert "\r" not in line and "\n" not in line and "\x1b" not in line
    assert 'topic="city/a\\x0dts=forged level=info\\nmsg=x\\x1b[2J"' in line
    assert 'plain="a\\nb"' in line


def test_revocation_watch_calls_back_once_and_only_for_the_revoked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    _, doomed = store.create(TokenScope.READ, "doomed")
    _, kept = store.create(TokenScope.READ, "kept")
    store.check_revocations()
    calls: list[str] = []
    store.watch(doomed.token_id, lambda: calls.append("doomed"))
    stop = store.watch(kept.token_id, lambda: calls.append("kept"))
    store.watch(kept.token_id, lambda: calls.append("kept-2"))
    stop()
    store.check_revocations()
    assert calls == []
    assert TokenStore(tmp_path / "tokens.json").revoke(doomed.token_id)  # another process
    store.check_revocations()
    store.check_revocations()
    assert calls == ["doomed"]
    (tmp_path / "tokens.json").write_text("{broken")  # a bad edit keeps what we knew
    store.check_revocations()
    assert calls == ["doomed"]


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=2.0, max_keys=100)
    for i in range(10_000):
        limiter.wait_s(f"address:{i}", now=float(i) / 100)
    assert len(limiter._buckets) <= 100
    assert limiter.wait_s("x", now=1e6) == 0.0


# -- a client that stops reading ----------------------------------------------------------------


async def _endless(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app answering with an endless body; records when its sending ended."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"x" * 65536

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.ensure_future(disconnected())
    while not gone.done():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await asyncio.sleep(0)
    ENDED.set()


ENDED = threading.Event()


@pytest.fixture
def endless_server() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _endless,
        host="127.0.0.1",
        port=port,
        http=timed_http_protocol(request_timeout_s=5, send_timeout_s=1),
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_client_that_stops_reading_is_dropped(endless_server: int) -> None:
    ENDED.clear()
    with socket.socket() as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", endless_server))
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        # Never read: the server's buffers fill, its writing pauses, and 1 s later it gives up.
        assert ENDED.wait(10), "the server still holds a client that reads nothing"


# -- the app ------------------------------------------------------------------------------------


def _app(tmp_path: Path, **api: object) -> tuple[FastAPI, str]:
    store = TokenStore(tmp_path / "tokens.json")
    token, _ = store.create(TokenScope.ADMIN, "t")
    settings = Settings(api=ApiSettings(tokens_file=tmp_path / "tokens.json", **api))  # type: ignore[arg-type]
    return create_app(settings), token


def _get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


def test_docs_are_off_by_default_and_on_when_enabled(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    assert _get(app, "/docs").status_code == 404
    assert _get(app, "/redoc").status_code == 404
    assert _get(app, "/openapi.json").status_code == 200
    enabled, _ = _app(tmp_path, docs_enabled=True)
    docs = _get(enabled, "/docs")
    assert docs.status_code == 200
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_an_unexpected_failure_answers_500_without_internals(tmp_path: Path) -> None:
    app, token = _app(tmp_path)

    async def boom() -> None:
        raise ValueError("secret internal state at /srv/pantau/api/x.py")

    app.add_api_route("/boom", boom)
    response = _get(app, "/boom", {"Authorization": f"Bearer {token}"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret" not in response.text and "/srv" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_token_created_by_another_process_works_at_once(tmp_path: Path) -> None:
    serving = TokenStore(tmp_path / "tokens.json")
    first, _ = TokenStore(serving.path).create(TokenScope.READ, "first")
    assert serving.verify(first) is not None  # the file is now read and recently checked
    second, _ = TokenStore(serving.path).create(TokenScope.READ, "second")
    assert serving.verify(second) is not None
    assert serving.verify("pantau_00000000_unknown") is None
