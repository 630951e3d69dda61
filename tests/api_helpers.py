"""Shared pieces of the API tests: run `pantau api` as a real process, make tokens."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.tokens import Scope, TokenStore
from pantau.dev import free_port
from tests.ingest_helpers import PANTAU, terminate, wait_for


@dataclass(frozen=True)
class ApiProcess:
    """A running API: its base URL, its tokens by scope, its log."""

    url: str
    token: str  # admin
    tokens: dict[str, str]  # scope -> token
    log_path: Path
    process: subprocess.Popen[bytes]

    def client(self, scope: str = "admin") -> httpx.Client:
        """An HTTP client with a token of that scope."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.tokens[scope]}"},
            timeout=60,  # generous: requests only wait this long on a loaded machine
            trust_env=False,
        )

    def log(self) -> str:
        """The tail of the API's log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-3000:]


def make_tokens(tokens_file: Path) -> dict[str, str]:
    """One token per scope in a token file."""
    store = TokenStore(tokens_file)
    return {s.label: store.create(s, f"test-{s.label}")[0] for s in Scope}


@contextmanager
def running_api(
    mqtt_url: str,
    influx_url: str,
    db: str,
    *,
    city: str = "+",
    registry: Path | None = None,
    tokens_file: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[ApiProcess]:
    """`pantau api` as a real process on a free port; ready (broker and InfluxDB) on entry."""
    folder = Path(tempfile.mkdtemp(prefix="pantau-api-"))
    tokens_file = tokens_file or folder / "tokens.json"
    tokens = make_tokens(tokens_file) if not tokens_file.exists() else {}
    port = free_port()
    args = [PANTAU, "api", "--mqtt", mqtt_url, "--influx", influx_url, "--db", db]
    args += ["--port", str(port), "--city", city, "--tokens-file", str(tokens_file)]
    if registry is not None:
        args += ["--registry", str(registry)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    full_env.update(env or {})
    log_path = folder / "api.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, env=full_env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            return True
        try:
            # A slow answer on a loaded machine is not "not ready": give each probe 5 s.
            return httpx.get(f"{url}/health/ready", timeout=5, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        # /health/ready is the fact: its broker check turns true only after the broker has
        # acknowledged the API's subscriptions (aiomqtt awaits each SUBACK), and InfluxDB
        # answers. Generous limit: a loaded 2-core machine takes seconds to start the API.
        assert wait_for(ready, timeout=60, interval=0.1), log_path.read_text()[-2000:]
        assert process.poll() is None, log_path.read_text()[-2000:]
        yield ApiProcess(url, tokens.get("admin", ""), tokens, log_path, process)
    finally:
        terminate(process)
