"""Declared, versioned per-device state arrays: grown, saved and restored by their names.

A holder of per-device state (a detector, the shared last readings, the live indicators)
declares its arrays in `state` (name and fill of new rows) and a `version` of that layout.
Snapshot keys are "<name>.<field>", plus "<name>.__version__"; a snapshot without a version
key has the layout saved before versions were written, version 1. A holder loads all of its
declared fields or none: another version (unless `migrate` converts it), a missing field or a
field of another shape leaves it fresh, with one warning naming it and what it found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from processors.state.kernels import grow

__all__ = ["VERSION_KEY", "SavedState", "StateField"]

log = logging.getLogger(__name__)

VERSION_KEY = "__version__"
_Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class StateField:
    """One per-device state array: its attribute name and the value of a new device's row."""

    name: str
    fill: float | int | bool


class SavedState:
    """Per-device state arrays (attributes, first axis: devices) declared by name and version."""

    name: ClassVar[str]  # the snapshot label
    version: ClassVar[int] = 1
    state: ClassVar[tuple[StateField, ...]] = ()

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        for f in self.state:
            setattr(self, f.name, grow(getattr(self, f.name), capacity, f.fill))

    def save(self) -> dict[str, npt.NDArray[Any]]:
        """The declared arrays by snapshot key, and the layout's version (nothing if stateless)."""
        if not self.state:
            return {}
        arrays = {f"{self.name}.{f.name}": getattr(self, f.name) for f in self.state}
        arrays[f"{self.name}.{VERSION_KEY}"] = np.array(self.version, dtype=np.int64)
        return arrays

    def migrate(self, arrays: _Arrays, version: int) -> _Arrays | None:
        """The arrays of an older `version` in the current layout (None: it cannot be done)."""
        return None

    def load(self, arrays: _Arrays, capacity: int) -> bool:
        """Take the saved arrays (all declared fields) or start fresh; whether they were taken."""
        if not self.state:
            return True
        prefix = f"{self.name}."
        mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        saved = mine.pop(VERSION_KEY, None)
        found = 1 if saved is None else int(np.asarray(saved).reshape(-1)[0])
        if found != self.version:
            migrated = self.migrate(mine, found)
            if migrated is None:
                log.warning(
                    "snapshot of detector state %r is version %d, expected %d: starting it fresh",
                    self.name,
                    found,
                    self.version,
                )
                self._fresh(capacity)
                return False
            mine = dict(migrated)
        loaded: dict[str, npt.NDArray[Any]] = {}
        problems = []
        for f in self.state:
            current = getattr(self, f.name)
            value = mine.get(f.name)
            if value is None:
                problems.append(f"{f.name} missing")
            elif value.shape != (capacity, *current.shape[1:]):
                problems.append(f"{f.name} of shape {value.shape}")
            else:
                loaded[f.name] = np.array(value, dtype=current.dtype, order="C")
        if problems:
            log.warning(
                "snapshot of detector state %r (version %d) does not fit: %s; starting it fresh",
                self.name,
                found,
                ", ".join(problems),
            )
            self._fresh(capacity)
            return False
        for name, value in loaded.items():
            setattr(self, name, value)
        return True

    def _fresh(self, capacity: int) -> None:
        """Every declared array as for `capacity` new devices."""
        for f in self.state:
            setattr(self, f.name, getattr(self, f.name)[:0])
        self.ensure(capacity)
