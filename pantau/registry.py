"""The device registry: which devices exist, where they are and their per-device facts."""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Final

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pantau.files import write_atomically
from processors.catalog import KINDS, DeviceFacts, kind_spec

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "Device",
    "DeviceError",
    "DeviceRow",
    "Registry",
    "RegistryError",
    "facts_from_registry",
]

COLUMNS: Final = (
    "device_id",
    "kind",
    "city",
    "district",
    "lat",
    "lon",
    "interval_s",
    "waspada_cm",
    "siaga_cm",
    "awas_cm",
    "rated_w",
    "river",
    "peer_group",
    "peer_order",
)
# Per-kind fact columns may be left out of the header altogether; these may not.
REQUIRED_COLUMNS: Final = COLUMNS[:7]

_GAUGE: Final = "water_level"
_LAMP: Final = "streetlight"
_THRESHOLDS: Final = ("waspada_cm", "siaga_cm", "awas_cm")
_SEGMENT: Final = re.compile(r"[a-z0-9_-]{1,64}")
# Plain decimal notation only: float() would also take "nan", "inf" and "1_000".
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_RIVER_MAX: Final = 200
_TEXTS: Final = ("river", "peer_group")
_NUMBERS: Final = ("lat", "lon", "interval_s", *_THRESHOLDS, "rated_w")


class RegistryError(ValueError):
    """A registry that cannot be used; the message names the file, row and field when known.

    `line` is the row's line number in the file (its last line, for a row with line breaks in
    quoted cells).
    """

    def __init__(
        self,
        reason: str,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        self.field = field
        where = ", ".join(
            part
            for part in (
                path,
                f"row {line}" if line is not None else None,
                f"field {field}" if field else None,
            )
            if part
        )
        super().__init__(f"{where}: {reason}" if where else reason)

    def __reduce__(
        self,
    ) -> tuple[type[RegistryError], tuple[str, str | None, int | None, str | None]]:
        """Pickle with all the arguments (the default would pass only the message)."""
        return (type(self), (self.reason, self.path, self.line, self.field))


class DeviceError(ValueError):
    """A device whose facts do not hold; `field` names the one at fault."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field

    def __reduce__(self) -> tuple[type[DeviceError], tuple[str, str | None]]:
        """Pickle with both arguments."""
        return (type(self), (self.reason, self.field))


def _as_float(name: str, value: object) -> float:
    # bool is an int subclass; True as a latitude is a bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


# Validation context of a CSV row: cells are text, an empty cell is a missing value.
_CSV: Final = {"csv": True}


def _from_csv(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("csv"))


def _required_text(value: object, info: ValidationInfo) -> object:
    if value == "" and _from_csv(info):
        raise ValueError(f"{info.field_name} is empty")
    return value


def _number(value: object, info: ValidationInfo, *, required: bool) -> float | None:
    name = str(info.field_name)
    if isinstance(value, str) and _from_csv(info):
        if not value:
            if required:
                raise ValueError(f"{name} is empty")
            return None
        value = _parse_number(name, value)
    if value is None and not required:
        return None
    return _as_float(name, value)


class _FieldError(ValueError):
    """A fact that does not hold, and the field it is about (checks across fields)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


class DeviceRow(BaseModel):
    """The registry's schema: one device's facts, checked (from a CSV row or a Device).

    Validated with context `{"csv": True}`, the values are a CSV row's cells: text, numbers in
    plain decimal notation, empty for none. Otherwise numbers must be numbers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Kind first: "unknown kind" says more than "not a topic segment" for e.g. "Air_Quality".
    kind: str
    device_id: str
    city: str
    district: str
    lat: float
    lon: float
    interval_s: float
    waspada_cm: float | None = None
    siaga_cm: float | None = None
    awas_cm: float | None = None
    rated_w: float | None = None
    river: str | None = None
    peer_group: str | None = None
    peer_order: int | None = None

    @field_validator("kind", mode="plain")
    @classmethod
    def _kind(cls, value: object, info: ValidationInfo) -> str:
        value = _required_text(value, info)
        if not isinstance(value, str) or value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; known kinds: {', '.join(KINDS)}")
        return value

    @field_validator("device_id", "city", "district", mode="plain")
    @classmethod
    def _segment(cls, value: object, info: ValidationInfo) -> str:
        value = _required_text(value, info)
        if not isinstance(value, str) or _SEGMENT.fullmatch(value) is None:
            raise ValueError(
                f"{info.field_name} {value!r} is not a topic segment [a-z0-9_-]{{1,64}}"
            )
        return value

    @field_validator("lat", "lon", "interval_s", mode="plain")
    @classmethod
    def _required_number(cls, value: object, info: ValidationInfo) -> float:
        number = _number(value, info, required=True)
        if number is None:  # not reached: _number refuses a missing required value
            raise ValueError(f"{info.field_name} is empty")
        name = info.field_name
        if name == "lat" and not -90.0 <= number <= 90.0:
            raise ValueError(f"lat {_format_float(number)} outside [-90, 90]")
        if name == "lon" and not -180.0 <= number <= 180.0:
            raise ValueError(f"lon {_format_float(number)} outside [-180, 180]")
        if name == "interval_s" and number <= 0:
            raise ValueError(f"interval_s {_format_float(number)} must be > 0")
        return number

    @field_validator(*_THRESHOLDS, "rated_w", mode="plain")
    @classmethod
    def _optional_number(cls, value: object, info: ValidationInfo) -> float | None:
        return _number(value, info, required=False)

    @field_validator(*_TEXTS, mode="plain")
    @classmethod
    def _text(cls, value: object, info: ValidationInfo) -> str | None:
        if value is None or (value == "" and _from_csv(info)):
            return None
        if not isinstance(value, str):
            raise ValueError(f"{info.field_name} must be text, got {value!r}")
        return value

    @field_validator("peer_order", mode="plain")
    @classmethod
    def _peer_order(cls, value: object, info: ValidationInfo) -> int | None:
        number = _number(value, info, required=False)
        if number is None:
            return None
        if not (number.is_integer() and number >= 1):
            raise ValueError(f"peer_order {_format_float(number)} must be a whole number >= 1")
        return int(number)

    @model_validator(mode="after")
    def _facts_of_kind(self) -> DeviceRow:
        self._check_gauge_facts()
        self._check_lamp_facts()
        self._check_peers()
        return self

    def _check_gauge_facts(self) -> None:
        thresholds = (self.waspada_cm, self.siaga_cm, self.awas_cm)
        given = [n for n, v in zip(_THRESHOLDS, thresholds, strict=True) if v is not None]
        if self.kind != _GAUGE:
            if given:
                raise _FieldError(
                    given[0], f"{', '.join(given)} given for kind {self.kind} (gauges only)"
                )
            if self.river is not None:
                raise _FieldError("river", f"river given for kind {self.kind} (gauges only)")
            return
        if len(given) != len(_THRESHOLDS):
            missing = [n for n in _THRESHOLDS if n not in given]
            raise _FieldError(missing[0], f"water_level gauge needs all of {', '.join(missing)}")
        waspada, siaga, awas = (float(t) for t in thresholds if t is not None)
        if not waspada < siaga < awas:
            raise _FieldError(
                "siaga_cm" if not waspada < siaga else "awas_cm",
                "thresholds must rise strictly: waspada_cm < siaga_cm < awas_cm, got "
                f"{_format_float(waspada)}, {_format_float(siaga)}, {_format_float(awas)}",
            )
        # A threshold outside what the sensor can report would never (or always) fire.
        level = kind_spec(_GAUGE).fields[kind_spec(_GAUGE).column("level_cm")]
        if not (level.low <= waspada and awas <= level.high):
            raise _FieldError(
                "waspada_cm" if waspada < level.low else "awas_cm",
                f"thresholds must lie within the level_cm range "
                f"[{_format_float(level.low)}, {_format_float(level.high)}]",
            )
        _check_text("river", self.river)

    def _check_peers(self) -> None:
        _check_text("peer_group", self.peer_group)
        if self.peer_order is None:
            return
        if self.kind != _GAUGE:
            raise _FieldError("peer_order", f"peer_order given for kind {self.kind} (gauges only)")
        if self.peer_group is None and self.river is None:
            raise _FieldError("peer_order", "peer_order needs a river or a peer_group")

    def _check_lamp_facts(self) -> None:
        if self.kind != _LAMP:
            if self.rated_w is not None:
                raise _FieldError(
                    "rated_w", f"rated_w given for kind {self.kind} (streetlights only)"
                )
            return
        if self.rated_w is None:
            raise _FieldError("rated_w", "streetlight needs rated_w")
        power = kind_spec(_LAMP).fields[kind_spec(_LAMP).column("power_w")]
        if not 0 < self.rated_w <= power.high:
            raise _FieldError(
                "rated_w",
                f"rated_w {_format_float(self.rated_w)} outside (0, {_format_float(power.high)}]",
            )


def _check_text(name: str, value: str | None) -> None:
    """A free-text fact (river, peer group): one line, trimmed, not too long."""
    if value is None:
        return
    if not value or value != value.strip():
        raise _FieldError(name, f"{name} {value!r} must be non-empty, without outer spaces")
    if _CONTROL.search(value) or len(value) > _RIVER_MAX:
        raise _FieldError(
            name, f"{name} {value!r} must be one line of at most {_RIVER_MAX} characters"
        )


def _problem(exc: ValidationError) -> tuple[str | None, str]:
    """The field and reason of a row's first problem (fields in column order, kind first)."""
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    field = getattr(cause, "field", None) or (str(error["loc"][0]) if error["loc"] else None)
    reason = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]
    return field, reason


@dataclass(frozen=True, slots=True)
class Device:
    """One registered device and the facts the processors need about it."""

    device_id: str
    kind: str
    city: str
    district: str
    lat: float
    lon: float
    interval_s: float
    waspada_cm: float | None = None
    siaga_cm: float | None = None
    awas_cm: float | None = None
    rated_w: float | None = None
    river: str | None = None
    peer_group: str | None = None
    peer_order: int | None = None

    def __post_init__(self) -> None:
        """Validate every field (a DeviceRow); numbers are stored as floats."""
        try:
            row = DeviceRow.model_validate({name: getattr(self, name) for name in COLUMNS})
        except ValidationError as exc:
            field, reason = _problem(exc)
            raise DeviceError(reason, field) from None
        for name in (*_NUMBERS, "peer_order"):
            # Frozen dataclass: normalising ints to floats needs object.__setattr__.
            object.__setattr__(self, name, getattr(row, name))

    @classmethod
    def from_row(cls, row: DeviceRow) -> Device:
        """The device of a validated row (not validated again)."""
        device: Device = object.__new__(cls)
        for name in COLUMNS:
            object.__setattr__(device, name, getattr(row, name))
        return device

    @property
    def topic(self) -> str:
        """The MQTT topic this device publishes its readings on."""
        return f"city/{self.city}/{self.district}/{self.kind}/{self.device_id}"

    @property
    def peer(self) -> str | None:
        """The peer group the drift detector compares the device within (None: its district).

        Unless `peer_group` is given: a gauge's river (`river:klawing`; none without a river),
        an air station's airshed, its city (`airshed:purbalingga`), a lamp's circuit, its
        district (`circuit:bobotsari`).
        """
        if self.peer_group is not None:
            return self.peer_group
        if self.kind == _GAUGE:
            return None if self.river is None else "river:" + "-".join(self.river.lower().split())
        if self.kind == _LAMP:
            return f"circuit:{self.district}"
        return f"airshed:{self.city}"


class Registry:
    """An immutable collection of devices keyed by device_id, unique across all cities."""

    __slots__ = ("_by_id", "_by_kind")

    def __init__(self, devices: Iterable[Device]) -> None:
        """Index the devices, keeping their order; duplicate ids raise RegistryError."""
        by_id: dict[str, Device] = {}
        for device in devices:
            if device.device_id in by_id:
                raise RegistryError(f"duplicate device_id {device.device_id!r}", field="device_id")
            by_id[device.device_id] = device
        self._by_id = MappingProxyType(by_id)
        self._by_kind = MappingProxyType(
            {kind: tuple(d for d in by_id.values() if d.kind == kind) for kind in KINDS}
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> Registry:
        """Load a registry CSV (UTF-8, header row first); any problem raises RegistryError."""
        name = os.fspath(path)
        data = Path(path).read_bytes()
        try:
            # utf-8-sig: spreadsheet programs like to prepend a byte-order mark.
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise RegistryError(f"not valid UTF-8 ({exc.reason})", name, line) from None
        return cls(_parse(text, name))

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the registry in the from_csv format, replacing the file atomically."""
        target = Path(path)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for device in self._by_id.values():
            writer.writerow(_row(device))
        # A registry is configuration other services must read.
        write_atomically(target, buffer.getvalue(), mode=0o644)

    def get(self, device_id: str) -> Device | None:
        """The device with this id, or None."""
        return self._by_id.get(device_id)

    def by_kind(self, kind: str) -> tuple[Device, ...]:
        """The devices of one kind in registry order; an unknown kind raises KeyError."""
        kind_spec(kind)
        return self._by_kind[kind]

    def districts(self, city: str | None = None) -> tuple[str, ...]:
        """Sorted distinct districts, of one city if given."""
        return tuple(
            sorted({d.district for d in self._by_id.values() if city is None or d.city == city})
        )

    def cities(self) -> tuple[str, ...]:
        """Sorted distinct cities."""
        return tuple(sorted({d.city for d in self._by_id.values()}))

    def __len__(self) -> int:
        """Number of devices."""
        return len(self._by_id)

    def __iter__(self) -> Iterator[Device]:
        """The devices in registry order."""
        return iter(self._by_id.values())

    def __contains__(self, item: object) -> bool:
        """True for a registered device_id (or a Device equal to the registered one)."""
        if isinstance(item, Device):
            return self._by_id.get(item.device_id) == item
        return isinstance(item, str) and item in self._by_id

    def __eq__(self, other: object) -> bool:
        """Same devices in the same order."""
        if not isinstance(other, Registry):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __hash__(self) -> int:
        """Hash of the device tuple, consistent with equality."""
        return hash(tuple(self))

    def __repr__(self) -> str:
        """A short summary, not the whole fleet."""
        counts = ", ".join(f"{k}={len(v)}" for k, v in self._by_kind.items())
        return f"Registry({len(self)} devices: {counts})"


def _format_float(value: float) -> str:
    # Whole numbers as integers ("60", not "60.0"); otherwise repr, which round-trips exactly.
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _row(device: Device) -> list[str]:
    cells: list[str] = []
    for field in fields(Device):
        value = getattr(device, field.name)
        if value is None:
            cells.append("")
        elif isinstance(value, float):
            cells.append(_format_float(value))
        else:
            cells.append(str(value))
    return cells


def _parse_number(column: str, cell: str) -> float:
    if _NUMBER.fullmatch(cell) is None:
        raise ValueError(f"{column} {cell!r} is not a number (use a decimal point)")
    return float(cell)


def _parse(text: str, path: str) -> Iterator[Device]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise RegistryError("empty file; a header row is required", path, 1)
        columns = [cell.strip() for cell in header]
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise RegistryError(
                f"unknown column(s) {', '.join(map(repr, unknown))}; "
                f"known columns: {','.join(COLUMNS)}",
                path,
                1,
            )
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise RegistryError(f"repeated column(s) {', '.join(repeated)}", path, 1)
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise RegistryError(f"missing required column(s) {', '.join(missing)}", path, 1)

        first_line: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are harmless
            if len(cells) != len(columns):
                raise RegistryError(
                    f"{len(cells)} cells, the header has {len(columns)}", path, line
                )
            values = {c: cell.strip() for c, cell in zip(columns, cells, strict=True)}
            try:
                device = Device.from_row(DeviceRow.model_validate(values, context=_CSV))
            except ValidationError as exc:
                field, reason = _problem(exc)
                raise RegistryError(reason, path, line, field) from None
            if device.device_id in first_line:
                raise RegistryError(
                    f"duplicate device_id {device.device_id!r} "
                    f"(first on line {first_line[device.device_id]})",
                    path,
                    line,
                    "device_id",
                )
            first_line[device.device_id] = line
            yield device
    except csv.Error as exc:
        raise RegistryError(f"malformed CSV: {exc}", path, reader.line_num) from None


def facts_from_registry(registry: Registry | None) -> dict[str, DeviceFacts]:
    """Registry facts the processors need, by device id."""
    if registry is None:
        return {}
    nan = float("nan")

    def value(x: float | None) -> float:
        return nan if x is None else float(x)

    return {
        d.device_id: DeviceFacts(
            lat=d.lat,
            lon=d.lon,
            interval_s=d.interval_s,
            rated_w=value(d.rated_w),
            waspada_cm=value(d.waspada_cm),
            siaga_cm=value(d.siaga_cm),
            awas_cm=value(d.awas_cm),
            peer_order=value(d.peer_order),
        )
        for d in registry
    }
