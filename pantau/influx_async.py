"""An asyncio InfluxDB client for the API: InfluxQL queries and small writes (v1 endpoints)."""

from __future__ import annotations

from typing import Any

import httpx

from pantau.influx import InfluxUnavailableError, check_write, query_series, quote_identifier
from pantau.settings import Settings

__all__ = ["AsyncInflux", "rows"]


class AsyncInflux:
    """One connection pool per API process, closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        quote_identifier(settings.influx.db)
        self.database = settings.influx.db
        token = settings.influx.token.get_secret_value() if settings.influx.token else None
        password = settings.influx.password.get_secret_value() if settings.influx.password else ""
        self._http = httpx.AsyncClient(
            base_url=settings.influx.url,
            timeout=settings.influx.timeout_s,
            headers={"Authorization": f"Token {token}"} if token else {},
            auth=(settings.influx.username, password) if settings.influx.username else None,
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the pool."""
        await self._http.aclose()

    async def ping(self) -> bool:
        """True if InfluxDB answers /ping."""
        try:
            return (await self._http.get("/ping")).status_code == 204
        except httpx.HTTPError:
            return False

    async def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL (built from quoted identifiers and literals); epoch-ns times."""
        params = {"db": self.database, "q": influxql, "epoch": "ns"}
        try:
            response = await self._http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        return query_series(response)

    async def execute(self, influxql: str) -> list[dict[str, Any]]:
        """Run a statement that changes something (CREATE, ALTER, DROP, SELECT INTO) via POST."""
        params = {"db": self.database, "q": influxql, "epoch": "ns"}
        try:
            response = await self._http.post("/query", params=params)
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        return query_series(response)

    async def write(self, lines: str) -> None:
        """Write line protocol (ns precision)."""
        try:
            response = await self._http.post(
                "/write", params={"db": self.database, "precision": "n"}, content=lines.encode()
            )
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        check_write(response)


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """InfluxQL series as one dict per row, tags merged in."""
    out: list[dict[str, Any]] = []
    for s in series:
        tags = s.get("tags") or {}
        columns = s["columns"]
        for values in s.get("values", []):
            out.append({**tags, **dict(zip(columns, values, strict=True))})
    return out
