"""The scoring model file is checked by pydantic; errors name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.scoring import ScoringModel, ScoringModelError

SHIPPED = Path(__file__).parents[1] / "deploy" / "scoring-model.toml"
TEXT = SHIPPED.read_text()


def _line(text: str, start: str, after: int = 0) -> int:
    """The number of the first line starting with `start` after line `after`."""
    lines = text.splitlines()
    return next(n for n in range(after + 1, len(lines) + 1) if lines[n - 1].startswith(start))


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scoring-model.toml"
    path.write_text(text)
    with pytest.raises(ScoringModelError) as info:
        ScoringModel.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}, ")
    return message.removeprefix(f"{path}, ")


def test_the_shipped_model_is_read_as_declared() -> None:
    model = ScoringModel.load(SHIPPED)
    rule = model.indicators["streetlight_availability"]
    assert (rule.label, rule.source) == (
        "Street lamps working when due (night)",
        "streetlight.availability",
    )
    assert (rule.best, rule.worst, rule.max_age_s) == (0.98, 0.80, 3600.0)
    assert model.weights["smart_living"] == {"streetlight_availability": 0.7, "air_ispu": 0.3}
    assert list(model.weights["smart_environment"]) == [
        "air_ispu",
        "air_ispu_worst",
        "flood_gauges_normal",
        "streetlight_day_burn",
    ]


def test_defaults_label_and_max_age() -> None:
    model = ScoringModel.from_dict({"indicators": {"x": {"source": "a.b", "best": 1, "worst": 0}}})
    assert model.indicators["x"].label == "x"
    assert model.indicators["x"].max_age_s == 3 * 3600.0
    assert model.weights == {d: {} for d in model.weights} and len(model.weights) == 6


def test_a_bad_value_names_file_line_and_field(tmp_path: Path) -> None:
    text = TEXT.replace('best = 50.0     # top of ISPU "Baik"', 'best = "good"  #')
    line = _line(text, "best = ", _line(text, "[indicators.air_ispu]"))
    assert _error(tmp_path, text) == (
        f"line {line}, field indicators.air_ispu.best: "
        "Input should be a valid number, unable to parse string as a number"
    )


def test_a_missing_field_names_its_table(tmp_path: Path) -> None:
    text = TEXT.replace('source = "water_level.worst_level"\n', "")
    line = _line(text, "[indicators.flood_worst_level]")
    assert _error(tmp_path, text) == (
        f"line {line}, field indicators.flood_worst_level.source: Field required"
    )


def test_a_misspelt_key_is_refused_not_ignored(tmp_path: Path) -> None:
    text = TEXT.replace("max_age_s = 10800\n", "max_age = 10800\n", 1)
    line = _line(text, "max_age = ")
    assert _error(tmp_path, text) == (
        f"line {line}, field indicators.air_ispu.max_age: Extra inputs are not permitted"
    )


def test_a_weight_must_be_a_positive_number(tmp_path: Path) -> None:
    for weight, reason in (("-1", "Input should be greater than 0"), ("true", "valid number")):
        text = TEXT.replace("air_ispu = 0.3", f"air_ispu = {weight}")
        line = _line(text, f"air_ispu = {weight}")
        message = _error(tmp_path, text)
        assert message.startswith(f"line {line}, field dimensions.smart_living.weights.air_ispu: ")
        assert reason in message


def test_an_undeclared_indicator_names_its_weight(tmp_path: Path) -> None:
    text = TEXT.replace("air_ispu = 0.3", "air_ispux = 0.3")
    line = _line(text, "air_ispux = ")
    assert _error(tmp_path, text) == (
        f"line {line}, field dimensions.smart_living.weights.air_ispux: "
        "dimension 'smart_living' uses undeclared indicator 'air_ispux'"
    )


def test_an_unknown_dimension_names_its_table(tmp_path: Path) -> None:
    text = TEXT.replace("[dimensions.smart_living.weights]", "[dimensions.smart_wealth.weights]")
    line = _line(text, "[dimensions.smart_wealth.weights]")
    message = _error(tmp_path, text)
    assert message.startswith(
        f"line {line}, field dimensions.smart_wealth: unknown dimension 'smart_wealth'"
    )


def test_best_equal_to_worst_names_worst(tmp_path: Path) -> None:
    text = TEXT.replace("worst = 0.80", "worst = 0.98")
    line = _line(text, "worst = 0.98")
    assert _error(tmp_path, text) == (
        f"line {line}, field indicators.streetlight_availability.worst: best equals worst"
    )


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = TEXT.replace("worst = 0.80", "worst = nan").replace("air_ispu = 0.4", "air_ispu = 0")
    message = _error(tmp_path, text)
    assert "field indicators.streetlight_availability.worst: Input should be a finite number" in (
        message
    )
    assert "field dimensions.smart_environment.weights.air_ispu: Input should be greater" in message


def test_without_the_text_errors_name_the_source_and_field() -> None:
    with pytest.raises(ScoringModelError) as info:
        ScoringModel.from_dict({"indicators": {"x": {"best": 1, "worst": 0}}}, "m.toml")
    assert str(info.value) == "m.toml, field indicators.x.source: Field required"
    with pytest.raises(ScoringModelError, match=r"^m\.toml, field indicators: Input should be"):
        ScoringModel.from_dict({"indicators": 3}, "m.toml")


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[indicators\n")
    with pytest.raises(ScoringModelError, match=rf"^{path}: "):
        ScoringModel.load(path)
    with pytest.raises(ScoringModelError, match="No such file"):
        ScoringModel.load(tmp_path / "missing.toml")
