"""Where things are in a TOML file: line numbers of tables and keys, for error messages.

`tomllib` parses a file to plain dicts and forgets where each key was; configuration errors
found later (by pydantic or by our own checks) should still name the line, so this module
finds the line of each table and key with a line scanner. It is best effort (the first mention
of a key; no multi-line strings), which is enough to point a person at the right place.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic_core import ErrorDetails

__all__ = ["dotted", "line_of", "message", "path_of", "toml_lines", "where"]

_TOML_TABLE: Final = re.compile(r"^\s*\[(?!\[)\s*([^\[\]#]+?)\s*\]\s*(?:#.*)?$")
_TOML_ARRAY_TABLE: Final = re.compile(r"^\s*\[\[\s*([^\[\]#]+?)\s*\]\]\s*(?:#.*)?$")
_TOML_KEY: Final = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def message(error: ErrorDetails) -> str:
    """A pydantic error's text; our own ValueErrors say it all (no "Value error, " prefix)."""
    cause = error.get("ctx", {}).get("error")
    return str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]


def dotted(key: str) -> tuple[str, ...]:
    """A TOML dotted key (`a."b".c`) as its parts."""
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table and key of a TOML text is (best effort: the line of its first mention).

    The k-th `[[a.b]]` array table is recorded as path `a.b.k` (k from 0), as pydantic
    reports the location of its items.
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    arrays: dict[tuple[str, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if found := _TOML_ARRAY_TABLE.match(line):
            name = dotted(found.group(1))
            index = arrays.get(name, -1) + 1
            arrays[name] = index
            table = (*name, str(index))
            for end in range(1, len(table) + 1):
                lines.setdefault(table[:end], number)
        elif found := _TOML_TABLE.match(line):
            table = dotted(found.group(1))
            for end in range(1, len(table) + 1):
                lines.setdefault(table[:end], number)
        elif found := _TOML_KEY.match(line):
            key = table + dotted(found.group(1))
            for end in range(len(table) + 1, len(key) + 1):
                lines.setdefault(key[:end], number)
    return lines


def path_of(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    """A pydantic error location as key parts (dict-key markers dropped)."""
    return tuple(str(part) for part in loc if part != "[key]")


def line_of(loc: tuple[str | int, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    """The line of the deepest part of `loc` that the file mentions; None if none."""
    path = path_of(loc)
    return next((lines[path[:end]] for end in range(len(path), 0, -1) if path[:end] in lines), None)


def where(source: str, loc: tuple[str | int, ...], lines: dict[tuple[str, ...], int]) -> str:
    """`source, line N, field a.b.c` for an error at `loc`."""
    path = path_of(loc)
    line = line_of(loc, lines)
    parts = [source]
    if line is not None:
        parts.append(f"line {line}")
    if path:
        parts.append(f"field {'.'.join(path)}")
    return ", ".join(parts)
