"""The NAB harness: the bank's `unusual` score over the labelled benchmark, scored by NAB's rules.

Every file of the benchmark's development folder (`<dir>/data/<category>/<name>.csv`) is one
device of a `generic_spec` kind with one field `value`, so the bank runs all of them at once;
timestamps (no zone) are read as UTC. The `anomaly_score` column written per file is the
NormalDetector's `unusual` score of each row (0 for a row the bank gives no finding). The
folder is scored by the shared stdlib-only scorer (`tools/nab_score.py` beside the data
folder), run with this interpreter.

Run: python -m simulators.nab [--data DIR] [--out DIR] [--set NAME=VALUE ...]

With the NormalDetector's defaults the development folder scores 55.75 (standard profile,
corpus threshold 0.39); ARTime 75.8, HTM 71.7, windowedGaussian 44.5 with the same scorer.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from processors.bank import KindProcessor
from processors.catalog import generic_spec

__all__ = ["NabResult", "run_nab", "score_folder"]

_DEFAULT_DATA: Final = Path(__file__).resolve().parents[2] / "shared/data/anomaly_benchmark"
_SCORE: Final = "unusual"  # the finding whose score is the anomaly_score column


@dataclass(frozen=True, slots=True)
class NabResult:
    """A NAB standard-profile score, the corpus threshold the scorer chose, per-file scores."""

    score: float
    threshold: float
    per_file: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Series:
    key: str  # "<category>/<name>.csv"
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]
    stamps: list[str]


def _read(path: Path, key: str) -> _Series:
    """One benchmark file: its timestamps (UTC seconds) and values."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    stamps = [r[0] for r in rows]
    ts = np.array(stamps, dtype="datetime64[s]").astype(np.float64)
    values = np.array([float(r[1]) for r in rows])
    return _Series(key, ts, values, stamps)


def _corpus(benchmark_dir: Path) -> list[_Series]:
    data = benchmark_dir / "data"
    paths = sorted(data.glob("*/*.csv"))
    if not paths:
        raise FileNotFoundError(f"no benchmark files under {data}")
    return [_read(p, p.relative_to(data).as_posix()) for p in paths]


def detect(
    series: list[_Series], params: Mapping[str, Any] | None = None, *, batch_rows: int = 4096
) -> list[npt.NDArray[np.float64]]:
    """Each series' per-row `unusual` score from one bank over all series as devices."""
    values = np.concatenate([s.values for s in series])
    spec = generic_spec(("value",), values[:, None])
    bank = KindProcessor(spec, report_all=True, params={"normal": dict(params or {})})
    scores = [np.zeros(len(s.values)) for s in series]
    longest = max(len(s.values) for s in series)
    ids = np.array([f"nab-{i:02d}" for i in range(len(series))])
    for lo in range(0, longest, batch_rows):
        parts = [
            (i, s, slice(lo, min(lo + batch_rows, len(s.values)))) for i, s in enumerate(series)
        ]
        parts = [(i, s, sl) for i, s, sl in parts if sl.start < sl.stop]
        which = np.concatenate([np.full(sl.stop - sl.start, i) for i, _, sl in parts])
        row = np.concatenate([np.arange(sl.start, sl.stop) for _, _, sl in parts])
        ts = np.concatenate([s.ts[sl] for _, s, sl in parts])
        vals = np.concatenate([s.values[sl] for _, s, sl in parts])[:, None]
        for finding in bank.process(ids[which], ts, vals, ~np.isnan(vals)):
            if finding.detector != _SCORE:
                continue
            for i in np.unique(which[finding.ref]):
                mine = which[finding.ref] == i
                scores[i][row[finding.ref[mine]]] = finding.score[mine]
    return scores


def _write(out_dir: Path, series: list[_Series], scores: list[npt.NDArray[np.float64]]) -> None:
    """One CSV per file in the scorer's layout: timestamp,value,anomaly_score."""
    for s, score in zip(series, scores, strict=True):
        path = out_dir / s.key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(("timestamp", "value", "anomaly_score"))
            for stamp, value, sc in zip(s.stamps, s.values.tolist(), score.tolist(), strict=True):
                out.writerow((stamp, repr(value), f"{sc:.12g}"))


def score_folder(benchmark_dir: Path, out_dir: Path) -> NabResult:
    """Score a folder of outputs with the shared scorer (standard profile)."""
    scorer = benchmark_dir.resolve().parents[1] / "tools" / "nab_score.py"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                sys.executable,
                str(scorer),
                str(out_dir),
                "--data",
                str(benchmark_dir / "data"),
                "--windows",
                str(benchmark_dir / "labels" / "windows.json"),
                "--json",
                str(report),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        first = json.loads(report.read_text())[0]
    per_file = {f["file"]: float(f["score"]) for f in first["files"]}
    return NabResult(float(first["score"]), float(first["threshold"]), per_file)


def run_nab(
    benchmark_dir: Path, out_dir: Path, *, params: Mapping[str, Any] | None = None
) -> NabResult:
    """Run the bank over the benchmark, write its outputs under out_dir, and score them."""
    series = _corpus(benchmark_dir)
    _write(out_dir, series, detect(series, params))
    return score_folder(benchmark_dir, out_dir)


def main(argv: list[str] | None = None) -> int:
    """Score the NormalDetector on the benchmark (parameters may be overridden for tuning)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a detector parameter"
    )
    parser.add_argument("--per-file", action="store_true")
    args = parser.parse_args(argv)
    params = {k: float(v) for k, _, v in (s.partition("=") for s in args.set)}
    for name in ("warmup", "quiet_for", "relearn"):
        if name in params:
            params[name] = int(params[name])
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        result = run_nab(args.data, out, params=params)
    if args.per_file:
        for key, value in result.per_file.items():
            sys.stdout.write(f"{key:<60}{value:>10.3f}\n")
    sys.stdout.write(f"NAB standard score {result.score:.2f} (threshold {result.threshold:.6g})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
