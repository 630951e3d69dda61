"""Bearer-token checks: 401 without a valid token, 403 without the scope an endpoint needs."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from api.context import context
from api.problems import Problem
from api.ratelimit import RateLimiter
from api.tokens import Scope, TokenRecord

__all__ = ["authorize", "require"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="pantau"'}


def _retry_after(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}


def _unauthenticated(connection: HTTPConnection, detail: str) -> Problem:
    """A 401, or a 429 once this client address sent too many requests without a valid token."""
    limiter: RateLimiter | None = getattr(connection.app.state, "unauth_limiter", None)
    if limiter is not None:
        address = connection.client.host if connection.client else "unknown"
        wait = limiter.wait_s(f"address:{address}")
        if wait > 0:
            return Problem(
                429,
                "too many requests without a valid token from this address; "
                "send a valid bearer token, or wait",
                headers=_retry_after(wait),
            )
    return Problem(401, detail, headers=_CHALLENGE)


def _presented(connection: HTTPConnection, allow_query: bool) -> str | None:
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if allow_query:
        # Browsers' EventSource and WebSocket cannot send headers; live feeds take a parameter.
        return connection.query_params.get("access_token")
    return None


def authorize(
    connection: HTTPConnection, scope: Scope, *, allow_query: bool = False
) -> TokenRecord:
    """The token's record, or a 401/403 Problem."""
    token = _presented(connection, allow_query)
    if token is None:
        raise _unauthenticated(
            connection, "a bearer token is required: Authorization: Bearer <token>"
        )
    record = context(connection).tokens.verify(token)
    if record is None:
        raise _unauthenticated(connection, "unknown or revoked token")
    wait = context(connection).limiter.wait_s(record.token_id)
    if wait > 0:
        raise Problem(
            429, "this token is over its request rate; slow down", headers=_retry_after(wait)
        )
    if Scope.parse(record.scope) < scope:
        raise Problem(403, f"this needs the {scope.label} scope; the token has {record.scope}")
    return record


def require(
    scope: Scope, *, allow_query: bool = False
) -> Callable[[HTTPConnection], Awaitable[TokenRecord]]:
    """A FastAPI dependency that needs a token with at least `scope`."""

    async def check(connection: HTTPConnection) -> TokenRecord:
        return authorize(connection, scope, allow_query=allow_query)

    return check
