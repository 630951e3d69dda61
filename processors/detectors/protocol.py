"""The detector protocol: what every detector of a kind's bank declares and does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import numpy.typing as npt

from processors.catalog import KindSpec
from processors.detectors.base import BatchView, Findings
from processors.state import SavedState, StateField

__all__ = ["Detector", "DetectorBase", "Report", "Severity"]

Severity = Literal["critical", "warning", "info"]
_Arrays = Mapping[str, npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class Report:
    """A kind of finding a detector reports, and how urgent it is for the operations centre."""

    finding: str
    severity: Severity


@runtime_checkable
class Detector(Protocol):
    """A detector over all devices of one kind: per-device state in arrays, a batch at a time.

    `process` returns one Findings per entry of `reports`, in that order. `state` declares
    the per-device arrays it keeps (its attributes), saved by `save` and taken back by `load`
    under its `name` and `version` (see processors.state.saved).
    """

    name: ClassVar[str]  # the snapshot label
    version: ClassVar[int]  # of the saved state's layout
    state: ClassVar[tuple[StateField, ...]]
    reports: ClassVar[tuple[Report, ...]]
    fresh_only: ClassVar[bool]  # False: also judges a batch with no fresh reading
    report_all: bool  # False: findings only for flagged readings (the live path)

    @classmethod
    def applies(cls, spec: KindSpec) -> bool:
        """Whether the detector belongs in the bank of this kind."""
        ...

    @classmethod
    def for_kind(cls, spec: KindSpec, *, report_all: bool, **params: Any) -> Self:
        """The detector for a kind (params: the detector's own keyword arguments)."""
        ...

    def ensure(self, capacity: int) -> None:
        """Make room for `capacity` devices."""
        ...

    def take_facts(self, facts: Mapping[str, npt.NDArray[Any]], start: int, stop: int) -> None:
        """Take the registry facts (see bank.DeviceFacts) of state rows [start, stop)."""
        ...

    def process(self, batch: BatchView) -> list[Findings]:
        """Judge a batch and learn from it: one Findings per report."""
        ...

    def save(self) -> dict[str, npt.NDArray[Any]]:
        """The declared state by snapshot key, with its version."""
        ...

    def load(self, arrays: _Arrays, capacity: int) -> bool:
        """Take saved state (all or nothing: else fresh, logged); whether it was taken."""
        ...


class DetectorBase(SavedState):
    """The common part of the detectors: saved state (SavedState) and the defaults."""

    reports: ClassVar[tuple[Report, ...]] = ()
    fresh_only: ClassVar[bool] = True
    report_all: bool = True

    @classmethod
    def applies(cls, spec: KindSpec) -> bool:
        """Whether the detector belongs in the bank of this kind (every kind by default)."""
        return True

    def take_facts(self, facts: Mapping[str, npt.NDArray[Any]], start: int, stop: int) -> None:
        """Take the registry facts of state rows [start, stop) (none needed by default)."""
