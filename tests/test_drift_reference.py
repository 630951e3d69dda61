"""The vectorised drift detector against its slow reference twin, and what drift means."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
from hypothesis import given, settings, target
from hypothesis import strategies as st

from processors.bank import KindProcessor
from processors.catalog import CATALOG, DeviceFacts
from processors.detectors.drift import PeerLanes
from processors.detectors.reference import ReferenceDrift

KINDS = ["air_quality", "water_level"]
# Short memories, a low threshold and a small lag, so that a few dozen readings reach every
# branch: warm-up, judged, flagged, frozen learning, stale peers, too few stations; and
# envelopes of four 10-minute buckets (the readings' ticks) for the ordered devices.
QUICK: dict[str, Any] = dict(
    threshold=1.0,
    fast=0.5,
    slow=0.2,
    spread_rate=0.1,
    warmup=2,
    max_lag_s=1800.0,
    lag_s=2400.0,
    buckets=4,
)
# ids, times, values, present, districts, peer groups ("": the district)
Batch = tuple[list[str], list[float], list[list[float]], list[list[bool]], list[str], list[str]]
Orders = dict[str, float]  # the devices' registry peer_order (ordered along a river)
Verdicts = set[tuple[int, int, int, bool, float]]


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[Batch], Orders]:
    kind = draw(st.sampled_from(KINDS))
    m = len(CATALOG[kind].fields)
    devices = [f"d{i}" for i in range(draw(st.integers(1, 6)))]
    # Mostly one district (so there are peers), sometimes a second one or a lone device; peer
    # groups across districts, or none (the district); some devices ordered along a river.
    district_of = {d: draw(st.sampled_from(["a", "a", "a", "b", "c"])) for d in devices}
    group_of = {d: draw(st.sampled_from(["", "river:x", "river:x", "a"])) for d in devices}
    orders = {d: float(k) for k, d in enumerate(devices, 1) if draw(st.booleans())}
    value = st.one_of(
        st.sampled_from([10.0, 10.0, 12.0, 15.0, 11.5]),
        st.floats(0, 400, allow_nan=False),
        st.sampled_from([-5.0, float("nan"), 1e9]),
    )
    usually = st.sampled_from([True, True, True, False])
    out: list[Batch] = []
    slot = 0
    for _ in range(draw(st.integers(1, 6))):
        # Time moves on from batch to batch; inside a batch most devices report at most ticks
        # (so peers are fresh), some readings come late, twice or out of order.
        ticks = draw(st.integers(1, 10))
        readings = [
            (d, 1e9 + 600.0 * (slot + k))
            for k in range(ticks)
            for d in devices
            if draw(st.integers(0, 9)) > 0
        ]
        readings += draw(
            st.lists(
                st.tuples(
                    st.sampled_from(devices),
                    st.integers(max(0, slot - 6), slot + ticks).map(lambda k: 1e9 + 600.0 * k),
                ),
                max_size=6,
            )
        )
        slot += ticks + draw(st.sampled_from([0, 0, 0, 4]))  # now and then a pause
        readings = draw(st.permutations(readings))
        values = [draw(st.lists(value, min_size=m, max_size=m)) for _ in readings]
        present = [draw(st.lists(usually, min_size=m, max_size=m)) for _ in readings]
        out.append(
            (
                [d for d, _ in readings],
                [t for _, t in readings],
                values,
                present,
                [district_of[d] for d, _ in readings],
                [group_of[d] for d, _ in readings],
            )
        )
    return kind, out, orders


def fast_verdicts(kind: str, batches_: list[Batch], orders: Orders, **params: Any) -> Verdicts:
    facts = {d: DeviceFacts(peer_order=k) for d, k in orders.items()}
    bank = KindProcessor(CATALOG[kind], facts, params={"drift": params})
    verdicts: Verdicts = set()
    for number, (ids, ts, values, present, districts, groups) in enumerate(batches_):
        m = len(CATALOG[kind].fields)
        findings = bank.process(
            np.array(ids, dtype=str),
            np.array(ts, dtype=np.float64),
            np.array(values, dtype=np.float64).reshape(len(ids), m),
            np.array(present, dtype=np.bool_).reshape(len(ids), m),
            np.array(districts, dtype=str),
            np.array(groups, dtype=str),
        )
        for f in findings:
            if f.detector != "drift":
                continue
            for ref, field, flag, score in zip(
                f.ref.tolist(), f.field.tolist(), f.flag.tolist(), f.score.tolist(), strict=True
            ):
                verdicts.add((number, ref, field, flag, round(score, 9)))
    return verdicts


def slow_verdicts(kind: str, batches_: list[Batch], orders: Orders, **params: Any) -> Verdicts:
    twin = ReferenceDrift(CATALOG[kind], peer_order=orders, **params)
    verdicts: Verdicts = set()
    for number, (ids, ts, values, present, districts, groups) in enumerate(batches_):
        for v in twin.process(ids, ts, values, present, districts, groups):
            verdicts.add((number, v.ref, v.field, v.flag, round(v.score, 9)))
    return verdicts


@settings(max_examples=120, deadline=None)
@given(batches())
def test_vectorised_drift_agrees_with_reference(case: tuple[str, list[Batch], Orders]) -> None:
    kind, batches_, orders = case
    expected = slow_verdicts(kind, batches_, orders, **QUICK)
    target(float(len(expected)), label="judged")  # steer towards many judged readings ...
    target(float(sum(flag for *_, flag, _ in expected)), label="alarms")  # ... and alarms
    assert fast_verdicts(kind, batches_, orders, **QUICK) == expected


@settings(max_examples=25, deadline=None)
@given(batches(), st.sampled_from([2, 3]))
def test_agreement_holds_for_other_station_minimums(
    case: tuple[str, list[Batch], Orders], min_stations: int
) -> None:
    kind, batches_, orders = case
    params = {**QUICK, "min_stations": min_stations, "threshold": 0.5}
    assert fast_verdicts(kind, batches_, orders, **params) == slow_verdicts(
        kind, batches_, orders, **params
    )


@st.composite
def drifting(draw: st.DrawFn) -> tuple[list[Batch], Orders, str]:
    """Gauges of one river (some ordered, in several districts) following one signal, one of
    them shifted far from some tick on: batches of a few ticks, shuffled."""
    m = len(CATALOG["water_level"].fields)
    devices = [f"d{i}" for i in range(draw(st.integers(3, 5)))]
    orders = {d: float(k) for k, d in enumerate(devices, 1) if draw(st.booleans())}
    drifter = draw(st.sampled_from(devices))
    ticks = draw(st.integers(16, 24))
    start = draw(st.integers(6, ticks - 9))
    shift = draw(st.sampled_from([-1.0, 1.0])) * draw(st.floats(300.0, 700.0))
    jitter = st.floats(0.0, 1.0)
    level = {
        (d, k): 200.0
        + 10.0 * np.sin(k)
        + draw(jitter)
        + (shift if d == drifter and k >= start else 0.0)
        for d in devices
        for k in range(ticks)
    }
    out: list[Batch] = []
    k = 0
    while k < ticks:
        span = range(k, min(ticks, k + draw(st.integers(1, 4))))
        readings = draw(st.permutations([(d, j) for j in span for d in devices]))
        out.append(
            (
                [d for d, _ in readings],
                [1e9 + 600.0 * j for _, j in readings],
                [[level[d, j]] + [0.0] * (m - 1) for d, j in readings],
                [[True] + [False] * (m - 1) for _ in readings],
                [f"kec{devices.index(d)}" for d, _ in readings],
                ["river:x"] * len(readings),
            )
        )
        k = span[-1] + 1
    return out, orders, drifter


@settings(max_examples=40, deadline=None)
@given(drifting())
def test_drift_alarms_are_compared_and_found(case: tuple[list[Batch], Orders, str]) -> None:
    # Every example raises drift alarms (checked), so the twins' decisions on alarms, not only
    # on quiet readings, are compared; the shifted gauge is among those flagged.
    batches_, orders, drifter = case
    expected = slow_verdicts("water_level", batches_, orders, **QUICK)
    flagged = {batches_[number][0][ref] for number, ref, _, flag, _ in expected if flag}
    assert drifter in flagged
    assert fast_verdicts("water_level", batches_, orders, **QUICK) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=30),  # district code per device (0: none)
    st.integers(1, 3),  # fields
    st.data(),
)
def test_peer_lanes_give_the_median_of_the_fresh_latest_z(
    codes: list[int], m: int, data: st.DataObject
) -> None:
    # Lanes of uneven districts, some z missing or stale: each (district, field) median and
    # count must be those of the plain list of fresh z, for districts with enough stations.
    n = len(codes)
    z = np.array(
        data.draw(
            st.lists(
                st.sampled_from([float("nan"), -1.5, 0.0, 0.25, 2.0, 7.0]),
                min_size=n * m,
                max_size=n * m,
            )
        )
    ).reshape(n, m)
    times = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 100.0, 5000.0]), min_size=n * m, max_size=n * m))
    ).reshape(n, m)
    min_stations = data.draw(st.integers(1, 3))
    lanes = PeerLanes(np.array(codes), z, times, min_stations, 1000.0)
    medians, counts = lanes.medians()
    for code in range(1, 5):
        members = [d for d in range(n) if codes[d] == code]
        lane = int(lanes.lane_of_code[code]) if code < len(lanes.lane_of_code) else -1
        if len(members) < min_stations:
            assert lane < 0 or len(members) >= min_stations
            continue
        for f in range(m):
            held = [(z[d, f], times[d, f]) for d in members if not np.isnan(z[d, f])]
            newest = max((t for _, t in held), default=-np.inf)
            fresh = [v for v, t in held if t >= newest - 1000.0]
            assert counts[lane, f] == len(fresh)
            if fresh:
                assert medians[lane, f] == statistics.median(fresh)
            else:
                assert np.isnan(medians[lane, f])
    assert counts[-1].tolist() == [0] * m and np.isnan(medians[-1]).all()  # lane -1


def _district_run(
    levels: np.ndarray,
    districts: list[str],
    *,
    batch_hours: int = 24,
    shuffle: bool = False,
) -> dict[str, list[float]]:
    """Hourly water levels of stations (rows of `levels`) through the bank; flagged times."""
    spec = CATALOG["water_level"]
    stations, n = levels.shape
    bank = KindProcessor(spec, report_all=False)
    rng = np.random.default_rng(0)
    flagged: dict[str, list[float]] = {}
    for lo in range(0, n, batch_hours):
        hours = np.arange(lo, min(lo + batch_hours, n))
        ids = np.repeat([f"g{s}" for s in range(stations)], len(hours))
        ts = np.tile(1e9 + hours * 3600.0, stations)
        values = np.zeros((len(ids), len(spec.fields)))
        values[:, 0] = levels[:, hours].ravel()
        present = np.zeros_like(values, dtype=np.bool_)
        present[:, 0] = True
        names = np.repeat(districts, len(hours))
        order = rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
        for f in bank.process(ids[order], ts[order], values[order], present[order], names[order]):
            if f.detector == "drift":
                for row, t in zip(f.row.tolist(), f.ts.tolist(), strict=True):
                    flagged.setdefault(bank.device_id(row), []).append(t)
    return flagged


def _neighbours(stations: int, n: int = 2000, seed: int = 5) -> np.ndarray:
    """Gauges on one river: a shared random walk, each with its own gain and noise."""
    rng = np.random.default_rng(seed)
    common = 200 + np.cumsum(rng.normal(0, 1.0, n))
    return np.stack([common * (1 + 0.1 * s) + rng.normal(0, 0.5, n) for s in range(stations)]).clip(
        0, None
    )


def test_one_drifting_station_of_four_is_the_only_one_flagged() -> None:
    levels = _neighbours(4)
    levels[2, 1200:1368] += np.linspace(0, 6 * levels[2].std(), 168)
    flagged = _district_run(levels, ["klawing"] * 4)
    assert set(flagged) == {"g2"}
    assert 1e9 + 1200 * 3600 <= min(flagged["g2"]) <= 1e9 + 1368 * 3600


def test_shuffled_batches_give_the_same_flags() -> None:
    levels = _neighbours(4)
    levels[1, 1200:1368] -= np.linspace(0, 6 * levels[1].std(), 168)
    assert _district_run(levels, ["x"] * 4) == _district_run(
        levels, ["x"] * 4, batch_hours=7, shuffle=True
    )


def test_two_stations_are_never_judged_and_a_whole_district_drifting_is_not_drift() -> None:
    levels = _neighbours(3)
    ramp = np.linspace(0, 6 * levels.std(), 168)
    pair = levels[:2].copy()
    pair[0, 1200:1368] += ramp
    assert _district_run(pair, ["pair"] * 2) == {}
    together = levels.copy()
    together[:, 1200:1368] += ramp * (1 + 0.1 * np.arange(3))[:, None]
    assert _district_run(together, ["river"] * 3) == {}


def test_snapshot_and_restore_keep_the_drift_state() -> None:
    levels = _neighbours(3)
    levels[0, 1200:1368] += np.linspace(0, 6 * levels[0].std(), 168)
    spec = CATALOG["water_level"]

    def feed(bank: KindProcessor, hours: np.ndarray) -> list[tuple[int, float, bool]]:
        ids = np.repeat(["g0", "g1", "g2"], len(hours))
        ts = np.tile(1e9 + hours * 3600.0, 3)
        values = np.zeros((len(ids), len(spec.fields)))
        values[:, 0] = levels[:, hours].ravel()
        present = np.zeros_like(values, dtype=np.bool_)
        present[:, 0] = True
        out = []
        for f in bank.process(ids, ts, values, present, np.full(len(ids), "d")):
            if f.detector == "drift":
                out += list(zip(f.row.tolist(), f.ts.tolist(), f.flag.tolist(), strict=True))
        return out

    whole = KindProcessor(spec)
    feed(whole, np.arange(1250))
    expected = feed(whole, np.arange(1250, 1400))
    first = KindProcessor(spec)
    feed(first, np.arange(1250))
    restored = KindProcessor(spec)
    restored.restore(first.snapshot())
    assert feed(restored, np.arange(1250, 1400)) == expected
    assert any(flag for _, _, flag in expected)
