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
from simulators.evaluate import (
    DETECTORS_FOR,
    INJECTED_FAULTS,
    LONE_ON_PEERS,
    NAB_REFERENCE,
    SCORE_FINDING,
    SKAB_BEST_POINTWISE_F1,
    VALUE_DETECTORS,
    CleanAlarms,
    Report,
    TypeScore,
    evaluate_all,
    run_series,
    score,
)
from simulators.faults import read_ground_truth, write_ground_truth

__all__ = ["evaluate"]


def _cells(s: TypeScore) -> str:
    delay = s.mean_delay_s / 3600.0
    return (
        f"{s.events:>6} {s.found:>5} {s.true_alarms:>5} {s.false_alarms:>5} "
        f"{_f(s.precision):>5} {_f(s.recall):>5} {_f(s.f1):>5} "
        f"{'-' if math.isnan(delay) else f'{delay:.1f}':>7}"
    )


def _row(name: str, s: TypeScore) -> str:
    return f"{name:<26} {_cells(s)}"


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


_COLUMNS = (
    f"{'events':>6} {'found':>5} {'TP':>5} {'FP':>5} {'P':>5} {'R':>5} {'F1':>5} {'delay h':>7}"
)
_HEADER = f"{'':<26} {_COLUMNS}"


def _print_report(report: Report) -> None:
    _print_injected(report)
    _print_clean(report)
    _print_skab(report)
    _print_nab(report)


def _print_injected(report: Report) -> None:
    click.echo(
        "(b) real series with injected faults (alarms: merged runs of one detector)\n"
        f"    lone: each of {report.series['lone']} series judged on its own (its own district, "
        "no peers)\n"
        f"    peers: the {report.series['peers']} series of data sets with 3+ stations "
        "(EA Calder, Jakarta gates) with their district"
    )
    width = len(_COLUMNS)
    click.echo(f"{'':<12} {'lone':^{width}} | {'peers':^{width}}")
    click.echo(f"{'fault':<12} {_COLUMNS} | {_COLUMNS}")
    lone, peers = report.injected["lone"], report.injected["peers"]
    for fault in INJECTED_FAULTS:
        click.echo(f"{fault:<12} {_cells(lone[fault])} | {_cells(peers[fault])}")
    same = report.injected[LONE_ON_PEERS]
    click.echo(
        f"    F1 of lone on the peers' {report.series['peers']} series (what peers add): "
        + "  ".join(f"{fault} {_f(same[fault].f1)}" for fault in INJECTED_FAULTS)
    )
    click.echo("")


def _print_clean(report: Report) -> None:
    lone, peers = report.clean["lone"], report.clean["peers"]
    click.echo("(c) clean real series: alarms per detector (merged runs), and per device-week")
    click.echo(
        f"{'':<20} {f'lone ({lone.devices} devices, {lone.device_weeks:.0f} wk)':>27} | "
        f"{f'peers ({peers.devices} devices, {peers.device_weeks:.0f} wk)':>27}"
    )
    click.echo(
        f"{'detector':<20} {'alarms':>12} {'per dev-wk':>14} | {'alarms':>12} {'per dev-wk':>14}"
    )

    def line(name: str, detectors: tuple[str, ...]) -> str:
        cells = [_clean_cells(c, detectors) for c in (lone, peers)]
        return f"{name:<20} {cells[0]} | {cells[1]}"

    for detector in VALUE_DETECTORS:
        click.echo(line(detector, (detector,)))
    click.echo(line("all value detectors", VALUE_DETECTORS))
    click.echo(line(SCORE_FINDING, (SCORE_FINDING,)))
    click.echo("")


def _clean_cells(clean: CleanAlarms, detectors: tuple[str, ...]) -> str:
    alarms = sum(clean.alarms.get(d, 0) for d in detectors)
    return f"{alarms:>12} {clean.per_device_week(detectors):>14.3f}"


def _print_skab(report: Report) -> None:
    click.echo("(a) SKAB labelled experiments (any value detector; event = labelled interval)")
    click.echo(_HEADER)
    for name, s in report.skab:
        click.echo(_row(name, s))
    click.echo(
        f"    point-wise F1, {report.skab_rows} rows of valve1, valve2 and other pooled "
        "(a row is 1 where a detector flags any field):"
    )
    for which, points in report.skab_points.items():
        click.echo(
            f"    {which:<30} P {_f(points.precision)}  R {_f(points.recall)}  "
            f"point-wise F1 {_f(points.f1)}"
        )
    name, best = SKAB_BEST_POINTWISE_F1
    click.echo(
        f"    {'best published':<30} point-wise F1 {best:.2f} "
        f"({name}, SKAB README leaderboard, all 34 experiments)"
    )
    click.echo("")


def _print_nab(report: Report) -> None:
    references = "  ".join(f"{name} {value:.1f}" for name, value in NAB_REFERENCE)
    if report.nab is None:
        click.echo(f"(d) NAB standard score: {report.nab_note}; reference: {references}")
    else:
        click.echo(f"(d) NAB standard score (33 series): Pantau {report.nab:.1f}  |  {references}")


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
@click.option("--no-nab", is_flag=True, help="Skip the NAB benchmark (part d), for quick runs")
def evaluate(
    data: Path,
    seed: int,
    write_truth: Path | None,
    ground_truth: Path | None,
    influx_url: str | None,
    influx_db: str,
    registry: Path | None,
    max_readings: int | None,
    no_nab: bool,
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
        report = evaluate_all(data, seed=seed, max_readings=max_readings, nab=not no_nab)
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
