"""An alert episode: one condition of one rule on one subject, from open to close."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from pantau.derived import Ack

__all__ = [
    "EPISODE_ID",
    "Change",
    "Episode",
    "Event",
    "Subject",
    "Target",
    "episode_id",
]

# Episode ids: `{rule}.{16 hex}`; the hex is a hash of rule, subject and condition start, so
# every replica that sees the same readings derives the same id.
EPISODE_ID: Final = re.compile(r"[a-z0-9_]{1,64}\.[0-9a-f]{16}")

Event = Literal["open", "update", "escalate", "close", "ack"]
Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Subject:
    """What an episode is about: a device, a district (kecamatan) or the regency."""

    kind: str  # a device kind, or "area" for a district's or the regency's scores
    city: str
    district: str  # "" for the regency
    device_id: str  # "" for an area

    @property
    def key(self) -> str:
        """A stable text key: `device:{id}`, `district:{city}/{district}` or `regency:{city}`."""
        if self.device_id:
            return f"device:{self.device_id}"
        if self.district:
            return f"district:{self.city}/{self.district}"
        return f"regency:{self.city}"

    def as_json(self) -> dict[str, str]:
        """The API's representation."""
        return {
            "kind": self.kind,
            "city": self.city,
            "district": self.district,
            "device_id": self.device_id,
        }


def episode_id(rule: str, subject: Subject, started_at: float) -> str:
    """The stable id of the episode of `rule` on `subject` whose condition began then."""
    text = f"{rule}|{subject.key}|{round(started_at * 1e6)}"
    return f"{rule}.{hashlib.sha256(text.encode()).hexdigest()[:16]}"


@dataclass(slots=True)
class Episode:
    """One alert episode; times are epoch seconds (observation time unless said otherwise)."""

    id: str
    rule: str
    severity: Severity
    subject: Subject
    started_at: float  # the condition first held
    opened_at: float  # the hold time had passed: the episode exists from here
    updated_at: float
    value: float | None = None  # the watched quantity's latest value
    peak: float | None = None  # its worst value in this episode
    detail: str = ""  # what it is: "Siaga", "ISPU Tidak Sehat", "spike on level_cm", ...
    closed_at: float | None = None
    level: int = 0  # escalation level reached; 0 is the first notification
    escalated_at: float | None = None  # wall-clock time of the last escalation
    ack: Ack | None = None

    @property
    def is_open(self) -> bool:
        """Whether the condition still holds (not closed)."""
        return self.closed_at is None

    def copy(self) -> Episode:
        """A snapshot that later changes to this episode do not touch."""
        return dataclasses.replace(self)

    def as_json(self) -> dict[str, Any]:
        """The API's (and the live feed's) representation."""
        ack = self.ack
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "state": "open" if self.is_open else "closed",
            **self.subject.as_json(),
            "started_at": self.started_at,
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "closed_at": self.closed_at,
            "value": self.value,
            "peak": self.peak,
            "detail": self.detail,
            "level": self.level,
            "escalated_at": self.escalated_at,
            "acknowledged": None if ack is None else ack.as_json(),
        }


@dataclass(frozen=True, slots=True)
class Change:
    """Something that happened to an episode; `episode` is a snapshot taken then."""

    event: Event
    episode: Episode


@dataclass(frozen=True, slots=True)
class Target:
    """One recipient of a notification: a named webhook or an e-mail address."""

    channel: Literal["webhook", "email"]
    address: str  # the webhook's name in the rules file, or an e-mail address
    language: Literal["id", "en"] = "id"
