"""`pantau api` (serve the API and dashboard) and `pantau tokens` (manage bearer tokens)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from api.tokens import Scope, TokenStore
from pantau.logs import configure_logging
from pantau.registry import Registry
from pantau.settings import Settings

__all__ = ["alerts", "api", "tokens"]

log = logging.getLogger(__name__)


@click.command()
@click.option(
    "--mqtt", "mqtt_url", help="Broker URL, mqtt://[user:pass@]host:port [PANTAU_MQTT_URL]"
)
@click.option("--influx", "influx_url", help="InfluxDB URL, http://host:port [PANTAU_INFLUX_URL]")
@click.option("--db", "influx_db", help="InfluxDB database [PANTAU_INFLUX_DB]")
@click.option("--city", "api_city", help="Serve this city only [PANTAU_API_CITY], default all")
@click.option("--host", "api_host", help="Listen address [PANTAU_API_HOST], default 127.0.0.1")
@click.option("--port", "api_port", type=int, help="Listen port [PANTAU_API_PORT], default 8080")
@click.option(
    "--registry",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Device registry CSV: devices are listed before they first report [PANTAU_REGISTRY]",
)
@click.option(
    "--tokens-file",
    "api_tokens_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Hashed tokens [PANTAU_API_TOKENS_FILE], default .pantau/tokens.json",
)
@click.option(
    "--scoring-model",
    "api_scoring_model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dimension scoring model [PANTAU_API_SCORING_MODEL], default deploy/scoring-model.toml",
)
@click.option(
    "--alert-rules",
    "alerts_rules",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Alert rules [PANTAU_ALERTS_RULES], default deploy/alerts.toml",
)
def api(**options: Any) -> None:
    """Serve the REST API, the live feeds and the dashboard."""
    import uvicorn

    from api.alerts.rules import AlertRulesError, load_rules
    from api.app import create_app
    from api.limits import timed_http_protocol, timed_ws_protocol

    settings = Settings.from_options(**options)
    configure_logging(settings.log_level)
    if settings.alerts.enabled:
        try:
            load_rules(settings.alerts.rules)
        except AlertRulesError as exc:
            # File, line and reason, and the API does not start.
            raise click.ClickException(f"alert rules: {exc}") from None
    registry = Registry.from_csv(settings.registry) if settings.registry else None
    if not TokenStore(settings.effective_tokens_file).records():
        log.warning(
            "no API tokens yet: create one with `pantau tokens create --scope read`",
            extra={"tokens_file": str(settings.effective_tokens_file)},
        )
    app = create_app(settings, registry)
    log.info("api listening", extra={"url": f"http://{settings.api.host}:{settings.api.port}/"})
    limits = settings.api
    uvicorn.run(
        app,
        host=limits.host,
        port=limits.port,
        log_config=None,
        access_log=False,
        # uvicorn's httptools and websockets-sansio protocols, with time limits on slow and
        # stuck clients (api/limits.py).
        http=timed_http_protocol(limits.request_timeout_s, limits.send_timeout_s),
        ws=timed_ws_protocol(limits.send_timeout_s),
        timeout_keep_alive=limits.keep_alive_s,
        ws_ping_interval=limits.ws_ping_interval_s,
        ws_ping_timeout=limits.ws_ping_timeout_s,
        # Compressing every frame once per client costs more CPU than the feed's bandwidth.
        ws_per_message_deflate=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )


def _check_name(name: str) -> str:
    # Acks carry the name to every replica, which refuses longer ones (pantau.derived.Ack).
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise click.BadParameter("at most 200 characters, no control characters")
    return name


@click.group()
def tokens() -> None:
    """Create, list and revoke API bearer tokens (stored hashed)."""


def _store(tokens_file: Path | None) -> TokenStore:
    settings = Settings.from_options(api_tokens_file=tokens_file)
    return TokenStore(settings.effective_tokens_file)


_TOKENS_FILE = click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Token file [PANTAU_API_TOKENS_FILE], default .pantau/tokens.json",
)


@tokens.command("create")
@click.option(
    "--scope",
    type=click.Choice(["read", "operate", "admin"]),
    required=True,
    help="read: look; operate: also acknowledge anomalies; admin: everything",
)
@click.option(
    "--name",
    default="",
    callback=lambda _ctx, _param, value: _check_name(value),
    help="Who or what the token is for (shown in acks; at most 200 characters)",
)
@_TOKENS_FILE
def create(scope: str, name: str, tokens_file: Path | None) -> None:
    """Create a token and print it once: only its hash is kept."""
    token, record = _store(tokens_file).create(Scope.parse(scope), name)
    click.echo(token)
    click.echo(
        f"token id {record.token_id}, scope {record.scope}; store it now, it is not kept", err=True
    )


@tokens.command("list")
@_TOKENS_FILE
def list_tokens(tokens_file: Path | None) -> None:
    """List token ids, names and scopes (never the tokens)."""
    for r in _store(tokens_file).records():
        click.echo(f"{r.token_id}\t{r.scope}\t{r.name}")


@tokens.command("revoke")
@click.argument("token_id")
@_TOKENS_FILE
def revoke(token_id: str, tokens_file: Path | None) -> None:
    """Revoke a token by id (takes effect within a second)."""
    if not _store(tokens_file).revoke(token_id):
        raise click.ClickException(f"no token with id {token_id}")
    click.echo(f"revoked {token_id}")


@click.group()
def alerts() -> None:
    """Alert rules: check a rules file before deploying it."""


@alerts.command("check")
@click.argument(
    "rules_file",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
def check_rules(rules_file: Path | None) -> None:
    """Validate an alert rules file (default: PANTAU_ALERTS_RULES or deploy/alerts.toml)."""
    from api.alerts.rules import AlertRulesError, load_rules

    path = rules_file or Settings().alerts.rules
    try:
        rules = load_rules(path)
    except AlertRulesError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path}: {len(rules.rules)} rules, {len(rules.webhooks)} webhooks: valid")
