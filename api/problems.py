"""Errors as RFC 9457 problem-details bodies (`application/problem+json`).

A detail says what to change, and never carries internals: no upstream error text, no
exception reprs, no paths of this host. The full story goes to the API's log.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pantau.influx import InfluxError, InfluxUnavailableError

__all__ = [
    "OrjsonResponse",
    "Problem",
    "influx_problem",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "application/problem+json"
_TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
}
# A client may retry a 503 (InfluxDB down or slow) after this many seconds.
_RETRY_AFTER_S: Final = 5


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson: several times faster than the standard library on big answers."""

    def render(self, content: Any) -> bytes:
        """Encode the content."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class Problem(Exception):  # noqa: N818 (RFC 9457 calls it a problem)
    """An error answered to the client with a status and a reason it can act on."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def influx_problem(exc: InfluxError, what: str) -> Problem:
    """The answer when InfluxDB fails `what`: 503 if down or slow, else 502; details to the log."""
    if isinstance(exc, InfluxUnavailableError):
        log.warning("InfluxDB is unavailable", extra={"request": what, "error": str(exc)})
        return Problem(
            503,
            f"{what} needs InfluxDB, which is down or too slow: try again shortly",
            headers={"Retry-After": str(_RETRY_AFTER_S)},
        )
    log.error("InfluxDB refused a query", extra={"request": what, "error": str(exc)})
    return Problem(502, f"{what}: InfluxDB refused the query; the API's log has its answer")


def problem_response(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem-details response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of the app as problem details."""

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the place and the rule, never echo the input: it may be huge or hostile.
        errors = [
            {"loc": _where(tuple(e.get("loc", ()))), "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:20]
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors) or "invalid request"
        return problem_response(422, detail, extra={"errors": errors})
