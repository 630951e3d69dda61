"""The `pantau` console command: a root group whose subcommands load only when used."""

from __future__ import annotations

import importlib
from typing import Final

import click

__all__ = ["main"]

# Subcommand name -> "module:attribute". Loaded lazily so `pantau ingest` never imports the API.
_SUBCOMMANDS: Final = {
    "services": "pantau.dev.cli:services",
    "ingest": "ingest.collector_cli:ingest",
    "simulate": "simulators.cli:simulate",
    "replay": "simulators.cli:replay",
    "detect": "simulators.detect_cli:detect",
    "evaluate": "simulators.evaluate_cli:evaluate",
    "api": "api.cli:api",
    "alerts": "api.cli:alerts",
    "tokens": "api.cli:tokens",
    "demo": "pantau.dev.demo:demo",
    "devices": "pantau.devices_cli:devices",
    "history": "pantau.history_cli:history",
}


class _LazyGroup(click.Group):
    """A click group that imports each subcommand on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pantau")
def main() -> None:
    """Pantau: smart-city sensor platform (MQTT ingest, processors, InfluxDB, API)."""


if __name__ == "__main__":
    main()
