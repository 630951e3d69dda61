"""`pantau demo`: the whole platform on one machine, from services to dashboard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Final

import click
import httpx

from pantau.dev.accounts import DevAccounts
from pantau.settings import Settings

__all__ = ["demo"]

_PANTAU: Final = [sys.executable, "-m", "pantau.cli"]
_FAULTS: Final = "spike=0.002,stuck=0.0005,dropout=0.0005,lamp_out=0.001,day_burn=0.001"


def _wait_until(check: object, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise click.ClickException(f"{what} did not come up within {timeout:g} s; {log}:\n{tail}")


def _api_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _child_env(mqtt_url: str, account: str | None, password_file: Path | None) -> dict[str, str]:
    """The environment of one part: its own broker login, passed outside the command line."""
    names = ("PANTAU_MQTT_USERNAME", "PANTAU_MQTT_PASSWORD", "PANTAU_MQTT_PASSWORD_FILE")
    env = {k: v for k, v in os.environ.items() if k not in names}
    env["PANTAU_MQTT_URL"] = mqtt_url
    if account is not None and password_file is not None:
        env["PANTAU_MQTT_USERNAME"] = account
        env["PANTAU_MQTT_PASSWORD_FILE"] = str(password_file)
    return env


def _create_token(tokens_file: Path) -> str:
    # The API owns its token store: ask its command, never import the API.
    command = ["tokens", "create", "--scope", "operate", "--name", "demo"]
    made = subprocess.run(
        [*_PANTAU, *command, "--tokens-file", str(tokens_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise click.ClickException(f"pantau tokens create failed:\n{made.stderr}")
    return made.stdout.strip()


@click.command()
@click.option(
    "--registry",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("deploy/registry.example.csv"),
    show_default=True,
    help="The fleet to simulate and register",
)
@click.option("--port", type=int, default=8080, show_default=True, help="API and dashboard port")
@click.option("--faults", default=_FAULTS, show_default=True, help="Simulated fault rates")
@click.option(
    "--metrics-port", type=int, default=9108, show_default=True, help="Collector /metrics port"
)
def demo(registry: Path, port: int, faults: str, metrics_port: int) -> None:
    """Start broker, database, a simulated fleet, a collector and the API; Ctrl-C stops them."""
    settings = Settings.from_options(api_port=port)
    logs = settings.services.dir / "logs"
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The broker gets an account per part and per device of the registry (pantau/dev/accounts.py).
    up = subprocess.run(
        [*_PANTAU, "services", "up", "--registry", str(registry)],
        capture_output=True,
        text=True,
        check=False,
    )
    if up.returncode != 0:
        raise click.ClickException(f"pantau services up failed:\n{up.stderr}")
    accounts = DevAccounts(settings.services.dir)
    mqtt_url = settings.mqtt.url
    envs = {
        "ingest": _child_env(mqtt_url, accounts.ingest, accounts.password_path(accounts.ingest)),
        "api": _child_env(mqtt_url, accounts.api, accounts.password_path(accounts.api)),
        "simulate": _child_env(mqtt_url, None, None),  # each device logs in as itself
    }
    token = _create_token(settings.effective_tokens_file)
    common = ["--registry", str(registry)]
    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, args: list[str]) -> Path:
        log = logs / f"{name}.log"
        # Owner only: logs can hold device ids, addresses and error details.
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as out:
            child = subprocess.Popen([*_PANTAU, *args], stdout=out, stderr=out, env=envs[name])
            children.append((name, child))
        return log

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        # From a thread: the main thread may be inside stop.wait(), holding the event's lock.
        threading.Thread(target=stop.set, daemon=True).start()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    url = f"http://{settings.api.host}:{port}"
    try:
        ingest_log = start("ingest", ["ingest", *common, "--metrics-port", str(metrics_port)])
        _wait_until(
            lambda: b"connected to broker" in ingest_log.read_bytes(), 30, "ingest", ingest_log
        )
        api_log = start("api", ["api", *common, "--port", str(port)])
        _wait_until(lambda: _api_ready(url), 30, "the API", api_log)
        # The last day first, as fast as it goes, then in real time: charts have history at once.
        start(
            "simulate",
            [
                "simulate",
                *common,
                "--fast",
                "--faults",
                faults,
                "--credentials",
                str(accounts.devices_csv),
                "--ground-truth",
                str(settings.services.dir / "ground-truth.csv"),
            ],
        )
        click.echo(f"Pantau is running. Dashboard: {url}/#token={token}")
        click.echo(f"API token (operate scope, shown once): {token}")
        metrics = f"http://127.0.0.1:{metrics_port}/"
        click.echo(f"API schema: {url}/openapi.json   collector metrics: {metrics}")
        click.echo(
            f"Logs: {logs}/   Ctrl-C stops fleet, collector and API; "
            "`pantau services down` stops broker and database."
        )
        while not stop.wait(1.0):
            for name, child in children:
                if child.poll() is not None:
                    log = logs / f"{name}.log"
                    tail = log.read_text(errors="replace")[-1500:]
                    raise click.ClickException(
                        f"{name} exited ({child.returncode}); {log}:\n{tail}"
                    )
    finally:
        for _, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for _, child in reversed(children):
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
