"""Scripted gauge scenarios for alert drills: a flood wave, and a level flapping at a threshold.

Each returns the readings one gauge publishes, `{"ts", "level_cm", "rain_mm", "battery_v"}`,
so a drill or a test publishes them over MQTT exactly as a field logger would.
"""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = ["flapping", "flood_wave", "steady"]


# A real gauge never repeats one value for long (the stuck detector would rightly flag it and
# keep its readings out of the flood level): a small fixed ripple, the same on every run.
_RIPPLE_CM: Final = (0.0, 0.4, -0.3, 0.2, -0.4, 0.3, -0.1)


def _reading(ts: float, level_cm: float) -> dict[str, Any]:
    ripple = _RIPPLE_CM[int(ts // 60) % len(_RIPPLE_CM)]
    return {
        "ts": round(ts, 3),
        "level_cm": round(level_cm + ripple, 1),
        "rain_mm": 0.0,
        "battery_v": 12.6,
    }


def steady(start: float, step_s: float, steps: int, level_cm: float) -> list[dict[str, Any]]:
    """A gauge at one level."""
    return [_reading(start + i * step_s, level_cm) for i in range(steps)]


def flood_wave(
    start: float,
    step_s: float,
    base_cm: float,
    peak_cm: float,
    rise_steps: int,
    crest_steps: int,
    fall_steps: int,
) -> list[dict[str, Any]]:
    """A wave: a smooth rise from base to peak, a crest, a smooth fall back to base."""
    out = []
    t = start
    for i in range(rise_steps):
        share = (1 - math.cos(math.pi * i / rise_steps)) / 2
        out.append(_reading(t, base_cm + (peak_cm - base_cm) * share))
        t += step_s
    for _ in range(crest_steps):
        out.append(_reading(t, peak_cm))
        t += step_s
    for i in range(1, fall_steps + 1):
        share = (1 + math.cos(math.pi * i / fall_steps)) / 2
        out.append(_reading(t, base_cm + (peak_cm - base_cm) * share))
        t += step_s
    return out


def flapping(
    start: float, step_s: float, steps: int, threshold_cm: float, swing_cm: float
) -> list[dict[str, Any]]:
    """A level that crosses a threshold up and down on every reading (a gauge at the edge)."""
    return [
        _reading(start + i * step_s, threshold_cm + (swing_cm if i % 2 == 0 else -swing_cm))
        for i in range(steps)
    ]
