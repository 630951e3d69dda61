"""Why input is rejected: a closed set of reasons, and the record kept for every rejection."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Reason", "Rejection"]


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
