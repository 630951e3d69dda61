"""Alert episodes end to end: gauges publish over MQTT, the collector stores and derives, the
API's rules open, escalate and close episodes and notify a real webhook receiver (which checks
signatures) and a real SMTP server (STARTTLS)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pantau.dev import InfluxDBService, MosquittoService
from simulators.scenarios import flapping, flood_wave, steady
from tests.api_helpers import ApiProcess, running_api
from tests.ingest_helpers import publish_all, publisher, running_collector, wait_for
from tests.notify_receivers import SmtpReceiver, WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = b"test-webhook-secret"
DISTRICT = "bobotsari"
STEP_S = 60.0
PUBLISH_RATE = 25.0  # messages per second, all gauges together
# Gauge thresholds (cm): Waspada 150, Siaga 250, Awas 350.
REGISTRY_HEADER = "device_id,kind,city,district,lat,lon,interval_s,waspada_cm,siaga_cm,awas_cm\n"

SIAGA_RULE = """
[webhooks.ops]
url = "{url}"

[webhooks.kalak]
url = "{url}"

[rules.banjir_siaga]
title = "Tinggi muka air mencapai Siaga"
type = "indicator"
kind = "water_level"
indicator = "flood_level"
at_or_above = "Siaga"
hold_min = 3
clear_min = 10
severity = "critical"
notify = {notify}
{extra}
"""


@dataclass
class Platform:
    """A collector and one or more API replicas for one city, with the receivers."""

    city: str
    apis: list[ApiProcess]
    hook: WebhookReceiver
    mqtt_url: str

    def publish(self, gauges: dict[str, list[dict[str, Any]]], *, stepwise: bool = False) -> None:
        """Publish gauges' readings in time order, one message each, at a logger-like pace.

        The collector derives a device's indicators once per batch, from its newest reading:
        paced, a batch holds a reading or two per gauge, as in the field (one a minute).
        `stepwise` waits for the API to have each reading before the next (the fact), so
        every single reading is derived: for levels that change on every reading.
        """
        messages = sorted(
            (r["ts"], device, orjson.dumps(r))
            for device, readings in gauges.items()
            for r in readings
        )
        with publisher(self.mqtt_url) as client:
            for ts, device, payload in messages:
                topic = f"city/{self.city}/{DISTRICT}/water_level/{device}"
                publish_all(client, [(topic, payload)])
                if stepwise:
                    # The API keeps times as floats: within a millisecond is the same reading.
                    seen = wait_for(
                        lambda d=device, t=ts: _newest_ts(self, d) >= t - 1e-3, 60, 0.02
                    )
                    assert seen, (device, ts, _newest_ts(self, device), self.apis[0].log())
                else:
                    time.sleep(1 / PUBLISH_RATE)

    def alerts(self, api: ApiProcess | None = None, **params: str) -> list[dict[str, Any]]:
        """The episodes one replica lists (opened in the last two days)."""
        api = api or self.apis[0]
        with api.client("read") as client:
            query = {"state": "all", "since": str(time.time() - 2 * 86400), **params}
            response = client.get("/api/v1/alerts", params=query)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["alerts"]
        return found

    def keys(self, event: str) -> list[str]:
        """Idempotency keys the receiver accepted for one event type."""
        return [k for k in self.hook.accepted_keys() if k.split(":")[1] == event]


@dataclass(frozen=True)
class Site:
    """The suite's broker and InfluxDB, a fresh database, a city of its own, a folder."""

    broker: MosquittoService
    influx: InfluxDBService
    db: str
    city: str
    tmp: Path


@pytest.fixture
def site(
    broker: MosquittoService,
    influx: InfluxDBService,
    influx_db: str,
    unique_city: str,
    tmp_path: Path,
) -> Site:
    return Site(broker, influx, influx_db, unique_city, tmp_path)


def _registry(tmp: Path, city: str, devices: list[str]) -> Path:
    path = tmp / "registry.csv"
    rows = [f"{d},water_level,{city},{DISTRICT},-7.29,109.42,60,150,250,350\n" for d in devices]
    path.write_text(REGISTRY_HEADER + "".join(rows))
    return path


@contextmanager
def platform(
    site: Site,
    devices: list[str],
    *,
    notify: str = '["webhook:ops"]',
    extra: str = "",
    replicas: int = 1,
    env: dict[str, str] | None = None,
    hook_up: bool = True,
) -> Iterator[Platform]:
    """Collector, receiver and API replica(s) running; the replicas hear each other."""
    broker, influx, db, city, tmp = site.broker, site.influx, site.db, site.city, site.tmp
    registry = _registry(tmp, city, devices)
    with ExitStack() as stack:
        hook = WebhookReceiver(SECRET)
        if hook_up:
            stack.enter_context(hook)
        else:
            stack.callback(hook.stop)
        rules = tmp / "alerts.toml"
        rules.write_text(SIAGA_RULE.format(url=hook.url, notify=notify, extra=extra))
        stack.enter_context(
            running_collector(
                broker.url, influx.url, db, topic=f"city/{city}/+/+/+", registry=registry
            )
        )
        api_env = {
            "PANTAU_ALERTS_RULES": str(rules),
            "PANTAU_ALERTS_WEBHOOK_SECRET": SECRET.decode(),
            "PANTAU_ALERTS_RETRY_BASE_S": "0.2",
            "PANTAU_ALERTS_RETRY_MAX_S": "1",
            "PANTAU_ALERTS_TICK_S": "0.2",
            "PANTAU_ALERTS_PRESENCE_S": "0.5",
            "PANTAU_ALERTS_MAX_TRIES": "100",
            **(env or {}),
        }
        apis = []
        for i in range(replicas):
            replica_env = {**api_env, "PANTAU_API_CLIENT_ID": f"api-{city}-{i}"}
            apis.append(
                stack.enter_context(
                    running_api(
                        broker.url, influx.url, db, city=city, registry=registry, env=replica_env
                    )
                )
            )
        names = sorted(f"api-{city}-{i}" for i in range(replicas))

        def all_heard() -> bool:
            for api in apis:
                with api.client("read") as client:
                    status = client.get("/api/v1/alerts/status").json()
                if sorted(r for r in status["replicas"] if r.startswith(f"api-{city}")) != names:
                    return False
            return True

        # The fact that ownership is settled: every replica lists every replica.
        assert wait_for(all_heard, timeout=60), [a.log() for a in apis]
        yield Platform(city, apis, hook, broker.url)


def _wave(start: float) -> list[dict[str, Any]]:
    """Normal -> Awas -> Normal over about 90 minutes, then an hour at Normal."""
    wave = flood_wave(start, STEP_S, 100.0, 380.0, rise_steps=30, crest_steps=10, fall_steps=40)
    return wave + steady(start + len(wave) * STEP_S, STEP_S, 20, 100.0)


def _closed(p: Platform, count: int, api: ApiProcess | None = None) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]]:
        found = p.alerts(api, rule="banjir_siaga")
        return found if sum(e["state"] == "closed" for e in found) >= count else []

    found = wait_for(done, timeout=90)
    assert found, (p.alerts(api), (api or p.apis[0]).log())
    return found


def test_a_flood_wave_raises_one_siaga_episode_per_gauge(
    site: Site,
) -> None:
    start = time.time() - 3 * 3600
    with (
        SmtpReceiver(site.tmp) as smtp,
        platform(
            site,
            ["wl-a", "wl-b"],
            notify='["webhook:ops", "email:bpbd@purbalingga.go.id"]',
            env={
                "PANTAU_ALERTS_SMTP_HOST": "127.0.0.1",
                "PANTAU_ALERTS_SMTP_PORT": str(smtp.port),
                "PANTAU_ALERTS_SMTP_CA_FILE": str(smtp.ca_file),
                "PANTAU_ALERTS_DASHBOARD_URL": "https://ops.purbalinggakab.go.id",
            },
        ) as p,
    ):
        p.publish({"wl-a": _wave(start), "wl-b": _wave(start + 600)})
        episodes = _closed(p, 2)
        assert wait_for(lambda: len(p.keys("close")) == 2, timeout=60), p.hook.accepted_keys()
        assert wait_for(lambda: len(smtp.messages) >= 4, timeout=60), p.apis[0].log()

    # Exactly one episode per gauge, from Siaga (rising) to ten minutes under it (falling).
    assert sorted(e["device_id"] for e in episodes) == ["wl-a", "wl-b"]
    for e in episodes:
        assert e["severity"] == "critical" and e["detail"] == "Awas"  # its worst level
        assert e["opened_at"] == pytest.approx(e["started_at"] + 180)
        assert e["closed_at"] > e["opened_at"]
    # One open and one close notification per episode, signed, keyed by the episode id.
    ids = sorted(e["id"] for e in episodes)
    assert sorted(k.split(":")[0] for k in p.keys("open")) == ids
    assert sorted(k.split(":")[0] for k in p.keys("close")) == ids
    assert p.hook.rejected == 0 and p.hook.requests == 4
    body = orjson.loads(p.hook.received[0].body)
    assert body["event"] == "open" and body["episode"]["id"] in ids
    # The e-mails: Bahasa Indonesia by default, linking to the device on the dashboard.
    subjects = Counter(m["X-Pantau-Event"] for m in smtp.messages)
    assert subjects == {"open": 2, "close": 2}
    text = smtp.messages[0].get_content()
    assert "Siaga" in text or "Awas" in text
    assert "https://ops.purbalinggakab.go.id/" in text


def test_an_unacknowledged_episode_escalates_and_an_acknowledged_one_does_not(
    site: Site,
) -> None:
    escalate = '[[rules.banjir_siaga.escalate]]\nafter_min = 0.25\nnotify = ["webhook:kalak"]\n'
    start = time.time() - 3 * 3600
    with platform(site, ["wl-a", "wl-b"], extra=escalate) as p:
        # Both gauges reach Siaga and stay there.
        rise = flood_wave(start, STEP_S, 100.0, 300.0, rise_steps=20, crest_steps=30, fall_steps=0)
        p.publish({"wl-a": rise, "wl-b": rise})

        def opened() -> dict[str, str]:
            return {e["device_id"]: e["id"] for e in p.alerts(state="open")}

        ids = wait_for(lambda: len(opened()) == 2 and opened(), timeout=60)
        assert ids, p.apis[0].log()
        with p.apis[0].client("operate") as client:
            response = client.post(
                f"/api/v1/alerts/{ids['wl-b']}/ack", json={"note": "petugas menuju lokasi"}
            )
        assert response.status_code == 200, response.text
        acked = response.json()["acknowledged"]
        assert acked["note"] == "petugas menuju lokasi" and acked["by"] == "test-operate"

        def escalated() -> list[str]:
            return p.keys("escalate")

        assert wait_for(escalated, timeout=60), (p.hook.accepted_keys(), p.apis[0].log())
        # A second look later: still only the unacknowledged episode escalated.
        episode = next(e for e in p.alerts() if e["id"] == ids["wl-a"])
    assert escalated() == [f"{ids['wl-a']}:escalate:1"]
    assert episode["level"] == 1 and episode["escalated_at"] is not None
    assert sorted(p.keys("open")) == sorted(f"{i}:open:0" for i in ids.values())


def test_a_flapping_gauge_makes_no_notification_storm(
    site: Site,
) -> None:
    start = time.time() - 3 * 3600
    with platform(site, ["wl-edge", "wl-up"]) as p:
        # One gauge sits at the Siaga edge from the start: it never holds Siaga for 3 minutes.
        edge = flapping(start, STEP_S, 60, threshold_cm=250.0, swing_cm=5.0)
        # The other reaches Siaga, holds it, then flaps at the edge for an hour, then falls.
        up = steady(start, STEP_S, 10, 270.0)
        flap = flapping(start + 10 * STEP_S, STEP_S, 60, threshold_cm=250.0, swing_cm=5.0)
        down = steady(start + 70 * STEP_S, STEP_S, 20, 100.0)
        p.publish({"wl-edge": edge, "wl-up": up + flap + down}, stepwise=True)
        episodes = _closed(p, 1)
        assert wait_for(lambda: p.keys("close"), timeout=60), p.hook.accepted_keys()
        # The edge gauge's last reading is processed: nothing opened for it.
        assert wait_for(lambda: _newest_ts(p, "wl-edge") >= edge[-1]["ts"] - 1e-3, timeout=60)
    assert [e["device_id"] for e in episodes] == ["wl-up"]
    assert len(p.keys("open")) == 1 and len(p.keys("close")) == 1
    assert p.hook.requests == 2


def _newest_ts(p: Platform, device: str) -> float:
    with p.apis[0].client("read") as client:
        found = client.get(f"/api/v1/devices/{device}").json()
    reading = found.get("reading") or found.get("latest") or {}
    return float(reading.get("ts") or 0.0)


def test_a_receiver_that_was_down_gets_the_notification_when_it_returns(
    site: Site,
) -> None:
    start = time.time() - 3 * 3600
    with platform(site, ["wl-a"], hook_up=False) as p:
        p.publish({"wl-a": steady(start, STEP_S, 10, 300.0)})
        api = p.apis[0]

        def retries() -> float:
            with api.client("read") as client:
                text = client.get("/metrics").text
            return sum(
                float(line.rpartition(" ")[2])
                for line in text.splitlines()
                if line.startswith("pantau_api_notification_retries_total")
            )

        # The fact that delivery was tried and failed: retries counted, nothing received.
        assert wait_for(lambda: retries() >= 2, timeout=60), api.log()
        p.hook.start()
        assert wait_for(p.hook.accepted_keys, timeout=60), api.log()
        assert len(p.keys("open")) == 1
        with api.client("read") as client:
            dead = client.get("/api/v1/alerts/dead-letters").json()
    assert dead["count"] == 0


def test_a_notification_that_never_gets_through_is_a_visible_dead_letter(
    site: Site,
) -> None:
    start = time.time() - 3 * 3600
    with platform(
        site,
        ["wl-a"],
        hook_up=False,
        env={"PANTAU_ALERTS_MAX_TRIES": "3"},
    ) as p:
        p.publish({"wl-a": steady(start, STEP_S, 10, 300.0)})
        api = p.apis[0]

        def dead_letters() -> list[dict[str, Any]]:
            with api.client("read") as client:
                found: list[dict[str, Any]] = client.get("/api/v1/alerts/dead-letters").json()[
                    "dead_letters"
                ]
            return found

        found = wait_for(dead_letters, timeout=60)
        assert found, api.log()
        with api.client("read") as client:
            metrics = client.get("/metrics").text
    assert found[0]["channel"] == "webhook" and found[0]["tries"] == 3
    assert found[0]["key"].endswith(":open:0") and found[0]["address"] == "ops"
    assert 'pantau_api_notifications_dead_total{channel="webhook"} 1.0' in metrics


def test_two_api_replicas_make_one_episode_and_one_notification(
    site: Site,
) -> None:
    start = time.time() - 3 * 3600
    with platform(site, ["wl-a", "wl-b"], replicas=2) as p:
        p.publish({"wl-a": _wave(start), "wl-b": _wave(start + 900)})
        first = _closed(p, 2, p.apis[0])
        second = _closed(p, 2, p.apis[1])
        assert wait_for(lambda: len(p.keys("close")) == 2, timeout=60), p.hook.accepted_keys()
        stored = httpx.get(
            f"{site.influx.url}/query",
            params={"db": site.db, "q": 'SELECT count("id") FROM "alert_episode"'},
            timeout=30,
        ).json()
    # Both replicas hold the same two episodes, stored once each.
    assert sorted(e["id"] for e in first) == sorted(e["id"] for e in second)
    assert len(first) == 2
    assert stored["results"][0]["series"][0]["values"][0][1] == 2
    # One notification per event, from one replica: the receiver saw no duplicate at all.
    assert p.hook.requests == 4
    assert Counter(k.split(":")[1] for k in p.hook.accepted_keys()) == {"open": 2, "close": 2}


def test_bad_alert_rules_stop_pantau_with_file_line_and_reason(tmp_path: Path) -> None:
    from tests.ingest_helpers import pantau

    rules = tmp_path / "alerts.toml"
    rules.write_text(
        '[rules.banjir]\ntype = "indicator"\nkind = "water_level"\n'
        'indicator = "flod_level"\nat_or_above = 2\nseverity = "critical"\n'
    )
    result = pantau("api", "--alert-rules", str(rules), timeout=60)
    assert result.returncode != 0
    assert f"{rules}:4:" in result.stderr and "flod_level" in result.stderr, result.stderr
    check = pantau("alerts", "check", str(rules), timeout=60)
    assert check.returncode != 0 and f"{rules}:4:" in check.stderr
    rules.write_text("[rules.x\n")
    result = pantau("api", "--alert-rules", str(rules), timeout=60)
    assert result.returncode != 0 and f"{rules}:1:" in result.stderr, result.stderr
