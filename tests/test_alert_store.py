"""Episodes in InfluxDB (one point per episode, whoever writes it) and replica ownership."""

from __future__ import annotations

import asyncio
import time

import pytest

from api.alerts.episode import Episode, Subject, episode_id
from api.alerts.owners import Replicas, presence_topic
from api.alerts.store import AlertStore, EpisodeFilter
from pantau.derived import Ack
from pantau.dev import InfluxDBService
from pantau.influx_async import AsyncInflux
from pantau.settings import Settings


def _episode(device: str, started: float) -> Episode:
    subject = Subject("water_level", "purbalingga", "bobotsari", device)
    return Episode(
        id=episode_id("flood_siaga", subject, started),
        rule="flood_siaga",
        severity="critical",
        subject=subject,
        started_at=started,
        opened_at=started + 300,
        updated_at=started + 300,
        value=2.0,
        peak=2.0,
        detail="Siaga",
    )


@pytest.mark.integration
def test_an_episode_written_by_two_replicas_is_one_point(
    influx: InfluxDBService, influx_db: str
) -> None:
    async def scenario() -> list[Episode]:
        settings = Settings(influx_url=influx.url, influx_db=influx_db)
        a, b = AsyncInflux(settings), AsyncInflux(settings)
        try:
            started = time.time() - 3600
            first = _episode("wl-1", started)
            other = _episode("wl-2", started)
            # Both replicas store the same episode, then one closes it and one acknowledges it.
            await AlertStore(a).save([first, other])
            await AlertStore(b).save([first])
            closed = first.copy()
            closed.closed_at, closed.updated_at = started + 900, started + 900
            await AlertStore(a).save([closed])
            acked = closed.copy()
            acked.ack = Ack("operator", started + 950, "checked on site")
            await AlertStore(b).save([acked])
            flt = EpisodeFilter(started - 60, time.time() + 60)
            return await AlertStore(a).find(flt, 100)
        finally:
            await a.close()
            await b.close()

    found = asyncio.run(scenario())
    assert sorted(e.subject.device_id for e in found) == ["wl-1", "wl-2"]
    one = next(e for e in found if e.subject.device_id == "wl-1")
    assert not one.is_open
    assert one.ack == Ack("operator", one.ack.at if one.ack else 0.0, "checked on site")
    assert one.id == _episode("wl-1", one.started_at).id


def test_every_replica_picks_the_same_owner_and_ownership_spreads() -> None:
    now = 1000.0
    names = ["api-a", "api-b", "api-c"]
    views = {n: Replicas(n, ttl_s=15) for n in names}
    for me, view in views.items():
        for other in names:
            if other != me:
                assert view.heard(presence_topic(other), {"replica": other, "at": now}, now)
    ids = [f"flood_siaga.{i:016x}" for i in range(300)]
    owners = {i: {view.owner(i, now) for view in views.values()} for i in ids}
    assert all(len(o) == 1 for o in owners.values())
    share = {n: sum(1 for o in owners.values() if o == {n}) for n in names}
    assert all(60 < s < 140 for s in share.values()), share


def test_a_silent_or_departed_replica_stops_owning() -> None:
    view = Replicas("api-a", ttl_s=15)
    assert view.heard(presence_topic("api-b"), {"replica": "api-b", "at": 0}, 0.0)
    assert view.live(10.0) == ["api-a", "api-b"]
    assert view.live(16.0) == ["api-a"]  # not heard within the time to live
    assert view.heard(presence_topic("api-b"), {"replica": "api-b", "at": 20}, 20.0)
    assert view.heard(presence_topic("api-b"), None, 21.0)  # its will: an empty retained message
    assert view.live(21.0) == ["api-a"]
    assert all(view.owns(f"r.{i:016x}", 21.0) for i in range(20))


def test_presence_messages_are_untrusted() -> None:
    view = Replicas("api-a", ttl_s=15)
    assert not view.heard(presence_topic("api-b"), {"replica": "api-c"}, 0.0)  # not its own name
    assert not view.heard(presence_topic("bad name!"), {"replica": "bad name!"}, 0.0)
    assert not view.heard(presence_topic("api-b"), ["api-b"], 0.0)
    for i in range(100):
        view.heard(presence_topic(f"r{i}"), {"replica": f"r{i}"}, 0.0)
    assert len(view.live(0.0)) <= 65  # bounded


def test_a_stale_retained_announcement_is_not_a_live_replica() -> None:
    view = Replicas("api-a", ttl_s=15)
    assert view.heard(presence_topic("api-old"), {"replica": "api-old", "at": 100.0}, 1000.0)
    assert view.live(1000.0) == ["api-a"]
