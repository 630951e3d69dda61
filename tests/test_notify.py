"""Notifications against real local receivers: signed webhooks, retries, dead letters, e-mail."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from api.alerts.episode import Change, Episode, Subject, Target, episode_id
from api.notify.email import EmailSender
from api.notify.message import email_message, episode_url, notification_for, webhook_body
from api.notify.outbox import DeadLetter, DeliveryError, Notification, Outbox
from api.notify.webhook import WebhookSender, sign
from pantau.derived import Ack
from pantau.settings import AlertSettings
from tests.notify_receivers import SmtpReceiver, WebhookReceiver

SECRET = b"s3cret-for-tests"
DASHBOARD = "https://pantau.example.id"
WIB = ZoneInfo("Asia/Jakarta")
STARTED = datetime(2026, 12, 3, 2, 0, tzinfo=WIB).timestamp()


def gauge_episode(device: str = "wl-bukateja-01", level: int = 0) -> Episode:
    subject = Subject("water_level", "purbalingga", "bukateja", device)
    return Episode(
        id=episode_id("flood_siaga", subject, STARTED),
        rule="flood_siaga",
        severity="critical",
        subject=subject,
        started_at=STARTED,
        opened_at=STARTED + 300,
        updated_at=STARTED + 600,
        value=2.0,
        peak=2.0,
        detail="Siaga",
        level=level,
    )


def area_episode() -> Episode:
    subject = Subject("area", "purbalingga", "kutasari", "")
    return Episode(
        id=episode_id("air_tidak_sehat", subject, STARTED),
        rule="air_tidak_sehat",
        severity="warning",
        subject=subject,
        started_at=STARTED,
        opened_at=STARTED,
        updated_at=STARTED,
        value=154.0,
        peak=160.5,
        detail="ISPU Tidak Sehat",
    )


HOOK = Target("webhook", "ops")


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Fail unless the condition holds before the deadline (sync tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


async def until_async(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Fail unless the condition holds before the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(outbox: Outbox) -> AsyncIterator[Outbox]:
    task = asyncio.create_task(outbox.run())
    try:
        yield outbox
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Hooks:
    """Records the outbox callbacks, as the service's metrics would count them."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.retries: list[tuple[str, int, str]] = []
        self.dead: list[DeadLetter] = []

    def outbox(self, deliver: Callable[[Notification], object], **kwargs: object) -> Outbox:
        params: dict[str, object] = {"max_tries": 5, "base_s": 0.05, "max_s": 0.2}
        params.update(kwargs)
        return Outbox(
            deliver,  # type: ignore[arg-type]
            on_sent=lambda n: self.sent.append(n.key),
            on_retry=lambda n, tries, error, _delay: self.retries.append((n.key, tries, error)),
            on_dead=self.dead.append,
            rng=random.Random(7),
            **params,  # type: ignore[arg-type]
        )


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as r:
        yield r


def webhook_note(episode: Episode | None = None, event: str = "open") -> Notification:
    change = Change(event, episode or gauge_episode())  # type: ignore[arg-type]
    return notification_for(change, HOOK, DASHBOARD)


# -- messages -------------------------------------------------------------------------------


def test_webhook_body_carries_the_episode_and_the_device_link() -> None:
    episode = gauge_episode()
    body = webhook_body(Change("open", episode), DASHBOARD, now=123.0)
    assert body["event"] == "open"
    assert body["episode"] == episode.as_json()
    assert body["device_url"] == f"{DASHBOARD}/#device=wl-bukateja-01"
    assert body["sent_at"] == 123.0
    json.dumps(body)  # serialisable as is
    note = notification_for(Change("open", episode), HOOK, DASHBOARD)
    assert note.key == f"{episode.id}:open:0"
    assert json.loads(note.body)["episode"]["id"] == episode.id


def test_area_episodes_link_to_their_district() -> None:
    episode = area_episode()
    assert episode_url(DASHBOARD + "/", episode.subject) == f"{DASHBOARD}/#district=kutasari"
    body = webhook_body(Change("open", episode), DASHBOARD)
    assert body["device_url"] is None and body["url"].endswith("#district=kutasari")
    subject, text = email_message(Change("open", episode), "id", DASHBOARD)
    assert "Kec. Kutasari" in subject and "ISPU Tidak Sehat" in subject
    assert "Nilai: 154 (Puncak: 160.5)" in text


def test_email_text_in_bahasa_indonesia_by_default_and_english() -> None:
    change = Change("escalate", gauge_episode(level=2))
    subject, text = email_message(change, "id", DASHBOARD)
    assert subject == "[Pantau] Eskalasi 2: Siaga · wl-bukateja-01, Kec. Bukateja"
    for line in (
        "Apa: Siaga (flood_siaga)",
        "Lokasi: Kec. Bukateja, Purbalingga",
        "Perangkat: wl-bukateja-01 (pos duga air)",
        "Sejak: 3 Des 2026 02:00 WIB",
        "Dibuka: 3 Des 2026 02:05 WIB",
        "Tingkat keparahan: Kritis",
        "Tingkat eskalasi: 2 (belum dikonfirmasi)",
        f"Lihat di dasbor: {DASHBOARD}/#device=wl-bukateja-01",
        f"POST {DASHBOARD}/api/v1/alerts/{change.episode.id}/ack",
    ):
        assert line in text, line
    subject, text = email_message(change, "en", DASHBOARD)
    assert subject == "[Pantau] Escalation 2: Siaga · wl-bukateja-01, Kec. Bukateja"
    assert "Since: 3 Dec 2026 02:00 WIB" in text
    assert "Device: wl-bukateja-01 (water level gauge)" in text
    assert "Escalation level: 2 (not acknowledged)" in text


def test_email_text_of_an_acknowledged_closed_episode() -> None:
    episode = gauge_episode()
    episode.ack = Ack("budi", STARTED + 900, "petugas menuju lokasi")
    episode.closed_at = STARTED + 3600
    _, text = email_message(Change("close", episode), "id", DASHBOARD)
    assert "Selesai: 3 Des 2026 03:00 WIB" in text
    assert "Dikonfirmasi oleh budi, 3 Des 2026 02:15 WIB: petugas menuju lokasi" in text
    assert "Cara konfirmasi" not in text  # nothing left to acknowledge


# -- webhooks -------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    expected = hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"key", b"{}", "1700000000") == f"sha256={expected}"


def test_signed_webhook_is_verified_by_the_receiver(receiver: WebhookReceiver) -> None:
    note = webhook_note()

    async def main() -> None:
        sender = WebhookSender({"ops": (receiver.url, SECRET)}, timeout_s=5)
        try:
            await sender.send(note)
        finally:
            await sender.aclose()

    asyncio.run(main())
    assert receiver.accepted_keys() == [note.key]
    got = receiver.received[0]
    assert got.body == note.body
    assert got.headers["X-Pantau-Event"] == "open"
    assert got.headers["Content-Type"] == "application/json"


def test_wrong_secret_is_permanent_and_not_retried(receiver: WebhookReceiver) -> None:
    hooks = Hooks()

    async def main() -> None:
        sender = WebhookSender({"ops": (receiver.url, b"wrong")}, timeout_s=5)
        outbox = hooks.outbox(sender.send)
        async with running(outbox):
            outbox.submit(webhook_note())
            assert await outbox.drain(10)
        await sender.aclose()

    asyncio.run(main())
    assert receiver.rejected == 1 and receiver.requests == 1
    assert [(d.tries, d.last_error) for d in hooks.dead] == [(1, "webhook ops: HTTP 401")]
    assert hooks.retries == []


def test_500s_are_retried_then_delivered_with_the_same_key(receiver: WebhookReceiver) -> None:
    hooks = Hooks()
    receiver.fail_next(2)
    note = webhook_note()

    async def main() -> None:
        sender = WebhookSender({"ops": (receiver.url, SECRET)}, timeout_s=5)
        outbox = hooks.outbox(sender.send)
        async with running(outbox):
            outbox.submit(note)
            assert await outbox.drain(10)
            assert outbox.pending() == 0
        await sender.aclose()

    asyncio.run(main())
    assert receiver.requests == 3
    assert receiver.accepted_keys() == [note.key]
    assert [(k, t) for k, t, _ in hooks.retries] == [(note.key, 1), (note.key, 2)]
    assert hooks.retries[0][2] == "webhook ops: HTTP 500"
    assert hooks.sent == [note.key]
    assert hooks.dead == []


def test_429_and_every_kth_500_are_retried(receiver: WebhookReceiver) -> None:
    hooks = Hooks()
    receiver.fail_every(2, status=429)
    notes = [webhook_note(gauge_episode(f"wl-{i:02d}")) for i in range(6)]

    async def main() -> None:
        sender = WebhookSender({"ops": (receiver.url, SECRET)}, timeout_s=5)
        outbox = hooks.outbox(sender.send, max_tries=10, concurrency=2)
        async with running(outbox):
            for note in notes:
                outbox.submit(note)
            assert await outbox.drain(15)
        await sender.aclose()

    asyncio.run(main())
    assert sorted(receiver.accepted_keys()) == sorted(n.key for n in notes)
    assert hooks.retries and hooks.dead == []


def test_receiver_down_at_first_gets_it_once_back(receiver: WebhookReceiver) -> None:
    hooks = Hooks()
    receiver.stop()
    note = webhook_note()

    async def main() -> None:
        sender = WebhookSender({"ops": (receiver.url, SECRET)}, timeout_s=5)
        outbox = hooks.outbox(sender.send, max_tries=50)
        async with running(outbox):
            outbox.submit(note)
            await until_async(lambda: len(hooks.retries) >= 2)
            assert receiver.accepted_keys() == []
            receiver.start()
            assert await outbox.drain(15)
        await sender.aclose()

    asyncio.run(main())
    assert receiver.accepted_keys() == [note.key]
    assert hooks.retries[0][2] == "webhook ops: ConnectError"
    assert hooks.sent == [note.key] and receiver.requests == 1


def test_after_max_tries_it_is_a_dead_letter(receiver: WebhookReceiver) -> None:
    hooks = Hooks()
    receiver.fail_every(1)  # always 500
    note = webhook_note()

    async def main() -> None:
        sender = WebhookSender({"ops": (receiver.url, SECRET)}, timeout_s=5)
        outbox = hooks.outbox(sender.send, max_tries=3)
        async with running(outbox):
            outbox.submit(note)
            assert await outbox.drain(10)
            assert [d.notification for d in outbox.dead_letters()] == [note]
        await sender.aclose()

    asyncio.run(main())
    assert receiver.requests == 3 and receiver.accepted_keys() == []
    assert len(hooks.dead) == 1
    dead = hooks.dead[0]
    assert (dead.tries, dead.last_error) == (3, "webhook ops: HTTP 500")
    assert dead.as_json()["address"] == "ops" and dead.as_json()["key"] == note.key
    assert len(hooks.retries) == 2


def test_unknown_webhook_is_permanent() -> None:
    async def main() -> None:
        sender = WebhookSender({}, timeout_s=5)
        try:
            with pytest.raises(DeliveryError) as caught:
                await sender.send(webhook_note())
        finally:
            await sender.aclose()
        assert caught.value.permanent

    asyncio.run(main())


def test_duplicates_are_not_queued_again(receiver: WebhookReceiver) -> None:
    hooks = Hooks()
    note = webhook_note()
    other = notification_for(Change("open", gauge_episode()), Target("webhook", "ops2"), DASHBOARD)
    escalated = webhook_note(gauge_episode(level=1), "escalate")

    async def main() -> None:
        sender = WebhookSender(
            {"ops": (receiver.url, SECRET), "ops2": (receiver.url, SECRET)}, timeout_s=5
        )
        outbox = hooks.outbox(sender.send)
        outbox.submit(note)
        outbox.submit(note)  # queued already
        assert outbox.pending() == 1
        async with running(outbox):
            assert await outbox.drain(10)
            outbox.submit(note)  # sent recently
            outbox.submit(other)  # same key, another recipient
            outbox.submit(escalated)
            assert await outbox.drain(10)
        await sender.aclose()

    asyncio.run(main())
    assert receiver.accepted_keys().count(note.key) == 2  # once per recipient
    assert sorted(receiver.accepted_keys()) == sorted([note.key, note.key, escalated.key])
    assert [d.key for d in receiver.received if d.key == escalated.key] == [escalated.key]


def test_a_failing_callback_or_sender_bug_does_not_stop_the_outbox() -> None:
    calls: list[int] = []

    async def buggy(n: Notification) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")

    def broken(*_: object) -> None:
        raise ValueError("metrics broke")

    async def main() -> None:
        outbox = Outbox(buggy, max_tries=3, base_s=0.05, max_s=0.1, on_sent=broken)
        async with running(outbox):
            outbox.submit(webhook_note())
            assert await outbox.drain(10)
        assert outbox.dead_letters() == []

    asyncio.run(main())
    assert len(calls) == 2


def test_drain_times_out_while_retries_are_pending() -> None:
    async def failing(n: Notification) -> None:
        raise DeliveryError("down", permanent=False)

    async def main() -> None:
        outbox = Outbox(failing, max_tries=100, base_s=0.05, max_s=0.05)
        async with running(outbox):
            outbox.submit(webhook_note())
            assert not await outbox.drain(0.3)
            assert outbox.pending() == 1

    asyncio.run(main())


# -- e-mail ---------------------------------------------------------------------------------


def smtp_settings(smtp: SmtpReceiver, **extra: object) -> AlertSettings:
    return AlertSettings(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file,
        smtp_from="pantau@purbalingga.go.id",
        **extra,  # type: ignore[arg-type]
    )


def test_email_over_starttls_in_both_languages(tmp_path: Path) -> None:
    change = Change("open", gauge_episode())
    hooks = Hooks()
    with SmtpReceiver(tmp_path, user="pantau", password="rahasia") as smtp:
        settings = smtp_settings(smtp, smtp_username="pantau", smtp_password=SecretStr("rahasia"))
        sender = EmailSender(settings)
        notes = [
            notification_for(change, Target("email", "bpbd@purbalingga.go.id"), DASHBOARD),
            notification_for(change, Target("email", "ops@example.org", "en"), DASHBOARD),
        ]

        async def main() -> None:
            outbox = hooks.outbox(sender.send)
            async with running(outbox):
                for note in notes:
                    outbox.submit(note)
                assert await outbox.drain(15)

        asyncio.run(main())
        until(lambda: len(smtp.messages) == 2)
        by_to = {str(m["To"]): m for m in smtp.messages}
    assert hooks.dead == [] and len(hooks.sent) == 2
    indonesian = by_to["bpbd@purbalingga.go.id"]
    assert (
        indonesian["Subject"] == "[Pantau] Peringatan baru: Siaga · wl-bukateja-01, Kec. Bukateja"
    )
    assert indonesian["X-Pantau-Episode"] == change.episode.id
    assert indonesian["Idempotency-Key"] == notes[0].key
    assert str(indonesian["Message-ID"]).endswith("@purbalingga.go.id>")
    text = indonesian.get_content()
    assert "Sejak: 3 Des 2026 02:00 WIB" in text
    assert f"{DASHBOARD}/#device=wl-bukateja-01" in text
    english = by_to["ops@example.org"]
    assert english["Subject"].startswith("[Pantau] New alert: Siaga")
    assert "View on the dashboard: " + f"{DASHBOARD}/#device=wl-bukateja-01" in (
        english.get_content()
    )


def test_wrong_smtp_password_is_permanent(tmp_path: Path) -> None:
    with SmtpReceiver(tmp_path, user="pantau", password="rahasia") as smtp:
        settings = smtp_settings(smtp, smtp_username="pantau", smtp_password=SecretStr("salah"))
        note = notification_for(
            Change("open", gauge_episode()), Target("email", "a@example.org"), DASHBOARD
        )
        with pytest.raises(DeliveryError) as caught:
            asyncio.run(EmailSender(settings).send(note))
        assert smtp.messages == []
    assert caught.value.permanent
    assert "535" in str(caught.value)
    assert "salah" not in str(caught.value)


def test_smtp_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with SmtpReceiver(tmp_path) as smtp, SmtpReceiver(other) as stranger:
        settings = smtp_settings(smtp).model_copy(update={"smtp_ca_file": stranger.ca_file})
        note = notification_for(
            Change("open", gauge_episode()), Target("email", "a@example.org"), DASHBOARD
        )
        with pytest.raises(DeliveryError) as caught:
            asyncio.run(EmailSender(settings).send(note))
    assert caught.value.permanent and "certificate" in str(caught.value)


def test_smtp_server_down_is_retryable(tmp_path: Path) -> None:
    with SmtpReceiver(tmp_path) as smtp:
        settings = smtp_settings(smtp)
    note = notification_for(
        Change("open", gauge_episode()), Target("email", "a@example.org"), DASHBOARD
    )
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(EmailSender(settings).send(note))
    assert not caught.value.permanent


def test_header_injection_is_a_permanent_error() -> None:
    settings = AlertSettings(smtp_host="127.0.0.1")
    note = Notification(
        "k", "e", "open", Target("email", "a@example.org"), subject="x\nBcc: evil@example.org"
    )
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(EmailSender(settings).send(note))
    assert caught.value.permanent
