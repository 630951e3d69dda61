"""Replay of a recorded sensor file over MQTT, at a speed factor or as fast as possible."""

from __future__ import annotations

import itertools
import math
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import orjson
from tqdm import tqdm  # type: ignore[import-untyped]  # no type stubs installed

from pantau.topics import reading_topic
from simulators.clock import VirtualClock
from simulators.engine import Outgoing
from simulators.formats import Item, Record, ReplayFormat, slug
from simulators.runner import RunResult, Sink, run

__all__ = ["DeviceNaming", "ReplaySummary", "replay_file"]


class _Progress(Protocol):
    def update(self, n: int = 1) -> object: ...


@dataclass(frozen=True, slots=True)
class DeviceNaming:
    """Where replayed readings appear: city, and optionally one district and device id."""

    city: str = "replay"
    district: str | None = None  # default: the stream's name (station, gauge)
    device_id: str | None = None  # default: <format>-<stream>; a prefix for multi-device files

    def device(self, fmt: ReplayFormat, stream: str) -> tuple[str, str]:
        """(district, device_id) of one stream of the file."""
        district = self.district or stream
        if self.device_id is None:
            device_id = slug(f"{fmt.name}-{stream}" if stream != fmt.name else f"{fmt.name}-01")
        elif fmt.several_devices:
            device_id = slug(f"{self.device_id}-{stream}")
        else:
            device_id = self.device_id
        return district, device_id


@dataclass(slots=True)
class ReplaySummary:
    """What a replay read, sent and skipped."""

    rows: int = 0
    readings: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)
    devices: dict[str, str] = field(default_factory=dict)  # stream -> topic
    first_ts: float = math.inf
    last_ts: float = -math.inf
    result: RunResult | None = None

    def lines(self) -> list[str]:
        """A human-readable summary."""
        sent = self.result.messages if self.result else 0
        acked = self.result.acked if self.result else 0
        out = [
            f"rows={self.rows} sent={sent} acked={acked} skipped={sum(self.skipped.values())}",
        ]
        if self.skipped:
            out.append("skipped by reason: " + _pairs(self.skipped))
        if self.gaps:
            out.append("gaps (field left out, value missing in the file): " + _pairs(self.gaps))
        if math.isfinite(self.first_ts):
            out.append(f"observation times: {_iso(self.first_ts)} .. {_iso(self.last_ts)}")
        out.extend(f"device: {topic}" for topic in self.devices.values())
        if self.result and self.result.elapsed_s > 0:
            out.append(
                f"elapsed {self.result.elapsed_s:.1f} s, {self.result.rate:,.0f} msg/s"
                + (" (stopped early)" if self.result.stopped else "")
            )
        return out


def _pairs(counts: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _messages(
    items: Iterable[Item],
    fmt: ReplayFormat,
    naming: DeviceNaming,
    summary: ReplaySummary,
    progress: _Progress,
) -> Iterator[Outgoing]:
    kind = fmt.kind or ""
    routes: dict[str, tuple[str, str]] = {}
    last_line = 0
    for item in items:
        if item.line != last_line:
            summary.rows += 1
            progress.update(1)
            last_line = item.line
        summary.gaps.update(item.gaps)
        if not isinstance(item, Record):
            summary.skipped[item.reason] += 1
            continue
        route = routes.get(item.stream)
        if route is None:
            district, device_id = naming.device(fmt, item.stream)
            route = (device_id, reading_topic(naming.city, district, kind, device_id))
            routes[item.stream] = route
            summary.devices[item.stream] = route[1]
        summary.readings += 1
        summary.first_ts = min(summary.first_ts, item.ts)
        summary.last_ts = max(summary.last_ts, item.ts)
        payload = orjson.dumps({"ts": item.ts, **item.fields})
        yield Outgoing(item.ts, route[0], route[1], payload, 1, item.ts)


def _count_rows(path: Path) -> int:
    with path.open("rb") as source:
        return max(0, sum(1 for line in source if line.strip()) - 1)


def replay_file(
    path: Path,
    fmt: ReplayFormat,
    sink: Sink,
    *,
    naming: DeviceNaming,
    speed: float = math.inf,
    limit: int | None = None,
    utc_offset_h: float | None = None,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
) -> ReplaySummary:
    """Send every reading of the file (up to `limit` data rows) paced by observation time."""
    if fmt.kind is None:
        raise ValueError(fmt.refusal or f"format {fmt.name} cannot be replayed")
    summary = ReplaySummary()
    offset = fmt.utc_offset_h if utc_offset_h is None else utc_offset_h
    total = _count_rows(path)
    with (
        path.open(newline="", encoding="utf-8-sig") as source,
        tqdm(
            total=min(total, limit) if limit is not None else total,
            unit="row",
            file=sys.stderr,
            disable=not show_progress if show_progress is not None else None,
            desc=path.name,
        ) as progress,
    ):
        lines: Iterable[str] = source
        if limit is not None:
            lines = itertools.islice(source, limit + 1)  # the header and `limit` rows
        messages = _messages(fmt.parse(lines, path.name, offset), fmt, naming, summary, progress)
        first = next(messages, None)
        if first is None:
            summary.result = RunResult(0, 0, 0, 0, 0.0, False)
            return summary
        # Old observation times are fine (the collector keeps 30 years): no wall-clock cap.
        clock = VirtualClock(first.emit_at, speed, cap_at_wall=False)
        summary.result = run(itertools.chain([first], messages), sink, clock, stop=stop)
    return summary
