"""`pantau history`: retention policies, rollups (continuous queries) and backfill (1.x)."""

from __future__ import annotations

import time
from typing import Any

import click

from pantau import timestamps
from pantau.influx import InfluxClient, InfluxError, quote_identifier
from pantau.logs import configure_logging
from pantau.rollups import RAW_RP, ROLLUPS, backfill, ensure_rollups
from pantau.settings import Settings

__all__ = ["history"]


def _client(settings: Settings) -> InfluxClient:
    influx = settings.influx
    return InfluxClient(
        influx.url,
        influx.db,
        username=influx.username,
        password=influx.password.get_secret_value() if influx.password else None,
        token=influx.token.get_secret_value() if influx.token else None,
        timeout_s=max(influx.timeout_s, 60.0),  # a backfill chunk can take a while
    )


def _settings(options: dict[str, Any]) -> Settings:
    settings = Settings.from_options(**options)
    configure_logging(settings.log_level)
    return settings


def _influx_options(command: Any) -> Any:
    command = click.option("--db", "influx_db", help="InfluxDB database [PANTAU_INFLUX_DB]")(
        command
    )
    return click.option(
        "--influx", "influx_url", help="InfluxDB URL, http://host:port [PANTAU_INFLUX_URL]"
    )(command)


def _time(text: str, name: str) -> float:
    try:
        return timestamps.parse_time(text)
    except timestamps.TimestampError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


@click.group()
def history() -> None:
    """Retention and downsampling: hourly and daily rollups in InfluxDB 1.x."""


@history.command()
@_influx_options
@click.option(
    "--raw-retention",
    "history_raw_retention",
    help="Keep raw readings this long, INF or e.g. 90d [PANTAU_HISTORY_RAW_RETENTION]",
)
@click.option(
    "--hourly-retention",
    "history_hourly_retention",
    help="Keep hourly rollups this long [PANTAU_HISTORY_HOURLY_RETENTION]",
)
@click.option(
    "--daily-retention",
    "history_daily_retention",
    help="Keep daily rollups this long [PANTAU_HISTORY_DAILY_RETENTION]",
)
def setup(**options: Any) -> None:
    """Create or alter retention policies and continuous queries (idempotent)."""
    settings = _settings(options)
    try:
        with _client(settings) as client:
            changes = ensure_rollups(client, settings)
    except InfluxError as exc:
        raise click.ClickException(str(exc)) from None
    for statement in changes:
        click.echo(statement)
    click.echo(f"{len(changes)} change(s)" if changes else "up to date: nothing changed")


@history.command("backfill")
@_influx_options
@click.option("--start", required=True, help="Epoch seconds or RFC 3339 time with a zone")
@click.option("--end", help="Epoch seconds or RFC 3339 time with a zone (default: now)")
def backfill_command(start: str, end: str | None, **options: Any) -> None:
    """Roll up a past range (continuous queries only cover recent hours and days)."""
    settings = _settings(options)
    start_s = _time(start, "--start")
    end_s = _time(end, "--end") if end is not None else time.time()
    if end_s <= start_s:
        raise click.BadParameter("must be after --start", param_hint="--end")
    try:
        with _client(settings) as client:
            written = backfill(client, settings, start_s, end_s)
    except InfluxError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{written} rollup point(s) written")


@history.command()
@_influx_options
def status(**options: Any) -> None:
    """Retention policies, continuous queries and point counts per policy and measurement."""
    settings = _settings(options)
    db = quote_identifier(settings.influx.db)
    try:
        with _client(settings) as client:
            click.echo("retention policies:")
            policies: list[str] = []
            for s in client.query(f"SHOW RETENTION POLICIES ON {db}"):
                for row in s.get("values", []):
                    fields = dict(zip(s["columns"], row, strict=True))
                    policies.append(str(fields["name"]))
                    default = " (default)" if fields.get("default") else ""
                    click.echo(f"  {fields['name']}: duration {fields['duration']}{default}")
            click.echo("continuous queries:")
            for s in client.query("SHOW CONTINUOUS QUERIES"):
                if s.get("name") == settings.influx.db:
                    for name, _query in s.get("values", []):
                        click.echo(f"  {name}")
            click.echo("points:")
            for rp in (RAW_RP, *(r.rp for r in ROLLUPS if r.rp in policies)):
                for s in client.query(f"SELECT count(*) FROM {db}.{quote_identifier(rp)}./.*/"):
                    counts = [v for v in s["values"][0][1:] if isinstance(v, int)]
                    click.echo(f"  {rp}.{s['name']}: {max(counts, default=0)}")
    except InfluxError as exc:
        raise click.ClickException(str(exc)) from None
