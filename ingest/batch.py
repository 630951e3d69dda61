"""Columnar batches: decoded messages become validated numpy columns per device kind."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numpy.dtypes import StringDType

from ingest.decode import DecodeError, NonFinite, decode_payload
from ingest.rejections import Reason, Rejection
from pantau.lineprotocol import encode_columns
from pantau.registry import Registry
from pantau.timestamps import TimestampError, parse_time
from pantau.topics import DeviceTopic, TopicError, parse_topic
from processors.catalog import CATALOG, KindSpec

__all__ = ["Batch", "BatchBuilder", "KindColumns", "Limits"]

_TOPIC_CACHE_MAX: Final = 100_000
_NUMERIC: Final = frozenset({float, int, type(None)})
_BINARY: Final = frozenset({float, int, bool, type(None)})
# Per-reading reason codes, in the order they are checked: the first failing check wins.
_CODES: Final = (
    None,
    Reason.MISSING_TIMESTAMP,
    Reason.BAD_TIMESTAMP,
    Reason.FUTURE_TIMESTAMP,
    Reason.TOO_OLD,
    Reason.WRONG_TYPE,
    Reason.NOT_FINITE,
    Reason.OUT_OF_RANGE,
    Reason.NO_FIELDS,
)
_CODE: Final = {reason: code for code, reason in enumerate(_CODES) if reason is not None}


@dataclass(frozen=True, slots=True)
class Limits:
    """Validation limits, taken from the settings."""

    max_payload_bytes: int = 1_048_576
    max_readings_per_message: int = 10_000
    clock_skew_s: float = 120.0
    max_age_s: float = 30 * 365.25 * 86400
    rejected_payload_bytes: int = 1024


@dataclass(frozen=True, slots=True)
class KindColumns:
    """Validated readings of one kind, one row per reading, one column per catalog field."""

    spec: KindSpec
    series: npt.NDArray[Any]  # StringDType: line-protocol measurement + tag set per row
    device_ids: npt.NDArray[Any]  # StringDType
    cities: npt.NDArray[Any]  # StringDType
    districts: npt.NDArray[Any]  # StringDType
    ts_ns: npt.NDArray[np.int64]  # observation time, ns since the epoch
    values: npt.NDArray[np.float64]  # (rows, fields); NaN where the reading has no such field
    present: npt.NDArray[np.bool_]  # (rows, fields)

    def __len__(self) -> int:
        return len(self.ts_ns)

    def line_protocol(self) -> str:
        """Line protocol for every reading: one line per reading, no trailing newline."""
        return encode_columns(
            self.series, self.spec.field_names, self.values, self.present, self.ts_ns
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """The outcome of one batch: good readings per kind and every rejection."""

    columns: dict[str, KindColumns]
    rejections: list[Rejection]
    messages: int

    @property
    def readings(self) -> int:
        """Number of good readings."""
        return sum(len(c) for c in self.columns.values())


_Refusal = tuple[Reason, str, DeviceTopic | None]


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    device: DeviceTopic
    single: bool


@dataclass(slots=True)
class _KindRows:
    spec: KindSpec
    allowed: frozenset[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: list[int] = field(default_factory=list)  # index into BatchBuilder._messages
    position: list[int] = field(default_factory=list)  # index of the reading in its message


class BatchBuilder:
    """Collects raw MQTT messages and turns them into one validated, columnar Batch."""

    def __init__(
        self,
        limits: Limits,
        registry: Registry | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._limits = limits
        self._registry = registry
        self._clock = clock
        # The registry is fixed for the builder's life, so each topic is judged only once.
        self._routes: dict[str, DeviceTopic | _Refusal] = {}
        self._reset()

    def _reset(self) -> None:
        self._messages: list[_Message] = []
        self._rejections: list[Rejection] = []
        self._kinds = {
            kind: _KindRows(spec, frozenset(spec.field_names) | {"ts", "device_id"})
            for kind, spec in CATALOG.items()
        }
        self._count = 0

    @property
    def messages(self) -> int:
        """Messages added since the last build."""
        return self._count

    @property
    def readings(self) -> int:
        """Readings added since the last build and not rejected yet."""
        return sum(len(k.rows) for k in self._kinds.values())

    def add(self, topic: str, payload: bytes) -> None:
        """Add one message; message-level problems are recorded at once, readings at build()."""
        self._count += 1
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        if not isinstance(route, DeviceTopic):
            reason, detail, known = route
            self._reject_message(reason, detail, topic, payload, known)
            return
        try:
            readings = decode_payload(
                payload,
                max_bytes=self._limits.max_payload_bytes,
                max_readings=self._limits.max_readings_per_message,
            )
        except DecodeError as exc:
            self._reject_message(exc.reason, exc.detail, topic, payload, route)
            return
        message_no = len(self._messages)
        self._messages.append(_Message(topic, payload, route, len(readings) == 1))
        kind_rows = self._kinds[route.kind]
        allowed = kind_rows.allowed
        rows, message, position = kind_rows.rows, kind_rows.message, kind_rows.position
        device_id = route.device_id
        for index, reading in enumerate(readings):
            if type(reading) is dict and reading.keys() <= allowed:
                if reading.get("device_id", device_id) == device_id:
                    rows.append(reading)
                    message.append(message_no)
                    position.append(index)
                    continue
                detail = f"device_id {reading['device_id']!r} does not match topic {device_id!r}"
                self._reject_reading(Reason.DEVICE_MISMATCH, detail, message_no, index, reading)
            elif type(reading) is not dict:
                detail = f"reading must be a JSON object, got {type(reading).__name__}"
                self._reject_reading(Reason.NOT_OBJECT, detail, message_no, index, reading)
            else:
                unknown = ", ".join(repr(k) for k in sorted(reading.keys() - allowed)[:5])
                detail = f"unknown field(s) for {route.kind}: {unknown}"
                self._reject_reading(Reason.UNKNOWN_FIELD, detail, message_no, index, reading)

    def build(self) -> Batch:
        """Validate all collected readings column by column and start a new batch."""
        now = self._clock() if self._clock is not None else time.time()
        columns: dict[str, KindColumns] = {}
        # Built once per batch, shared by the kinds (each picks its own messages' rows).
        per_message = self._per_message() if self._messages else ()
        for kind, kind_rows in self._kinds.items():
            if kind_rows.rows:
                built = self._build_kind(kind_rows, now, per_message)
                if len(built):
                    columns[kind] = built
        batch = Batch(columns, self._rejections, self._count)
        self._reset()
        return batch

    # -- message level -------------------------------------------------------------------------

    def _route(self, topic: str) -> DeviceTopic | _Refusal:
        """Check a topic once (syntax, kind, registry) and remember the verdict."""
        route: DeviceTopic | _Refusal
        try:
            device = parse_topic(topic)
        except TopicError as exc:
            reason = Reason.UNKNOWN_KIND if exc.unknown_kind else Reason.BAD_TOPIC
            route = (reason, str(exc), None)
        else:
            route = device
            known = self._registry.get(device.device_id) if self._registry is not None else None
            if self._registry is not None and known is None:
                detail = f"device {device.device_id!r} is not in the registry"
                route = (Reason.UNKNOWN_DEVICE, detail, device)
            elif known is not None and (known.city, known.district, known.kind) != (
                device.city,
                device.district,
                device.kind,
            ):
                detail = (
                    f"registry has {device.device_id!r} as {known.kind} in "
                    f"{known.city}/{known.district}"
                )
                route = (Reason.REGISTRY_MISMATCH, detail, device)
        if len(self._routes) >= _TOPIC_CACHE_MAX:  # bounded: topics come from the outside
            self._routes.clear()
        self._routes[topic] = route
        return route

    def _reject_message(
        self, reason: Reason, detail: str, topic: str, payload: bytes, device: DeviceTopic | None
    ) -> None:
        self._rejections.append(
            Rejection(
                reason=reason,
                detail=detail,
                topic=topic,
                payload=payload[: self._limits.rejected_payload_bytes],
                kind=device.kind if device else "unknown",
                device_id=device.device_id if device else "",
            )
        )

    def _reject_reading(
        self, reason: Reason, detail: str, message_no: int, position: int, reading: object
    ) -> None:
        message = self._messages[message_no]
        if message.single:
            copy = message.payload
        else:  # one reading of a gateway batch: keep that reading, not the whole batch
            copy = json.dumps(reading, default=_json_default).encode()
        self._rejections.append(
            Rejection(
                reason=reason,
                detail=detail,
                topic=message.topic,
                payload=copy[: self._limits.rejected_payload_bytes],
                index=position,
                kind=message.device.kind,
                device_id=message.device.device_id,
            )
        )

    # -- reading level, vectorised per column ---------------------------------------------------

    def _per_message(self) -> tuple[npt.NDArray[Any], ...]:
        """Series key, device, city and district of every message, as string arrays."""
        devices = [msg.device for msg in self._messages]
        return tuple(
            np.array([getattr(d, name) for d in devices], dtype=StringDType())
            for name in ("series_key", "device_id", "city", "district")
        )

    def _build_kind(
        self, kind_rows: _KindRows, now: float, per_message: tuple[npt.NDArray[Any], ...]
    ) -> KindColumns:
        spec = kind_rows.spec
        rows = kind_rows.rows
        n, m = len(rows), len(spec.fields)
        code = np.zeros(n, dtype=np.int8)
        bad_field = np.full(n, -1, dtype=np.int16)

        def flag(mask: npt.NDArray[np.bool_], reason: Reason, column: int = -1) -> None:
            fresh = mask & (code == 0)
            code[fresh] = _CODE[reason]
            bad_field[fresh] = column

        ts_s, ts_missing, ts_bad = _timestamps([r.get("ts") for r in rows])
        flag(ts_missing, Reason.MISSING_TIMESTAMP)
        flag(ts_bad, Reason.BAD_TIMESTAMP)
        with np.errstate(invalid="ignore"):
            flag(ts_s > now + self._limits.clock_skew_s, Reason.FUTURE_TIMESTAMP)
            flag(ts_s < now - self._limits.max_age_s, Reason.TOO_OLD)

        values = np.empty((n, m), dtype=np.float64)
        present = np.empty((n, m), dtype=np.bool_)
        lows, highs = spec.lows(), spec.highs()
        sent = set().union(*rows)  # one C-level pass; fields nobody sent need no column
        for j, field_spec in enumerate(spec.fields):
            if field_spec.name not in sent:
                values[:, j] = np.nan
                present[:, j] = False
                continue
            raw = [r.get(field_spec.name) for r in rows]
            column, is_present, wrong = _numbers(raw, binary=field_spec.binary)
            values[:, j] = column
            present[:, j] = is_present
            flag(wrong, Reason.WRONG_TYPE, j)
            with np.errstate(invalid="ignore"):
                flag(is_present & ~np.isfinite(column), Reason.NOT_FINITE, j)
                outside = (column < lows[j]) | (column > highs[j])
                if field_spec.binary:
                    outside |= (column != 0.0) & (column != 1.0)
            flag(is_present & outside, Reason.OUT_OF_RANGE, j)
        flag(present.sum(axis=1) == 0, Reason.NO_FIELDS)

        rejected = np.flatnonzero(code)
        for k in rejected.tolist():
            reason = _CODES[code[k]]
            assert reason is not None  # rows in `rejected` have a non-zero code
            self._reject_reading(
                reason,
                _detail(reason, spec, rows[k], int(bad_field[k]), now, self._limits),
                kind_rows.message[k],
                kind_rows.position[k],
                rows[k],
            )
        keep = code == 0
        message_no = np.asarray(kind_rows.message, dtype=np.intp)[keep]
        series_of, device_of, city_of, district_of = per_message
        # Microsecond rounding keeps float epoch seconds deterministic: a redelivered reading
        # lands on exactly the same InfluxDB timestamp and overwrites itself.
        ts_ns = np.round(ts_s[keep] * 1e6).astype(np.int64) * 1000
        return KindColumns(
            spec=spec,
            series=series_of[message_no],
            device_ids=device_of[message_no],
            cities=city_of[message_no],
            districts=district_of[message_no],
            ts_ns=ts_ns,
            values=values[keep],
            present=present[keep],
        )


def _json_default(value: object) -> str:
    if isinstance(value, NonFinite):
        return value.token
    return repr(value)


def _numbers(
    raw: list[Any], *, binary: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Values, presence and wrong-type masks of one field column."""
    n = len(raw)
    if set(map(type, raw)) <= (_BINARY if binary else _NUMERIC):
        try:
            column = np.array(raw, dtype=np.float64)  # None becomes NaN
        except OverflowError:  # an integer beyond float range: sort it out value by value
            pass
        else:
            # JSON cannot carry NaN (tokens become NonFinite), so NaN here means absent.
            return column, ~np.isnan(column), np.zeros(n, dtype=np.bool_)
    column = np.full(n, np.nan)
    present = np.zeros(n, dtype=np.bool_)
    wrong = np.zeros(n, dtype=np.bool_)
    for k, value in enumerate(raw):
        if value is None:
            continue
        present[k] = True
        kind = type(value)
        if kind is NonFinite:
            column[k] = math.inf  # reported as not_finite
        elif kind is float or kind is int or (binary and kind is bool):
            try:
                column[k] = float(value)
            except OverflowError:
                column[k] = math.inf if value > 0 else -math.inf  # reported as not_finite
        else:
            wrong[k] = True
            column[k] = 0.0
    return column, present, wrong


def _timestamps(
    raw: list[Any],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Epoch seconds, missing and malformed masks of the `ts` column."""
    n = len(raw)
    kinds = set(map(type, raw))
    if kinds <= {float, int}:
        try:
            seconds = np.array(raw, dtype=np.float64)
        except OverflowError:
            pass
        else:
            return seconds, np.zeros(n, dtype=np.bool_), ~np.isfinite(seconds)
    seconds = np.full(n, np.nan)
    missing = np.zeros(n, dtype=np.bool_)
    bad = np.zeros(n, dtype=np.bool_)
    for k, value in enumerate(raw):
        kind = type(value)
        if value is None:
            missing[k] = True
        elif kind is float or kind is int:
            try:
                seconds[k] = float(value)
            except OverflowError:
                bad[k] = True
            else:
                bad[k] = not math.isfinite(seconds[k])
        elif kind is str:
            parsed = _rfc3339(value)
            if parsed is None:
                bad[k] = True
            else:
                seconds[k] = parsed
        else:
            bad[k] = True
    return seconds, missing, bad


def _rfc3339(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp with a zone offset; None if it is not one."""
    try:
        return parse_time(text, epoch=False, full=True)
    except TimestampError:
        return None


def _detail(
    reason: Reason, spec: KindSpec, reading: dict[str, Any], column: int, now: float, limits: Limits
) -> str:
    """A human-readable explanation of why one reading was rejected."""
    ts = reading.get("ts")
    if reason is Reason.MISSING_TIMESTAMP:
        return "reading has no ts (observation time)"
    if reason is Reason.BAD_TIMESTAMP:
        return f"ts {ts!r} is neither epoch seconds nor an RFC 3339 time with offset"
    if reason is Reason.FUTURE_TIMESTAMP:
        hint = " (milliseconds? ts is epoch seconds)" if isinstance(ts, int | float) else ""
        return f"ts {ts!r} is more than {limits.clock_skew_s:g} s ahead of now ({now:.0f}){hint}"
    if reason is Reason.TOO_OLD:
        days = limits.max_age_s / 86400
        return f"ts {ts!r} is older than the {days:g}-day horizon"
    if reason is Reason.NO_FIELDS:
        return f"reading has no {spec.kind} field"
    field_spec = spec.fields[column]
    value = reading.get(field_spec.name)
    if reason is Reason.WRONG_TYPE:
        return f"{field_spec.name} must be a number, got {type(value).__name__}"
    if reason is Reason.NOT_FINITE:
        shown = value.token if isinstance(value, NonFinite) else value
        return f"{field_spec.name} is not finite: {shown}"
    if field_spec.binary:
        return f"{field_spec.name}={value!r} must be 0 or 1"
    return (
        f"{field_spec.name}={value!r} outside the physical range "
        f"[{field_spec.low:g}, {field_spec.high:g}] {field_spec.unit}"
    )
