"""Security of a real `pantau api` (issue 17): revoked tokens' feeds close, no token in any log
line, slow and stuck clients are evicted, unauthenticated floods get 429, error bodies leak
nothing, browser hardening headers, no CDN-backed /docs, client disconnects are no errors.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from api.tokens import Scope, TokenStore
from pantau.dev import free_port
from tests.api_helpers import ApiProcess, running_api
from tests.conftest import EXAMPLE_REGISTRY
from tests.ingest_helpers import PANTAU

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[1]
# Small time limits, so eviction shows within a test's patience.
FAST_LIMITS = {
    "PANTAU_API_RATE_PER_S": "0",  # 200 WebSocket connects with one token
    "PANTAU_API_REQUEST_TIMEOUT_S": "1",
    "PANTAU_API_KEEP_ALIVE_S": "1",
    "PANTAU_API_WS_PING_INTERVAL_S": "1",
    "PANTAU_API_WS_PING_TIMEOUT_S": "2",
}
# What no error body may hold: paths, tracebacks, exception reprs, upstream text.
LEAK = re.compile(r"/work|/tmp/|/var/|/home/|Traceback|Error\(|Timeout\(|UPSTREAM-SECRET|\.py\b")
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass
class Api:
    """A running API and the file its tokens are in."""

    process: ApiProcess
    tokens_file: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/api/v1/feed/ws"

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def api(broker: Any, influx: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An API over the example registry with small time limits and no per-token rate limit."""
    db = "security"
    httpx.post(f"{influx.url}/query", data={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
    tokens_file = tmp_path_factory.mktemp("security") / "tokens.json"
    with running_api(
        broker.url,
        influx.url,
        db,
        registry=EXAMPLE_REGISTRY,
        tokens_file=tokens_file,
        env=FAST_LIMITS,
    ) as process:
        yield Api(process, tokens_file)


def _token_id(token: str) -> str:
    return token.split("_")[1]


# -- revocation ---------------------------------------------------------------------------------


def test_revoking_a_token_closes_its_open_websocket_and_sse_feeds(api: Api) -> None:
    doomed, _ = TokenStore(api.tokens_file).create(Scope.READ, "doomed")
    kept = api.process.tokens["read"]
    # A filter that matches nothing: only the close can end these feeds.
    query = "device_id=no-such-device"
    sse_ended = threading.Event()
    sse_open = threading.Event()

    def read_sse() -> None:
        with httpx.stream(
            "GET",
            f"{api.url}/api/v1/feed/sse?{query}&access_token={doomed}",
            timeout=httpx.Timeout(5, read=60),
            trust_env=False,
        ) as response:
            assert response.status_code == 200
            for _ in response.iter_lines():
                sse_open.set()
        sse_ended.set()

    reader = threading.Thread(target=read_sse, daemon=True)
    reader.start()
    with (
        ws_connect(f"{api.ws_url}?{query}&access_token={doomed}") as revoked_ws,
        ws_connect(f"{api.ws_url}?{query}&access_token={kept}") as kept_ws,
    ):
        assert sse_open.wait(10)
        with pytest.raises(TimeoutError):
            revoked_ws.recv(timeout=0.5)  # open, and quiet
        subprocess.run(
            [PANTAU, "tokens", "revoke", _token_id(doomed), "--tokens-file", str(api.tokens_file)],
            check=True,
            capture_output=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")},
        )
        revoked_at = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            revoked_ws.recv(timeout=10)
        assert time.monotonic() - revoked_at < 2.5, "the revoked WebSocket stayed open"
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token revoked")
        assert sse_ended.wait(max(0.1, revoked_at + 2.5 - time.monotonic())), (
            "the revoked SSE feed stayed open"
        )
        # Another token's feed goes on.
        with pytest.raises(TimeoutError):
            kept_ws.recv(timeout=1)
    # And the revoked token cannot open a new one.
    again = httpx.get(f"{api.url}/api/v1/feed/sse?access_token={doomed}", trust_env=False)
    assert again.status_code == 401


# -- logs ---------------------------------------------------------------------------------------


def test_no_token_appears_in_any_log_line(api: Api) -> None:
    token = api.process.tokens["read"]
    secret = token.split("_", 2)[2]
    for _ in range(3):
        with ws_connect(f"{api.ws_url}?access_token={token}") as ws, pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        with httpx.stream(
            "GET", f"{api.url}/api/v1/feed/sse?access_token={token}", trust_env=False
        ) as response:
            assert response.status_code == 200
            next(response.iter_lines())
        httpx.get(
            f"{api.url}/api/v1/devices",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        ).raise_for_status()
    # A wrong token is a secret too (a mistyped one is nearly the right one).
    wrong = f"{token[:-4]}XXXX"
    with pytest.raises(Exception, match="403"), ws_connect(f"{api.ws_url}?access_token={wrong}"):
        pass
    time.sleep(0.5)
    text = api.log()
    assert "WebSocket /api/v1/feed/ws" in text  # uvicorn did log the connects...
    for value in (*api.process.tokens.values(), wrong, secret, wrong.split("_", 2)[2]):
        assert value not in text, "a token is in the API's log"  # ...without the tokens


# -- slow and stuck clients ---------------------------------------------------------------------


def _seconds_until_closed(port: int, send: bytes, limit: float = 10.0) -> float:
    """How long the server keeps a raw connection that sent `send` and then stalls."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as raw:
        if send:
            raw.sendall(send)
        started = time.monotonic()
        try:
            while raw.recv(65536):
                pass
        except TimeoutError:
            return float("inf")
        except ConnectionResetError:
            pass
        return time.monotonic() - started


def test_slow_and_idle_clients_are_evicted(api: Api) -> None:
    port = int(api.url.rsplit(":", 1)[1])
    token = api.process.tokens["read"]
    key = base64.b64encode(os.urandom(16)).decode()
    cases = {
        "connects and sends nothing": b"",
        "half a request line": b"GET /api/v1/devi",
        "headers never finished": b"GET /health HTTP/1.1\r\nHost: x\r\n",
        "a body that never comes": (
            b"POST /api/v1/anomalies/a.b.c.1/ack HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        ),
        "idle after an answer (keep-alive)": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        # A WebSocket that never reads and never answers a ping.
        "a WebSocket that never answers pings": (
            f"GET /api/v1/feed/ws?access_token={token} HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    }
    held = {name: _seconds_until_closed(port, send) for name, send in cases.items()}
    # 1 s request and keep-alive limits; 1 s ping interval plus 2 s ping timeout.
    limits = {name: 6.0 if "WebSocket" in name else 3.0 for name in cases}
    assert all(held[name] < limits[name] for name in cases), held
    assert httpx.get(f"{api.url}/health", trust_env=False).status_code == 200


# -- unauthenticated requests -------------------------------------------------------------------


def test_an_unauthenticated_flood_gets_429_per_address(api: Api) -> None:
    with httpx.Client(base_url=api.url, trust_env=False) as http:
        codes = [
            http.get("/api/v1/devices", headers={"Authorization": "Bearer pantau_00_guess"})
            for _ in range(60)
        ]
        limited = [r for r in codes if r.status_code == 429]
        assert {r.status_code for r in codes} == {401, 429}
        assert len(limited) >= 30
        assert int(limited[0].headers["retry-after"]) >= 1
        assert limited[0].headers["content-type"] == "application/problem+json"
        assert "token" in limited[0].json()["detail"]
        # A valid token from the same address still gets in.
        good = http.get(
            "/api/v1/devices",
            headers={"Authorization": f"Bearer {api.process.tokens['read']}"},
        )
        assert good.status_code == 200
    time.sleep(1.5)  # let the bucket refill a little for the tests after this one


# -- disconnects --------------------------------------------------------------------------------


def test_websocket_clients_leaving_log_no_errors(api: Api) -> None:
    before = len(api.log())
    token = api.process.tokens["read"]

    def one() -> None:
        with ws_connect(f"{api.ws_url}?access_token={token}"):
            pass

    threads = [threading.Thread(target=one) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    time.sleep(1.0)
    new = api.log()[before:]
    assert new.count("[accepted]") == 200
    assert "level=error" not in new and "Traceback" not in new, new[-3000:]


# -- browser hardening --------------------------------------------------------------------------


def test_security_headers_on_every_response_and_no_docs(api: Api) -> None:
    read = {"Authorization": f"Bearer {api.process.tokens['read']}"}
    with httpx.Client(base_url=api.url, trust_env=False) as http:
        responses = {
            "/": http.get("/"),
            "/static/js/main.js": http.get("/static/js/main.js"),
            "/api/v1/devices": http.get("/api/v1/devices", headers=read),
            "/api/v1/devices (401)": http.get("/api/v1/devices"),
            "/api/v1/devices/nope (404)": http.get("/api/v1/devices/nope", headers=read),
            "/health/ready": http.get("/health/ready"),
            "/docs": http.get("/docs"),
            "/redoc": http.get("/redoc"),
        }
        assert http.get("/openapi.json").status_code == 200  # the spec stays open
    assert responses["/"].status_code == 200
    assert responses["/static/js/main.js"].status_code == 200
    assert responses["/api/v1/devices"].status_code == 200
    assert responses["/docs"].status_code == 404
    assert responses["/redoc"].status_code == 404
    for name, response in responses.items():
        for header, value in SECURITY_HEADERS.items():
            assert response.headers.get(header) == value, (name, header)
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, name
        scripts = csp.split("script-src ", 1)[1].split(";", 1)[0].split()
        assert set(scripts) <= {"'self'", "'unsafe-eval'"}, name  # no inline or remote scripts


# -- error bodies -------------------------------------------------------------------------------


@dataclass
class FakeInflux:
    """An InfluxDB stand-in: pings fine; queries answer per `mode` (ok, refuse, slow)."""

    url: str
    mode: dict[str, str] = field(default_factory=lambda: {"query": "ok"})


@pytest.fixture(scope="module")
def fake_influx() -> Iterator[FakeInflux]:
    mode = {"query": "ok"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/ping"):
                self.send_response(204)
                self.end_headers()
                return
            if mode["query"] == "slow":
                time.sleep(3)
            if mode["query"] == "refuse":
                body = json.dumps(
                    {"error": "error parsing query: UPSTREAM-SECRET at /var/lib/influxdb/meta"}
                ).encode()
                status = 400
            else:
                body = json.dumps({"results": [{"statement_id": 0}]}).encode()
                status = 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeInflux(f"http://127.0.0.1:{server.server_address[1]}", mode)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def leaky_api(broker: Any, fake_influx: FakeInflux) -> Iterator[ApiProcess]:
    """An API over the fake InfluxDB, its scoring model given by an absolute path."""
    env = {
        "PANTAU_INFLUX_TIMEOUT_S": "1",
        "PANTAU_API_SCORING_MODEL": str((ROOT / "deploy" / "scoring-model.toml").resolve()),
        "PANTAU_API_RATE_PER_S": "1",
        "PANTAU_API_RATE_BURST": "40",
    }
    with running_api(broker.url, fake_influx.url, "x", registry=EXAMPLE_REGISTRY, env=env) as api:
        yield api


def _check_body(name: str, response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (name, response.text)
    assert response.headers["content-type"] == "application/problem+json", name
    body = response.json()
    assert body["status"] == status and body["detail"], name
    assert not LEAK.search(response.text), (name, response.text)
    for header, value in SECURITY_HEADERS.items():
        assert response.headers.get(header) == value, (name, header)


def test_error_bodies_say_what_to_change_and_leak_nothing(
    leaky_api: ApiProcess, fake_influx: FakeInflux
) -> None:
    api = leaky_api
    devices = httpx.get(
        f"{api.url}/api/v1/devices",
        headers={"Authorization": f"Bearer {api.token}"},
        params={"kind": "air_quality"},
        trust_env=False,
    ).json()["devices"]
    device = devices[0]["device_id"]
    with api.client("admin") as admin, api.client("read") as read, api.client("operate") as op:
        checks: list[tuple[str, httpx.Response, int]] = [
            ("422", admin.get("/api/v1/anomalies", params={"limit": "lots"}), 422),
            ("422 (history)", admin.get(f"/api/v1/devices/{device}/history?field=nope"), 422),
            ("401", httpx.get(f"{api.url}/api/v1/anomalies", trust_env=False), 401),
            ("403", read.post("/api/v1/anomalies/a.b.c.1/ack", json={}), 403),
            ("404", admin.get("/api/v1/devices/no-such-device"), 404),
            ("404 (route)", admin.get("/api/v1/nothing-here"), 404),
            (
                "413",
                op.post(
                    "/api/v1/anomalies/a.b.c.1/ack",
                    content=b'{"note":"' + b"x" * 100_000 + b'"}',
                    headers={"Content-Type": "application/json"},
                ),
                413,
            ),
        ]
        fake_influx.mode["query"] = "refuse"
        checks += [
            ("502 (anomalies)", admin.get("/api/v1/anomalies"), 502),
            ("502 (history)", admin.get(f"/api/v1/devices/{device}/history"), 502),
        ]
        fake_influx.mode["query"] = "slow"
        checks += [
            ("503 (anomalies)", admin.get("/api/v1/anomalies"), 503),
            ("503 (history)", admin.get(f"/api/v1/devices/{device}/history"), 503),
        ]
        fake_influx.mode["query"] = "ok"
        with httpx.Client(base_url=api.url, trust_env=False) as anonymous:
            flood = [anonymous.get("/api/v1/anomalies") for _ in range(40)]
        checks.append(("429 (unauthenticated)", flood[-1], 429))
        burst = [op.get("/api/v1/dimensions") for _ in range(45)]
        checks.append(("429 (token)", burst[-1], 429))
        dimensions = burst[0]
    for name, response, status in checks:
        _check_body(name, response, status)
    by_name = {name: response for name, response, _ in checks}
    assert by_name["503 (anomalies)"].headers["retry-after"]
    assert "InfluxDB" in by_name["502 (anomalies)"].json()["detail"]
    # The full story is in the log, not the answer.
    assert "UPSTREAM-SECRET" in api.log_path.read_text()
    # The scoring model is named, not located.
    assert dimensions.status_code == 200
    assert dimensions.json()["model"] == "scoring-model.toml"
    assert not LEAK.search(dimensions.text)
