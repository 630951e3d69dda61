"""`pantau detect`: the live detector bank over a historical CSV series, for operators' review."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Final

import click
import numpy as np

from pantau.timestamps import parse_time
from processors.bank import KindProcessor
from processors.catalog import CATALOG, generic_spec

__all__ = ["detect"]

# The finding whose score is the calibrated anomaly score (processors/detectors/normal.py).
CALIBRATED: Final = "unusual"


def _seconds(text: str, offset_h: float) -> float:
    return parse_time(text.strip(), naive_utc_offset_h=offset_h)


def _value(text: str) -> float:
    text = text.strip()
    if text in ("", "NA", "NaN", "nan", "null", "-200"):
        return math.nan
    return float(text)


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--time-column", required=True, help="Column with epoch seconds or ISO 8601 times")
@click.option("--value-column", required=True, help="Column with the values")
@click.option("--kind", type=click.Choice(sorted(CATALOG)), help="Catalog kind of the series")
@click.option("--field", "field_name", help="Catalog field of the values (with --kind)")
@click.option(
    "--utc-offset",
    type=float,
    default=0.0,
    show_default=True,
    help="Hours east of UTC of times written without an offset",
)
@click.option("--delimiter", default=",", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
def detect(
    source: Path,
    time_column: str,
    value_column: str,
    kind: str | None,
    field_name: str | None,
    utc_offset: float,
    delimiter: str,
    out_path: Path,
) -> None:
    """Score every row: calibrated score in [0, 1], a 0/1 anomaly flag and the detectors."""
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        header = list(reader.fieldnames or [])
        for needed in (time_column, value_column):
            if needed not in header:
                raise click.UsageError(f"no column {needed!r} in {source} (columns: {header})")
        rows = list(reader)
    try:
        ts = np.array([_seconds(r[time_column], utc_offset) for r in rows], dtype=np.float64)
        raw = np.array([_value(r[value_column]) for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise click.UsageError(f"{source}: {exc}") from None
    if kind is not None:
        spec = CATALOG[kind]
        name = field_name or value_column
        if name not in spec.field_names:
            raise click.UsageError(f"{kind} has no field {name!r}; fields: {spec.field_names}")
        column = spec.column(name)
    else:
        spec = generic_spec((value_column,), raw[:, None])
        column = 0
    values = np.full((len(rows), len(spec.fields)), np.nan)
    values[:, column] = raw
    present = ~np.isnan(values)
    bank = KindProcessor(spec)
    findings = bank.process(np.full(len(rows), "series"), ts, values, present)
    score = np.zeros(len(rows))
    flag = np.zeros(len(rows), dtype=np.bool_)
    reasons: list[set[str]] = [set() for _ in rows]
    calibrated = [f for f in findings if f.detector == CALIBRATED]
    for finding in findings:
        # The calibrated score ranks rows alike on every series; the fault detectors' own
        # scores are on their own scales, so they make the score only where it is missing.
        if finding.detector == CALIBRATED or not calibrated:
            np.maximum.at(score, finding.ref, np.nan_to_num(finding.score))
        np.logical_or.at(flag, finding.ref, finding.flag)
        for ref in finding.ref[finding.flag].tolist():
            reasons[ref].add(finding.detector)
    with out_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*header, "score", "anomaly", "detectors"])
        for i, row in enumerate(rows):
            writer.writerow(
                [
                    *(row[c] for c in header),
                    f"{score[i]:.4f}",
                    int(flag[i]),
                    "+".join(sorted(reasons[i])),
                ]
            )
    click.echo(f"{len(rows)} rows scored, {int(flag.sum())} flagged -> {out_path}", err=True)
