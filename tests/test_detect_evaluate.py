"""`pantau detect` over a CSV export and `pantau evaluate` on the shared data."""

from __future__ import annotations

import csv
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pantau.cli import main
from simulators.datasets import Series
from simulators.evaluate import INJECTED_FAULTS, VALUE_DETECTORS, inject, nab_score, pointwise
from simulators.faults import inject_level_shift, robust_scale
from tests.shared_data import shared_data


def test_detect_scores_every_row_and_flags_the_spike(tmp_path: Path) -> None:
    source = tmp_path / "station.csv"
    with source.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["waktu", "pm25", "note"])
        for i in range(200):
            value = "" if i == 50 else str(900.0 if i == 120 else 30 + (i % 7))
            writer.writerow([1_730_000_000 + i * 3600, value, "x"])
    out_path = tmp_path / "scored.csv"
    result = CliRunner().invoke(
        main,
        [
            "detect",
            str(source),
            "--time-column",
            "waktu",
            "--value-column",
            "pm25",
            "--kind",
            "air_quality",
            "--out",
            str(out_path),
        ],
    )
    assert result.exit_code == 0, result.output
    with out_path.open() as scored:
        rows = list(csv.DictReader(scored))
    assert len(rows) == 200
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    flagged = [i for i, r in enumerate(rows) if r["anomaly"] == "1"]
    assert flagged == [120]
    # The spike detector and the calibrated score both see it; the score ranks it first.
    assert rows[120]["detectors"] == "spike+unusual"
    scores = [float(r["score"]) for r in rows]
    assert max(range(len(rows)), key=scores.__getitem__) == 120
    assert scores[100] < 0.1  # an ordinary reading after the warm-up: not unusual
    assert rows[50]["anomaly"] == "0"  # a gap of one reading is not a dropout


def test_detect_refuses_a_missing_column(tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("t,v\n1,2\n")
    result = CliRunner().invoke(
        main,
        [
            "detect",
            str(source),
            "--time-column",
            "time",
            "--value-column",
            "v",
            "--out",
            str(tmp_path / "o.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "no column 'time'" in result.output


def test_evaluate_reports_every_part(tmp_path: Path) -> None:
    data = shared_data(what="`pantau evaluate` reads all of its data sets")
    truth = tmp_path / "truth.csv"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--data",
            str(data),
            "--max-readings",
            "3000",
            "--no-nab",
            "--write-truth",
            str(truth),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    part_b = out.split("(c)")[0]
    # One row per fault type: its name, then lone and peers side by side, 8 columns each.
    rows = {
        cells[0]: cells
        for cells in (line.split() for line in part_b.splitlines())
        if len(cells) == 18 and cells[9] == "|"
    }
    for fault in INJECTED_FAULTS:
        assert fault in rows, fault
        lone, peers = rows[fault][1:9], rows[fault][10:18]
        assert int(lone[0]) > 0 and int(peers[0]) > 0, f"{fault}: no events in a setting"
    f1_lone, f1_peers = 7, 17
    assert float(rows["dropout"][f1_lone]) >= 0.9
    assert float(rows["dropout"][f1_peers]) >= 0.9
    assert float(rows["spike"][f1_lone]) >= 0.8
    assert "F1 of lone on the peers'" in part_b
    part_c = out.split("(c)")[1].split("(a)")[0]
    clean = {line.split()[0] for line in part_c.splitlines() if line.strip()}
    assert {*VALUE_DETECTORS, "unusual", "all"} <= clean
    assert "skab-valve1-0" in out
    assert re.search(r"value detectors +P [\d.-]+ +R [\d.-]+ +point-wise F1 [\d.-]+", out)
    assert "best published" in out
    assert "(d) NAB standard score: skipped (--no-nab)" in out
    assert len(truth.read_text().splitlines()) > 50
    with truth.open() as source:
        events = list(csv.DictReader(source))
    assert {e["fault"] for e in events} >= set(INJECTED_FAULTS)
    # Drift and level shift: at most one station of a peer district at a time.
    shifted = [e for e in events if e["fault"] in ("drift", "level_shift")]
    for district in ("ea", "jakarta"):
        spans = sorted(
            (float(e["start"]), float(e["end"]))
            for e in shifted
            if e["device_id"].startswith(district + "-")
        )
        assert spans
        overlapping = [(a, b) for a, b in itertools.pairwise(spans) if b[0] <= a[1]]
        assert not overlapping, f"two {district} stations shifted at once: {overlapping}"


def _noisy_hourly(weeks: int, seed: int = 3) -> Series:
    """A level of 100 with noise of sd 5, hourly, one field."""
    n = weeks * 7 * 24
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000.0 + 3600.0 * np.arange(n, dtype=np.float64)
    values = 100.0 + rng.normal(0.0, 5.0, (n, 1))
    return Series("test-station:pm25", "air_quality", ("pm25",), ts, values)


def test_inject_level_shift_is_abrupt_and_held() -> None:
    values = np.tile([-1.0, 1.0], 50)  # median 0, MAD 1: robust sd 1.4826
    before = values.copy()
    inject_level_shift(values, 10, 48)
    shift = values - before
    assert np.allclose(shift[10:58], 3 * 1.4826)
    assert np.all(shift[:10] == 0) and np.all(shift[58:] == 0)
    inject_level_shift(values, 0, 4, magnitude=2.0, sign=-1.0, scale=10.0)
    assert np.allclose(values[:4] - before[:4], -20.0)


def test_evaluation_injects_the_judged_amplitudes() -> None:
    series = _noisy_hourly(weeks=40)
    sd = robust_scale(series.values[:, 0])
    injected, events = inject(series, np.random.default_rng(11), "pm25")
    # Align on time: dropouts removed readings.
    at = np.searchsorted(series.ts, injected.ts)
    offset = injected.values[:, 0] - series.values[at, 0]
    by_type = {f: [e for e in events if e.fault == f] for f in INJECTED_FAULTS}
    assert all(by_type.values())
    for event in by_type["drift"]:
        span = (injected.ts >= event.start) & (injected.ts <= event.end)
        assert span.sum() == 6 * 24  # 4 days of ramp, 2 days held
        ramp, held = offset[span][:96], offset[span][96:]
        assert ramp[0] == pytest.approx(0.0)
        assert ramp[-1] == pytest.approx(4 * sd)
        assert np.all(np.diff(ramp) > 0)
        assert np.allclose(held, 4 * sd)
    for event in by_type["level_shift"]:
        span = (injected.ts >= event.start) & (injected.ts <= event.end)
        assert span.sum() == 2 * 24
        assert np.allclose(np.abs(offset[span]), 3 * sd)
    noise = np.concatenate(
        [offset[(injected.ts >= e.start) & (injected.ts <= e.end)] for e in by_type["noise_burst"]]
    )
    assert len(noise) == 12 * len(by_type["noise_burst"])
    assert 1.2 * sd < noise.std() < 1.8 * sd  # 1.5 robust sd, from 12 x (3 or more) draws
    untouched = np.ones(len(injected), dtype=np.bool_)
    for e in events:
        untouched &= ~((injected.ts >= e.start) & (injected.ts <= e.end))
    assert np.all(offset[untouched] == 0)


def test_pointwise_f1_counts_rows_and_pools_experiments() -> None:
    labels = np.array([1, 0, 1, 0, 1, 1], dtype=np.bool_)
    predicted = np.array([1, 1, 0, 0, 1, 0], dtype=np.bool_)
    first = pointwise(predicted, labels)
    assert (first.tp, first.fp, first.fn) == (2, 1, 2)
    assert first.precision == pytest.approx(2 / 3)
    assert first.recall == pytest.approx(1 / 2)
    assert first.f1 == pytest.approx(4 / 7)  # 2TP / (2TP + FP + FN)
    # A second experiment where nothing is predicted: pooled rows, not a mean of F1s.
    second = pointwise(np.zeros(3, dtype=np.bool_), np.array([1, 1, 0], dtype=np.bool_))
    pooled = first + second
    assert (pooled.tp, pooled.fp, pooled.fn) == (2, 1, 4)
    assert pooled.f1 == pytest.approx(4 / 9)
    assert math.isnan(pointwise(np.zeros(2, dtype=np.bool_), np.zeros(2, dtype=np.bool_)).f1)


def test_nab_is_skipped_without_its_benchmark(tmp_path: Path) -> None:
    result, note = nab_score(tmp_path / "anomaly_benchmark")
    assert result is None
    assert note.startswith("skipped")
