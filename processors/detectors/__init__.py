"""Anomaly detectors: each gives a score in [0, 1] and, separately, a thresholded decision."""

from processors.detectors.base import BatchView, Findings, Readings
from processors.detectors.drift import DriftDetector
from processors.detectors.impossible import ImpossibleDetector, PhysicalRange
from processors.detectors.normal import NormalDetector
from processors.detectors.protocol import Detector, DetectorBase, Report, Severity
from processors.detectors.rate import RateDetector
from processors.detectors.registry import DETECTORS, SEVERITY, detectors_for
from processors.detectors.silence import SilenceDetector
from processors.detectors.spike import SpikeDetector
from processors.detectors.streetlight import StreetlightDetector, streetlight_findings
from processors.detectors.stuck import StuckDetector

__all__ = [
    "DETECTORS",
    "SEVERITY",
    "BatchView",
    "Detector",
    "DetectorBase",
    "DriftDetector",
    "Findings",
    "ImpossibleDetector",
    "NormalDetector",
    "PhysicalRange",
    "RateDetector",
    "Readings",
    "Report",
    "Severity",
    "SilenceDetector",
    "SpikeDetector",
    "StreetlightDetector",
    "StuckDetector",
    "detectors_for",
    "streetlight_findings",
]
