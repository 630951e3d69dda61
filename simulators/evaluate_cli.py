"""`pantau evaluate`: detector precision, recall, F1 and delay on labelled and injected data."""

from __future__ import annotations

import math
import time
from pathlib import Path

import click
import numpy as np

from pantau.influx import InfluxClient, quote_identifier, quote_literal
from pantau.registry import Registry, facts_from_registry
from processors.catalog import CATALOG
from simulators.datasets import Series
from simulators.evaluate import DETECTORS_FOR, Report, TypeScore, evaluate_all, run_series, score
from simulators.faults import read_ground_truth, write_ground_truth

__all__ = ["evaluate"]


def _row(name: str, s: TypeScore) -> str:
    delay = s.mean_delay_s / 3600.0
    return (
        f"{name:<26} {s.events:>6} {s.found:>6} {s.true_alarms:>7} {s.false_alarms:>7} "
        f"{_f(s.precision):>6} {_f(s.recall):>6} {_f(s.f1):>6} "
        f"{'-' if math.isnan(delay) else f'{delay:.2f}':>9}"
    )


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


_HEADER = (
    f"{'':<26} {'events':>6} {'found':>6} {'TP':>7} {'FP':>7} {'P':>6} {'R':>6} "
    f"{'F1':>6} {'delay h':>9}"
)


def _print_report(report: Report) -> None:
    click.echo("(b) real series with injected faults (alarms: merged runs of one detector)")
    click.echo(_HEADER)
    for fault, s in report.injected.items():
        click.echo(_row(fault, s))
    click.echo("")
    click.echo("(c) clean real series: value-detector alarms")
    for detector, n in report.clean_alarms.items():
        click.echo(f"  {detector:<16} {n}")
    click.echo(
        f"  false alarms per device-week: {report.false_alarms_per_device_week:.2f} "
        f"over {report.device_weeks:.0f} device-weeks"
    )
    click.echo("")
    click.echo("(a) SKAB labelled experiments (any value detector; event = labelled interval)")
    click.echo(_HEADER)
    for name, s in report.skab:
        click.echo(_row(name, s))


@click.command()
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("../shared/data"),
    show_default=True,
    help="The shared data folder",
)
@click.option("--seed", type=int, default=2026, show_default=True, help="Injection positions")
@click.option(
    "--write-truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the injected faults (ground truth) of part (b) to this CSV",
)
@click.option(
    "--ground-truth",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Score a simulator run instead: its ground-truth CSV ...",
)
@click.option("--influx", "influx_url", help="... and the InfluxDB holding its readings")
@click.option("--db", "influx_db", default="pantau", show_default=True)
@click.option(
    "--registry",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The run's registry (lamp positions and ratings for streetlight faults)",
)
@click.option("--max-readings", type=int, help="Use only the first N readings of each series")
def evaluate(
    data: Path,
    seed: int,
    write_truth: Path | None,
    ground_truth: Path | None,
    influx_url: str | None,
    influx_db: str,
    registry: Path | None,
    max_readings: int | None,
) -> None:
    """Precision, recall, F1 and mean detection delay per fault type."""
    started = time.perf_counter()
    if ground_truth is not None:
        if influx_url is None:
            raise click.UsageError("--ground-truth needs --influx (where the run's readings are)")
        _evaluate_run(
            ground_truth, influx_url, influx_db, Registry.from_csv(registry) if registry else None
        )
    else:
        if not data.is_dir():
            raise click.UsageError(f"no data folder {data} (use --data)")
        report = evaluate_all(data, seed=seed, max_readings=max_readings)
        if write_truth is not None:
            write_ground_truth(write_truth, report.truth)
        _print_report(report)
    click.echo(f"\n({time.perf_counter() - started:.1f} s)", err=True)


def _evaluate_run(truth_path: Path, influx_url: str, db: str, registry: Registry | None) -> None:
    """Score the detectors on readings a simulator run stored, against its ground truth."""
    truth = read_ground_truth(truth_path)
    devices = sorted({e.device_id for e in truth})
    series: list[Series] = []
    with InfluxClient(influx_url, db) as client:
        for device in devices:
            kind = next(e.kind for e in truth if e.device_id == device)
            spec = CATALOG[kind]
            rows = client.query(
                f"SELECT * FROM {quote_identifier(kind)} WHERE device_id = {quote_literal(device)}",
                epoch="ns",
            )
            if not rows:
                continue
            columns = rows[0]["columns"]
            values = np.array(rows[0]["values"], dtype=object)
            ts = values[:, columns.index("time")].astype(np.float64) / 1e9
            fields = tuple(f for f in spec.field_names if f in columns)
            numbers = np.array(
                [
                    [np.nan if v is None else float(v) for v in values[:, columns.index(f)]]
                    for f in fields
                ],
                dtype=np.float64,
            ).T
            series.append(Series(device, kind, fields, ts, numbers))
    alarms = []
    for kind in CATALOG:
        alarms += run_series(
            [s for s in series if s.kind == kind], facts=facts_from_registry(registry)
        )
    intervals = {s.name: float(np.median(np.diff(s.ts))) if len(s) > 1 else 60.0 for s in series}
    faults = sorted({e.fault for e in truth} & set(DETECTORS_FOR))
    click.echo(
        f"{len(truth)} injected faults on {len(devices)} devices; "
        f"scored types: {', '.join(faults) or 'none'}"
    )
    click.echo(_HEADER)
    for fault, s in score(alarms, truth, intervals, faults=faults).items():
        click.echo(_row(fault, s))
