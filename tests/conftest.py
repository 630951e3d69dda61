"""Shared fixtures: a private Mosquitto and InfluxDB per test session, started on first use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pantau.dev import InfluxDBService, MosquittoService, free_port
from tests.api_helpers import ApiProcess, running_api

EXAMPLE_REGISTRY = Path(__file__).parents[1] / "deploy" / "registry.example.csv"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoService]:
    """A running private Mosquitto on a free port; tests that kill it must start it again."""
    service = MosquittoService(tmp_path_factory.mktemp("services"), free_port())
    try:
        service.start()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDBService]:
    """A running private InfluxDB on a free port; tests that kill it must start it again."""
    service = InfluxDBService(tmp_path_factory.mktemp("services"), free_port())
    try:
        service.start()
        yield service
    finally:
        service.stop()


def influx_admin(service: InfluxDBService, statement: str) -> None:
    """Run one InfluxQL statement through POST /query and fail on any error."""
    with httpx.Client(base_url=service.url, trust_env=False, timeout=30.0) as client:
        response = client.post("/query", data={"q": statement})
    response.raise_for_status()
    errors = [r["error"] for r in response.json().get("results", []) if "error" in r]
    assert not errors, f"{statement}: {errors}"


@pytest.fixture
def influx_db(influx: InfluxDBService) -> Iterator[str]:
    """The name of a fresh database in the session InfluxDB, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    influx_admin(influx, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        if influx.is_running():
            influx_admin(influx, f'DROP DATABASE "{name}"')


@pytest.fixture
def unique_city() -> str:
    """A lowercase topic segment no other test uses, so MQTT traffic stays separate."""
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api_server(
    broker: MosquittoService, influx: InfluxDBService, influx_db: str
) -> Iterator[ApiProcess]:
    """`pantau api` over the example registry, following every city; `.url`, `.token` (admin)."""
    with running_api(broker.url, influx.url, influx_db, registry=EXAMPLE_REGISTRY) as api:
        yield api
