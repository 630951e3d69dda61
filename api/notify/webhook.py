"""Webhook delivery: a signed JSON POST per notification."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping

import httpx

from api.notify.outbox import DeliveryError, Notification

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookSender", "sign"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Pantau-Signature"
TIMESTAMP_HEADER = "X-Pantau-Timestamp"


def sign(secret: bytes, body: bytes, timestamp: str) -> str:
    """The signature header value: `sha256=` HMAC-SHA256 hex of `{timestamp}.` + body."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


class WebhookSender:
    """POSTs notifications to named webhooks (name -> (url, secret)); `aclose()` when done."""

    def __init__(self, endpoints: Mapping[str, tuple[str, bytes | None]], timeout_s: float) -> None:
        self._endpoints = dict(endpoints)
        # trust_env=False: a proxy from the environment must not see (or break) alert traffic.
        self._client = httpx.AsyncClient(timeout=timeout_s, trust_env=False)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def send(self, n: Notification) -> None:
        """Deliver one notification; raise DeliveryError (permanent or not) when it fails."""
        name = n.target.address
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise DeliveryError(f"webhook {name}: not declared", permanent=True)
        url, secret = endpoint
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": n.key,
            "X-Pantau-Event": n.event,
            TIMESTAMP_HEADER: timestamp,
        }
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, n.body, timestamp)
        # Errors name the webhook, never its URL: a URL may carry a token in its path.
        try:
            response = await self._client.post(url, content=n.body, headers=headers)
        except httpx.TransportError as exc:
            raise DeliveryError(f"webhook {name}: {type(exc).__name__}", permanent=False) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        raise DeliveryError(f"webhook {name}: HTTP {status}", permanent=not _retryable(status))
