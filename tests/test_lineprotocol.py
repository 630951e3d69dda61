"""Vectorised line-protocol encoding against a slow, obviously correct reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.dtypes import StringDType

from ingest.batch import KindColumns
from ingest.rejections import Reason, Rejection, encode_rejections
from pantau.lineprotocol import escape_string_field
from processors.catalog import CATALOG


def reference_lines(columns: KindColumns) -> str:
    """One f-string per reading: the slow twin of encode_readings."""
    lines = []
    names = columns.spec.field_names
    for i in range(len(columns)):
        fields = ",".join(
            f"{names[j]}={float(columns.values[i, j])!r}"
            for j in range(len(names))
            if columns.present[i, j]
        )
        lines.append(f"{columns.series[i]} {fields} {int(columns.ts_ns[i])}")
    return "\n".join(lines)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def kind_columns(draw: st.DrawFn) -> KindColumns:
    spec = CATALOG[draw(st.sampled_from(sorted(CATALOG)))]
    n = draw(st.integers(1, 30))
    m = len(spec.fields)
    values = draw(arrays(np.float64, (n, m), elements=finite))
    present = draw(arrays(np.bool_, (n, m)))
    present[np.arange(n), draw(arrays(np.intp, n, elements=st.integers(0, m - 1)))] = True
    devices = draw(
        st.lists(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True), min_size=n, max_size=n)
    )
    series = np.array(
        [f"{spec.kind},city=c,district=d,device_id={d}" for d in devices], dtype=StringDType()
    )
    ts = draw(arrays(np.int64, n, elements=st.integers(0, 2**62)))
    ids = np.array(devices, dtype=StringDType())
    return KindColumns(spec, series, ids, ids, ids, ts, values, present)


@settings(max_examples=150, deadline=None)
@given(kind_columns())
def test_vectorised_encoding_matches_reference(columns: KindColumns) -> None:
    assert columns.line_protocol() == reference_lines(columns)


def test_encoded_floats_parse_back_exactly() -> None:
    values = np.array([[35.2, 1e-7, 123456789.123, 0.1 + 0.2]])
    columns = KindColumns(
        CATALOG["water_level"],
        np.array(["water_level,city=c,district=d,device_id=g"], dtype=StringDType()),
        np.array(["g"], dtype=StringDType()),
        np.array(["c"], dtype=StringDType()),
        np.array(["d"], dtype=StringDType()),
        np.array([5], dtype=np.int64),
        values[:, :3],
        np.ones((1, 3), dtype=np.bool_),
    )
    line = columns.line_protocol()
    parsed = [float(kv.split("=")[1]) for kv in line.split(" ")[1].split(",")]
    assert parsed == values[0, :3].tolist()


def test_string_fields_escape_quotes_backslashes_and_control_characters() -> None:
    assert escape_string_field('a"b\\c\nd\x00') == '"a\\"b\\\\c\\x0ad\\x00"'


def test_rejections_get_distinct_timestamps() -> None:
    rejection = Rejection(Reason.MALFORMED_JSON, "bad", "city/a/b/c/d", b"{", kind="unknown")
    text, next_ns = encode_rejections([rejection] * 3, collector="c 1", first_ns=10)
    assert next_ns == 13
    assert [line.rsplit(" ", 1)[1] for line in text.split("\n")] == ["10", "11", "12"]
    assert text.startswith("rejected,reason=malformed_json,kind=unknown,collector=c\\ 1 ")
