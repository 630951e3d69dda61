"""Alert rules declared in a TOML file (deploy/alerts.toml), checked at start.

A bad file stops `pantau` with the file, the line and the reason (AlertRulesError). Names the
file may use come from the code that produces the data: kinds from the catalog, detector
findings and severities from the detector registry, dimensions from the scoring model, flood
levels and ISPU categories from the indicator modules.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from api.alerts.episode import Subject, Target
from api.scoring import DIMENSIONS
from api.tomlfile import line_of, message, path_of, toml_lines
from processors.catalog import KINDS
from processors.detectors.registry import DETECTORS, SEVERITY
from processors.indicators.flood import FLOOD_LEVELS
from processors.indicators.ispu import ISPU_SCALE

__all__ = [
    "INDICATORS",
    "SEVERITIES",
    "AlertRules",
    "AlertRulesError",
    "Escalation",
    "IndicatorField",
    "Rule",
    "WebhookSpec",
    "load_rules",
]

Severity = Literal["info", "warning", "critical"]
RuleType = Literal["indicator", "anomaly", "offline", "score"]
Language = Literal["id", "en"]

# Ordered by urgency: an anomaly rule's `min_severity` keeps this one and those after it.
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "critical")

_RULE_NAME: Final = re.compile(r"[a-z0-9_]{1,64}")  # the rule part of an episode id
_SEGMENT: Final = re.compile(r"[a-z0-9_-]{1,64}")  # a topic segment: district, device id
_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(\.[A-Za-z0-9\-]{1,63})+")
_ENV_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_URL: Final = re.compile(r"https?://[^\s]{1,500}")


@dataclass(frozen=True, slots=True)
class IndicatorField:
    """An indicator value the collector emits that a rule may watch."""

    kind: str
    low: float  # the smallest possible value (-inf: unbounded)
    high: float  # the largest possible value (inf: unbounded)
    names: tuple[str, ...] = ()  # level or category names, in order
    lower: tuple[float, ...] = ()  # each name's lowest value

    def value_of(self, threshold: float | str) -> float:
        """A threshold as a number (a level or category name is its lowest value)."""
        if isinstance(threshold, str):
            if threshold not in self.names:
                known = ", ".join(self.names) if self.names else "none: use a number"
                raise ValueError(f"unknown level {threshold!r}; known: {known}")
            return self.lower[self.names.index(threshold)]
        if not (self.low <= threshold <= self.high):
            raise ValueError(
                f"impossible threshold {threshold:g}: must be {self.low:g}..{self.high:g}"
            )
        return float(threshold)

    def name_of(self, value: float) -> str | None:
        """The level or category a value is in; None for fields without names."""
        if not self.names:
            return None
        band = 0
        for index, lowest in enumerate(self.lower):
            if value >= lowest:
                band = index
        return self.names[band]


# The indicator values of processors/live.py that rules may watch. `availability` is a
# district value (share of lamps due that work), fed with an empty device id.
INDICATORS: Final[dict[str, IndicatorField]] = {
    "ispu": IndicatorField(
        "air_quality", 0.0, 500.0, ISPU_SCALE.names, tuple(float(x) for x in ISPU_SCALE.lower)
    ),
    "aqi": IndicatorField("air_quality", 0.0, 500.0),
    "flood_level": IndicatorField(
        "water_level", 0.0, 3.0, FLOOD_LEVELS, tuple(float(i) for i in range(len(FLOOD_LEVELS)))
    ),
    "level_cm": IndicatorField("water_level", -math.inf, math.inf),
    "rate_cm_h": IndicatorField("water_level", -math.inf, math.inf),
    "availability": IndicatorField("streetlight", 0.0, 1.0),
}

# Finding names (what anomaly messages carry as `detector`), and detector names standing for
# all of their findings.
_FINDINGS: Final[dict[str, frozenset[str]]] = {
    **{finding: frozenset({finding}) for finding in SEVERITY},
    **{cls.name: frozenset(r.finding for r in cls.reports) for cls in DETECTORS},
}

_DEFAULT_CLEAR_MIN: Final[dict[str, float]] = {"indicator": 10.0, "anomaly": 30.0, "score": 10.0}


class AlertRulesError(ValueError):
    """An alert rules file that cannot be used: where (file, line) and why."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}" if line is not None else f"{path}: {reason}")


# -- the file's shape (pydantic) ----------------------------------------------------------------

_Minutes = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
_PositiveMinutes = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
_Threshold = Annotated[float, Strict(), Field(allow_inf_nan=False)] | str
_Notify = tuple[str, ...]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _EscalationSpec(_Spec):
    after_min: _PositiveMinutes
    notify: _Notify | None = None


class _RuleSpec(_Spec):
    type: RuleType
    title: str | None = Field(default=None, max_length=200)
    severity: Severity = "warning"
    kind: str | None = None
    district: str | None = None
    device_id: str | None = None
    hold_min: _Minutes = 0.0
    clear_min: _Minutes | None = None
    notify: _Notify = ()
    language: Language | None = None
    escalate: tuple[_EscalationSpec, ...] = ()


class _IndicatorRuleSpec(_RuleSpec):
    type: Literal["indicator"]
    indicator: str
    at_or_above: _Threshold | None = None
    below: _Threshold | None = None
    clear_below: _Threshold | None = None
    clear_above: _Threshold | None = None


class _AnomalyRuleSpec(_RuleSpec):
    type: Literal["anomaly"]
    detector: str | tuple[str, ...] | None = None
    field: str | None = None
    min_severity: Severity | None = None


class _OfflineRuleSpec(_Spec):
    type: Literal["offline"]
    title: str | None = Field(default=None, max_length=200)
    severity: Severity = "warning"
    kind: str | None = None
    district: str | None = None
    device_id: str | None = None
    after_min: _PositiveMinutes | None = None
    after_intervals: _PositiveMinutes | None = None
    notify: _Notify = ()
    language: Language | None = None
    escalate: tuple[_EscalationSpec, ...] = ()


class _ScoreRuleSpec(_RuleSpec):
    type: Literal["score"]
    dimension: str
    below: Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]
    clear_above: Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)] | None = None


_RULE_SPECS: Final[dict[str, type[_Spec]]] = {
    "indicator": _IndicatorRuleSpec,
    "anomaly": _AnomalyRuleSpec,
    "offline": _OfflineRuleSpec,
    "score": _ScoreRuleSpec,
}


class _WebhookSpec(_Spec):
    url: str
    secret_env: str | None = None


class _RecipientsSpec(_Spec):
    notify: _Notify = ()


class _AllRecipientsSpec(_Spec):
    districts: dict[str, _RecipientsSpec] = Field(default_factory=dict)
    regency: _RecipientsSpec = _RecipientsSpec()


class _FileSpec(_Spec):
    webhooks: dict[str, _WebhookSpec] = Field(default_factory=dict)
    recipients: _AllRecipientsSpec = _AllRecipientsSpec()
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)


# -- what the engine and the notifier use -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """A named webhook: where to post, and the env variable holding its HMAC key (if its own)."""

    url: str
    secret_env: str | None = None


@dataclass(frozen=True, slots=True)
class Escalation:
    """An escalation level: after so long unacknowledged, notify these (None: the rule's own)."""

    after_s: float
    notify: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One checked alert rule; times in seconds, thresholds as numbers."""

    name: str
    type: RuleType
    severity: Severity
    title: str
    kind: str | None = None
    district: str | None = None
    device_id: str | None = None
    hold_s: float = 0.0
    clear_s: float = 0.0
    notify: tuple[str, ...] = ()
    language: Language | None = None
    escalate: tuple[Escalation, ...] = ()
    # indicator and score rules: value `op` threshold is the condition; it is clear when
    # past `clear` the other way (the threshold itself unless a hysteresis value is given).
    indicator: str | None = None
    op: Literal["at_or_above", "below"] | None = None
    threshold: float | None = None
    clear: float | None = None
    # anomaly rules
    findings: frozenset[str] | None = None  # None: any detector finding
    field: str | None = None
    min_severity: Severity | None = None
    # offline rules
    after_s: float | None = None
    after_intervals: float | None = None
    # score rules
    dimension: str | None = None

    def watches(self, subject: Subject) -> bool:
        """Whether the subject is in this rule's scope."""
        if self.type == "score":
            return subject.kind == "area" and self.district in (None, subject.district)
        return (
            subject.kind != "area"
            and self.kind in (None, subject.kind)
            and self.district in (None, subject.district)
            and self.device_id in (None, subject.device_id)
        )

    def holds(self, value: float) -> bool:
        """Whether a value meets the condition (indicator and score rules)."""
        assert self.threshold is not None
        return value >= self.threshold if self.op == "at_or_above" else value < self.threshold

    def cleared(self, value: float) -> bool:
        """Whether a value is past the clear threshold (indicator and score rules)."""
        assert self.clear is not None
        return value < self.clear if self.op == "at_or_above" else value >= self.clear

    def worse(self, value: float, than: float | None) -> bool:
        """Whether a value is further into the condition than another."""
        if than is None:
            return True
        return value > than if self.op == "at_or_above" else value < than

    def detail(self, value: float) -> str:
        """What the condition is at this (peak) value, for people: "Siaga", "ISPU Tidak Sehat"."""
        if self.type == "score":
            return f"{self.dimension} < {_number(self.threshold)}"
        if self.type == "indicator" and self.indicator is not None:
            spec = INDICATORS[self.indicator]
            name = spec.name_of(value)
            if name is not None:
                return name if self.indicator == "flood_level" else f"ISPU {name}"
            sign = ">=" if self.op == "at_or_above" else "<"
            return f"{self.indicator} {sign} {_number(self.threshold)}"
        return self.type


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dataclass(frozen=True, slots=True)
class AlertRules:
    """All rules of a file, its webhooks and per-area recipients."""

    rules: tuple[Rule, ...]
    webhooks: dict[str, WebhookSpec] = field(default_factory=dict)
    district_notify: dict[str, tuple[str, ...]] = field(default_factory=dict)
    regency_notify: tuple[str, ...] = ()
    source: str = "<rules>"

    def rule(self, name: str) -> Rule:
        """The rule of that name (KeyError if none)."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def targets(
        self, rule: Rule, district: str, level: int, *, default_language: Language = "id"
    ) -> list[Target]:
        """Who to notify of an episode in `district` ("" = regency) at escalation `level`."""
        if level <= 0:
            own: tuple[str, ...] = rule.notify
        else:
            step = rule.escalate[min(level, len(rule.escalate)) - 1] if rule.escalate else None
            own = rule.notify if step is None or step.notify is None else step.notify
        area = self.district_notify.get(district, ()) if district else self.regency_notify
        language = rule.language or default_language
        seen: dict[str, Target] = {}
        for entry in (*own, *area):
            channel, _, address = entry.partition(":")
            if channel in ("webhook", "email"):
                seen.setdefault(entry, Target(channel, address, language))  # type: ignore[arg-type]
        return list(seen.values())


_FailFn = Callable[[tuple[str | int, ...], str], AlertRulesError]


# -- loading ------------------------------------------------------------------------------------


def load_rules(path: Path) -> AlertRules:
    """Read and check an alert rules file; AlertRulesError says where and why it is wrong."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AlertRulesError(source, None, f"cannot read: {exc}") from None
    return parse_rules(text, source)


def parse_rules(text: str, source: str = "<rules>") -> AlertRules:
    """Check the text of an alert rules file (`source` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        # "at end of document" has no line number: the last line is where it went wrong.
        line = int(found.group(1)) if found else max(1, len(text.splitlines()))
        raise AlertRulesError(source, line, f"bad TOML: {exc}") from None
    lines = toml_lines(text)

    def fail(loc: tuple[str | int, ...], reason: str) -> AlertRulesError:
        key = ".".join(path_of(loc))
        return AlertRulesError(source, line_of(loc, lines), f"{key}: {reason}" if key else reason)

    spec = _validate(_FileSpec, data, (), fail)
    assert isinstance(spec, _FileSpec)
    webhooks = {name: WebhookSpec(w.url, w.secret_env) for name, w in spec.webhooks.items()}
    for loc, reason in _webhook_problems(spec):
        raise fail(loc, reason)
    district_notify: dict[str, tuple[str, ...]] = {}
    for district, recipients in spec.recipients.districts.items():
        if not _SEGMENT.fullmatch(district):
            raise fail(("recipients", "districts", district), _not_segment("district", district))
        district_notify[district] = _recipients(
            recipients.notify, ("recipients", "districts", district, "notify"), webhooks, fail
        )
    regency = _recipients(
        spec.recipients.regency.notify, ("recipients", "regency", "notify"), webhooks, fail
    )
    rules = tuple(_rule(name, raw, webhooks, fail) for name, raw in spec.rules.items())
    return AlertRules(rules, webhooks, district_notify, regency, source)


def _validate(model: type[_Spec], data: Any, prefix: tuple[str | int, ...], fail: _FailFn) -> _Spec:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = "unknown key" if first["type"] == "extra_forbidden" else message(first)
        if len(exc.errors()) > 1:
            reason += f" (and {len(exc.errors()) - 1} more problems)"
        raise fail((*prefix, *first["loc"]), reason) from None


def _webhook_problems(spec: _FileSpec) -> Iterator[tuple[tuple[str, ...], str]]:
    for name, hook in spec.webhooks.items():
        if not _RULE_NAME.fullmatch(name):
            yield ("webhooks", name), f"webhook name {name!r} must match [a-z0-9_]{{1,64}}"
        if not _URL.fullmatch(hook.url):
            yield ("webhooks", name, "url"), f"not an http(s) URL: {hook.url!r}"
        if hook.secret_env is not None and not _ENV_NAME.fullmatch(hook.secret_env):
            yield (
                ("webhooks", name, "secret_env"),
                f"not an environment variable name: {hook.secret_env!r}",
            )


def _not_segment(what: str, value: str) -> str:
    return f"{what} {value!r} is not a topic segment [a-z0-9_-]{{1,64}}"


def _recipients(
    entries: tuple[str, ...],
    loc: tuple[str, ...],
    webhooks: dict[str, WebhookSpec],
    fail: _FailFn,
) -> tuple[str, ...]:
    for entry in entries:
        channel, _, address = entry.partition(":")
        if channel == "webhook":
            if address not in webhooks:
                known = ", ".join(sorted(webhooks)) or "none declared"
                raise fail(loc, f"unknown webhook {address!r} (known: {known})")
        elif channel == "email":
            if not _EMAIL.fullmatch(address):
                raise fail(loc, f"malformed e-mail address {address!r}")
        else:
            raise fail(loc, f"{entry!r}: a recipient is 'webhook:NAME' or 'email:ADDRESS'")
    return tuple(dict.fromkeys(entries))


def _rule(name: str, raw: dict[str, Any], webhooks: dict[str, WebhookSpec], fail: _FailFn) -> Rule:
    loc: tuple[str, ...] = ("rules", name)
    if not _RULE_NAME.fullmatch(name):
        raise fail(loc, f"rule name {name!r} must match [a-z0-9_]{{1,64}}")
    if not isinstance(raw, dict):
        raise fail(loc, "a rule is a table")
    kind = raw.get("type")
    if kind not in _RULE_SPECS:
        raise fail(
            (*loc, "type"),
            f"unknown rule type {kind!r}; known types: {', '.join(_RULE_SPECS)}",
        )
    spec = _validate(_RULE_SPECS[kind], raw, loc, fail)
    assert isinstance(spec, _RuleSpec | _OfflineRuleSpec)
    if spec.kind is not None and spec.kind not in KINDS:
        raise fail((*loc, "kind"), f"unknown kind {spec.kind!r}; known kinds: {', '.join(KINDS)}")
    if spec.district is not None and not _SEGMENT.fullmatch(spec.district):
        raise fail((*loc, "district"), _not_segment("district", spec.district))
    if spec.device_id is not None and not _SEGMENT.fullmatch(spec.device_id):
        raise fail((*loc, "device_id"), _not_segment("device id", spec.device_id))
    notify = _recipients(spec.notify, (*loc, "notify"), webhooks, fail)
    escalate = tuple(
        Escalation(
            step.after_min * 60.0,
            None
            if step.notify is None
            else _recipients(step.notify, (*loc, "escalate", str(i), "notify"), webhooks, fail),
        )
        for i, step in enumerate(spec.escalate)
    )
    for i in range(1, len(escalate)):
        if escalate[i].after_s <= escalate[i - 1].after_s:
            raise fail(
                (*loc, "escalate", str(i), "after_min"),
                "escalation levels must come later and later (after_min increasing)",
            )
    common: dict[str, Any] = {
        "name": name,
        "type": spec.type,
        "severity": spec.severity,
        "title": spec.title or name,
        "kind": spec.kind,
        "district": spec.district,
        "device_id": spec.device_id,
        "notify": notify,
        "language": spec.language,
        "escalate": escalate,
    }
    if isinstance(spec, _RuleSpec):
        common.update(_timing(spec))
    if isinstance(spec, _IndicatorRuleSpec):
        return _indicator_rule(spec, common, loc, fail)
    if isinstance(spec, _AnomalyRuleSpec):
        return _anomaly_rule(spec, common, loc, fail)
    if isinstance(spec, _OfflineRuleSpec):
        if (spec.after_min is None) == (spec.after_intervals is None):
            raise fail(loc, "an offline rule needs exactly one of after_min, after_intervals")
        return Rule(
            **common,
            after_s=None if spec.after_min is None else spec.after_min * 60.0,
            after_intervals=spec.after_intervals,
        )
    assert isinstance(spec, _ScoreRuleSpec)
    return _score_rule(spec, common, loc, fail)


def _timing(spec: _RuleSpec) -> dict[str, float]:
    clear_min = _DEFAULT_CLEAR_MIN[spec.type] if spec.clear_min is None else spec.clear_min
    return {"hold_s": spec.hold_min * 60.0, "clear_s": clear_min * 60.0}


def _indicator_rule(
    spec: _IndicatorRuleSpec, common: dict[str, Any], loc: tuple[str, ...], fail: _FailFn
) -> Rule:
    indicator = INDICATORS.get(spec.indicator)
    if indicator is None:
        raise fail(
            (*loc, "indicator"),
            f"unknown indicator {spec.indicator!r}; known indicators: {', '.join(INDICATORS)}",
        )
    if spec.kind is not None and spec.kind != indicator.kind:
        raise fail((*loc, "kind"), f"{spec.indicator} is an indicator of {indicator.kind}")
    if (spec.at_or_above is None) == (spec.below is None):
        raise fail(loc, "an indicator rule needs exactly one of at_or_above, below")
    op: Literal["at_or_above", "below"] = "at_or_above" if spec.below is None else "below"
    raw = spec.at_or_above if spec.below is None else spec.below
    assert raw is not None
    wrong, clear_key = (
        ("clear_above", "clear_below")
        if op == "at_or_above"
        else (
            "clear_below",
            "clear_above",
        )
    )
    if getattr(spec, wrong) is not None:
        raise fail((*loc, wrong), f"{wrong} does not apply to a '{op}' rule; use {clear_key}")
    try:
        threshold = indicator.value_of(raw)
    except ValueError as exc:
        raise fail((*loc, op), str(exc)) from None
    raw_clear = getattr(spec, clear_key)
    try:
        clear = threshold if raw_clear is None else indicator.value_of(raw_clear)
    except ValueError as exc:
        raise fail((*loc, clear_key), str(exc)) from None
    if (op == "at_or_above" and clear > threshold) or (op == "below" and clear < threshold):
        side = "at or below" if op == "at_or_above" else "at or above"
        raise fail(
            (*loc, clear_key),
            f"clear threshold {clear:g} must be {side} the threshold {threshold:g}",
        )
    return Rule(
        **common,
        indicator=spec.indicator,
        op=op,
        threshold=threshold,
        clear=clear,
    )


def _anomaly_rule(
    spec: _AnomalyRuleSpec, common: dict[str, Any], loc: tuple[str, ...], fail: _FailFn
) -> Rule:
    findings: frozenset[str] | None = None
    if spec.detector is not None:
        names = (spec.detector,) if isinstance(spec.detector, str) else spec.detector
        findings = frozenset()
        for name in names:
            if name not in _FINDINGS:
                raise fail(
                    (*loc, "detector"),
                    f"unknown detector {name!r}; known: {', '.join(sorted(_FINDINGS))}",
                )
            findings |= _FINDINGS[name]
    return Rule(
        **common,
        findings=findings,
        field=spec.field,
        min_severity=spec.min_severity,
    )


def _score_rule(
    spec: _ScoreRuleSpec, common: dict[str, Any], loc: tuple[str, ...], fail: _FailFn
) -> Rule:
    if spec.dimension not in DIMENSIONS:
        raise fail(
            (*loc, "dimension"),
            f"unknown dimension {spec.dimension!r}; known dimensions: {', '.join(DIMENSIONS)}",
        )
    for key in ("kind", "device_id"):
        if getattr(spec, key) is not None:
            raise fail((*loc, key), "a score rule's scope is a district or the regency")
    clear = spec.below if spec.clear_above is None else spec.clear_above
    if clear < spec.below:
        raise fail(
            (*loc, "clear_above"),
            f"clear threshold {clear:g} must be at or above the threshold {spec.below:g}",
        )
    return Rule(
        **common,
        dimension=spec.dimension,
        op="below",
        threshold=spec.below,
        clear=clear,
    )
