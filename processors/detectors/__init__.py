"""Anomaly detectors: each gives a score in [0, 1] and, separately, a thresholded decision."""

from processors.detectors.base import BatchView, Findings
from processors.detectors.drift import DriftDetector
from processors.detectors.rate import RateDetector
from processors.detectors.silence import SilenceDetector
from processors.detectors.spike import SpikeDetector
from processors.detectors.streetlight import streetlight_findings
from processors.detectors.stuck import StuckDetector

__all__ = [
    "BatchView",
    "DriftDetector",
    "Findings",
    "RateDetector",
    "SilenceDetector",
    "SpikeDetector",
    "StuckDetector",
    "streetlight_findings",
]
