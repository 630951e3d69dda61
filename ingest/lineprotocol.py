"""InfluxDB line protocol: whole columns of readings encoded at once with numpy string ufuncs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numpy.dtypes import StringDType

from ingest.batch import KindColumns
from ingest.rejections import Rejection

__all__ = ["encode_readings", "encode_rejections", "escape_string_field", "escape_tag"]

_STR: Final = StringDType()
# Control characters would end or corrupt a line: write them as visible \xNN escapes.
_CONTROL: Final = {code: f"\\x{code:02x}" for code in range(32)}


def encode_readings(columns: KindColumns) -> str:
    """Line protocol for every reading of one kind: one line per reading, no trailing newline."""
    n = len(columns)
    if n == 0:
        return ""
    fields: npt.NDArray[Any] = np.full(n, "", dtype=_STR)
    # Float formatting is the costly step, so it runs once per column, not once per value.
    for j, name in enumerate(columns.spec.field_names):
        have = columns.present[:, j]
        if not have.any():
            continue
        text = np.strings.add(f",{name}=", columns.values[:, j].astype(_STR))
        fields = np.strings.add(fields, np.where(have, text, ""))
    # Every reading has at least one field (validation guarantees it): drop the leading comma.
    fields = np.strings.slice(fields, 1, None)
    lines: npt.NDArray[Any] = np.strings.add(np.strings.add(columns.series, " "), fields)
    lines = np.strings.add(np.strings.add(lines, " "), columns.ts_ns.astype(_STR))
    return "\n".join(lines.tolist())


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
    collector_tag = escape_tag(collector)
    for rejection in rejections:
        copy = rejection.payload.decode("utf-8", errors="backslashreplace")
        lines.append(
            f"rejected,reason={rejection.reason.value},kind={escape_tag(rejection.kind)},"
            f"collector={collector_tag} "
            f"topic={escape_string_field(rejection.topic)},"
            f"device_id={escape_string_field(rejection.device_id)},"
            f"detail={escape_string_field(rejection.detail)},"
            f"payload={escape_string_field(copy)},"
            f"index={rejection.index}i {ts}"
        )
        ts += 1
    return "\n".join(lines), ts
