"""Six-dimension scores from a declared scoring model (a TOML file in deploy/).

Each indicator of the model reads one area metric (see api.areas), normalises it to 0-100
between its `worst` and `best` values, and each dimension is the weighted mean of its
indicators that have fresh data. A dimension with no fresh indicator is "not measured": its
score is null, never an invented number.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["DIMENSIONS", "ScoringModel", "ScoringModelError"]

DIMENSIONS: Final = {
    "smart_governance": "Smart Governance",
    "smart_economy": "Smart Economy",
    "smart_living": "Smart Living",
    "smart_environment": "Smart Environment",
    "smart_society": "Smart Society",
    "smart_branding": "Smart Branding",
}


class ScoringModelError(ValueError):
    """A scoring model file that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class IndicatorRule:
    """How one indicator is read and normalised."""

    name: str
    label: str
    source: str
    best: float
    worst: float
    max_age_s: float

    def normalise(self, value: float) -> float:
        """0 at `worst`, 100 at `best`, clipped; works whichever of the two is larger."""
        share = (value - self.worst) / (self.best - self.worst)
        return 100.0 * min(1.0, max(0.0, share))


@dataclass(frozen=True, slots=True)
class ScoringModel:
    """Indicators and the weights of each dimension."""

    indicators: dict[str, IndicatorRule]
    weights: dict[str, dict[str, float]]  # dimension -> indicator -> weight
    source: str

    @classmethod
    def load(cls, path: Path) -> ScoringModel:
        """Read and check a model file."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScoringModelError(f"{path}: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<model>") -> ScoringModel:
        """Build a model from parsed TOML."""
        indicators: dict[str, IndicatorRule] = {}
        for name, spec in data.get("indicators", {}).items():
            try:
                rule = IndicatorRule(
                    name=name,
                    label=str(spec.get("label", name)),
                    source=str(spec["source"]),
                    best=float(spec["best"]),
                    worst=float(spec["worst"]),
                    max_age_s=float(spec.get("max_age_s", 3 * 3600)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ScoringModelError(f"{source}: indicator {name!r}: {exc!r}") from None
            if rule.best == rule.worst:
                raise ScoringModelError(f"{source}: indicator {name!r}: best equals worst")
            indicators[name] = rule
        weights: dict[str, dict[str, float]] = {}
        dimensions = data.get("dimensions", {})
        for dimension in dimensions:
            if dimension not in DIMENSIONS:
                raise ScoringModelError(f"{source}: unknown dimension {dimension!r}")
        for dimension in DIMENSIONS:
            declared = dimensions.get(dimension, {}).get("weights", {})
            for name, weight in declared.items():
                if name not in indicators:
                    raise ScoringModelError(
                        f"{source}: dimension {dimension!r} uses undeclared indicator {name!r}"
                    )
                if not isinstance(weight, int | float) or weight <= 0:
                    raise ScoringModelError(
                        f"{source}: weight of {name!r} in {dimension!r} must be > 0"
                    )
            weights[dimension] = {k: float(v) for k, v in declared.items()}
        return cls(indicators, weights, source)

    def score(self, metrics: dict[str, tuple[float, float]], now: float) -> list[dict[str, Any]]:
        """Scores of the six dimensions for one area, each with its indicators' contributions."""
        out = []
        for dimension, label in DIMENSIONS.items():
            rows: list[dict[str, Any]] = []
            used: list[tuple[float, float]] = []  # (weight, normalised)
            for name, weight in self.weights[dimension].items():
                rule = self.indicators[name]
                found = metrics.get(rule.source)
                row: dict[str, Any] = {
                    "indicator": name,
                    "label": rule.label,
                    "source": rule.source,
                    "weight": weight,
                    "value": None,
                    "normalised": None,
                    "contribution": None,
                    "age_s": None,
                    "stale": None,
                }
                if found is not None:
                    value, ts = found
                    age = max(0.0, now - ts)
                    row.update(
                        value=value,
                        normalised=rule.normalise(value),
                        age_s=age,
                        stale=age > rule.max_age_s,
                    )
                    if not row["stale"]:
                        used.append((weight, row["normalised"]))
                rows.append(row)
            total = sum(w for w, _ in used)
            score = sum(w * s for w, s in used) / total if total else None
            for row in rows:
                if row["normalised"] is not None and not row["stale"] and total:
                    row["contribution"] = row["weight"] * row["normalised"] / total
            out.append(
                {
                    "dimension": dimension,
                    "label": label,
                    "score": score,
                    "measured": score is not None,
                    "reason": None if score is not None else _why_not(rows),
                    "contributions": rows,
                }
            )
        return out


def _why_not(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no live indicator feeds this dimension in the scoring model"
    if all(r["value"] is None for r in rows):
        return "none of its indicators has data"
    return "all of its indicators' data are older than their max_age_s"
