"""A page in headless Debian chromium (Playwright) for the browser tests, with its JS errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def browser_page(height: int = 800) -> Iterator[tuple[Any, list[str]]]:
    """A 1280-wide page and the uncaught JS errors it raises; skips without chromium."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(
                viewport={"width": 1280, "height": height}, accept_downloads=True
            )
            page.set_default_timeout(30_000)  # generous: chromium on a loaded 2-core machine
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            browser.close()
