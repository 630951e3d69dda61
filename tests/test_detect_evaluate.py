"""`pantau detect` over a CSV export and `pantau evaluate` on the shared data."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from click.testing import CliRunner

from pantau.cli import main
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
    assert rows[120]["detectors"] == "spike"
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
        ["evaluate", "--data", str(data), "--max-readings", "3000", "--write-truth", str(truth)],
    )
    assert result.exit_code == 0, result.output
    part_b = result.output.split("(c)")[0]
    lines = {line.split()[0]: line.split() for line in part_b.splitlines() if line.strip()}
    for fault in ("spike", "stuck", "dropout", "drift", "noise_burst"):
        assert fault in lines
    assert float(lines["dropout"][7]) >= 0.9  # F1 column
    assert float(lines["spike"][7]) >= 0.8
    assert "false alarms per device-week" in result.output
    assert "skab-valve1-0" in result.output
    assert len(truth.read_text().splitlines()) > 50
    # Drift only where a district has three or more stations, one drifting at a time.
    with truth.open() as source:
        drifts = [r for r in csv.DictReader(source) if r["fault"] == "drift"]
    assert drifts
    assert all(r["device_id"].split("-")[0] in ("ea", "jakarta") for r in drifts)
    for district in ("ea", "jakarta"):
        spans = sorted(
            (float(r["start"]), float(r["end"]))
            for r in drifts
            if r["device_id"].startswith(district + "-")
        )
        overlapping = [(a, b) for a, b in itertools.pairwise(spans) if b[0] <= a[1]]
        assert not overlapping, f"two {district} stations drifting at once: {overlapping}"
