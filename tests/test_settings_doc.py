"""docs/settings.md is generated from pantau/settings.py and must match it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pantau.dev import settings_doc
from pantau.settings import Settings


def test_committed_page_is_current() -> None:
    committed = settings_doc.DOC_PATH.read_text(encoding="utf-8")
    assert committed == settings_doc.render(), (
        f"docs/settings.md is stale (a setting changed): run `{settings_doc.COMMAND}` and commit "
        "the result"
    )


def test_every_variable_is_documented_with_a_description() -> None:
    page = settings_doc.render()
    for variable in Settings.variables():
        rows = [line for line in page.splitlines() if line.startswith(f"| `{variable}` |")]
        assert len(rows) == 1, variable
        assert not rows[0].rstrip().endswith("|  |"), f"{variable} has no description"


def test_output_does_not_depend_on_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    first = settings_doc.render()
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    monkeypatch.setenv("PANTAU_BATCH_SIZE", "7")  # the environment never leaks into defaults
    assert settings_doc.render() == first
    assert "`pantau-ingest-<hostname>`" in first


def test_secrets_show_no_default() -> None:
    page = settings_doc.render()
    for variable in ("PANTAU_INFLUX_PASSWORD", "PANTAU_INFLUX_TOKEN"):
        (row,) = [line for line in page.splitlines() if line.startswith(f"| `{variable}` |")]
        assert "| secret | none (secret) |" in row


def test_check_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "settings.md"
    assert settings_doc.main(["--output", str(page), "--check"]) == 1
    assert settings_doc.COMMAND in capsys.readouterr().err
    assert settings_doc.main(["--output", str(page)]) == 0
    assert settings_doc.main(["--output", str(page), "--check"]) == 0
    page.write_text(page.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert settings_doc.main(["--output", str(page), "--check"]) == 1
