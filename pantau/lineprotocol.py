"""InfluxDB line protocol: the only encoder, for whole columns at once and for single points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numpy.dtypes import StringDType

__all__ = ["encode_columns", "escape_string_field", "escape_tag", "point", "series_key"]

_STR: Final = StringDType()
# Control characters would end or corrupt a line: write them as visible \xNN escapes.
_CONTROL: Final = {code: f"\\x{code:02x}" for code in range(32)}

FieldValue = float | int | str


def escape_tag(value: str) -> str:
    """Escape a tag key or value (commas, spaces, equals signs); newlines cannot be carried."""
    return (
        value.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace(" ", "\\ ")
        .replace("=", "\\=")
        .replace("\n", "\\n")
    )


def escape_string_field(value: str) -> str:
    """A quoted string field value; control characters are written as visible escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').translate(_CONTROL)
    return f'"{escaped}"'


def series_key(measurement: str, tags: Mapping[str, str], *, plain: bool = False) -> str:
    """`measurement,tag=value,...`: the series a point belongs to.

    plain: the caller guarantees that nothing needs escaping (topic segments are [a-z0-9_-]),
    which skips the escaping on the per-message path.
    """
    if plain:
        return ",".join([measurement, *(f"{k}={v}" for k, v in tags.items())])
    head = measurement.replace(",", "\\,").replace(" ", "\\ ")
    return ",".join([head, *(f"{escape_tag(k)}={escape_tag(v)}" for k, v in tags.items())])


def _field(value: FieldValue) -> str:
    if isinstance(value, str):
        return escape_string_field(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    return repr(float(value))


def point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int
) -> str:
    """One line: floats as written by repr, ints with `i`, strings quoted and escaped."""
    body = ",".join(f"{escape_tag(k)}={_field(v)}" for k, v in fields.items())
    return f"{series_key(measurement, tags)} {body} {ts_ns}"


def encode_columns(
    series: npt.NDArray[Any],
    field_names: Sequence[str],
    values: npt.NDArray[np.float64],
    present: npt.NDArray[np.bool_],
    ts_ns: npt.NDArray[np.int64],
) -> str:
    """One line per row of float columns (each row has at least one present field)."""
    n = len(series)
    if n == 0:
        return ""
    fields: npt.NDArray[Any] = np.full(n, "", dtype=_STR)
    # Float formatting is the costly step, so it runs once per column, not once per value.
    for j, name in enumerate(field_names):
        have = present[:, j]
        if not have.any():
            continue
        text = np.strings.add(f",{name}=", values[:, j].astype(_STR))
        fields = np.strings.add(fields, np.where(have, text, ""))
    # Every row has at least one field: drop the leading comma.
    fields = np.strings.slice(fields, 1, None)
    lines: npt.NDArray[Any] = np.strings.add(np.strings.add(series, " "), fields)
    lines = np.strings.add(np.strings.add(lines, " "), ts_ns.astype(_STR))
    return "\n".join(lines.tolist())
