"""What a notification says: the webhook JSON body and the e-mail text (Indonesian or English)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from api.alerts.episode import Change, Episode, Subject, Target
from api.notify.outbox import Notification, notification_key

__all__ = ["Language", "email_message", "episode_url", "notification_for", "webhook_body"]

Language = Literal["id", "en"]

# Notifications are read in Purbalingga: times are WIB whatever the server's zone.
_WIB: Final = ZoneInfo("Asia/Jakarta")

_EVENTS: Final[dict[str, dict[str, str]]] = {
    "id": {
        "open": "Peringatan baru",
        "update": "Pembaruan",
        "escalate": "Eskalasi",
        "close": "Selesai",
        "ack": "Sudah dikonfirmasi",
    },
    "en": {
        "open": "New alert",
        "update": "Update",
        "escalate": "Escalation",
        "close": "Resolved",
        "ack": "Acknowledged",
    },
}
_SEVERITIES: Final[dict[str, dict[str, str]]] = {
    "id": {"info": "Info", "warning": "Waspada", "critical": "Kritis"},
    "en": {"info": "Info", "warning": "Warning", "critical": "Critical"},
}
_KINDS: Final[dict[str, dict[str, str]]] = {
    "id": {
        "water_level": "pos duga air",
        "air_quality": "stasiun kualitas udara",
        "streetlight": "lampu jalan",
        "area": "wilayah",
    },
    "en": {
        "water_level": "water level gauge",
        "air_quality": "air quality station",
        "streetlight": "streetlight",
        "area": "area",
    },
}
_MONTHS: Final[dict[str, tuple[str, ...]]] = {
    "id": ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}
# Labels of the text lines; flood levels and ISPU categories stay Indonesian in both (they
# arrive in `detail` as the official terms: "Siaga", "ISPU Tidak Sehat").
_TEXT: Final[dict[str, dict[str, str]]] = {
    "id": {
        "what": "Apa",
        "where": "Lokasi",
        "device": "Perangkat",
        "since": "Sejak",
        "opened": "Dibuka",
        "closed": "Selesai",
        "value": "Nilai",
        "peak": "Puncak",
        "severity": "Tingkat keparahan",
        "level": "Tingkat eskalasi",
        "ack": "Dikonfirmasi",
        "not_acked": "belum dikonfirmasi",
        "episode": "ID episode",
        "link": "Lihat di dasbor",
        "how_ack": "Cara konfirmasi: buka tautan di atas dan konfirmasi peringatan ini di panel "
        "peringatan, atau kirim POST {ack_url} dengan token ber-scope OPERATE dan badan "
        '{{"note": "..."}}.',
        "regency": "Kabupaten",
        "district": "Kec.",
        "by": "oleh",
        "footer": "Pesan otomatis dari Pantau. Jangan membalas e-mail ini.",
    },
    "en": {
        "what": "What",
        "where": "Where",
        "device": "Device",
        "since": "Since",
        "opened": "Opened",
        "closed": "Resolved",
        "value": "Value",
        "peak": "Peak",
        "severity": "Severity",
        "level": "Escalation level",
        "ack": "Acknowledged",
        "not_acked": "not acknowledged",
        "episode": "Episode id",
        "link": "View on the dashboard",
        "how_ack": "To acknowledge: open the link above and acknowledge this alert in the alerts "
        'panel, or POST {ack_url} with an OPERATE-scope token and the body {{"note": "..."}}.',
        "regency": "Regency",
        "district": "Kec.",
        "by": "by",
        "footer": "Automatic message from Pantau. Do not reply to this e-mail.",
    },
}


def episode_url(dashboard_url: str, subject: Subject) -> str:
    """The dashboard address of a subject: its device, its district, or the dashboard itself.

    The dashboard keeps its state in the fragment as URL parameters (as it does `#token=`), so
    the link is `#device=ID` or `#district=NAME`.
    """
    base = dashboard_url.rstrip("/")
    if subject.device_id:
        return f"{base}/#device={quote(subject.device_id, safe='')}"
    if subject.district:
        return f"{base}/#district={quote(subject.district, safe='')}"
    return f"{base}/"


def webhook_body(change: Change, dashboard_url: str, *, now: float | None = None) -> dict[str, Any]:
    """The JSON body of a webhook call about this change."""
    episode = change.episode
    subject = episode.subject
    url = episode_url(dashboard_url, subject)
    return {
        "event": change.event,
        "episode": episode.as_json(),
        "url": url,
        "device_url": url if subject.device_id else None,
        "sent_at": time.time() if now is None else now,
        "summary": _subject_line(change, "id"),
    }


def email_message(change: Change, language: Language, dashboard_url: str) -> tuple[str, str]:
    """The subject line and plain text of an e-mail about this change."""
    return _subject_line(change, language), _text(change, language, dashboard_url)


def notification_for(
    change: Change, target: Target, dashboard_url: str, *, now: float | None = None
) -> Notification:
    """The notification of this change for one recipient, in the recipient's language."""
    episode = change.episode
    now = time.time() if now is None else now
    key = notification_key(episode.id, change.event, episode.level)
    if target.channel == "webhook":
        body = webhook_body(change, dashboard_url, now=now)
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return Notification(key, episode.id, change.event, target, body=data, created_at=now)
    subject, text = email_message(change, target.language, dashboard_url)
    return Notification(
        key, episode.id, change.event, target, subject=subject, text=text, created_at=now
    )


def _subject_line(change: Change, language: Language) -> str:
    episode = change.episode
    event = _EVENTS[language][change.event]
    if change.event == "escalate":
        event = f"{event} {episode.level}"
    what = episode.detail or episode.rule
    return f"[Pantau] {event}: {what} · {_where(episode.subject, language)}"


def _where(subject: Subject, language: Language) -> str:
    text = _TEXT[language]
    if subject.device_id:
        place = f"{subject.device_id}, {text['district']} {_district(subject.district)}"
        return place if subject.district else subject.device_id
    if subject.district:
        return f"{text['district']} {_district(subject.district)}"
    return f"{text['regency']} {_district(subject.city)}"


def _district(name: str) -> str:
    return " ".join(part.capitalize() for part in name.replace("_", " ").replace("-", " ").split())


def _when(ts: float, language: Language) -> str:
    t = datetime.fromtimestamp(ts, _WIB)
    return f"{t.day} {_MONTHS[language][t.month - 1]} {t.year} {t:%H:%M} WIB"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _text(change: Change, language: Language, dashboard_url: str) -> str:
    episode: Episode = change.episode
    subject = episode.subject
    text = _TEXT[language]
    kind = _KINDS[language].get(subject.kind, subject.kind)
    url = episode_url(dashboard_url, subject)
    ack_url = f"{dashboard_url.rstrip('/')}/api/v1/alerts/{episode.id}/ack"
    place = (
        f"{text['district']} {_district(subject.district)}"
        if subject.district
        else f"{text['regency']} {_district(subject.city)}"
    )
    lines = [
        f"{_EVENTS[language][change.event]}: {episode.detail or episode.rule}",
        "",
        f"{text['what']}: {episode.detail or episode.rule} ({episode.rule})",
        f"{text['where']}: {place}, {_district(subject.city)}",
    ]
    if subject.device_id:
        lines.append(f"{text['device']}: {subject.device_id} ({kind})")
    lines.append(f"{text['since']}: {_when(episode.started_at, language)}")
    lines.append(f"{text['opened']}: {_when(episode.opened_at, language)}")
    if episode.closed_at is not None:
        lines.append(f"{text['closed']}: {_when(episode.closed_at, language)}")
    lines.append(
        f"{text['value']}: {_number(episode.value)} ({text['peak']}: {_number(episode.peak)})"
    )
    lines.append(f"{text['severity']}: {_SEVERITIES[language][episode.severity]}")
    ack = episode.ack
    acked = (
        text["not_acked"]
        if ack is None
        else f"{text['ack']} {text['by']} {ack.by}, {_when(ack.at, language)}"
        + (f": {ack.note}" if ack.note else "")
    )
    lines.append(f"{text['level']}: {episode.level} ({acked})")
    lines.append(f"{text['episode']}: {episode.id}")
    lines += ["", f"{text['link']}: {url}", ""]
    if ack is None and episode.is_open:
        lines += [text["how_ack"].format(ack_url=ack_url), ""]
    lines += ["-- ", text["footer"], ""]
    return "\n".join(lines)
