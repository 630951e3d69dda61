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
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from api.tomlfile import message as _message
from api.tomlfile import toml_lines as _toml_lines
from api.tomlfile import where as _where

__all__ = [
    "DIMENSIONS",
    "DimensionSpec",
    "IndicatorSpec",
    "ScoringModel",
    "ScoringModelError",
    "ScoringModelSpec",
]

DIMENSIONS: Final = {
    "smart_governance": "Smart Governance",
    "smart_economy": "Smart Economy",
    "smart_living": "Smart Living",
    "smart_environment": "Smart Environment",
    "smart_society": "Smart Society",
    "smart_branding": "Smart Branding",
}


class ScoringModelError(ValueError):
    """A scoring model that cannot be used; the message says where (file, line, field), why."""


_DEFAULT_MAX_AGE_S: Final = 3 * 3600.0
# Weights are TOML numbers: not strings, not booleans.
_Weight = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]


def _known_dimension(name: str) -> str:
    if name not in DIMENSIONS:
        raise ValueError(f"unknown dimension {name!r}; known dimensions: {', '.join(DIMENSIONS)}")
    return name


class IndicatorSpec(BaseModel):
    """One `[indicators.NAME]` table: which area metric it reads and how it is normalised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str | None = None
    source: str = Field(min_length=1, description="an area metric, e.g. air_quality.ispu_mean")
    best: float = Field(allow_inf_nan=False)
    worst: float = Field(allow_inf_nan=False)
    max_age_s: float = Field(default=_DEFAULT_MAX_AGE_S, gt=0)

    @field_validator("worst")
    @classmethod
    def _differs_from_best(cls, worst: float, info: ValidationInfo) -> float:
        if info.data.get("best") == worst:
            raise ValueError("best equals worst")
        return worst


class DimensionSpec(BaseModel):
    """One `[dimensions.NAME]` table: the weights of the indicators it is the mean of."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: dict[str, _Weight] = Field(default_factory=dict)


class ScoringModelSpec(BaseModel):
    """A whole scoring model file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicators: dict[str, IndicatorSpec] = Field(default_factory=dict)
    dimensions: dict[Annotated[str, AfterValidator(_known_dimension)], DimensionSpec] = Field(
        default_factory=dict
    )


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
            text = path.read_text()
            data = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ScoringModelError(f"{path}: {exc}") from None
        return cls.from_dict(data, str(path), text=text)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], source: str = "<model>", *, text: str | None = None
    ) -> ScoringModel:
        """Build a model from parsed TOML; `text`, the file's, lets errors name their line."""
        lines = _toml_lines(text) if text is not None else {}
        try:
            spec = ScoringModelSpec.model_validate(data)
        except ValidationError as exc:
            raise ScoringModelError(
                "; ".join(f"{_where(source, e['loc'], lines)}: {_message(e)}" for e in exc.errors())
            ) from None
        indicators = {
            name: IndicatorRule(
                name=name,
                label=name if rule.label is None else rule.label,
                source=rule.source,
                best=rule.best,
                worst=rule.worst,
                max_age_s=rule.max_age_s,
            )
            for name, rule in spec.indicators.items()
        }
        weights: dict[str, dict[str, float]] = {}
        for dimension in DIMENSIONS:
            declared = spec.dimensions.get(dimension, DimensionSpec()).weights
            for name in declared:
                if name not in indicators:
                    where = _where(source, ("dimensions", dimension, "weights", name), lines)
                    raise ScoringModelError(
                        f"{where}: dimension {dimension!r} uses undeclared indicator {name!r}"
                    )
            weights[dimension] = dict(declared)
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
