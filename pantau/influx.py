"""InfluxDB through its v1-compatible HTTP API (`/write`, `/query`): 1.x, 2.x and 3.x alike."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Final, Self

import httpx

__all__ = [
    "InfluxClient",
    "InfluxClientError",
    "InfluxError",
    "InfluxUnavailableError",
    "check_write",
    "query_series",
    "quote_identifier",
    "quote_literal",
]

log = logging.getLogger(__name__)

_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InfluxError(Exception):
    """InfluxDB could not take a request."""


class InfluxUnavailableError(InfluxError):
    """InfluxDB is down, slow or answered 5xx: retry later (or spool)."""

    def __init__(self, message: str, *, database_missing: bool = False) -> None:
        super().__init__(message)
        self.database_missing = database_missing


class InfluxClientError(InfluxError):
    """InfluxDB refused the request itself (4xx): retrying the same body cannot help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"InfluxDB answered {status}: {message}")
        self.status = status
        self.message = message


def quote_identifier(name: str) -> str:
    """A double-quoted InfluxQL identifier; only [A-Za-z0-9_-] names are allowed at all."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"invalid InfluxQL identifier {name!r}")
    return f'"{name}"'


def quote_literal(value: str) -> str:
    """A single-quoted InfluxQL string literal with backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class _Auth:
    username: str | None = None
    password: str | None = None
    token: str | None = None


class InfluxClient:
    """A small synchronous InfluxDB client; one per process component, closed on shutdown."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        quote_identifier(database)
        self.database = database
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (username, password or "") if username else None
        self._http = httpx.Client(
            base_url=url, timeout=timeout_s, headers=headers, auth=auth, trust_env=False
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def ping(self) -> bool:
        """True if InfluxDB answers /ping."""
        try:
            return self._http.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False

    def create_database(self) -> None:
        """Create the database if it is missing (InfluxDB 1.x; 2.x maps buckets instead)."""
        try:
            self._post_query(f"CREATE DATABASE {quote_identifier(self.database)}")
        except InfluxUnavailableError as exc:
            log.warning("could not create database %s: %s", self.database, exc)
        except InfluxClientError as exc:
            # 2.x/3.x refuse CREATE DATABASE; the bucket and its DBRP mapping must exist there.
            log.warning("could not create database %s: %s", self.database, exc.message)

    def write(self, body: bytes, *, precision: str = "n") -> None:
        """Write line protocol; raise InfluxUnavailableError or InfluxClientError on failure."""
        try:
            response = self._http.post(
                "/write",
                params={"db": self.database, "precision": precision},
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        check_write(response)

    def query(self, influxql: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL built from quoted identifiers and literals; return its series."""
        params = {"db": self.database, "q": influxql, "epoch": epoch}
        try:
            response = self._http.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        return query_series(response)

    def execute(self, influxql: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Run a statement that changes something (CREATE, ALTER, DROP, SELECT INTO) via POST."""
        params = {"db": self.database, "q": influxql, "epoch": epoch}
        try:
            response = self._http.post("/query", params=params)
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        return query_series(response)

    def _post_query(self, influxql: str) -> None:
        try:
            response = self._http.post("/query", params={"q": influxql})
        except httpx.HTTPError as exc:
            raise InfluxUnavailableError(f"InfluxDB unreachable: {exc!r}") from None
        if response.status_code >= 500:
            raise InfluxUnavailableError(_error_message(response))
        if response.status_code != 200:
            raise InfluxClientError(response.status_code, _error_message(response))
        for result in response.json().get("results", []):
            if "error" in result:
                raise InfluxClientError(400, str(result["error"]))


def check_write(response: httpx.Response) -> None:
    """Raise for a /write answer that is not 204 (unavailable: retry; client: refused)."""
    if response.status_code == 204:
        return
    message = _error_message(response)
    if response.status_code == 404:  # the database is gone: recreate it, then retry
        raise InfluxUnavailableError(f"InfluxDB: {message}", database_missing=True)
    if response.status_code >= 500 or response.status_code == 429:
        raise InfluxUnavailableError(f"InfluxDB answered {response.status_code}: {message}")
    raise InfluxClientError(response.status_code, message)


def query_series(response: httpx.Response) -> list[dict[str, Any]]:
    """The series of a /query answer; raise for an error status or a statement's error."""
    if response.status_code >= 500:
        raise InfluxUnavailableError(
            f"InfluxDB answered {response.status_code}: {_error_message(response)}"
        )
    if response.status_code != 200:
        raise InfluxClientError(response.status_code, _error_message(response))
    series: list[dict[str, Any]] = []
    for result in response.json().get("results", []):
        if "error" in result:
            raise InfluxClientError(400, str(result["error"]))
        series.extend(result.get("series", []))
    return series


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))[:2000]
    except (json.JSONDecodeError, ValueError, AttributeError):
        return response.text[:2000]
