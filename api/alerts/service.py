"""The alert service of one API replica: live events in, episodes stored, people notified.

Every replica runs the same rules over the same derived messages, so all of them hold the same
episodes with the same ids, and all write them to the same InfluxDB points. Only the episode's
owner among the live replicas (api/alerts/owners.py) sends its notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson

from api.alerts.engine import AlertEngine
from api.alerts.episode import EPISODE_ID, Change, Episode
from api.alerts.owners import PRESENCE_PREFIX, Replicas, presence_topic
from api.alerts.rules import AlertRules
from api.alerts.store import AlertStore, EpisodeFilter
from api.livestate import LiveState
from api.metrics import ApiMetrics
from api.notify.email import EmailSender
from api.notify.message import notification_for
from api.notify.outbox import DeadLetter, DeliveryError, Notification, Outbox
from api.notify.webhook import WebhookSender
from pantau.derived import ACK_PREFIX, Ack, ContractError
from pantau.influx import InfluxError
from pantau.settings import Settings

__all__ = ["ALERT_ACK_PREFIX", "AlertService", "alert_ack_topic"]

log = logging.getLogger(__name__)

ALERT_ACK_PREFIX: Final = f"{ACK_PREFIX}/alert"
# Events taken before the stored episodes are loaded wait here (oldest dropped beyond this).
_MAX_WAITING: Final = 100_000
_RESTORE_DAYS: Final = 30.0
_RETRY_S: Final = 5.0
# Events that notify people; updates and acks are shown and stored, not sent.
_NOTIFYING: Final = frozenset({"open", "escalate", "close"})

Publish = Callable[[dict[str, Any]], None]


def alert_ack_topic(episode_id: str) -> str:
    """The topic an acknowledgement of one episode is published on."""
    return f"{ALERT_ACK_PREFIX}/{episode_id}"


class AlertService:
    """Rules, episodes, storage, ownership and notifications of one API replica."""

    def __init__(
        self,
        settings: Settings,
        rules: AlertRules,
        state: LiveState,
        store: AlertStore,
        publish: Publish,
        metrics: ApiMetrics,
        me: str,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.state = state
        self.store = store
        self.publish = publish
        self.metrics = metrics
        self.engine = AlertEngine(rules, default_language=settings.alerts.language)
        self.replicas = Replicas(me, ttl_s=3 * settings.alerts.presence_s)
        alerts = settings.alerts
        default_secret = (
            alerts.webhook_secret.get_secret_value().encode() if alerts.webhook_secret else None
        )
        endpoints: dict[str, tuple[str, bytes | None]] = {}
        for name, spec in rules.webhooks.items():
            secret = os.environ.get(spec.secret_env) if spec.secret_env else None
            endpoints[name] = (spec.url, secret.encode() if secret else default_secret)
        self.webhooks = WebhookSender(endpoints, alerts.webhook_timeout_s)
        self.email = EmailSender(alerts) if alerts.smtp_host else None
        self.outbox = Outbox(
            self._deliver,
            max_tries=alerts.max_tries,
            base_s=alerts.retry_base_s,
            max_s=alerts.retry_max_s,
            on_sent=self._sent,
            on_retry=self._retry,
            on_dead=self._dead,
        )
        self.restored = asyncio.Event()
        self._waiting: deque[tuple[str, Any]] = deque(maxlen=_MAX_WAITING)
        self._unsaved: dict[str, Episode] = {}
        self._dead_unsaved: list[DeadLetter] = []
        self._publish_mqtt: Callable[[str, bytes, bool], Any] | None = None
        self._registered = 0
        # The current dimension scores ({"regency": ..., "districts": ...}), read every tick.
        self.score_source: Callable[[], dict[str, Any]] | None = None

    # -- input -------------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Take one live-state event (reading, indicator, anomaly); never raises."""
        if not self.restored.is_set():
            self._waiting.append(("event", event))
            return
        try:
            self._handle(self._changes(event))
        except Exception:  # one event's failure must never stop the feed
            log.exception("alert rules failed on an event", extra={"type": event.get("type")})

    def _changes(self, event: dict[str, Any]) -> list[Change]:
        kind, city = event.get("kind", ""), event.get("city", "")
        district, device = event.get("district", ""), event.get("device_id", "")
        ts = float(event.get("ts", 0.0))
        match event.get("type"):
            case "reading":
                return self.engine.reading(kind, city, district, device, ts)
            case "indicator":
                return self.engine.indicator(kind, city, district, device, ts, event["values"])
            case "anomaly":
                return self.engine.anomaly(
                    kind,
                    city,
                    district,
                    device,
                    ts,
                    event["detector"],
                    event["field"],
                    event["severity"],
                    event.get("score"),
                )
        return []

    def on_ops(self, topic: str, payload: bytes) -> bool:
        """Take a presence or alert-ack message; False if the topic is not one of those."""
        if topic.startswith(f"{PRESENCE_PREFIX}/"):
            data = _json(payload) if payload else None
            if not self.replicas.heard(topic, data, time.time()):
                self.state.reject("presence", topic, "not a replica's presence message")
            return True
        if topic.startswith(f"{ALERT_ACK_PREFIX}/"):
            ident = topic[len(ALERT_ACK_PREFIX) + 1 :]
            try:
                if not EPISODE_ID.fullmatch(ident):
                    raise ContractError("ack_id", "not an episode id")
                ack = Ack.parse(_json(payload))
            except ContractError as exc:
                self.state.reject(exc.reason, topic, exc.detail)
                return True
            if not self.restored.is_set():
                self._waiting.append(("ack", (ident, ack)))
            else:
                self._take_ack(ident, ack)
            return True
        return False

    def _take_ack(self, ident: str, ack: Ack) -> Change | None:
        change = self.engine.acknowledge(ident, ack)
        if change is not None:
            self._handle([change])
        return change

    # -- output ------------------------------------------------------------------------------

    def _handle(self, changes: list[Change]) -> None:
        now = time.time()
        for change in changes:
            episode = change.episode
            self._unsaved[episode.id] = episode
            self.metrics.alert_events.labels(change.event).inc()
            self.publish({"type": "alert", "event": change.event, **episode.as_json()})
            log.info(
                "alert episode %s",
                change.event,
                extra={
                    "episode": episode.id,
                    "subject": episode.subject.key,
                    "level": episode.level,
                },
            )
            if change.event in _NOTIFYING and self.replicas.owns(episode.id, now):
                self._notify(change)

    def _notify(self, change: Change) -> None:
        episode = change.episode
        rule = self.rules.rule(episode.rule)
        # Escalations go to their level's recipients; open and close to the rule's own.
        level = episode.level if change.event == "escalate" else 0
        targets = self.rules.targets(
            rule, episode.subject.district, level, default_language=self.settings.alerts.language
        )
        for target in targets:
            if target.channel == "email" and self.email is None:
                log.warning(
                    "no SMTP server is set: e-mail not sent",
                    extra={"episode": episode.id, "to": target.address},
                )
                continue
            self.outbox.submit(notification_for(change, target, self.settings.alerts.dashboard_url))
        self.metrics.notifications_pending.set(self.outbox.pending())

    async def _deliver(self, note: Notification) -> None:
        if note.target.channel == "webhook":
            await self.webhooks.send(note)
        elif self.email is not None:
            await self.email.send(note)
        else:
            raise DeliveryError("no SMTP server is set", permanent=True)

    def _sent(self, note: Notification) -> None:
        self.metrics.notifications_sent.labels(note.target.channel).inc()
        self.metrics.notifications_pending.set(self.outbox.pending())

    def _retry(self, note: Notification, *_: Any) -> None:
        self.metrics.notification_retries.labels(note.target.channel).inc()

    def _dead(self, dead: DeadLetter) -> None:
        note = dead.notification
        self.metrics.notifications_dead.labels(note.target.channel).inc()
        self.metrics.notifications_pending.set(self.outbox.pending())
        self._dead_unsaved.append(dead)
        log.error(
            "notification given up: dead letter",
            extra={"key": note.key, "to": note.target.address, "error": dead.last_error},
        )

    # -- running -----------------------------------------------------------------------------

    def bind_mqtt(self, publish: Callable[[str, bytes, bool], Any]) -> None:
        """How to publish on the broker: (topic, payload, retain) -> awaitable."""
        self._publish_mqtt = publish

    async def acknowledge(self, episode_id: str, ack: Ack) -> Episode | None:
        """Acknowledge an episode here and tell the other replicas; None if it is unknown."""
        if self.engine.get(episode_id) is None:
            return None
        change = self._take_ack(episode_id, ack)
        await self._save()
        if self._publish_mqtt is not None:
            with contextlib.suppress(ConnectionError):
                await self._publish_mqtt(
                    alert_ack_topic(episode_id), orjson.dumps(ack.as_json()), False
                )
        return change.episode if change is not None else self.engine.get(episode_id)

    async def run(self) -> None:
        """Load stored episodes, then evaluate time, save, announce and notify until cancelled."""
        outbox = asyncio.create_task(self.outbox.run(), name="api-alert-outbox")
        try:
            await self._restore()
            tick = self.settings.alerts.tick_s
            presence_every = self.settings.alerts.presence_s
            last_presence = 0.0
            while True:
                now = time.time()
                self._register_devices()
                if self.score_source is not None:
                    self.scores(self.score_source(), now)
                try:
                    self._handle(self.engine.tick(now))
                except Exception:
                    log.exception("alert rules failed on a tick")
                if now - last_presence >= presence_every and await self._announce():
                    last_presence = now
                await self._save()
                await asyncio.sleep(tick)
        finally:
            outbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbox
            await self.webhooks.aclose()

    def scores(self, scores: dict[str, Any], now: float) -> None:
        """Take the current dimension scores of the regency and each district."""
        cities = {city for city, _ in self.state.districts} or {self.settings.api.city}
        city = next(iter(cities)) if len(cities) == 1 else ""
        areas = {"": scores["regency"], **scores["districts"]}
        try:
            for district, area in areas.items():
                dims = {d["dimension"]: d["score"] for d in area["dimensions"]}
                self._handle(self.engine.scores(city, district, now, dims))
        except Exception:
            log.exception("alert rules failed on scores")

    def _register_devices(self) -> None:
        # Registered devices can go offline; they are known from the registry at start.
        devices = [d for d in self.state.devices.values() if d.registered]
        if len(devices) == self._registered:
            return
        for d in devices:
            self.engine.register_device(d.kind, d.city, d.district, d.device_id, d.interval_s)
        self._registered = len(devices)

    async def _restore(self) -> None:
        now = time.time()
        flt = EpisodeFilter(now - _RESTORE_DAYS * 86400, now + 3600, state="open")
        while True:
            try:
                found = await self.store.find(flt, 10_000)
                break
            except InfluxError as exc:
                log.warning(
                    "could not load open alert episodes; retrying", extra={"error": str(exc)}
                )
                await asyncio.sleep(_RETRY_S)
        self.engine.restore(found)
        self._register_devices()
        self.restored.set()
        log.info("open alert episodes loaded", extra={"count": len(found)})
        while self._waiting:
            what, item = self._waiting.popleft()
            if what == "event":
                self.on_event(item)
            else:
                self._take_ack(*item)

    async def _announce(self) -> bool:
        if self._publish_mqtt is None:
            return False
        me = self.replicas.me
        payload = orjson.dumps({"replica": me, "at": time.time()})
        try:
            await self._publish_mqtt(presence_topic(me), payload, True)
        except ConnectionError:
            return False
        return True

    async def _save(self) -> None:
        if not (self._unsaved or self._dead_unsaved):
            return
        episodes, self._unsaved = list(self._unsaved.values()), {}
        dead, self._dead_unsaved = self._dead_unsaved, []
        try:
            await self.store.save(episodes)
            for letter in dead:
                await self.store.dead_letter(_dead_fields(letter), letter.at)
        except InfluxError as exc:
            # Kept for the next tick: newer states of the same episodes replace these.
            for e in episodes:
                self._unsaved.setdefault(e.id, e)
            self._dead_unsaved[:0] = dead
            log.warning("could not store alert episodes; retrying", extra={"error": str(exc)})


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ContractError("not_json", str(exc)) from None


def _dead_fields(letter: DeadLetter) -> dict[str, float | int | str]:
    note = letter.notification
    return {
        "channel": note.target.channel,
        "event": note.event,
        "key": note.key,
        "episode_id": note.episode_id,
        "address": note.target.address,
        "tries": letter.tries,
        "last_error": letter.last_error[:500],
    }
