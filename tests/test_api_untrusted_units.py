"""The API treats the broker as untrusted input: the contract, the bounds, the feed, readiness.

In-process: the live state, the broker link's message handling and the feed hub directly, and
the app built with `create_app` (lifespan not started) for readiness.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.app import create_app
from api.broker import BrokerLink, RejectionLog
from api.feed import FeedFilter, FeedHub, Subscription
from api.livestate import DETECTORS, SEVERITIES, LiveState
from pantau.derived import SEVERITIES as CONTRACT_SEVERITIES
from pantau.derived import AnomalyEvent, ContractError, IndicatorEvent, ReadingSummary
from pantau.registry import Registry
from pantau.settings import ApiSettings, Settings
from processors.catalog import KINDS
from tests.api_helpers import make_tokens
from tests.conftest import EXAMPLE_REGISTRY

CITY = "purbalingga"
AIR = "aq-bobotsari-01"
XSS = "<img src=x onerror=alert(1)>"


def topic(district: str, kind: str, device: str, what: str, city: str = CITY) -> str:
    return f"pantau/derived/{city}/{district}/{kind}/{device}/{what}"


def deep(depth: int) -> Any:
    value: Any = [1]
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def registered() -> LiveState:
    state = LiveState(open_anomaly_s=1e12)
    state.add_registry(Registry.from_csv(EXAMPLE_REGISTRY))
    return state


# -- the contract ---------------------------------------------------------------------------


def test_the_contract_knows_what_the_processors_declare() -> None:
    assert SEVERITIES == CONTRACT_SEVERITIES
    assert {"spike", "stuck", "flood_rise", "dropout", "lamp_out"} <= DETECTORS
    assert set(KINDS) == {"air_quality", "water_level", "streetlight"}


IND = ("bobotsari", "air_quality", AIR, "indicator")
ANO = ("bobotsari", "air_quality", AIR, "anomaly")
REA = ("bobotsari", "air_quality", AIR, "reading")
SPIKE = {"ts": 1e9, "detector": "spike", "field": "pm25"}
EMPTY = {"ts": 1e9, "values": {}}


@pytest.mark.parametrize(
    ("where", "payload", "reason"),
    [
        # Nesting: parsed by orjson, but no value may be anything but a number or a label.
        (IND, {"ts": 1e9, "ispu": deep(300)}, "indicator_value"),
        (IND, {"ts": 1e9, "ispu": [1]}, "indicator_value"),
        (IND, {"ts": 1e9, "ispu": True}, "indicator_value"),
        (IND, {"ts": 1e9, "ispu_category": "x" * 201}, "indicator_value"),
        (IND, {"ts": 1e9, "ispu_category": "a\nb"}, "indicator_value"),
        (IND, {"ts": 1e9, XSS: 1}, "indicator_name"),
        (IND, {"ts": 1e9, **{f"v{i}": i for i in range(65)}}, "values"),
        (IND, {"ts": 1e300, "ispu": 1}, "ts"),
        (IND, {"ts": 1e9, "kind": "water_level"}, "schema"),
        (ANO, {**SPIKE, "detector": XSS}, "detector"),
        (ANO, {**SPIKE, "detector": "no_such"}, "detector"),
        (ANO, {**SPIKE, "severity": XSS}, "severity"),
        (ANO, {**SPIKE, "field": "level_cm"}, "field"),
        (ANO, {**SPIKE, "score": "7"}, "schema"),
        (ANO, {**SPIKE, "x": deep(300)}, "schema"),
        (REA, {"ts": 1e9, "values": {f"f{i}": 1 for i in range(65)}}, "values"),
        (REA, {"ts": 1e9, "values": 5}, "schema"),
        (REA, [1, 2], "schema"),
        (("bobotsari", "air_quality", "Bad Id", "reading"), EMPTY, "segment"),
        (("bobotsari", "no_such_kind", AIR, "reading"), EMPTY, "kind"),
        (("bobotsari", "air_quality", "_all", "reading"), EMPTY, "topic"),
        (("bobotsari", "air_quality", "_district", "anomaly"), SPIKE, "topic"),
        # The registry: unknown devices, wrong kind or place, unknown districts.
        (("bobotsari", "air_quality", "ghost-1", "reading"), EMPTY, "unknown_device"),
        (("bobotsari", "water_level", AIR, "reading"), EMPTY, "device_kind"),
        (("kalimanah", "air_quality", AIR, "reading"), EMPTY, "device_place"),
        (
            ("nowhere", "streetlight", "_district", "indicator"),
            {"ts": 1e9, "x": 1},
            "unknown_district",
        ),
    ],
)
def test_messages_that_do_not_fit_are_rejected_with_their_reason(
    where: tuple[str, str, str, str], payload: Any, reason: str
) -> None:
    state = registered()
    before = dict(state.devices), state.version
    heard: list[tuple[str, str, str]] = []
    state.on_reject = lambda *args: heard.append(args)
    assert state.apply(topic(*where), payload) == []
    assert state.rejected == {reason: 1}
    assert [h[0] for h in heard] == [reason]
    assert (dict(state.devices), state.version) == before
    assert not state.indicators and not state.anomalies and not state.readings


def test_every_rejection_of_a_batch_entry_is_counted_and_the_others_kept() -> None:
    state = registered()
    good = {"ts": 1e9, "device_id": AIR, "district": "bobotsari", "values": {"pm25": 1}}
    batch = {
        "kind": "air_quality",
        "readings": [good, {"ts": 1e9, "device_id": XSS, "district": "x", "values": {}}, "junk"],
    }
    events = state.apply(topic("_all", "air_quality", "_all", "readings"), batch)
    assert [e["device_id"] for e in events] == [AIR]
    assert state.rejected == {"segment": 1, "schema": 1}


def test_a_batch_over_its_bound_is_rejected_whole() -> None:
    state = LiveState(max_summary_readings=3)
    readings = [
        {"ts": 1e9, "device_id": f"d-{i}", "district": "x", "values": {"pm25": 1}} for i in range(4)
    ]
    assert (
        state.apply(topic("_all", "air_quality", "_all", "readings"), {"readings": readings}) == []
    )
    assert state.rejected == {"readings": 1} and not state.devices


def test_what_the_collector_renders_still_parses() -> None:
    event = AnomalyEvent(1e9, "water_level", "wl-1", "flood_rise", "level_cm", "critical", 3, None)
    assert (
        AnomalyEvent.parse(
            orjson.loads(json.dumps(event.as_json())),
            kind="water_level",
            device_id="wl-1",
            detectors=DETECTORS,
        )
        == event
    )
    silent = AnomalyEvent(1e9, "air_quality", "aq-1", "dropout", "device", "warning", None, None)
    assert AnomalyEvent.parse(silent.as_json(), kind="air_quality", device_id="aq-1") == silent
    values = {"ispu": 101.0, "ispu_category": "Tidak Sehat", "ispu_colour": "#ffff00"}
    indicator = IndicatorEvent(1e9, "air_quality", "aq-1", values)
    assert (
        IndicatorEvent.parse(indicator.as_json(), kind="air_quality", device_id="aq-1") == indicator
    )
    reading = ReadingSummary(1e9, "aq-1", "bobotsari", 3, {"pm25": 1.5})
    retained = {**reading.as_json(), "kind": "air_quality"}
    assert (
        ReadingSummary.parse(retained, kind="air_quality", device_id="aq-1", district="bobotsari")
        == reading
    )
    with pytest.raises(ContractError) as caught:
        ReadingSummary.parse(retained, kind="water_level")
    assert caught.value.reason == "schema"  # fmt: skip


# -- bounds -----------------------------------------------------------------------------------


def test_state_is_bounded_and_says_so() -> None:
    bounded: list[tuple[str, str, int]] = []
    state = LiveState(
        open_anomaly_s=1e12,
        max_unregistered_devices=2,
        max_indicators=2,
        max_anomalies=3,
        max_pending_acks=2,
    )
    state.on_bound = lambda *args: bounded.append(args)
    for i in range(4):
        state.apply(topic("d", "air_quality", f"aq-{i}", "reading"), {"ts": 1e9, "values": {}})
    assert sorted(state.devices) == ["aq-0", "aq-1"]
    assert state.rejected == {"devices_full": 2}
    for district in ("d1", "d2", "d3"):
        state.apply(topic(district, "streetlight", "_district", "indicator"), {"ts": 1e9, "x": 1})
    assert len(state.indicators) == 2 and state.rejected["indicators_full"] == 1
    # An entry already held still updates.
    state.apply(topic("d1", "streetlight", "_district", "indicator"), {"ts": 2e9, "x": 2})
    assert state.indicators[("streetlight", "d1", "_district")].values == {"x": 2}
    for i in range(8):
        payload = {"ts": 1e9 + i, "detector": "spike", "field": "pm25"}
        state.apply(topic("d", "air_quality", "aq-0", "anomaly"), payload)
    assert len(state.open_anomalies()) == 3
    for i in range(3):
        state.apply(f"pantau/ops/ack/aq-0.spike.pm25.{i}", {"by": "ops", "at": 1e9})
    assert list(state.pending_acks) == ["aq-0.spike.pm25.1", "aq-0.spike.pm25.2"]
    assert state.sizes() == {
        "devices": 2,
        "unregistered_devices": 2,
        "readings": 2,
        "indicators": 2,
        "anomalies": 3,
        "pending_acks": 2,
    }
    totals: dict[tuple[str, str], int] = {}
    for part, action, count in bounded:
        totals[part, action] = totals.get((part, action), 0) + count
    assert totals == {
        ("devices", "refused"): 2,
        ("indicators", "refused"): 1,
        ("anomalies", "evicted"): 5,
        ("pending_acks", "evicted"): 1,
    }
    assert state.apply("pantau/ops/ack/" + XSS, {"by": "ops", "at": 1e9}) == []
    assert state.rejected["ack_id"] == 1


def test_the_bounds_come_from_the_settings(tmp_path: Path) -> None:
    make_tokens(tmp_path / "tokens.json")
    api = ApiSettings(
        tokens_file=tmp_path / "tokens.json",
        max_unregistered_devices=7,
        max_indicators=8,
        max_anomalies=9,
        max_pending_acks=10,
        max_summary_readings=11,
    )
    state = create_app(Settings(api=api)).state.ctx.state
    assert (
        state.max_unregistered_devices,
        state.max_indicators,
        state.max_anomalies,
        state.max_pending_acks,
        state.max_summary_readings,
    ) == (7, 8, 9, 10, 11)


# -- the broker link --------------------------------------------------------------------------


def test_the_link_counts_what_it_cannot_take_and_never_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = LiveState()
    events: list[dict[str, Any]] = []
    link = BrokerLink(Settings(), state, events.append)
    where = topic("d", "air_quality", "aq-1", "indicator")
    link._take(where, b"x" * (64 * 1024 + 1))
    link._take(where, b"{not json")
    link._take(where, b"[" * 2000 + b"]" * 2000)  # deeper than orjson parses
    link._take(where, b'{"ts": 1e9, "ispu": ' + json.dumps(deep(300)).encode() + b"}")

    def broken(*_: Any) -> list[dict[str, Any]]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(state, "apply", broken)
    link._take(where, b'{"ts": 1e9, "ispu": 1}')
    assert state.rejected == {"too_large": 1, "not_json": 2, "indicator_value": 1, "error": 1}
    assert link.errors == 1 and events == []


def test_rejections_are_logged_one_line_each_within_a_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    rejections = RejectionLog(per_window=3, window_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="api.broker"):
        for _ in range(50):
            rejections("detector", "pantau/derived/" + "x" * 5000 + "\n", "d" * 5000)
        now[0] = 11.0
        rejections("severity", "t", "")
    lines = [r for r in caplog.records if r.name == "api.broker"]
    assert [r.getMessage() for r in lines] == [
        *["derived message rejected"] * 3,
        "more derived messages were rejected than logged",
        "derived message rejected",
    ]
    first: Any = lines[0]
    assert len(first.topic) <= 201 and "\n" not in first.topic and len(first.detail) <= 201
    assert lines[3].unlogged == 47  # type: ignore[attr-defined]


# -- the feed ---------------------------------------------------------------------------------


async def next_frame(subscription: Subscription) -> dict[str, Any]:
    body = await asyncio.wait_for(subscription.next_frame(), 5)
    assert body is not None
    frame: dict[str, Any] = json.loads(body)
    return frame


def test_an_event_that_cannot_be_encoded_never_stops_the_feed() -> None:
    async def scenario() -> None:
        failed: list[int] = []
        hub = FeedHub()
        hub.on_failed = failed.append
        everything = hub.subscribe(FeedFilter())
        readings = hub.subscribe(FeedFilter(types=frozenset({"reading", "indicator"})))
        task = asyncio.create_task(hub.run(0.01))
        try:
            hub.publish({"type": "indicator", "device_id": "x", "values": deep(300)})
            hub.publish({"type": "reading", "device_id": "aq-1", "values": {"pm25": 1}})
            for subscription in (everything, readings):
                frame = await next_frame(subscription)
                assert [e["device_id"] for e in frame["events"]] == ["aq-1"]
            hub.publish({"type": "reading", "device_id": "aq-2", "values": {}})
            frame = await next_frame(everything)
            assert [e["device_id"] for e in frame["events"]] == ["aq-2"]
            assert not task.done() and hub.alive
            assert hub.events_failed == 2 and sum(failed) == 2  # once per filter group
        finally:
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not hub.alive and not hub.healthy()

    asyncio.run(scenario())


# -- readiness --------------------------------------------------------------------------------


class PingingInflux:
    """InfluxDB that answers every ping, and counts them."""

    def __init__(self) -> None:
        self.pings = 0

    async def ping(self) -> bool:
        self.pings += 1
        await asyncio.sleep(0.01)
        return True

    async def close(self) -> None:
        pass


def _app(tmp_path: Path) -> Any:
    make_tokens(tmp_path / "tokens.json")
    settings = Settings(api=ApiSettings(tokens_file=tmp_path / "tokens.json", rate_per_s=0))
    app = create_app(settings, Registry.from_csv(EXAMPLE_REGISTRY))
    app.state.ctx.influx = PingingInflux()
    return app


async def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not (done := await predicate()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return bool(done)


def test_readiness_fails_when_the_feed_task_is_dead(tmp_path: Path) -> None:
    app = _app(tmp_path)
    ctx = app.state.ctx

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:

            async def ready(expected: int) -> bool:
                return (await client.get("/health/ready")).status_code == expected

            # The broker link as if it ran and were connected (no broker here).
            ctx.link.alive = True
            ctx.link.connected.set()
            feed = asyncio.create_task(ctx.hub.run(0.01))
            try:
                assert await _wait(lambda: ready(200))
            finally:
                feed.cancel()  # the feed task dies
            with pytest.raises(asyncio.CancelledError):
                await feed
            assert await _wait(lambda: ready(503))
            body = (await client.get("/health/ready")).json()
            checks = {"broker": True, "feed": False, "influxdb": True}
            assert body == {"status": "not ready", "checks": checks}

    asyncio.run(scenario())


def test_readiness_is_worked_out_at_most_once_a_second(tmp_path: Path) -> None:
    app = _app(tmp_path)
    ctx = app.state.ctx

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            started = time.monotonic()
            answers = await asyncio.gather(*(client.get("/health/ready") for _ in range(20)))
            answers += [await client.get("/health/ready") for _ in range(20)]
            assert {a.status_code for a in answers} == {503}  # no broker link in this test
            assert ctx.influx.pings == 1

            async def pinged_again() -> bool:
                await client.get("/health/ready")
                return bool(ctx.influx.pings == 2)

            assert await _wait(pinged_again)
            assert time.monotonic() - started >= 1.0

    asyncio.run(scenario())
