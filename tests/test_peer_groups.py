"""Drift judged within peer groups (a river, an airshed) rather than districts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ingest.batch import Batch, KindColumns
from ingest.derivation import Derivation
from pantau.registry import Registry
from processors.bank import KindProcessor
from processors.catalog import CATALOG, DeviceFacts
from simulators.fleet import purbalingga_fleet

SPEC = CATALOG["water_level"]
NAN = float("nan")


def river(stations: int, n: int = 1500, seed: int = 5) -> npt.NDArray[np.float64]:
    """Hourly levels of gauges on one river: a shared random walk, each its own gain and noise."""
    rng = np.random.default_rng(seed)
    common = 200 + np.cumsum(rng.normal(0, 1.0, n))
    return np.stack([common * (1 + 0.1 * s) + rng.normal(0, 0.5, n) for s in range(stations)]).clip(
        0, None
    )


def flooding(stations: int = 4, n: int = 1700, seed: int = 5) -> npt.NDArray[np.float64]:
    """A calm river, then from hour 900 a flood every 36 h for ten days: each wave (50 cm,
    about a day long) reaches gauge s 3 * s hours after the top gauge."""
    rng = np.random.default_rng(seed)
    common = 200 + np.cumsum(rng.normal(0, 0.3, n))
    levels = np.stack([common + rng.normal(0, 0.5, n) for _ in range(stations)])
    hours = np.arange(n)
    for start in range(900, 1140, 36):
        for s in range(stations):
            levels[s] += 50.0 * np.exp(-0.5 * ((hours - start - 3.0 * s) / 12.0) ** 2)
    return levels


def run(
    levels: npt.NDArray[np.float64],
    districts: list[str],
    groups: list[str] | None,
    orders: list[float] | None = None,
    bank: KindProcessor | None = None,
    hours: range | None = None,
) -> dict[str, list[float]]:
    """Hourly levels through a bank, a day per batch; the flagged hours of each gauge."""
    stations, n = levels.shape
    names = [f"wl-{s}" for s in range(stations)]
    if bank is None:
        facts = {d: DeviceFacts(peer_order=o) for d, o in zip(names, orders or [], strict=False)}
        bank = KindProcessor(SPEC, facts, report_all=False)
    flagged: dict[str, list[float]] = {}
    span = hours or range(n)
    for lo in range(span.start, span.stop, 24):
        hour = np.arange(lo, min(lo + 24, span.stop))
        ids = np.repeat(names, len(hour))
        values = np.zeros((len(ids), len(SPEC.fields)))
        values[:, 0] = levels[:, hour].ravel()
        present = np.zeros_like(values, dtype=np.bool_)
        present[:, 0] = True
        findings = bank.process(
            ids,
            np.tile(hour * 3600.0, stations),
            values,
            present,
            np.repeat(districts, len(hour)),
            None if groups is None else np.repeat(groups, len(hour)),
        )
        for f in findings:
            if f.detector == "drift":
                for row, t in zip(f.row.tolist(), f.ts.tolist(), strict=True):
                    flagged.setdefault(bank.device_id(row), []).append(t / 3600.0)
    return flagged


KECAMATAN = ["karangjambu", "bobotsari", "purbalingga", "kemangkon"]
KLAWING = ["river:klawing"] * 4


def test_gauges_of_one_river_in_different_districts_are_peers() -> None:
    levels = river(3)
    levels[1, 1000:1168] += np.linspace(0, 6 * levels[1].std(), 168)
    # One gauge per district: by district nobody has peers, so nothing is judged.
    assert run(levels, KECAMATAN[:3], None) == {}
    # The river is the group: the drifting gauge is found, during its drift, and only it.
    flagged = run(levels, KECAMATAN[:3], KLAWING[:3])
    assert set(flagged) == {"wl-1"}
    assert 1000 <= min(flagged["wl-1"]) <= 1168
    # An empty group falls back to the district: here all in one district, so judged again.
    assert set(run(levels, ["x"] * 3, [""] * 3)) == {"wl-1"}


def test_a_wave_travelling_down_the_river_is_not_drift_but_a_drift_still_is() -> None:
    levels = flooding()
    drifting = levels.copy()
    drifting[2, 1300:1468] += np.linspace(0, 6 * levels[2, :900].std(), 168)
    orders = [1.0, 2.0, 3.0, 4.0]  # upstream first
    # Ordered: the waves raise nothing, the drift after them is found on its gauge alone.
    assert run(levels, KECAMATAN, KLAWING, orders) == {}
    flagged = run(drifting, KECAMATAN, KLAWING, orders)
    assert set(flagged) == {"wl-2"}
    assert 1300 <= min(flagged["wl-2"]) <= 1468
    # Not ordered (instantaneous medians): the top gauge, which each wave reaches first, is
    # taken for drifting during the floods, and stays flagged.
    unordered = run(levels, KECAMATAN, KLAWING)
    assert set(unordered) == {"wl-0"} and 900 <= min(unordered["wl-0"]) <= 1140


def test_peer_groups_and_envelopes_survive_a_restart() -> None:
    levels = flooding()
    levels[0, 1300:1468] -= np.linspace(0, 6 * levels[0, :900].std(), 168)
    orders = [1.0, 2.0, 3.0, 4.0]
    facts = {f"wl-{s}": DeviceFacts(peer_order=o) for s, o in enumerate(orders)}
    whole = KindProcessor(SPEC, facts, report_all=False)
    first = KindProcessor(SPEC, facts, report_all=False)
    for bank in (whole, first):  # stopped in the middle of the floods
        run(levels, KECAMATAN, KLAWING, bank=bank, hours=range(0, 1008))
    saved = first.snapshot()
    assert "peer_groups" in saved and "drift.env_lo" in saved
    restored = KindProcessor(SPEC, facts, report_all=False)
    restored.restore(saved)
    assert restored.peers.tolist() == first.peers.tolist()
    assert (restored.peer_code == first.peer_code).all()
    expected = run(levels, KECAMATAN, KLAWING, bank=whole, hours=range(1008, 1700))
    assert run(levels, KECAMATAN, KLAWING, bank=restored, hours=range(1008, 1700)) == expected
    assert set(expected) == {"wl-0"}
    ours, theirs = restored.snapshot(), whole.snapshot()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert np.array_equal(ours[key], value, equal_nan=value.dtype.kind == "f"), key


def test_a_snapshot_without_envelopes_loads_the_rest() -> None:
    levels = flooding(n=1008)
    facts = {f"wl-{s}": DeviceFacts(peer_order=s + 1.0) for s in range(4)}
    bank = KindProcessor(SPEC, facts, report_all=False)
    run(levels, KECAMATAN, KLAWING, bank=bank)
    saved = {k: v for k, v in bank.snapshot().items() if not k.startswith("drift.env")}
    restored = KindProcessor(SPEC, facts, report_all=False)
    restored.restore(saved)
    np.testing.assert_array_equal(restored.drift.r_fast, bank.drift.r_fast)
    assert np.isnan(restored.drift.envelopes.number).all()  # none held: z alone until refilled


def test_a_bank_without_groups_or_orders_saves_what_it_always_did() -> None:
    levels = river(3, n=300)
    bank = KindProcessor(SPEC, report_all=False)
    run(levels, ["d"] * 3, None, bank=bank)
    saved = bank.snapshot()
    assert "peer_groups" not in saved
    assert not any(key.startswith("drift.env") for key in saved)


def gauge_batch(devices: list[str], districts: list[str], hour: float) -> Batch:
    n = len(devices)
    values = np.full((n, len(SPEC.fields)), np.nan)
    values[:, 0] = 200.0
    present = np.zeros_like(values, dtype=np.bool_)
    present[:, 0] = True
    columns = KindColumns(
        SPEC,
        np.array(["x"] * n),
        np.array(devices),
        np.array(["purbalingga"] * n),
        np.array(districts),
        np.full(n, int(hour * 3600 * 1e9), dtype=np.int64),
        values,
        present,
    )
    return Batch({"water_level": columns}, [], n)


def test_the_collector_passes_each_device_its_registry_group() -> None:
    registry: Registry = purbalingga_fleet()
    derivation = Derivation(registry)
    devices = ["wl-bobotsari-01", "wl-kemangkon-01", "wl-bukateja-01", "wl-unknown-01"]
    districts = ["bobotsari", "kemangkon", "bukateja", "kalimanah"]
    derivation.process(gauge_batch(devices, districts, 1.0))
    bank = derivation.banks["water_level"]
    peers = {d: bank.peers[bank.table.row(d)] for d in devices}
    assert peers == {
        "wl-bobotsari-01": "river:klawing",
        "wl-kemangkon-01": "river:klawing",
        "wl-bukateja-01": "river:serayu",
        "wl-unknown-01": "kalimanah",  # not registered: its district
    }
    # The indicators keep the districts.
    assert bank.districts[bank.table.row("wl-kemangkon-01")] == "kemangkon"
    assert bank.device_facts["peer_order"][bank.table.row("wl-kemangkon-01")] == 7.0
    # Without a registry every device's group is its district.
    bare = Derivation()
    bare.process(gauge_batch(devices[:1], districts[:1], 1.0))
    assert bare.banks["water_level"].peers[0] == "bobotsari"
