"""The arrows between our packages point one way: services -> pantau -> processors.

* `processors` imports nothing of ours (only the standard library, third parties and itself).
* `pantau` imports only `processors.catalog` (and itself).
* `ingest`, `api` and `simulators` import `pantau` and `processors`, never each other.

Every Import/ImportFrom node counts, wherever it is (inside functions, under TYPE_CHECKING).
Strings resolved later with importlib (the subcommands of `pantau/cli.py`) are not imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package may import of ours, as module prefixes.
CORE = {"processors": set(), "pantau": {"processors.catalog"}}
SERVICES = ("ingest", "api", "simulators")
ALLOWED: dict[str, set[str]] = {
    **CORE,
    **{service: {"pantau", "processors"} for service in SERVICES},
}
PACKAGES = tuple(ALLOWED)


def ours() -> set[str]:
    """Top-level names importable from the repository root: its packages and modules."""
    names = {p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in REPO.glob("*.py")}
    return names | set(PACKAGES) | {"tests"}


def imported(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `tree`; relative imports resolve to `package`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x`, `from ..y import z`: inside its own package
                found.append((node.lineno, ".".join(filter(None, (package, node.module)))))
            elif node.module:
                found.append((node.lineno, node.module))
    return sorted(found)


def violations(source: str, package: str, filename: str, first_party: set[str]) -> list[str]:
    """`file:line: a -> b (module)` for each import of ours that `package` may not make."""
    tree = ast.parse(source, filename=filename)
    bad = []
    for line, module in imported(tree, package):
        top = module.split(".")[0]
        permitted = any(module == a or module.startswith(f"{a}.") for a in ALLOWED[package])
        if top in first_party and top != package and not permitted:
            bad.append(f"{filename}:{line}: {package} -> {top} (imports {module})")
    return bad


def package_files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_the_right_way(package: str) -> None:
    files = package_files(package)
    assert files, f"no .py files found under {package}/"
    first_party = ours()
    bad = []
    for path in files:
        name = path.relative_to(REPO).as_posix()
        bad += violations(path.read_text(encoding="utf-8"), package, name, first_party)
    allowed = ", ".join(sorted(ALLOWED[package])) or "nothing of ours"
    assert not bad, f"{package} may import only {allowed}; wrong-way arrows:\n" + "\n".join(bad)


def test_the_checker_sees_imports_anywhere() -> None:
    source = (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "from . import helpers\n"
        "from pantau.settings import Settings\n"
        "if TYPE_CHECKING:\n"
        "    import simulators.fleet\n"
        "def run():\n"
        "    from ingest import collector\n"
        "    return 'ingest.collector_cli:ingest'\n"  # a string, not an import
    )
    first_party = set(PACKAGES)
    assert violations(source, "api", "api/x.py", first_party) == [
        "api/x.py:6: api -> simulators (imports simulators.fleet)",
        "api/x.py:8: api -> ingest (imports ingest)",
    ]
    assert violations(source, "processors", "processors/x.py", first_party) == [
        "processors/x.py:4: processors -> pantau (imports pantau.settings)",
        "processors/x.py:6: processors -> simulators (imports simulators.fleet)",
        "processors/x.py:8: processors -> ingest (imports ingest)",
    ]
