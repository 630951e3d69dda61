"""Why input is rejected: a closed set of reasons, and the record kept for every rejection."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pantau.lineprotocol import point

__all__ = ["DETAIL_MAX_CHARS", "Reason", "Rejection", "bounded", "encode_rejections"]

# Longest `detail` (and `topic`) a rejection keeps, marker included. A detail quotes what the
# device sent (a value, a key, a topic segment), so without a bound one 1 MiB payload makes a
# 1 MiB detail in InfluxDB and in the log. Every reason explains itself well within this; the
# payload copy (`rejected_payload_bytes`) is a separate bound, and may be set to 0.
DETAIL_MAX_CHARS: Final = 512


class Reason(StrEnum):
    """A rejection reason; the value is the `reason` tag in InfluxDB and the metric label."""

    # Whole message.
    PAYLOAD_TOO_LARGE = "payload_too_large"
    EMPTY_PAYLOAD = "empty_payload"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    TOO_DEEP = "too_deep"
    NOT_OBJECT = "not_object"
    EMPTY_BATCH = "empty_batch"
    TOO_MANY_READINGS = "too_many_readings"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_DEVICE = "unknown_device"
    REGISTRY_MISMATCH = "registry_mismatch"
    # One reading.
    DEVICE_MISMATCH = "device_mismatch"
    UNKNOWN_FIELD = "unknown_field"
    NO_FIELDS = "no_fields"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    # Storage.
    INFLUX_REJECTED = "influx_rejected"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected message (index -1) or one rejected reading of a message (index >= 0)."""

    reason: Reason
    detail: str
    topic: str
    payload: bytes
    index: int = -1
    kind: str = "unknown"
    device_id: str = ""

    def __post_init__(self) -> None:
        # Bounded here, so no path that builds a rejection (decoding, validation, InfluxDB's
        # refusals) can store or log an unbounded text. A valid topic is far shorter.
        if len(self.detail) > DETAIL_MAX_CHARS:
            object.__setattr__(self, "detail", bounded(self.detail))
        if len(self.topic) > DETAIL_MAX_CHARS:
            object.__setattr__(self, "topic", bounded(self.topic))


def bounded(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """`text` cut to at most `limit` characters, ending in a marker with its full length."""
    if len(text) <= limit:
        return text
    marker = f"… [{len(text)} chars]"
    return text[: max(0, limit - len(marker))] + marker[:limit]


def encode_rejections(
    rejections: Iterable[Rejection], *, collector: str, first_ns: int
) -> tuple[str, int]:
    """Line protocol for the `rejected` measurement, and the next free timestamp.

    Rejections carry no trustworthy observation time, so each gets a distinct receive-time
    timestamp (first_ns, first_ns + 1, ...) and the collector's id as a tag: two rejections
    never overwrite each other, not even across collector replicas.
    """
    lines: list[str] = []
    ts = first_ns
    for rejection in rejections:
        tags = {"reason": rejection.reason.value, "kind": rejection.kind, "collector": collector}
        fields: dict[str, str | int] = {
            "topic": rejection.topic,
            "device_id": rejection.device_id,
            "detail": rejection.detail,
            "payload": rejection.payload.decode("utf-8", errors="backslashreplace"),
            "index": rejection.index,
        }
        lines.append(point("rejected", tags, fields, ts))
        ts += 1
    return "\n".join(lines), ts
