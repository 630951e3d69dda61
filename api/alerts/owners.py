"""Which API replica notifies for an episode: rendezvous hashing over the live replicas.

Every replica evaluates every rule (episodes are deterministic, so they agree), but only the
episode's owner sends its notifications. Replicas announce themselves on a retained presence
topic; the owner of an episode is the live replica with the highest hash of (episode, replica).
When the replica set changes, ownership moves for some episodes only; a notification sent
twice in that moment carries the same idempotency key, so receivers can drop the second.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["PRESENCE_ALL", "PRESENCE_PREFIX", "Replicas", "presence_topic"]

PRESENCE_PREFIX: Final = "pantau/ops/replicas"
PRESENCE_ALL: Final = f"{PRESENCE_PREFIX}/+"
_REPLICA: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_REPLICAS: Final = 64


def presence_topic(replica: str) -> str:
    """The retained topic a replica announces itself on."""
    return f"{PRESENCE_PREFIX}/{replica}"


def _weight(episode_id: str, replica: str) -> bytes:
    return hashlib.sha256(f"{episode_id}|{replica}".encode()).digest()


class Replicas:
    """The live API replicas as this one hears them, and episode ownership."""

    def __init__(self, me: str, ttl_s: float) -> None:
        self.me = me
        self.ttl_s = ttl_s
        self._heard: dict[str, float] = {}

    def heard(self, topic: str, payload: Any, now: float) -> bool:
        """Take a presence message; False if it is not one (untrusted: checked, bounded)."""
        prefix = f"{PRESENCE_PREFIX}/"
        if not topic.startswith(prefix):
            return False
        replica = topic[len(prefix) :]
        if not _REPLICA.fullmatch(replica) or replica == self.me:
            return replica == self.me
        if payload is None or payload == {}:  # a clean leave, or the will of a lost replica
            self._heard.pop(replica, None)
            return True
        if not isinstance(payload, Mapping) or payload.get("replica") != replica:
            return False
        if replica not in self._heard and len(self._heard) >= _MAX_REPLICAS:
            return False
        # A retained announcement of a replica that stopped cleanly (no will) is as old as its
        # `at`: it is not taken for a live replica. A future `at` counts as now.
        at = payload.get("at")
        fresh = now if not isinstance(at, int | float) or isinstance(at, bool) else min(now, at)
        self._heard[replica] = fresh
        return True

    def live(self, now: float) -> list[str]:
        """The replicas heard from within the time to live, and this one, sorted."""
        alive = {r for r, at in self._heard.items() if now - at <= self.ttl_s}
        return sorted(alive | {self.me})

    def owner(self, episode_id: str, now: float) -> str:
        """The live replica that notifies for this episode."""
        return max(self.live(now), key=lambda r: _weight(episode_id, r))

    def owns(self, episode_id: str, now: float) -> bool:
        """Whether this replica notifies for this episode."""
        return self.owner(episode_id, now) == self.me
