"""What must hold for any payload the collector decodes: stored as readings or rejected."""

from __future__ import annotations

import math

from ingest.batch import BatchBuilder, Limits
from processors.catalog import CATALOG

NOW = 1_732_700_100.0
TOPICS = (
    "city/purbalingga/bobotsari/air_quality/aq-0042",
    "city/purbalingga/kemangkon/water_level/wl-01",
    "city/purbalingga/kalimanah/streetlight/sl-0001",
    "city/purbalingga/bobotsari/unknown_kind/x",
    "city/PURBALINGGA/x/air_quality/a b",
)


def check_one_message(topic: str, payload: bytes) -> None:
    """Decode one message; raise AssertionError if it vanished or a stored value is bad."""
    builder = BatchBuilder(Limits(max_payload_bytes=64 * 1024), None, clock=lambda: NOW)
    builder.add(topic, payload)
    batch = builder.build()
    whole = [r for r in batch.rejections if r.index < 0]
    assert all(r.detail and r.reason for r in batch.rejections), batch.rejections
    if whole:
        assert batch.readings == 0, "a rejected message must not store readings"
        return
    assert batch.readings + len(batch.rejections) >= 1, "a message vanished"
    for kind, columns in batch.columns.items():
        spec = CATALOG[kind]
        for j, field in enumerate(spec.fields):
            for value, present in zip(
                columns.values[:, j].tolist(), columns.present[:, j].tolist(), strict=True
            ):
                if present:
                    assert math.isfinite(value), (field.name, value)
                    assert field.low <= value <= field.high, (field.name, value)
