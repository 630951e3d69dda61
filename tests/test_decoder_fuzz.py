"""Fuzzing the payload decoder: no input crashes it, and every input is stored or rejected."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.decoder_invariants import TOPICS, check_one_message

FIELDS = ("ts", "pm25", "pm10", "co", "level_cm", "lamp_on", "power_w", "device_id", "x")
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["2024-11-27T09:33:20Z", "1732700000", "aq-0042", "NaN", "1e999"]),
)
readings = st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=8)
documents = st.one_of(readings, st.lists(readings, max_size=5), scalars, st.lists(scalars))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TOPICS), documents)
def test_json_documents_are_stored_or_rejected(topic: str, document: Any) -> None:
    try:
        payload = json.dumps(document, allow_nan=True).encode()
    except (ValueError, OverflowError):
        return
    check_one_message(topic, payload)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TOPICS), st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_not_crashing(topic: str, payload: bytes) -> None:
    check_one_message(topic, payload)


@pytest.mark.slow
def test_atheris_finds_no_crash_in_20_seconds() -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris does not install on this platform")
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("fuzz_decoder.py")),
            "-max_total_time=20",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr
