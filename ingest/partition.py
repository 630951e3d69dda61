"""Partitions of the collector: every district's readings always reach the same collector.

The processors keep state per device (baselines, runs, 24-hour means) and per district (peer
drift, the district's lamp share), so all of a district's readings must reach one processor.
Partition K of N takes the registry's districts whose stable hash is K and subscribes to
exactly their topics. Partition 1 subscribes to the whole filter instead, so that a reading
from a district the registry does not list still reaches a collector (which rejects it with
its reason); it acknowledges, without storing, the messages of the other partitions' districts
(those partitions receive their own copies through their own subscriptions). Without the
catch-all (`catch_all=False`), partition 1 subscribes to its own districts too: no message then
reaches two collectors, which is right where the broker's ACL lets a device publish only on
its own topic, so no unlisted district can publish at all.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Partition", "district_partition"]

_DISTRICT_LEVEL = 2  # city/{city}/{district}/{kind}/{device_id}


def district_partition(district: str, n: int) -> int:
    """The partition (1..n) of a district: stable across processes, hosts and versions."""
    return zlib.crc32(district.encode("utf-8", errors="surrogatepass")) % n + 1


@dataclass(frozen=True, slots=True)
class Partition:
    """Partition `k` of `n`: its subscription filters and the districts it leaves to others."""

    k: int
    n: int
    filters: tuple[str, ...]
    mine: frozenset[str]  # the registry's districts of this partition
    others: frozenset[str]  # districts other partitions subscribe to (skipped by the catch-all)
    catch_all: bool = False  # subscribed to the whole filter, unlisted districts included

    @classmethod
    def plan(
        cls, k: int, n: int, topic: str, known: Iterable[str], *, catch_all: bool = True
    ) -> Partition:
        """Partition K of N of the `known` districts under the topic filter `topic`.

        With `catch_all`, partition 1 subscribes to the whole filter (see the module docstring);
        without, it subscribes to its own districts like every other partition.
        Raises ValueError for a filter whose district level is not a wildcard.
        """
        levels = topic.split("/")
        if "#" in levels[:_DISTRICT_LEVEL]:  # e.g. "city/#": spell out the levels before it
            at = levels.index("#")
            levels = levels[:at] + ["+"] * (_DISTRICT_LEVEL - at) + ["+", "#"]
        if len(levels) <= _DISTRICT_LEVEL or levels[_DISTRICT_LEVEL] != "+":
            raise ValueError(
                f"topic {topic!r} does not leave the district level (the third) to a "
                "wildcard, so it cannot be partitioned by district"
            )
        districts = sorted(set(known))
        mine = frozenset(d for d in districts if district_partition(d, n) == k)
        others = frozenset(districts) - mine
        if k == 1 and catch_all:
            return cls(k, n, (topic,), mine, others, catch_all=True)
        filters = []
        for district in sorted(mine):
            narrowed = list(levels)
            narrowed[_DISTRICT_LEVEL] = district
            filters.append("/".join(narrowed))
        return cls(k, n, tuple(filters), mine, frozenset())

    @property
    def layout(self) -> str:
        """`K/N`, as the processors' snapshot records it."""
        return f"{self.k}/{self.n}"

    def owns_district(self, district: str) -> bool:
        """Whether this partition processes a district's readings."""
        if self.catch_all:
            return district not in self.others
        return district in self.mine

    def owns(self, topic: str) -> bool:
        """Whether a received message is this partition's to process and store."""
        if not self.others:
            return True
        levels = topic.split("/", _DISTRICT_LEVEL + 1)
        return len(levels) <= _DISTRICT_LEVEL or levels[_DISTRICT_LEVEL] not in self.others
