"""The one registration list: which detectors a kind's bank runs, in the order they report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from processors.catalog import KindSpec
from processors.detectors.drift import DriftDetector
from processors.detectors.impossible import ImpossibleDetector
from processors.detectors.normal import NormalDetector
from processors.detectors.protocol import Detector, Severity
from processors.detectors.rate import RateDetector
from processors.detectors.silence import SilenceDetector
from processors.detectors.spike import SpikeDetector
from processors.detectors.streetlight import StreetlightDetector
from processors.detectors.stuck import StuckDetector

__all__ = ["DETECTORS", "SEVERITY", "detectors_for"]

# Every detector; each kind's bank runs those that apply to it (Detector.applies), in order.
DETECTORS: Final[tuple[type[Detector], ...]] = (
    ImpossibleDetector,
    SpikeDetector,
    StuckDetector,
    RateDetector,
    SilenceDetector,
    DriftDetector,
    NormalDetector,
    StreetlightDetector,
)

# How urgent each finding is for the operations centre, as the detectors declare it.
SEVERITY: Final[dict[str, Severity]] = {
    report.finding: report.severity for cls in DETECTORS for report in cls.reports
}


def detectors_for(
    spec: KindSpec,
    *,
    report_all: bool = True,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Detector, ...]:
    """The detectors of a kind; `params` by detector name: that detector's keyword arguments."""
    params = params or {}
    unknown = set(params) - {cls.name for cls in DETECTORS}
    if unknown:
        raise ValueError(f"no detector named {', '.join(sorted(unknown))}")
    return tuple(
        cls.for_kind(spec, report_all=report_all, **params.get(cls.name, {}))
        for cls in DETECTORS
        if cls.applies(spec)
    )
