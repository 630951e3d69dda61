"""Alert rules files: the shipped one loads; each bad one names file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.alerts.episode import Target
from api.alerts.rules import AlertRulesError, load_rules, parse_rules

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
[webhooks.ops]
url = "http://127.0.0.1:9000/hook"
secret_env = "PANTAU_OPS_SECRET"

[recipients.districts.bobotsari]
notify = ["email:camat@bobotsari.example.id", "webhook:ops"]

[recipients.regency]
notify = ["email:bupati@purbalingga.example.id"]

[rules.flood]
type = "indicator"
indicator = "flood_level"
at_or_above = "Siaga"
clear_below = "Waspada"
hold_min = 5
severity = "critical"
notify = ["webhook:ops", "email:bpbd@purbalingga.go.id"]
language = "en"

[[rules.flood.escalate]]
after_min = 30

[[rules.flood.escalate]]
after_min = 60
notify = ["email:kalak@purbalingga.go.id"]

[rules.air]
type = "indicator"
indicator = "ispu"
at_or_above = "Tidak Sehat"

[rules.lamps]
type = "indicator"
indicator = "availability"
below = 0.8
clear_above = 0.9

[rules.spikes]
type = "anomaly"
detector = ["spike", "normal"]
min_severity = "warning"

[rules.gone]
type = "offline"
kind = "air_quality"
after_intervals = 5

[rules.env]
type = "score"
dimension = "smart_environment"
below = 40
district = "bobotsari"
"""


def test_shipped_rules_load() -> None:
    rules = load_rules(ROOT / "deploy" / "alerts.toml")
    names = {rule.name for rule in rules.rules}
    assert {"banjir_siaga", "udara_tidak_sehat", "perangkat_offline"} <= names
    flood = rules.rule("banjir_siaga")
    assert flood.threshold == 2.0 and flood.op == "at_or_above"
    assert rules.rule("udara_tidak_sehat").threshold == 101.0


def test_good_rules_parse_to_numbers_and_seconds() -> None:
    rules = parse_rules(GOOD, "alerts.toml")
    flood = rules.rule("flood")
    assert (flood.threshold, flood.clear, flood.hold_s, flood.clear_s) == (2.0, 1.0, 300.0, 600.0)
    assert [e.after_s for e in flood.escalate] == [1800.0, 3600.0]
    assert rules.rule("air").threshold == 101.0
    lamps = rules.rule("lamps")
    assert (lamps.op, lamps.threshold, lamps.clear) == ("below", 0.8, 0.9)
    spikes = rules.rule("spikes")
    assert spikes.findings is not None and {"spike", "unusual", "level_shift"} <= spikes.findings
    assert rules.rule("gone").after_intervals == 5.0
    assert rules.webhooks["ops"].secret_env == "PANTAU_OPS_SECRET"
    with pytest.raises(KeyError):
        rules.rule("nope")


def test_targets_per_level_and_district_deduplicated() -> None:
    rules = parse_rules(GOOD, "alerts.toml")
    flood = rules.rule("flood")
    assert rules.targets(flood, "bobotsari", 0) == [
        Target("webhook", "ops", "en"),
        Target("email", "bpbd@purbalingga.go.id", "en"),
        Target("email", "camat@bobotsari.example.id", "en"),
    ]
    # Level 1 has no list of its own: the rule's recipients again.
    assert rules.targets(flood, "kutasari", 1) == [
        Target("webhook", "ops", "en"),
        Target("email", "bpbd@purbalingga.go.id", "en"),
    ]
    assert rules.targets(flood, "kutasari", 2) == [Target("email", "kalak@purbalingga.go.id", "en")]
    assert rules.targets(flood, "", 2) == [
        Target("email", "kalak@purbalingga.go.id", "en"),
        Target("email", "bupati@purbalingga.example.id", "en"),
    ]
    air = rules.rule("air")
    assert rules.targets(air, "kutasari", 0, default_language="id") == []


RULE = '[webhooks.ops]\nurl = "http://x.example/h"\n\n[rules.r]\n'

BAD = [
    # (text, line, words in the reason)
    ("[rules.r\ntype = 1\n", 1, "bad TOML"),
    ('[rules.r]\ntype = "indicator"\nindicator = "ispu\n', 3, "bad TOML"),
    (RULE + 'type = "indicator"\nindicator = "pm25"\nat_or_above = 1\n', 6, "unknown indicator"),
    (RULE + 'type = "sms"\n', 5, "unknown rule type"),
    (RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = 600\n', 7, "impossible"),
    (RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = -1\n', 7, "impossible"),
    (RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = "Jelek"\n', 7, "unknown level"),
    (RULE + 'type = "indicator"\nindicator = "flood_level"\nat_or_above = 4\n', 7, "impossible"),
    (
        RULE + 'type = "indicator"\nindicator = "flood_level"\nat_or_above = "Bahaya"\n',
        7,
        "unknown level",
    ),
    (
        RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = 101\nclear_below = 150\n',
        8,
        "clear threshold 150 must be at or below",
    ),
    (
        RULE + 'type = "indicator"\nindicator = "availability"\nbelow = 0.8\nclear_above = 0.5\n',
        8,
        "must be at or above",
    ),
    (
        RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = 101\nclear_above = 90\n',
        8,
        "use clear_below",
    ),
    (RULE + 'type = "indicator"\nindicator = "ispu"\n', 4, "exactly one of at_or_above"),
    (
        RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = 101\nkind = "streetlight"\n',
        8,
        "indicator of air_quality",
    ),
    (
        RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = 101\nthreshold = 5\n',
        8,
        "unknown key",
    ),
    (RULE + 'type = "anomaly"\ndetector = "gremlin"\n', 6, "unknown detector"),
    (RULE + 'type = "anomaly"\nmin_severity = "fatal"\n', 6, "min_severity"),
    (RULE + 'type = "anomaly"\nseverity = "huge"\n', 6, "severity"),
    (RULE + 'type = "anomaly"\nhold_min = -1\n', 6, "greater than or equal to 0"),
    (RULE + 'type = "offline"\nafter_min = 0\n', 6, "greater than 0"),
    (RULE + 'type = "offline"\n', 4, "exactly one of after_min"),
    (RULE + 'type = "offline"\nafter_min = 5\nkind = "drone"\n', 7, "unknown kind"),
    (RULE + 'type = "score"\ndimension = "smart_weather"\nbelow = 5\n', 6, "unknown dimension"),
    (RULE + 'type = "score"\ndimension = "smart_living"\nbelow = 101\n', 7, "less than or equal"),
    (
        RULE + 'type = "score"\ndimension = "smart_living"\nbelow = 50\nclear_above = 40\n',
        8,
        "must be at or above",
    ),
    (RULE + 'type = "anomaly"\nnotify = ["webhook:pager"]\n', 6, "unknown webhook 'pager'"),
    (RULE + 'type = "anomaly"\nnotify = ["email:nobody@"]\n', 6, "malformed e-mail"),
    (RULE + 'type = "anomaly"\nnotify = ["sms:0812"]\n', 6, "'webhook:NAME' or"),
    (RULE + 'type = "anomaly"\ndistrict = "Kota Lama"\n', 6, "not a topic segment"),
    (
        RULE + 'type = "anomaly"\n\n[[rules.r.escalate]]\nafter_min = 10\n\n'
        "[[rules.r.escalate]]\nafter_min = 0\n",
        11,
        "greater than 0",
    ),
    (
        RULE + 'type = "anomaly"\n\n[[rules.r.escalate]]\nafter_min = 10\n\n'
        '[[rules.r.escalate]]\nafter_min = 20\nnotify = ["webhook:nope"]\n',
        12,
        "unknown webhook",
    ),
    ('[recipients.districts."Kota Lama"]\nnotify = []\n', 1, "not a topic segment"),
    ('[webhooks.ops]\nurl = "ftp://x"\n', 2, "not an http(s) URL"),
    ('[webhooks.ops]\nurl = "http://x"\nsecret_env = "lower"\n', 3, "environment variable"),
    ('[rules.Flood]\ntype = "anomaly"\n', 1, "rule name"),
    ("[alarms]\n", 1, "unknown key"),
]


@pytest.mark.parametrize(("text", "line", "words"), BAD)
def test_bad_rules_name_file_line_and_reason(text: str, line: int, words: str) -> None:
    with pytest.raises(AlertRulesError) as caught:
        parse_rules(text, "deploy/alerts.toml")
    error = caught.value
    assert error.path == "deploy/alerts.toml"
    assert error.line == line, str(error)
    assert words in error.reason, str(error)
    assert str(error).startswith(f"deploy/alerts.toml:{line}: ")


def test_reason_names_the_key() -> None:
    text = RULE + 'type = "indicator"\nindicator = "ispu"\nat_or_above = 600\n'
    with pytest.raises(AlertRulesError, match=r"^f\.toml:7: rules\.r\.at_or_above: impossible"):
        parse_rules(text, "f.toml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AlertRulesError) as caught:
        load_rules(tmp_path / "none.toml")
    assert caught.value.line is None and "cannot read" in caught.value.reason


def test_load_rules_from_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(RULE + 'type = "score"\ndimension = "smart_living"\nbelow = 101\n')
    with pytest.raises(AlertRulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith(f"{path}:7: rules.r.below: ")
