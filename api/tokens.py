"""Bearer tokens with scopes, stored hashed in a JSON file (`pantau tokens create`)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Final

from pantau.files import write_atomically

__all__ = ["Scope", "TokenRecord", "TokenStore"]

_PREFIX: Final = "pantau_"
# The file is re-read when it changes, but looked at no more often than this.
_RECHECK_S: Final = 1.0

log = logging.getLogger(__name__)


class Scope(IntEnum):
    """What a token may do; each scope includes the ones below it."""

    READ = 1
    OPERATE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Scope:
        """The scope called `name` (read, operate, admin)."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown scope {name!r}: use read, operate or admin") from None

    @property
    def label(self) -> str:
        """The scope's name as users write it."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One stored token: never the token itself, only its SHA-256."""

    token_id: str
    name: str
    scope: str
    sha256: str
    created: float


def _digest(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The token file: create and revoke tokens, and check a presented one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_digest: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._ids: frozenset[str] = frozenset()
        # token id -> {watch number: callback}: open live feeds, closed when their token goes.
        self._watchers: dict[str, dict[int, Callable[[], None]]] = {}
        self._numbers = itertools.count()

    def create(self, scope: Scope, name: str = "") -> tuple[str, TokenRecord]:
        """A new token (returned once, in clear) and its stored record."""
        token_id = secrets.token_hex(4)
        token = f"{_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = TokenRecord(token_id, name, scope.label, _digest(token), time.time())
        records = [*self._read(), record]
        self._write(records)
        return token, record

    def revoke(self, token_id: str) -> bool:
        """Remove a token by id; False if there was none."""
        records = self._read()
        kept = [r for r in records if r.token_id != token_id]
        if len(kept) == len(records):
            return False
        self._write(kept)
        return True

    def records(self) -> list[TokenRecord]:
        """Every stored token record."""
        return self._read()

    def verify(self, token: str) -> TokenRecord | None:
        """The record of a presented token, or None if it is unknown."""
        self._refresh()
        if not token.startswith(_PREFIX) or len(token) > 200:
            return None
        digest = _digest(token)
        record = self._by_digest.get(digest)
        if record is None:
            # A token created a moment ago works at once: look at the file again. That costs
            # one stat; the file is read only if it changed.
            self._refresh(force=True)
            record = self._by_digest.get(digest)
        return record

    def watch(self, token_id: str, on_revoked: Callable[[], None]) -> Callable[[], None]:
        """Call `on_revoked` once if this token is revoked (seen by `watch_revocations`).

        Returns the function that stops watching (call it when the feed ends anyway).
        """
        number = next(self._numbers)
        self._watchers.setdefault(token_id, {})[number] = on_revoked

        def stop() -> None:
            holders = self._watchers.get(token_id)
            if holders is not None:
                holders.pop(number, None)
                if not holders:
                    del self._watchers[token_id]

        return stop

    def check_revocations(self) -> None:
        """Re-read the file if it changed, and call back the watchers of every revoked token."""
        try:
            self._refresh(force=True)
        except (OSError, ValueError, TypeError) as exc:
            # A hand-edited, broken file: keep what we knew rather than drop every feed.
            log.warning("cannot read the token file", extra={"error": str(exc)})
            return
        for token_id in [t for t in self._watchers if t not in self._ids]:
            for callback in self._watchers.pop(token_id).values():
                callback()

    async def watch_revocations(self, interval: float = 0.25) -> None:
        """Check for revoked tokens every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.check_revocations()

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < _RECHECK_S and self._stamp is not None:
            return
        self._checked = now
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._by_digest, self._stamp, self._ids = {}, None, frozenset()
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            self._by_digest = {r.sha256: r for r in self._read()}
            self._ids = frozenset(r.token_id for r in self._by_digest.values())
            self._stamp = stamp

    def _read(self) -> list[TokenRecord]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        return [TokenRecord(**entry) for entry in data.get("tokens", [])]

    def _write(self, records: list[TokenRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"tokens": [asdict(r) for r in records]}, indent=2)
        write_atomically(self.path, body, mode=0o600)
        self._checked = 0.0
