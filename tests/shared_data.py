"""Where the tests find data: small slices in the repository, the shared data beside it.

The shared real data (see its README) is not part of the repository. It is looked for in
`../shared/data` next to the repository root, never at an absolute path. A test that needs it
calls `shared_data(...)`, which skips the test with a clear reason when it is missing. Tests
that must run in every clone use the small slices committed under `tests/data/` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEST_DATA = REPO / "tests" / "data"


def shared_data(*parts: str, what: str | None = None) -> Path:
    """The path of `parts` under ../shared/data; skip the calling test if it is not there."""
    __tracebackhide__ = True  # a skip is reported at the calling test's line
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        needed = what or "/".join(parts) or "the folder itself"
        pytest.skip(f"needs ../shared/data (the shared data beside the repository): {needed}")
    return path


def committed_data(*parts: str) -> Path:
    """The path of a file committed under tests/data/ (present in every clone)."""
    __tracebackhide__ = True
    path = TEST_DATA.joinpath(*parts)
    assert path.exists(), f"missing committed test data: {path.relative_to(REPO)}"
    return path
