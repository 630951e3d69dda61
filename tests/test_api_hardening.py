"""API hardening against a real `pantau api`: rate limits, and schemathesis finding no 5xx."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import ApiProcess, running_api
from tests.conftest import EXAMPLE_REGISTRY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzzed_api(broker: Any, influx: Any) -> Iterator[ApiProcess]:
    """An API over the example registry with the rate limit off (fuzzing sends many requests)."""
    db = "fuzzed"
    httpx.post(f"{influx.url}/query", data={"q": f'CREATE DATABASE "{db}"'}).raise_for_status()
    with running_api(
        broker.url, influx.url, db, registry=EXAMPLE_REGISTRY, env={"PANTAU_API_RATE_PER_S": "0"}
    ) as api:
        yield api


def test_schemathesis_finds_no_server_error(fuzzed_api: ApiProcess, tmp_path: Path) -> None:
    """Whatever schemathesis derives from the OpenAPI spec, with a valid token: never a 5xx."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{fuzzed_api.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {fuzzed_api.token}",
            "--checks",
            "not_a_server_error",
            "--exclude-path-regex",
            "^/api/v1/feed/",  # endless live streams
            "--max-examples",
            "30",
            "--seed",
            "2026",
            "--request-timeout",
            "10",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_a_token_over_its_rate_gets_429_with_retry_after(broker: Any, influx: Any) -> None:
    env = {"PANTAU_API_RATE_PER_S": "2", "PANTAU_API_RATE_BURST": "5"}
    with running_api(broker.url, influx.url, "pantau", env=env) as api, api.client("read") as http:
        codes = [http.get("/api/v1/indicators/regency").status_code for _ in range(8)]
        assert codes[:5] == [200] * 5
        limited = http.get("/api/v1/indicators/regency")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["content-type"] == "application/problem+json"
        # Another token has its own bucket.
        other = httpx.get(
            f"{api.url}/api/v1/indicators/regency",
            headers={"Authorization": f"Bearer {api.tokens['operate']}"},
        )
        assert other.status_code == 200
