"""The alert engine: rules applied to observations, giving episodes (pure: no I/O, no clock).

Everything an episode records (its id, when it started, opened and closed) is derived from
observation times and the rules, so two replicas fed the same messages derive the same
episodes; only escalation uses the wall-clock `now` given to `tick`.

Hold: a condition true from observation time ts0 opens its episode at ts0 + hold, as soon as an
observation at or after that time (or a tick) finds it still true. Close: the condition must
be clear (past the clear threshold, which gives hysteresis in value) continuously for the clear
time; a value that is not clear in that time cancels the close, so a value flapping around the
threshold keeps one episode open instead of opening many.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from api.alerts.episode import Change, Episode, Event, Subject, episode_id
from api.alerts.rules import SEVERITIES, AlertRules, Rule
from pantau.derived import Ack

__all__ = ["AlertEngine"]

_log = logging.getLogger(__name__)

_MAX_TRACKERS: Final = 200_000  # (rule, subject) pairs followed; idle ones are dropped first
_MAX_CLOSED: Final = 1000  # closed episodes kept for the API
_MAX_DETAIL: Final = 200


@dataclass(slots=True)
class _Tracker:
    """The state of one rule on one subject."""

    started_at: float | None = None  # the condition has held since (None: it does not hold)
    last_ts: float | None = None  # the latest observation (or matching anomaly)
    last_true: bool = False  # whether the latest observation met the condition
    value: float | None = None
    peak: float | None = None
    detail: str = ""
    clear_since: float | None = None  # open episode: clear since this observation time
    episode: Episode | None = None  # the open episode, if any


@dataclass(slots=True)
class _Device:
    kind: str
    city: str
    district: str
    interval_s: float | None
    last_seen: float | None = None


class AlertEngine:
    """Alert rules applied to indicators, anomalies, readings and scores."""

    def __init__(
        self,
        rules: AlertRules,
        *,
        default_language: str = "id",
        max_trackers: int = _MAX_TRACKERS,
        max_closed: int = _MAX_CLOSED,
    ) -> None:
        self.rules = rules
        self.default_language = default_language
        self._max_trackers = max_trackers
        self._trackers: OrderedDict[tuple[str, Subject], _Tracker] = OrderedDict()
        self._live: dict[str, Episode] = {}
        self._closed: deque[Episode] = deque(maxlen=max_closed)
        self._devices: dict[str, _Device] = {}
        # Episode id -> wall-clock time escalation counts from (open episodes only).
        self._since: dict[str, float] = {}
        self._rules: dict[str, Rule] = {rule.name: rule for rule in rules.rules}
        self._by_type: dict[str, tuple[Rule, ...]] = {
            kind: tuple(r for r in rules.rules if r.type == kind)
            for kind in ("indicator", "anomaly", "offline", "score")
        }

    # -- inputs ---------------------------------------------------------------------------------

    def register_device(
        self, kind: str, city: str, district: str, device_id: str, interval_s: float | None
    ) -> None:
        """Know a device (its scope and reporting interval); keeps when it was last seen."""
        known = self._devices.get(device_id)
        last_seen = None if known is None else known.last_seen
        self._devices[device_id] = _Device(kind, city, district, interval_s, last_seen)

    def indicator(
        self,
        kind: str,
        city: str,
        district: str,
        device_id: str,
        ts: float,
        values: Mapping[str, Any],
    ) -> list[Change]:
        """Indicator values of a device (or of a district: device_id "") at observation `ts`."""
        subject = Subject(kind, city, district, device_id)
        changes: list[Change] = []
        for rule in self._by_type["indicator"]:
            if rule.indicator in values and rule.watches(subject):
                value = _number(values[rule.indicator or ""])
                if value is not None:
                    changes += self._observe(rule, subject, ts, value)
        return changes

    def scores(
        self, city: str, district: str, ts: float, dimensions: Mapping[str, float | None]
    ) -> list[Change]:
        """Dimension scores of a district (or of the regency: district "") at `ts`."""
        subject = Subject("area", city, district, "")
        changes: list[Change] = []
        for rule in self._by_type["score"]:
            if rule.dimension in dimensions and rule.watches(subject):
                value = _number(dimensions[rule.dimension or ""])
                if value is not None:
                    changes += self._observe(rule, subject, ts, value)
        return changes

    def anomaly(
        self,
        kind: str,
        city: str,
        district: str,
        device_id: str,
        ts: float,
        detector: str,
        field: str,
        severity: str,
        score: float | None,
    ) -> list[Change]:
        """A detector's finding on a device at observation `ts`."""
        subject = Subject(kind, city, district, device_id)
        changes: list[Change] = []
        for rule in self._by_type["anomaly"]:
            if rule.watches(subject) and _matches(rule, detector, field, severity):
                changes += self._anomaly(rule, subject, ts, f"{detector}/{field}", _number(score))
        return changes

    def reading(
        self, kind: str, city: str, district: str, device_id: str, ts: float
    ) -> list[Change]:
        """A device reported at `ts`: it is not offline (closes its offline episodes)."""
        device = self._devices.get(device_id)
        if device is None:  # seen before the registry said so: still worth watching
            device = self._devices[device_id] = _Device(kind, city, district, None)
        previous = device.last_seen
        if previous is not None and ts <= previous:
            return []
        device.last_seen = ts
        subject = Subject(device.kind, device.city, device.district, device_id)
        changes: list[Change] = []
        for rule in self._by_type["offline"]:
            tracker = self._trackers.get((rule.name, subject))
            if tracker is not None and tracker.episode is not None:
                at = max(ts, tracker.episode.opened_at)
                changes.append(self._close(rule, subject, tracker, at))
                continue
            after = _after(rule, device)
            if previous is None or after is None or ts - previous <= after:
                continue
            if rule.watches(subject):
                # A gap no tick saw (this replica was busy or down): the episode a ticking
                # replica opened, so that both record the same one.
                tracker = self._offline_tracker(rule, subject, previous)
                changes.append(self._open(rule, subject, tracker, opened_at=previous + after))
                changes.append(self._close(rule, subject, tracker, ts))
        return changes

    def tick(self, now: float) -> list[Change]:
        """What time alone does: offline opens, pending holds and closes, escalation."""
        changes: list[Change] = []
        changes += self._offline(now)
        for (name, subject), tracker in list(self._trackers.items()):
            if tracker.started_at is None and tracker.episode is None:
                continue  # idle: nothing can be due
            rule = self._rule(name)
            if rule is None or rule.type == "offline":
                continue
            # A device's conditions advance on its own observation time (its newest reading),
            # never on this replica's clock: replayed or late data then gives every replica,
            # ticking whenever it does, the same episodes. Areas (scores) follow the clock.
            at = now
            if subject.device_id:
                device = self._devices.get(subject.device_id)
                if device is None or device.last_seen is None:
                    continue
                at = min(now, device.last_seen)
            if rule.type == "anomaly":
                changes += self._anomaly_tick(rule, subject, tracker, at)
            else:
                changes += self._due(rule, subject, tracker, at)
        changes += self._escalate(now)
        return changes

    def acknowledge(self, episode_id: str, ack: Ack) -> Change | None:
        """Record who acknowledged an episode (again: the new note replaces the old)."""
        episode = self._find(episode_id)
        if episode is None:
            return None
        episode.ack = ack
        return Change("ack", episode.copy())

    def restore(self, episodes: Iterable[Episode]) -> None:
        """Continue episodes loaded from storage (open ones carry on; none is opened twice)."""
        for stored in episodes:
            if self._find(stored.id) is not None:
                continue
            episode = stored.copy()
            if not episode.is_open:
                self._closed.append(episode)
                continue
            rule = self._rule(episode.rule)
            if rule is None:
                _log.warning(
                    "alert episode of a rule no longer declared",
                    extra={"episode": episode.id, "rule": episode.rule},
                )
                continue
            tracker = self._tracker(rule, episode.subject)
            if tracker.episode is not None:
                continue  # this replica already has the condition's episode
            tracker.episode = episode
            self._since[episode.id] = episode.opened_at
            tracker.started_at = episode.started_at
            tracker.last_ts = max(episode.updated_at, episode.opened_at)
            tracker.last_true = True
            tracker.value, tracker.peak, tracker.detail = (
                episode.value,
                episode.peak,
                episode.detail,
            )
            self._live[episode.id] = episode

    # -- outputs --------------------------------------------------------------------------------

    def episodes(self) -> list[Episode]:
        """Open episodes, then the closed ones kept (snapshots)."""
        return [e.copy() for e in self._live.values()] + [e.copy() for e in self._closed]

    def get(self, episode_id: str) -> Episode | None:
        """One episode (a snapshot), open or recently closed."""
        episode = self._find(episode_id)
        return None if episode is None else episode.copy()

    # -- conditions on values -------------------------------------------------------------------

    def _observe(self, rule: Rule, subject: Subject, ts: float, value: float) -> list[Change]:
        tracker = self._tracker(rule, subject)
        if tracker.last_ts is not None and ts < tracker.last_ts:
            return []  # late: the state has moved on (replicas see the same order anyway)
        # What was due before this observation happened first (as a tick then would have
        # done it), so the result does not depend on when ticks ran.
        changes = self._due(rule, subject, tracker, ts)
        tracker.last_ts = ts
        true = rule.holds(value)
        tracker.last_true = true
        tracker.value = value
        episode = tracker.episode
        if episode is None:
            if not true:
                tracker.started_at, tracker.peak = None, None
                return changes
            if tracker.started_at is None:
                tracker.started_at = ts
            if rule.worse(value, tracker.peak):
                tracker.peak = value
            tracker.detail = rule.detail(tracker.peak if tracker.peak is not None else value)
            if ts >= tracker.started_at + rule.hold_s:
                changes.append(self._open(rule, subject, tracker))
            return changes
        episode.value = value
        if not rule.cleared(value):
            tracker.clear_since = None
            if rule.worse(value, episode.peak):
                episode.peak = value
                tracker.peak = value
                detail = rule.detail(value)
                if detail != episode.detail:  # a new level or category: worth telling
                    episode.detail = detail
                    changes.append(self._change("update", episode, ts))
            return changes
        if tracker.clear_since is None:
            tracker.clear_since = ts
        if ts >= tracker.clear_since + rule.clear_s:
            changes.append(self._close(rule, subject, tracker, tracker.clear_since + rule.clear_s))
        return changes

    def _due(self, rule: Rule, subject: Subject, tracker: _Tracker, now: float) -> list[Change]:
        """Open a held condition or close a cleared episode whose time has come by `now`."""
        if tracker.episode is None:
            started = tracker.started_at
            if started is not None and tracker.last_true and now >= started + rule.hold_s:
                return [self._open(rule, subject, tracker)]
        elif tracker.clear_since is not None and now >= tracker.clear_since + rule.clear_s:
            return [self._close(rule, subject, tracker, tracker.clear_since + rule.clear_s)]
        return []

    # -- anomalies ------------------------------------------------------------------------------

    def _anomaly(
        self, rule: Rule, subject: Subject, ts: float, what: str, score: float | None
    ) -> list[Change]:
        tracker = self._tracker(rule, subject)
        if tracker.last_ts is not None and ts < tracker.last_ts:
            return []
        changes: list[Change] = []
        # Quiet for the clear time before this one: the earlier condition ended then.
        changes += self._anomaly_tick(rule, subject, tracker, ts)
        tracker.last_ts = ts
        tracker.last_true = True
        tracker.value = score
        if tracker.started_at is None:
            tracker.started_at = ts
            tracker.peak, tracker.detail = None, ""
        if score is not None and (tracker.peak is None or score > tracker.peak):
            tracker.peak = score
        detail = _add_detail(tracker.detail, what)
        episode = tracker.episode
        if episode is None:
            tracker.detail = detail
            if ts >= tracker.started_at + rule.hold_s:
                changes.append(self._open(rule, subject, tracker))
            return changes
        episode.value, episode.peak = score, tracker.peak
        if detail != episode.detail:  # another detector or field: worth telling
            tracker.detail = episode.detail = detail
            changes.append(self._change("update", episode, ts))
        return changes

    def _anomaly_tick(
        self, rule: Rule, subject: Subject, tracker: _Tracker, now: float
    ) -> list[Change]:
        if tracker.started_at is None or tracker.last_ts is None:
            return []
        quiet_at = tracker.last_ts + max(rule.clear_s, 0.0)
        if now >= quiet_at and (rule.clear_s > 0 or now > tracker.last_ts):
            if tracker.episode is not None:
                return [self._close(rule, subject, tracker, quiet_at)]
            tracker.started_at, tracker.peak, tracker.detail = None, None, ""
            tracker.last_true = False
            return []
        if tracker.episode is None and now >= tracker.started_at + rule.hold_s:
            return [self._open(rule, subject, tracker)]
        return []

    # -- devices that stopped reporting ---------------------------------------------------------

    def _offline(self, now: float) -> list[Change]:
        changes: list[Change] = []
        rules = self._by_type["offline"]
        if not rules:
            return changes
        for device_id, device in self._devices.items():
            if device.last_seen is None:
                continue  # never seen: unknown, not offline
            subject = Subject(device.kind, device.city, device.district, device_id)
            for rule in rules:
                after = _after(rule, device)
                if after is None or now - device.last_seen <= after or not rule.watches(subject):
                    continue
                if (found := self._trackers.get((rule.name, subject))) and found.episode:
                    continue
                tracker = self._offline_tracker(rule, subject, device.last_seen)
                changes.append(
                    self._open(rule, subject, tracker, opened_at=device.last_seen + after)
                )
        return changes

    def _offline_tracker(self, rule: Rule, subject: Subject, last_seen: float) -> _Tracker:
        tracker = self._tracker(rule, subject)
        tracker.started_at = tracker.last_ts = last_seen
        tracker.last_true = True
        tracker.value = tracker.peak = None
        tracker.detail = "offline"
        return tracker

    # -- escalation -----------------------------------------------------------------------------

    def _escalate(self, now: float) -> list[Change]:
        changes: list[Change] = []
        for episode in list(self._live.values()):
            if episode.ack is not None:
                continue
            rule = self._rule(episode.rule)
            if rule is None:
                continue
            # Escalation counts from when this replica first held the episode open (the
            # wall clock), or from its open time if it was restored: replayed old data then
            # escalates N minutes after it is seen, not at once.
            since = self._since.setdefault(episode.id, now)
            while (
                episode.level < len(rule.escalate)
                and now - since >= rule.escalate[episode.level].after_s
            ):
                episode.level += 1
                episode.escalated_at = now
                changes.append(Change("escalate", episode.copy()))
        return changes

    # -- episodes -------------------------------------------------------------------------------

    def _open(
        self, rule: Rule, subject: Subject, tracker: _Tracker, *, opened_at: float | None = None
    ) -> Change:
        assert tracker.started_at is not None
        started = tracker.started_at
        opened = started + rule.hold_s if opened_at is None else opened_at
        episode = Episode(
            id=episode_id(rule.name, subject, started),
            rule=rule.name,
            severity=rule.severity,
            subject=subject,
            started_at=started,
            opened_at=opened,
            updated_at=opened,
            value=tracker.value,
            peak=tracker.peak,
            detail=tracker.detail,
        )
        tracker.episode = episode
        tracker.clear_since = None
        self._live[episode.id] = episode
        return Change("open", episode.copy())

    def _close(self, rule: Rule, subject: Subject, tracker: _Tracker, at: float) -> Change:
        episode = tracker.episode
        assert episode is not None
        episode.closed_at = at
        episode.updated_at = at
        tracker.episode = None
        tracker.started_at = tracker.clear_since = None
        tracker.peak, tracker.detail, tracker.last_true = None, "", False
        self._live.pop(episode.id, None)
        self._since.pop(episode.id, None)
        self._closed.append(episode)
        return Change("close", episode.copy())

    def _change(self, event: Event, episode: Episode, ts: float) -> Change:
        episode.updated_at = max(episode.updated_at, ts)
        return Change(event, episode.copy())

    # -- bookkeeping ----------------------------------------------------------------------------

    def _tracker(self, rule: Rule, subject: Subject) -> _Tracker:
        key = (rule.name, subject)
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = self._trackers[key] = _Tracker()
            if len(self._trackers) > self._max_trackers:
                self._evict()
        else:
            self._trackers.move_to_end(key)
        return tracker

    def _evict(self) -> None:
        # Least recently touched first, a tenth at a time (not one per new tracker); trackers
        # of open episodes stay: they must be able to close.
        keep = self._max_trackers * 9 // 10
        for key in list(self._trackers):
            if len(self._trackers) <= keep:
                return
            if self._trackers[key].episode is None:
                del self._trackers[key]

    def _rule(self, name: str) -> Rule | None:
        return self._rules.get(name)

    def _find(self, episode_id: str) -> Episode | None:
        episode = self._live.get(episode_id)
        if episode is not None:
            return episode
        return next((e for e in self._closed if e.id == episode_id), None)


def _number(value: Any) -> float | None:
    """A finite float, or None for missing, NaN and non-numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _matches(rule: Rule, detector: str, field: str, severity: str) -> bool:
    if rule.findings is not None and detector not in rule.findings:
        return False
    if rule.field is not None and field != rule.field:
        return False
    if rule.min_severity is not None:
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else -1
        return rank >= SEVERITIES.index(rule.min_severity)
    return True


def _add_detail(detail: str, what: str) -> str:
    parts = detail.split(", ") if detail else []
    if what in parts:
        return detail
    joined = ", ".join(sorted([*parts, what]))
    return joined if len(joined) <= _MAX_DETAIL else detail


def _after(rule: Rule, device: _Device) -> float | None:
    if rule.after_s is not None:
        return rule.after_s
    if rule.after_intervals is not None and device.interval_s is not None:
        return rule.after_intervals * device.interval_s
    return None
