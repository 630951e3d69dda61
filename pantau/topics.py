"""Reading topics: `city/{city}/{district}/{kind}/{device_id}`, each segment `[a-z0-9_-]{1,64}`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pantau.lineprotocol import series_key
from processors.catalog import CATALOG

__all__ = ["DeviceTopic", "TopicError", "parse_topic", "reading_topic"]

_SEGMENT: Final = re.compile(r"[a-z0-9_-]{1,64}")


class TopicError(ValueError):
    """A topic that is not a valid reading topic; `unknown_kind` tells the two cases apart."""

    def __init__(self, message: str, *, unknown_kind: bool = False) -> None:
        super().__init__(message)
        self.unknown_kind = unknown_kind


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """The parts of a reading topic."""

    city: str
    district: str
    kind: str
    device_id: str

    @property
    def series_key(self) -> str:
        """The line-protocol measurement and tag set of this device's readings."""
        # Segments are restricted to [a-z0-9_-], so no line-protocol escaping is needed.
        tags = {"city": self.city, "district": self.district, "device_id": self.device_id}
        return series_key(self.kind, tags, plain=True)


def parse_topic(topic: str) -> DeviceTopic:
    """Parse and validate a reading topic; raise TopicError with the reason."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "city":
        raise TopicError(
            f"topic must be city/{{city}}/{{district}}/{{kind}}/{{device_id}}: {topic!r}"
        )
    _, city, district, kind, device_id = parts
    for name, segment in (("city", city), ("district", district), ("device_id", device_id)):
        if not _SEGMENT.fullmatch(segment):
            raise TopicError(f"{name} segment {segment!r} must match [a-z0-9_-]{{1,64}}")
    if kind not in CATALOG:
        raise TopicError(f"unknown kind {kind!r}; known: {', '.join(CATALOG)}", unknown_kind=True)
    return DeviceTopic(city, district, kind, device_id)


def reading_topic(city: str, district: str, kind: str, device_id: str) -> str:
    """The topic a device publishes its readings on."""
    return f"city/{city}/{district}/{kind}/{device_id}"
