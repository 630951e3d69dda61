"""The pure alert engine: holds, hysteresis, one episode per condition, escalation, offline."""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api.alerts.engine import AlertEngine
from api.alerts.episode import EPISODE_ID, Change, Episode, Subject, episode_id
from api.alerts.rules import AlertRules, parse_rules
from pantau.derived import Ack

RULES = """\
[rules.flood]
type = "indicator"
kind = "water_level"
indicator = "flood_level"
at_or_above = "Siaga"
hold_min = 5
clear_min = 10
severity = "critical"
notify = ["email:bpbd@purbalingga.go.id"]

[[rules.flood.escalate]]
after_min = 30

[[rules.flood.escalate]]
after_min = 60
notify = ["email:kalak@purbalingga.go.id"]

[rules.gone]
type = "offline"
kind = "air_quality"
after_min = 10

[rules.slow]
type = "offline"
kind = "streetlight"
after_intervals = 3

[rules.spikes]
type = "anomaly"
detector = "spike"
clear_min = 15

[rules.env]
type = "score"
dimension = "smart_environment"
below = 40
clear_above = 45
clear_min = 0

[rules.lamps]
type = "indicator"
indicator = "availability"
below = 0.8
clear_above = 0.9
clear_min = 0
"""

T0 = 1_800_000_000.0
MIN = 60.0
CITY = "purbalingga"


def rules() -> AlertRules:
    return parse_rules(RULES, "test.toml")


def gauge(engine: AlertEngine, device: str, ts: float, level: float) -> list[Change]:
    return engine.indicator("water_level", CITY, "bobotsari", device, ts, {"flood_level": level})


def seen(engine: AlertEngine, device: str, ts: float) -> list[Change]:
    """The gauge reported at `ts` (its indicators are sent on change; its readings always)."""
    return engine.reading("water_level", CITY, "bobotsari", device, ts)


def observe(engine: AlertEngine, device: str, ts: float, level: float) -> list[Change]:
    """A gauge reading at `ts` and the flood level derived from it."""
    return gauge(engine, device, ts, level) + seen(engine, device, ts)


def events(changes: list[Change]) -> list[str]:
    return [c.event for c in changes]


def wave() -> list[float]:
    """Flood levels one minute apart: Normal, Waspada, Siaga, Awas, Siaga, Waspada, Normal."""
    return [0.0] * 5 + [1.0] * 5 + [2.0] * 10 + [3.0] * 10 + [2.0] * 5 + [1.0] * 20 + [0.0] * 10


def test_flood_wave_gives_one_episode_per_gauge() -> None:
    engine = AlertEngine(rules())
    changes: dict[str, list[Change]] = {"g1": [], "g2": []}
    for i, level in enumerate(wave()):
        for offset, device in enumerate(("g1", "g2")):
            changes[device] += gauge(engine, device, T0 + i * MIN + offset, level)
    for offset, device in enumerate(("g1", "g2")):
        got = changes[device]
        assert events(got) == ["open", "update", "close"]
        opened, update, closed = (c.episode for c in got)
        assert opened.id == update.id == closed.id
        assert opened.started_at == T0 + 10 * MIN + offset  # first Siaga reading
        assert opened.opened_at == opened.started_at + 5 * MIN  # after the hold
        assert opened.detail == "Siaga"
        assert update.detail == "Awas" and update.peak == 3.0
        assert update.updated_at == T0 + 20 * MIN + offset
        assert closed.closed_at == T0 + 35 * MIN + offset + 10 * MIN  # first clear + clear time
        assert closed.peak == 3.0
        subject = Subject("water_level", CITY, "bobotsari", device)
        assert opened.id == episode_id("flood", subject, opened.started_at)
        assert EPISODE_ID.fullmatch(opened.id)
    assert engine.tick(T0 + 3600 * 5) == []
    assert [e.is_open for e in engine.episodes()] == [False, False]


def test_flapping_around_the_threshold_is_one_episode() -> None:
    engine = AlertEngine(rules())
    got: list[Change] = []
    # Flapping from the start never lasts the hold time: nothing opens.
    for i in range(30):
        got += observe(engine, "g1", T0 + i * MIN, 2.0 if i % 2 == 0 else 1.0)
        got += engine.tick(T0 + i * MIN)
    assert got == []
    # Siaga long enough to open, then Siaga and Waspada in turn every minute for two hours.
    for i in range(30, 37):
        got += observe(engine, "g1", T0 + i * MIN, 2.0)
    for i in range(37, 157):
        got += observe(engine, "g1", T0 + i * MIN, 2.0 if i % 2 == 0 else 1.0)
        got += engine.tick(T0 + i * MIN)
    assert events([c for c in got if c.event != "escalate"]) == ["open"]
    for i in range(157, 177):  # then Waspada for 20 minutes
        got += observe(engine, "g1", T0 + i * MIN, 1.0)
    closes = [c for c in got if c.event == "close"]
    assert len(closes) == 1 and closes[0].episode.closed_at == T0 + 167 * MIN
    assert len(engine.episodes()) == 1


def test_hold_keeps_short_spikes_out() -> None:
    engine = AlertEngine(rules())
    got: list[Change] = []
    for i, level in enumerate([1.0, 3.0, 3.0, 3.0, 3.0, 1.0, 1.0]):  # 4 minutes at Awas
        got += observe(engine, "g1", T0 + i * MIN, level)
        got += seen(engine, "g1", T0 + i * MIN + 30)
        got += engine.tick(T0 + i * MIN + 30)
    assert got == [] and engine.episodes() == []
    # Nor does a replica whose clock is far ahead of the gauge's time.
    assert engine.tick(T0 + 86_400) == [] and engine.episodes() == []


def test_hold_ends_on_the_devices_own_time_not_the_replicas_clock() -> None:
    # Indicators are sent on change: the gauge's readings (same level) carry its time on.
    engine = AlertEngine(rules())
    assert gauge(engine, "g1", T0, 2.0) == []
    # However late this replica's clock is, the device has not yet reported past the hold.
    assert engine.tick(T0 + 60 * MIN) == []
    assert seen(engine, "g1", T0 + 5 * MIN - 1) == []
    assert engine.tick(T0 + 60 * MIN) == []
    seen(engine, "g1", T0 + 5 * MIN + 7)
    (change,) = engine.tick(T0 + 60 * MIN)
    assert change.event == "open"
    assert (change.episode.started_at, change.episode.opened_at) == (T0, T0 + 5 * MIN)
    # A later reading past the hold opens nothing more.
    assert gauge(engine, "g1", T0 + 6 * MIN, 2.0) == []


def test_hold_due_before_a_clear_reading_still_opens() -> None:
    # Two replicas, one ticking and one not, must agree: the condition held past the hold.
    quiet = AlertEngine(rules())
    observe(quiet, "g1", T0, 2.0)
    seen(quiet, "g1", T0 + 6 * MIN)
    got = observe(quiet, "g1", T0 + 20 * MIN, 0.0)
    assert events(got) == ["open"]
    ticking = AlertEngine(rules())
    observe(ticking, "g1", T0, 2.0)
    seen(ticking, "g1", T0 + 6 * MIN)
    assert events(ticking.tick(T0 + 6 * MIN)) == ["open"]
    assert observe(ticking, "g1", T0 + 20 * MIN, 0.0) == []
    assert _facts(quiet) == _facts(ticking)


def _open_flood(engine: AlertEngine) -> Episode:
    gauge(engine, "g1", T0, 2.0)
    (change,) = gauge(engine, "g1", T0 + 5 * MIN, 2.0)
    assert change.event == "open"
    return change.episode


def test_escalates_when_unacknowledged() -> None:
    engine = AlertEngine(rules())
    episode = _open_flood(engine)
    opened = episode.opened_at
    assert engine.tick(opened) == []  # the escalation clock starts
    assert engine.tick(opened + 30 * MIN - 1) == []
    (first,) = engine.tick(opened + 30 * MIN)
    assert first.event == "escalate" and first.episode.level == 1
    assert first.episode.escalated_at == opened + 30 * MIN
    assert engine.tick(opened + 45 * MIN) == []
    (second,) = engine.tick(opened + 60 * MIN)
    assert second.episode.level == 2
    assert engine.tick(opened + 600 * MIN) == []  # no level 3
    rules_ = engine.rules
    targets = rules_.targets(rules_.rule("flood"), "bobotsari", second.episode.level)
    assert [t.address for t in targets] == ["kalak@purbalingga.go.id"]


def test_escalation_catches_up_level_by_level() -> None:
    engine = AlertEngine(rules())
    episode = _open_flood(engine)
    assert engine.tick(episode.opened_at) == []
    got = engine.tick(episode.opened_at + 61 * MIN)
    assert [(c.event, c.episode.level) for c in got] == [("escalate", 1), ("escalate", 2)]
    assert all(c.episode.escalated_at == episode.opened_at + 61 * MIN for c in got)


def test_escalation_of_replayed_data_counts_from_when_it_is_seen() -> None:
    # Old data opening an episode now: escalation waits its minutes from now, not at once.
    engine = AlertEngine(rules())
    episode = _open_flood(engine)
    now = episode.opened_at + 86_400
    assert engine.tick(now) == []
    assert engine.tick(now + 30 * MIN - 1) == []
    (first,) = engine.tick(now + 30 * MIN)
    assert first.episode.level == 1 and first.episode.escalated_at == now + 30 * MIN


def test_acknowledged_episode_does_not_escalate() -> None:
    engine = AlertEngine(rules())
    episode = _open_flood(engine)
    assert engine.tick(episode.opened_at) == []  # the escalation clock starts
    ack = engine.acknowledge(episode.id, Ack("operator", T0 + 6 * MIN, "on it"))
    assert ack is not None and ack.event == "ack"
    assert ack.episode.ack == Ack("operator", T0 + 6 * MIN, "on it")
    assert engine.tick(episode.opened_at + 120 * MIN) == []
    again = engine.acknowledge(episode.id, Ack("chief", T0 + 7 * MIN, "team sent"))
    assert again is not None
    found = engine.get(episode.id)
    assert found is not None and found.ack is not None and found.ack.note == "team sent"
    assert found.level == 0
    assert engine.acknowledge("flood.0000000000000000", Ack("x", T0, "")) is None


def test_offline_opens_after_the_time_and_a_reading_closes_it() -> None:
    engine = AlertEngine(rules())
    engine.register_device("air_quality", CITY, "kutasari", "aq1", 60.0)
    engine.register_device("air_quality", CITY, "kutasari", "aq2", 60.0)  # never seen
    assert engine.tick(T0 + 3600) == []
    engine.reading("air_quality", CITY, "kutasari", "aq1", T0)
    assert engine.tick(T0 + 10 * MIN) == []
    (opened,) = engine.tick(T0 + 10 * MIN + 1)
    assert opened.event == "open"
    assert (opened.episode.started_at, opened.episode.opened_at) == (T0, T0 + 10 * MIN)
    assert opened.episode.subject == Subject("air_quality", CITY, "kutasari", "aq1")
    assert engine.tick(T0 + 20 * MIN) == []
    (closed,) = engine.reading("air_quality", CITY, "kutasari", "aq1", T0 + 25 * MIN)
    assert closed.event == "close" and closed.episode.closed_at == T0 + 25 * MIN
    assert closed.episode.id == opened.episode.id
    assert engine.tick(T0 + 26 * MIN) == []


def test_offline_after_intervals_uses_the_registry_interval() -> None:
    engine = AlertEngine(rules())
    engine.register_device("streetlight", CITY, "kutasari", "sl1", 300.0)
    engine.register_device("streetlight", CITY, "kutasari", "sl2", None)  # no interval: not watched
    engine.reading("streetlight", CITY, "kutasari", "sl1", T0)
    engine.reading("streetlight", CITY, "kutasari", "sl2", T0)
    assert engine.tick(T0 + 900) == []
    (opened,) = engine.tick(T0 + 901)
    assert opened.episode.rule == "slow" and opened.episode.opened_at == T0 + 900


def test_anomalies_open_update_and_close_when_quiet() -> None:
    engine = AlertEngine(rules())

    def spike(ts: float, detector: str = "spike", field: str = "level_cm") -> list[Change]:
        return engine.anomaly(
            "water_level", CITY, "bobotsari", "g1", ts, detector, field, "warning", 4.0
        )

    assert spike(T0, detector="stuck") == []
    (opened,) = spike(T0)
    assert opened.event == "open" and opened.episode.detail == "spike/level_cm"
    assert spike(T0 + MIN) == []  # the same finding again: no news
    (update,) = spike(T0 + 2 * MIN, field="rate_cm_h")
    assert update.event == "update" and update.episode.detail == "spike/level_cm, spike/rate_cm_h"
    # Quiet is measured on the device's time: a clock far ahead of it closes nothing.
    seen(engine, "g1", T0 + 16 * MIN)
    assert engine.tick(T0 + 16 * MIN) == []
    assert engine.tick(T0 + 86_400) == []
    seen(engine, "g1", T0 + 17 * MIN)
    (closed,) = engine.tick(T0 + 86_400)
    assert closed.event == "close" and closed.episode.closed_at == T0 + 17 * MIN
    # After a quiet spell with no tick, the next finding is a new episode.
    spike(T0 + 60 * MIN)
    got = spike(T0 + 90 * MIN)
    assert events(got) == ["close", "open"]
    assert got[0].episode.closed_at == T0 + 75 * MIN


def test_score_rule_per_area_with_hysteresis() -> None:
    engine = AlertEngine(rules())
    (opened,) = engine.scores(CITY, "bobotsari", T0, {"smart_environment": 35.0})
    assert opened.episode.subject == Subject("area", CITY, "bobotsari", "")
    assert engine.scores(CITY, "bobotsari", T0 + 60, {"smart_environment": 42.0}) == []
    assert engine.scores(CITY, "bobotsari", T0 + 90, {"smart_environment": None}) == []
    (closed,) = engine.scores(CITY, "bobotsari", T0 + 120, {"smart_environment": 46.0})
    assert closed.event == "close" and closed.episode.closed_at == T0 + 120
    (regency,) = engine.scores(CITY, "", T0, {"smart_environment": 10.0})
    assert regency.episode.subject.key == f"regency:{CITY}"


def test_district_indicator_without_device() -> None:
    engine = AlertEngine(rules())
    (opened,) = engine.indicator("streetlight", CITY, "mrebet", "", T0, {"availability": 0.5})
    assert opened.episode.subject.key == f"district:{CITY}/mrebet"
    assert opened.episode.detail == "availability < 0.8"
    assert engine.indicator("streetlight", CITY, "mrebet", "", T0 + 1, {"availability": 0.85}) == []
    changes = engine.indicator("streetlight", CITY, "mrebet", "", T0 + 2, {"availability": 0.95})
    assert events(changes) == ["close"]


def test_bad_values_and_late_readings_are_ignored() -> None:
    engine = AlertEngine(rules())
    assert gauge(engine, "g1", T0, math.nan) == []
    assert engine.indicator("water_level", CITY, "b", "g1", T0, {"flood_level": "x"}) == []
    _open_flood(engine)
    assert gauge(engine, "g1", T0 - 3600, 0.0) == []
    assert [e.is_open for e in engine.episodes()] == [True]


def test_restore_continues_episodes_instead_of_reopening() -> None:
    first = AlertEngine(rules())
    episode = _open_flood(first)
    second = AlertEngine(rules())
    second.restore(first.episodes())
    second.restore(first.episodes())  # twice: still one
    assert gauge(second, "g1", T0 + 6 * MIN, 3.0)[0].event == "update"
    assert len(second.episodes()) == 1
    # A restored episode escalates from its open time (its wall-clock start is unknown).
    (escalated,) = second.tick(episode.opened_at + 30 * MIN)
    assert escalated.event == "escalate" and escalated.episode.level == 1
    changes = observe(second, "g1", T0 + 7 * MIN, 0.0)
    changes += seen(second, "g1", T0 + 30 * MIN) + second.tick(T0 + 30 * MIN)
    assert events(changes) == ["close"] and changes[0].episode.id == episode.id
    assert changes[0].episode.closed_at == T0 + 17 * MIN
    stale = Episode(
        id="gone.0123456789abcdef", rule="gone_rule", severity="info",
        subject=Subject("air_quality", CITY, "x", "aq9"), started_at=T0, opened_at=T0,
        updated_at=T0,
    )  # fmt: skip
    second.restore([stale])  # a rule no longer declared: dropped
    assert second.get(stale.id) is None


def test_closed_episodes_are_bounded() -> None:
    engine = AlertEngine(rules(), max_closed=3)
    for k in range(6):
        base = T0 + k * 3600
        engine.scores(CITY, "bobotsari", base, {"smart_environment": 10.0})
        engine.scores(CITY, "bobotsari", base + 60, {"smart_environment": 90.0})
    assert len(engine.episodes()) == 3


def test_tracker_memory_is_bounded() -> None:
    engine = AlertEngine(rules(), max_trackers=10)
    for k in range(50):
        gauge(engine, f"g{k}", T0, 0.0)
    assert len(engine._trackers) <= 10


# -- properties ---------------------------------------------------------------------------------


def _facts(engine: AlertEngine) -> list[dict[str, Any]]:
    return sorted((e.as_json() for e in engine.episodes()), key=lambda e: (e["id"], e["state"]))


_STEPS = st.lists(
    st.tuples(
        # A gauge's level (with its reading), a finding on g1 (with its reading), a reading
        # of g1 alone (the level unchanged, so not sent), an air quality reading.
        st.sampled_from(["g1", "g2", "spike", "r1", "aq1"]),
        st.integers(min_value=0, max_value=12),  # minutes since the previous message
        st.sampled_from([0.0, 1.0, 2.0, 3.0]),
        st.booleans(),  # whether a tick runs after it
    ),
    max_size=60,
)


def _feed(
    steps: list[tuple[str, int, float, bool]], *, ticks: bool, lead: float = 0.0
) -> AlertEngine:
    """One replica fed the steps' messages; with `ticks`, ticking (`lead` s ahead) where told."""
    engine = AlertEngine(rules())
    engine.register_device("air_quality", CITY, "kutasari", "aq1", 60.0)
    ts = T0
    for what, gap, level, tick in steps:
        ts += gap * MIN
        if what == "spike":
            engine.anomaly(
                "water_level", CITY, "bobotsari", "g1", ts, "spike", "level_cm", "warning", level
            )
            seen(engine, "g1", ts)
        elif what == "r1":
            seen(engine, "g1", ts)
        elif what == "aq1":
            engine.reading("air_quality", CITY, "kutasari", "aq1", ts)
        else:
            observe(engine, what, ts, level)
        if ticks and tick:
            engine.tick(ts + lead)
    engine.tick(ts + lead + 10 * 3600)
    return engine


@settings(max_examples=60, deadline=None)
@given(_STEPS)
def test_same_messages_give_same_episodes(steps: list[tuple[str, int, float, bool]]) -> None:
    once, twice = _feed(steps, ticks=True), _feed(steps, ticks=True)
    assert _facts(once) == _facts(twice)
    # When ticks ran does not change what the episodes are.
    quiet = _feed(steps, ticks=False)
    keys = ("id", "started_at", "opened_at", "updated_at", "closed_at", "peak", "detail", "rule")
    assert [{k: e[k] for k in keys} for e in _facts(once)] == [
        {k: e[k] for k in keys} for e in _facts(quiet)
    ]
    # Nor does a clock a day ahead of the data (replayed data), except for offline episodes:
    # being offline is measured on the clock.
    ahead = _feed(steps, ticks=True, lead=86_400)
    assert [{k: e[k] for k in keys} for e in _facts(ahead) if e["rule"] != "gone"] == [
        {k: e[k] for k in keys} for e in _facts(quiet) if e["rule"] != "gone"
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=1, max_size=80))
def test_flapping_never_reopens_within_the_clear_time(levels: list[float]) -> None:
    engine = AlertEngine(rules())
    readings = [(T0 + i * MIN, level) for i, level in enumerate(levels)]
    opens = 0
    for ts, level in readings:
        changes = observe(engine, "g1", ts, level) + engine.tick(ts)
        opens += events(changes).count("open")
    episodes = sorted(engine.episodes(), key=lambda e: e.started_at)
    assert opens == len(episodes)
    for before, after in itertools.pairwise(episodes):
        assert before.closed_at is not None and after.started_at >= before.closed_at
        # The earlier one closed only after a full clear time without a Siaga reading.
        window = [lv for ts, lv in readings if before.closed_at - 10 * MIN <= ts < before.closed_at]
        assert window and all(lv < 2.0 for lv in window)
    at = dict(readings)
    for episode in episodes:
        assert at[episode.started_at] >= 2.0  # an episode starts at a Siaga (or Awas) reading


def test_offline_gap_seen_only_by_a_reading_matches_a_ticking_replica() -> None:
    engines = [AlertEngine(rules()), AlertEngine(rules())]
    for engine in engines:
        engine.register_device("air_quality", CITY, "kutasari", "aq1", 60.0)
        engine.reading("air_quality", CITY, "kutasari", "aq1", T0)
    engines[0].tick(T0 + 15 * MIN)
    got = [
        engine.reading("air_quality", CITY, "kutasari", "aq1", T0 + 30 * MIN) for engine in engines
    ]
    assert events(got[0]) == ["close"] and events(got[1]) == ["open", "close"]
    assert _facts(engines[0]) == _facts(engines[1])
    assert engines[1].reading("air_quality", CITY, "kutasari", "aq1", T0 + 31 * MIN) == []


def _flapping_messages() -> list[tuple[float, float | None]]:
    """(time, flood level or None for a reading alone) of a gauge flapping around Siaga."""
    messages: list[tuple[float, float | None]] = []
    minute = 0

    def add(levels: list[float | None]) -> None:
        nonlocal minute
        for level in levels:
            messages.append((T0 + minute * MIN, level))
            minute += 1

    add([2.0, None, None, 1.0])  # Siaga shorter than the hold: nothing opens
    add([3.0, 1.0] * 5)  # flapping from the start: still nothing
    add([2.0] + [None] * 6)  # Siaga past the hold: opens
    add([1.0, None, None, 2.0] * 6)  # Waspada spells shorter than the clear time: one episode
    add([1.0] + [None] * 12)  # Waspada past the clear time: closes
    add([2.0, None, 1.0])  # Siaga again, shorter than the hold: nothing
    return messages


def test_replayed_flapping_gives_the_same_episodes_whatever_the_clock() -> None:
    # A replica whose clock is a day ahead of the (replayed) data, ticking after every message,
    # and one never ticking must record the same episodes.
    ahead, quiet = AlertEngine(rules()), AlertEngine(rules())
    now = T0 + 86_400
    for ts, level in _flapping_messages():
        for engine in (ahead, quiet):
            if level is not None:
                gauge(engine, "g1", ts, level)
            seen(engine, "g1", ts)
        ahead.tick(now)
        now += 1
    for engine in (ahead, quiet):
        engine.tick(now)
    keys = ("id", "started_at", "opened_at", "updated_at", "closed_at", "value", "peak", "detail")
    got = [{k: e[k] for k in keys} for e in _facts(ahead)]
    assert got == [{k: e[k] for k in keys} for e in _facts(quiet)]
    (episode,) = quiet.episodes()
    assert episode.started_at == T0 + 14 * MIN and episode.opened_at == T0 + 19 * MIN
    assert episode.closed_at == T0 + 45 * MIN + 10 * MIN
