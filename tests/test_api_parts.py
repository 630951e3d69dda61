"""The API's parts on their own: tokens, scoring model, feed fan-out, queries, live state."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.anomaly_ids import anomaly_id, parse_anomaly_id
from api.feed import FeedFilter, FeedHub
from api.livestate import LiveState
from api.problems import Problem
from api.queries import AnomalyFilter, anomalies_query, history_query, parse_time
from api.ratelimit import RateLimiter
from api.scoring import ScoringModel, ScoringModelError
from api.tokens import Scope, TokenStore

MODEL = Path(__file__).parents[1] / "deploy" / "scoring-model.toml"

# -- tokens -----------------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_checked_by_scope(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, record = store.create(Scope.OPERATE, "ops desk")
    assert token not in (tmp_path / "tokens.json").read_text()
    assert (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0
    found = TokenStore(tmp_path / "tokens.json").verify(token)
    assert found == record and Scope.parse(found.scope) >= Scope.READ
    assert store.verify(token + "x") is None
    assert store.verify("") is None
    assert store.revoke(record.token_id)
    assert TokenStore(tmp_path / "tokens.json").verify(token) is None


def test_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        Scope.parse("root")


# -- scoring ----------------------------------------------------------------------------------


def test_the_shipped_model_loads_and_declares_all_six_dimensions() -> None:
    model = ScoringModel.load(MODEL)
    assert set(model.weights) == {
        "smart_governance",
        "smart_economy",
        "smart_living",
        "smart_environment",
        "smart_society",
        "smart_branding",
    }
    assert model.weights["smart_governance"] == {}


def test_scores_are_weighted_means_of_fresh_indicators_only() -> None:
    model = ScoringModel.from_dict(
        {
            "indicators": {
                "ispu": {
                    "source": "air_quality.ispu_mean",
                    "best": 50,
                    "worst": 300,
                    "max_age_s": 100,
                },
                "avail": {"source": "streetlight.availability", "best": 0.98, "worst": 0.8},
            },
            "dimensions": {"smart_environment": {"weights": {"ispu": 3, "avail": 1}}},
        }
    )
    now = 1000.0
    metrics = {"air_quality.ispu_mean": (175.0, now - 10), "streetlight.availability": (0.89, now)}
    scores = {d["dimension"]: d for d in model.score(metrics, now)}
    env = scores["smart_environment"]
    assert env["score"] == pytest.approx((3 * 50 + 1 * 50) / 4)
    assert sum(c["contribution"] for c in env["contributions"]) == pytest.approx(env["score"])
    assert scores["smart_economy"]["score"] is None
    assert "no live indicator" in scores["smart_economy"]["reason"]
    # Stale data is shown but not used.
    stale = {d["dimension"]: d for d in model.score({"air_quality.ispu_mean": (50.0, 0.0)}, now)}
    env = stale["smart_environment"]
    assert env["score"] is None and env["contributions"][0]["stale"] is True
    assert env["contributions"][0]["value"] == 50.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dimensions": {"smart_wealth": {}}}, "unknown dimension"),
        ({"dimensions": {"smart_living": {"weights": {"x": 1}}}}, "undeclared"),
        ({"indicators": {"x": {"source": "a.b", "best": 1, "worst": 1}}}, "best equals worst"),
        ({"indicators": {"x": {"best": 1, "worst": 0}}}, "source"),
    ],
)
def test_bad_models_are_refused_with_a_reason(data: dict[str, object], message: str) -> None:
    with pytest.raises(ScoringModelError, match=message):
        ScoringModel.from_dict(data)


@given(st.floats(-1e6, 1e6), st.floats(-1e3, 1e3), st.floats(-1e3, 1e3))
def test_normalised_values_stay_within_0_and_100(value: float, best: float, worst: float) -> None:
    if best == worst:
        return
    model = ScoringModel.from_dict(
        {"indicators": {"x": {"source": "s.v", "best": best, "worst": worst}}}
    )
    assert 0.0 <= model.indicators["x"].normalise(value) <= 100.0


# -- the live feed ----------------------------------------------------------------------------


def _event(i: int, kind: str = "air_quality") -> dict[str, object]:
    return {"type": "reading", "ts": float(i), "kind": kind, "device_id": f"d{i}", "values": {}}


def test_a_slow_client_loses_its_own_oldest_frames_and_is_told() -> None:
    async def scenario() -> None:
        hub = FeedHub(max_frames=3)
        slow = hub.subscribe(FeedFilter())
        fast = hub.subscribe(FeedFilter())
        got_fast = []
        for i in range(10):
            hub.publish(_event(i))
            hub.flush()
            got_fast.append(json.loads(await fast.next_frame() or b"null"))
        assert [f["events"][0]["ts"] for f in got_fast] == [float(i) for i in range(10)]
        assert all(f["dropped"] == 0 for f in got_fast)
        # What it still holds arrives merged into one frame, with the count of what it lost.
        frame = json.loads(await slow.next_frame() or b"null")
        assert [e["ts"] for e in frame["events"]] == [7.0, 8.0, 9.0]
        assert frame["dropped"] == 7 and frame["seq"] == 10
        assert hub.events_dropped == 7
        hub.publish(_event(10))
        hub.flush()
        frame = json.loads(await slow.next_frame() or b"null")
        assert frame["dropped"] == 0 and [e["ts"] for e in frame["events"]] == [10.0]

    asyncio.run(scenario())


def test_filters_select_by_type_kind_district_and_device() -> None:
    async def scenario() -> None:
        hub = FeedHub()
        water = hub.subscribe(FeedFilter(kind="water_level"))
        anomalies = hub.subscribe(FeedFilter(types=frozenset({"anomaly"})))
        hub.publish(_event(1))
        hub.publish(_event(2, "water_level"))
        hub.flush()
        frame = json.loads(await water.next_frame() or b"null")
        assert [e["kind"] for e in frame["events"]] == ["water_level"]
        assert not anomalies.frames
        hub.close()
        assert await anomalies.next_frame() is None

    asyncio.run(scenario())


# -- queries ----------------------------------------------------------------------------------


def test_history_query_quotes_everything() -> None:
    q = history_query("air_quality", "pm25", "aq-1", 10, 20, 60)
    assert q == (
        'SELECT mean("pm25") AS "mean", min("pm25") AS "min", max("pm25") AS "max", '
        'last("pm25") AS "last" FROM "air_quality" WHERE "device_id" = \'aq-1\' '
        "AND time >= 10 AND time < 20 GROUP BY time(60s) fill(none)"
    )


@given(st.text(max_size=80))
def test_any_device_id_is_refused_or_a_plain_segment(device_id: str) -> None:
    try:
        q = history_query("air_quality", "pm25", device_id, 0, 1, 1)
    except Problem as exc:
        assert exc.status == 422
        return
    assert re.fullmatch(r"[a-z0-9_-]{1,64}", device_id)
    assert f"'{device_id}'" in q


@given(st.text(max_size=40), st.sampled_from(["district", "device_id", "detector"]))
def test_anomaly_filters_never_let_input_out_of_its_literal(value: str, name: str) -> None:
    try:
        q = anomalies_query(AnomalyFilter(0, 1, **{name: value}), 10)  # type: ignore[arg-type]
    except Problem as exc:
        assert exc.status == 422
        return
    assert q.count("'") == 2 and "\\" not in q and ";" not in q


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1732700000", 1732700000.0),
        ("2024-11-27T09:33:20Z", 1732700000.0),
        ("2024-11-27T16:33:20+07:00", 1732700000.0),
    ],
)
def test_times_are_epoch_seconds_or_rfc3339(text: str, expected: float) -> None:
    assert parse_time(text, "t") == expected


@pytest.mark.parametrize("text", ["now", "2024-11-27T09:33:20", "nan", "-5", "1e30", ""])
def test_bad_times_are_422(text: str) -> None:
    with pytest.raises(Problem) as info:
        parse_time(text, "start")
    assert info.value.status == 422 and info.value.detail.startswith("start")


@given(
    st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True),
    st.from_regex(r"[a-z_]{1,32}", fullmatch=True),
    st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True),
    st.integers(0, 2**62),
)
def test_anomaly_ids_round_trip(device: str, detector: str, field: str, ts_ns: int) -> None:
    key = parse_anomaly_id(anomaly_id(device, detector, field, ts_ns))
    assert key is not None
    assert (key.device_id, key.detector, key.field, key.ts_ns) == (device, detector, field, ts_ns)


# -- live state -------------------------------------------------------------------------------


def test_live_state_follows_derived_topics_and_acks() -> None:
    state = LiveState(open_anomaly_s=1e12)
    prefix = "pantau/derived/purbalingga/kalimanah/air_quality/aq-1"
    state.apply(f"{prefix}/reading", {"ts": 10.0, "values": {"pm25": 30.0, "bad": "x"}})
    state.apply(f"{prefix}/reading", {"ts": 5.0, "values": {"pm25": 99.0}})  # older: ignored
    assert state.readings["aq-1"].values == {"pm25": 30.0}
    [event] = state.apply(
        f"{prefix}/anomaly",
        {"ts": 10.0, "detector": "spike", "field": "pm25", "severity": "warning", "score": 1.0},
    )
    assert event["type"] == "anomaly" and event["district"] == "kalimanah"
    ident = event["id"]
    assert [a.id for a in state.open_anomalies()] == [ident]
    state.apply(f"pantau/ops/ack/{ident}", {"by": "ops", "at": 11.0, "note": "seen"})
    assert state.open_anomalies() == []
    for bad in ("pantau/derived/x", f"{prefix}/unknown", f"{prefix}/anomaly"):
        assert state.apply(bad, {"ts": "x"}) == []
    # A batch summary: one event per device, malformed entries skipped.
    batch = {
        "kind": "air_quality",
        "readings": [
            {"ts": 20.0, "device_id": "aq-2", "district": "bobotsari", "values": {"pm25": 5.0}},
            {"ts": 20.0, "device_id": 7, "district": "x", "values": {}},
            "junk",
        ],
    }
    events = state.apply("pantau/derived/purbalingga/_all/air_quality/_all/readings", batch)
    assert [(e["device_id"], e["district"]) for e in events] == [("aq-2", "bobotsari")]
    assert state.readings["aq-2"].values == {"pm25": 5.0}


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3.0)
    assert [limiter.wait_s("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_s("a", 0.0) == pytest.approx(0.5)
    assert limiter.wait_s("b", 0.0) == 0.0  # its own bucket
    assert limiter.wait_s("a", 0.5) == 0.0  # one more after half a second
    assert RateLimiter(rate=0.0, burst=1.0).wait_s("a", 0.0) == 0.0  # off
