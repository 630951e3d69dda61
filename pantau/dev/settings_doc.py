"""Write docs/settings.md from the Settings object: `python -m pantau.dev.settings_doc [--check]`.

One table per section (the collector's and process's own settings, then mqtt, influx, spool, api,
services) with each `PANTAU_*` variable, its type, default, constraints and description. The
output depends only on the code: a default that depends on the machine (the collector's client
id names the host) is written as a placeholder, paths as posix strings, secrets without default.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any, Final, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from pantau import settings as settings_module
from pantau.settings import Settings

__all__ = ["DOC_PATH", "main", "render"]

DOC_PATH: Final = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
COMMAND: Final = ".venv/bin/python -m pantau.dev.settings_doc"

# Defaults that depend on the machine, written as what they mean.
_MACHINE_DEFAULTS: Final = {
    settings_module._default_client_id: "pantau-ingest-<hostname>",
}
_UNITS: Final = ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))

_HEADER: Final = f"""\
# Settings

<!-- Generated from pantau/settings.py by `{COMMAND}`; do not edit by hand. -->

Every Pantau process (`pantau ingest`, `pantau api`, `pantau simulate`, `pantau demo`, ...) builds
one typed settings object, `pantau.settings.Settings`, at start-up and passes it down. Each value
comes from a command-line option (which wins), a `PANTAU_*` environment variable, or its default.
Sections keep their variables flat: `PANTAU_MQTT_URL` is `settings.mqtt.url`. Secrets have no
default and are never shown. Constraints are checked at start-up: a value outside them stops the
process with a validation error naming the setting (`api.port` for `PANTAU_API_PORT`).
"""


def _type_name(annotation: Any) -> str:
    """A short readable name of a field's type."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in get_args(annotation) if arg is not type(None)]
        return " or ".join(names)
    if origin is list:
        (item,) = get_args(annotation)
        return f"JSON list of {_type_name(item)}"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type):
        return "path" if issubclass(annotation, PurePath) else annotation.__name__
    return str(annotation)


def _optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _value(value: Any, name: str) -> str:
    """A default as it would be written in the variable."""
    if isinstance(value, PurePath):
        return f"`{value.as_posix()}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`{json.dumps(value)}`"
    if isinstance(value, int) and name.endswith("bytes"):
        for size, unit in _UNITS:
            if value >= size and value % size == 0:
                return f"`{value}` ({value // size} {unit})"
        return f"`{value}`"
    return f"`{value}`"


def _default(info: FieldInfo, name: str) -> str:
    if _secret(info.annotation):
        return "none (secret)"
    factory = info.default_factory
    if factory is not None:
        if factory in _MACHINE_DEFAULTS:
            return f"`{_MACHINE_DEFAULTS[factory]}`"
        value = factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is None or value is PydanticUndefined:
        return "unset" if _optional(info.annotation) else "required"
    return _value(value, name)


def _constraints(info: FieldInfo) -> str:
    """ge/gt/le/lt bounds and patterns, in that order."""
    parts: list[str] = []
    for meta in info.metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            bound = getattr(meta, attribute, None)
            if bound is not None:
                parts.append(f"{symbol} {bound}")
        pattern = getattr(meta, "pattern", None)
        if pattern is not None:
            parts.append(f"`{pattern}`")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """Text that is safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _table(
    model: type[BaseModel], section: str | None, variables: dict[tuple[str, ...], str]
) -> list[str]:
    lines = [
        "| variable | type | default | constraints | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, info in model.model_fields.items():
        path = (section, name) if section else (name,)
        if path not in variables:
            continue  # a section of Settings: it gets its own table
        cells = (
            f"`{variables[path]}`",
            _type_name(info.annotation),
            _default(info, name),
            _constraints(info),
            info.description or "",
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines


def _summary(model: type[BaseModel]) -> str:
    """The first paragraph of a section's docstring."""
    doc = model.__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def render() -> str:
    """The whole of docs/settings.md."""
    variables = {path: variable for variable, path in Settings.variables().items()}
    out = [_HEADER]
    out += [
        "## Collector and process (`PANTAU_*`)",
        "",
        "The collector's MQTT session, batching and validation limits, and what every process "
        "uses (registry, log level, reconnect backoff).",
        "",
        *_table(Settings, None, variables),
        "",
    ]
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        out += [
            f"## `{section}` (`PANTAU_{section.upper()}_*`)",
            "",
            _summary(model),
            "",
            *_table(model, section, variables),
            "",
        ]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the page, or with --check only compare it; 1 if it is stale."""
    parser = argparse.ArgumentParser(prog="python -m pantau.dev.settings_doc", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=DOC_PATH, help="default: docs/settings.md")
    args = parser.parse_args(argv)
    text = render()
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            sys.stderr.write(f"{output} is stale: run `{COMMAND}`\n")
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
