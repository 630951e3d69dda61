"""Decoding and validation of payloads into columnar batches, without a broker."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from ingest.batch import BatchBuilder, Limits
from ingest.rejections import DETAIL_MAX_CHARS, Reason, bounded
from pantau.registry import Device, Registry

NOW = 1_732_700_100.0
AQ = "city/purbalingga/bobotsari/air_quality/aq-0042"
SL = "city/purbalingga/bobotsari/streetlight/sl-0001"


def build(*messages: tuple[str, bytes | Any], registry: Registry | None = None, **limits: Any):
    builder = BatchBuilder(Limits(**limits), registry, clock=lambda: NOW)
    for topic, payload in messages:
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
        builder.add(topic, payload)
    return builder.build()


def reasons(batch) -> list[str]:
    return sorted(r.reason.value for r in batch.rejections)


def test_single_reading_becomes_one_row_with_observation_time() -> None:
    payload = {"device_id": "aq-0042", "ts": 1732700000.0, "pm25": 35.2, "co": 800.0}
    batch = build((AQ, payload))
    assert batch.rejections == []
    columns = batch.columns["air_quality"]
    assert columns.ts_ns.tolist() == [1_732_700_000_000_000_000]
    assert columns.series.tolist() == [
        "air_quality,city=purbalingga,district=bobotsari,device_id=aq-0042"
    ]
    pm25 = columns.spec.column("pm25")
    assert columns.values[0, pm25] == 35.2
    assert columns.present[0].sum() == 2


def test_gateway_batch_keeps_good_readings_around_bad_ones() -> None:
    readings = [
        {"ts": NOW - 30, "lamp_on": 1, "power_w": 58.5},
        {"ts": NOW - 20, "lamp_on": 2},
        {"ts": NOW - 10, "lamp_on": True, "dim_pct": 50},
        {"ts": NOW - 5, "power_w": "60"},
    ]
    batch = build((SL, readings))
    assert len(batch.columns["streetlight"]) == 2
    assert sorted((r.reason.value, r.index) for r in batch.rejections) == [
        ("out_of_range", 1),
        ("wrong_type", 3),
    ]


def test_rfc3339_and_epoch_seconds_agree() -> None:
    batch = build((AQ, [{"ts": "2024-11-27T09:33:20Z", "pm25": 1}, {"ts": 1732700000, "pm10": 2}]))
    assert batch.columns["air_quality"].ts_ns.tolist() == [1_732_700_000_000_000_000] * 2


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (AQ, b"", Reason.EMPTY_PAYLOAD),
        (AQ, b"{" + b" " * 2000 + b"}", Reason.PAYLOAD_TOO_LARGE),
        (AQ, b"\xff\xfe{}", Reason.NOT_UTF8),
        (AQ, b'{"ts": 1', Reason.MALFORMED_JSON),
        (AQ, b"[" * 1000, Reason.TOO_DEEP),
        (AQ, b"42", Reason.NOT_OBJECT),
        (AQ, b"[]", Reason.EMPTY_BATCH),
        (AQ, json.dumps([{"ts": NOW, "pm25": 1}] * 11).encode(), Reason.TOO_MANY_READINGS),
        ("city/purbalingga/Bobotsari/air_quality/aq-1", b"{}", Reason.BAD_TOPIC),
        ("city/purbalingga/bobotsari/noise/aq-1", b"{}", Reason.UNKNOWN_KIND),
        (AQ, {"device_id": "aq-9", "ts": NOW, "pm25": 1}, Reason.DEVICE_MISMATCH),
        (AQ, {"ts": NOW, "pm25": 1, "colour": "red"}, Reason.UNKNOWN_FIELD),
        (AQ, {"ts": NOW}, Reason.NO_FIELDS),
        (AQ, {"pm25": 1}, Reason.MISSING_TIMESTAMP),
        (AQ, {"ts": "yesterday", "pm25": 1}, Reason.BAD_TIMESTAMP),
        (AQ, {"ts": "2024-11-27T09:33:20", "pm25": 1}, Reason.BAD_TIMESTAMP),
        (AQ, {"ts": True, "pm25": 1}, Reason.BAD_TIMESTAMP),
        (AQ, {"ts": NOW * 1000, "pm25": 1}, Reason.FUTURE_TIMESTAMP),
        (AQ, {"ts": 100.0, "pm25": 1}, Reason.TOO_OLD),
        (AQ, {"ts": NOW, "pm25": "35"}, Reason.WRONG_TYPE),
        (AQ, {"ts": NOW, "pm25": True}, Reason.WRONG_TYPE),
        (AQ, {"ts": NOW, "pm25": {"v": 1}}, Reason.WRONG_TYPE),
        (AQ, b'{"ts": 1732700000, "pm25": NaN}', Reason.NOT_FINITE),
        (AQ, b'{"ts": 1732700000, "pm25": -Infinity}', Reason.NOT_FINITE),
        (AQ, b'{"ts": 1732700000, "pm25": 1e999}', Reason.NOT_FINITE),
        (AQ, {"ts": NOW, "pm25": -3}, Reason.OUT_OF_RANGE),
        (AQ, {"ts": NOW, "humidity": 140}, Reason.OUT_OF_RANGE),
        (SL, {"ts": NOW, "lamp_on": 0.5}, Reason.OUT_OF_RANGE),
        (AQ, [{"ts": NOW, "pm25": 1}, 7], Reason.NOT_OBJECT),
    ],
)
def test_each_bad_input_is_rejected_with_its_reason(
    topic: str, payload: Any, reason: Reason
) -> None:
    batch = build((topic, payload), max_payload_bytes=1024, max_readings_per_message=10)
    assert [r.reason for r in batch.rejections] == [reason]
    assert batch.rejections[0].detail


def test_registry_rejects_unknown_and_misplaced_devices() -> None:
    registry = Registry(
        [Device("aq-0042", "air_quality", "purbalingga", "bobotsari", -7.3, 109.3, 60.0)]
    )
    batch = build(
        (AQ, {"ts": NOW, "pm25": 1}),
        ("city/purbalingga/bobotsari/air_quality/aq-9999", {"ts": NOW, "pm25": 1}),
        ("city/purbalingga/mrebet/air_quality/aq-0042", {"ts": NOW, "pm25": 1}),
        registry=registry,
    )
    assert len(batch.columns["air_quality"]) == 1
    assert reasons(batch) == ["registry_mismatch", "unknown_device"]


def test_rejected_payload_copy_is_bounded() -> None:
    batch = build((AQ, b"x" * 5000), rejected_payload_bytes=100)
    assert len(batch.rejections[0].payload) == 100


def test_builder_starts_empty_after_build() -> None:
    builder = BatchBuilder(Limits(), None, clock=lambda: NOW)
    builder.add(AQ, b'{"ts": 1732700000, "pm25": 1}')
    assert builder.readings == 1
    first = builder.build()
    assert first.readings == 1
    assert builder.readings == 0
    assert builder.build().readings == 0


def test_values_are_float64_and_absent_fields_are_not_present() -> None:
    batch = build((AQ, [{"ts": NOW, "pm25": 1}, {"ts": NOW - 1, "pm10": 2}]))
    columns = batch.columns["air_quality"]
    assert columns.values.dtype == np.float64
    assert columns.present.sum() == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"ts": "x" * 900_000, "pm25": 1},  # bad_timestamp quotes ts
        {"device_id": "d" * 900_000, "ts": NOW, "pm25": 1},  # device_mismatch quotes it
        {"ts": NOW, "k" * 900_000: 1},  # unknown_field quotes the key
        {"ts": NOW, "pm25": int("9" * 4000)},  # not_finite quotes the number
    ],
)
def test_rejection_detail_is_bounded_with_a_marker(payload: Any) -> None:
    batch = build((AQ, payload), rejected_payload_bytes=100)
    (rejection,) = batch.rejections
    assert len(rejection.detail) <= DETAIL_MAX_CHARS
    assert rejection.detail.endswith(" chars]") and "…" in rejection.detail
    assert len(rejection.payload) == 100


def test_long_topic_in_a_rejection_is_bounded() -> None:
    topic = "city/" + "a" * 60_000 + "/b/air_quality/aq-1"
    (rejection,) = build((topic, {"ts": NOW, "pm25": 1})).rejections
    assert rejection.reason is Reason.BAD_TOPIC
    assert len(rejection.topic) <= DETAIL_MAX_CHARS
    assert len(rejection.detail) <= DETAIL_MAX_CHARS


def test_short_details_are_kept_whole() -> None:
    assert bounded("x" * DETAIL_MAX_CHARS) == "x" * DETAIL_MAX_CHARS
    cut = bounded("x" * (DETAIL_MAX_CHARS + 1))
    assert len(cut) == DETAIL_MAX_CHARS and cut.endswith(f"… [{DETAIL_MAX_CHARS + 1} chars]")
