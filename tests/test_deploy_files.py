"""The deployment files: compose.yaml against the Compose schema, plus their cross-references.

No Docker engine or systemd is needed: these are static checks of what `docker compose up`,
Grafana's provisioning and systemd would read.

tests/data/compose-spec.json is the Compose Specification's JSON schema (compose-spec project,
Apache-2.0, in SchemaStore's draft 2020-12 form) as vendored by check-jsonschema 0.39.0
(check_jsonschema/builtin_schemas/vendor/compose-spec.json, sha256 d549057e...ed10e64).
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the dev tools

from pantau.broker_auth import ACL_NAME, PASSWORD_NAME, service_role
from pantau.cli import main as pantau_cli
from pantau.dev.mosquitto import MAX_PACKET_BYTES
from pantau.settings import Settings, mqtt_endpoint
from processors.catalog import CATALOG

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))

# Generated per deployment and never committed (deploy/README.md says how to make them):
# `pantau devices` writes the broker's users and ACL, deploy/tls/make-dev-certs.sh the certificates.
GENERATED = {
    f"mosquitto/{PASSWORD_NAME}",
    f"mosquitto/{ACL_NAME}",
    "tls/ca.crt",
    "tls/server.crt",
    "tls/server.key",
    "secrets/pantau-ingest-1.password",
    "secrets/pantau-ingest-2.password",
    "secrets/pantau-api-1.password",
}

# Compose interpolation: $$ (a literal $), $NAME, ${NAME}, ${NAME:-default}, ${NAME-default},
# ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt}.
_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_SECONDS = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)?")


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def _env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a dotenv-style file; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{number}: {line!r}"
        assert key not in values, f"{path.name}:{number}: {key} set twice"
        values[key] = value
    return values


def _strings(node: Any) -> Iterator[str]:
    """Every string value (not key) in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution from `env`; an empty required variable gets a stand-in."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        value, op, arg = env.get(name, ""), match.group("op") or "", match.group("arg") or ""
        if op in (":-", "-"):
            return value or arg
        if op in (":+", "+"):
            return arg if value else ""
        return value or "example"  # ${NAME:?error}: a real .env must set it; the example may not

    if isinstance(node, str):
        return _VAR.sub(one, node)
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    return node


def _seconds(duration: str) -> float:
    """A Compose or systemd duration such as 30s, 1m or 30 (seconds)."""
    match = _SECONDS.fullmatch(duration.strip())
    assert match, f"unreadable duration {duration!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group("unit")]
    return float(match.group("value")) * scale


def _settings_field(variable: str) -> str:
    assert variable.startswith("PANTAU_"), variable
    assert variable in Settings.variables(), f"{variable} is not a setting (pantau/settings.py)"
    return variable.removeprefix("PANTAU_").lower()


def _check_settings(variables: dict[str, str], where: str) -> None:
    """Each PANTAU_* name is a Settings field and the values pass its validation together."""
    fields = {_settings_field(k): v for k, v in variables.items() if k.startswith("PANTAU_")}
    try:
        # model_validate: these values only, not the test process's own PANTAU_* environment.
        Settings.model_validate(fields)
    except ValueError as exc:
        pytest.fail(f"{where}: {exc}")


def _subcommand(name: str) -> click.Command:
    command = pantau_cli.get_command(click.Context(pantau_cli), name)
    assert command is not None, f"`pantau {name}` is not a pantau subcommand"
    return command


def _check_pantau_argv(argv: list[str], where: str) -> str:
    """`argv` (after the `pantau` program) names a real subcommand and only its options."""
    assert argv, f"{where}: no pantau subcommand"
    command = _subcommand(argv[0])
    options = {opt for param in command.params for opt in param.opts}
    for arg in argv[1:]:
        if arg.startswith("--"):
            assert arg.split("=")[0] in options, f"{where}: `pantau {argv[0]}` has no {arg}"
    return argv[0]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return _env_file(DEPLOY / "compose.env.example")


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    document = _load_yaml(DEPLOY / "compose.yaml")
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """compose.yaml as Compose sees it with the example .env."""
    resolved = _interpolate(raw_compose, env_example)
    assert isinstance(resolved, dict)
    return resolved


def _pantau_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("pantau:")
    }


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _binds(service: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(source, target, is_bind) of each volume entry, short or long syntax."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            yield volume["source"], volume["target"], volume["type"] == "bind"
        else:
            source, target = volume.split(":")[:2]
            yield source, target, source.startswith((".", "/", "~"))


# --- compose.yaml --------------------------------------------------------------------------


def test_compose_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    # jsonschema_rs comes with the dev tools (schemathesis); the pure-Python jsonschema would do.
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    with SCHEMA.open(encoding="utf-8") as f:
        validator = jsonschema_rs.validator_for(json.load(f))
    errors = [
        f"{'/'.join(map(str, e.instance_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


def test_every_variable_is_in_the_env_example_or_has_a_default(
    raw_compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    used: set[str] = set()
    for text in _strings(raw_compose):
        for match in _VAR.finditer(text):
            if match.group(0) == "$$":
                continue
            name = match.group("braced") or match.group("bare")
            used.add(name)
            has_default = (match.group("op") or "") in (":-", "-")
            assert name in env_example or has_default, f"${{{name}}} is not in compose.env.example"
            if (match.group("op") or "").endswith("?"):
                assert name in env_example, f"required {name} missing from compose.env.example"
    stale = set(env_example) - used
    assert not stale, f"compose.env.example sets variables compose.yaml never uses: {stale}"


def test_required_secrets_have_no_default(raw_compose: dict[str, Any]) -> None:
    # A secret with a default would silently run with a password everyone can read here.
    for text in _strings(raw_compose):
        for match in _VAR.finditer(text):
            name = match.group("braced") or ""
            if re.search(r"PASSWORD|TOKEN", name):
                assert match.group("op") == ":?", f"{name} must be ${{{name}:?message}}"


def test_bind_mounts_and_build_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for source, target, is_bind in _binds(service):
            if is_bind:
                assert (DEPLOY / source).exists(), f"{name}: {source} (for {target}) is missing"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_dockerfile_copies_existing_paths_and_runs_pantau(compose: dict[str, Any]) -> None:
    build = next(s["build"] for s in compose["services"].values() if "build" in s)
    context = (DEPLOY / build["context"]).resolve()
    text = (context / build["dockerfile"]).read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"Dockerfile: COPY {source}: not in the context"
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^USER (?!root)\S+$", text, re.M), "the image must not run as root"
    assert re.search(r'^ENTRYPOINT \["pantau"\]$', text, re.M)
    for name in re.findall(r"\b(PANTAU_\w+)=", text):
        _settings_field(name)


def test_depends_on_and_named_volumes_resolve(compose: dict[str, Any]) -> None:
    services, volumes = compose["services"], compose.get("volumes") or {}
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for source, _, is_bind in _binds(service):
            if not is_bind:
                assert source in volumes, f"{name}: volume {source} is not declared"


def test_pantau_services_use_real_settings_and_subcommands(compose: dict[str, Any]) -> None:
    services = _pantau_services(compose)
    commands = {name: _check_pantau_argv(s["command"], name) for name, s in services.items()}
    assert sorted(commands.values()) == ["api", "ingest", "ingest"]
    for name, service in services.items():
        env = _environment(service)
        _check_settings(env, f"compose.yaml {name}")
        # The ACL that `pantau devices` writes grants each role to accounts of its name; the
        # password comes from a secret file, never from the URL (or any command line).
        account = env["PANTAU_MQTT_USERNAME"]
        assert service_role(account) == commands[name], name
        endpoint = mqtt_endpoint(env["PANTAU_MQTT_URL"])
        assert endpoint.username is None and endpoint.password is None, name
        secret = env["PANTAU_MQTT_PASSWORD_FILE"]
        targets = {f"/run/secrets/{ref['target']}": ref["source"] for ref in service["secrets"]}
        source = compose["secrets"][targets[secret]]["file"].removeprefix("./")
        assert source in GENERATED and source == f"secrets/{account}.password", name
    # One account per replica: the broker uses it as the client id.
    accounts = [_environment(s)["PANTAU_MQTT_USERNAME"] for s in services.values()]
    assert len(set(accounts)) == len(accounts)


def test_collectors_share_the_stream_with_stable_distinct_identities(
    compose: dict[str, Any],
) -> None:
    collectors = {n: s for n, s in _pantau_services(compose).items() if s["command"][0] == "ingest"}
    envs = {name: _environment(s) for name, s in collectors.items()}
    # Partitions 1..N of the districts, one collector each: a device's state stays whole.
    partitions = sorted(env["PANTAU_PARTITION"] for env in envs.values())
    assert partitions == [f"{k}/{len(envs)}" for k in range(1, len(envs) + 1)]
    assert all("PANTAU_SHARE_GROUP" not in env for env in envs.values())
    # The client id is the account (use_username_as_clientid): distinct accounts, no other id.
    assert len({env["PANTAU_MQTT_USERNAME"] for env in envs.values()}) == len(collectors)
    assert all("PANTAU_CLIENT_ID" not in env for env in envs.values())
    spools = [s for n, c in collectors.items() for s, _, bind in _binds(c) if not bind]
    assert len(set(spools)) == len(collectors), "each collector needs its own spool volume"
    drain = Settings().shutdown_timeout_s
    for name, service in collectors.items():
        assert _seconds(service["stop_grace_period"]) > drain, f"{name} is killed mid-drain"


def test_mosquitto_config_files_are_mounted(compose: dict[str, Any]) -> None:
    mounts = {target: source for source, target, _ in _binds(compose["services"]["mosquitto"])}
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    assert mounts["/mosquitto/config"] == "./mosquitto"
    referenced = re.findall(
        r"^(?:password_file|acl_file|certfile|keyfile|cafile|persistence_location) (\S+)",
        conf,
        re.M,
    )
    assert len(referenced) == 6
    for path in referenced:
        target = next((t for t in mounts if path.startswith(t + "/")), None)
        assert target is not None, f"mosquitto.conf uses {path}, which no volume provides"
        relative = Path(mounts[target], path.removeprefix(target + "/")).as_posix()
        relative = relative.removeprefix("./")
        if mounts[target].startswith("."):
            assert relative in GENERATED or (DEPLOY / relative).exists(), relative
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    # Client ids are bound to accounts, and packets bounded like the collector's payloads.
    assert re.search(r"^use_username_as_clientid true$", conf, re.M)
    assert re.findall(r"^max_packet_size (\d+)$", conf, re.M) == [str(MAX_PACKET_BYTES)]
    assert Settings().max_payload_bytes < MAX_PACKET_BYTES


# --- Grafana -------------------------------------------------------------------------------


def _datasource_uids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and "uid" in source:
            yield source["uid"]
        for value in node.values():
            yield from _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_uids(value)


def test_grafana_provisioning_parses_and_dashboards_use_the_datasource(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {source: target for source, target, _ in _binds(grafana)}
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = [
        ds
        for path in sorted((provisioning / "datasources").glob("*.yaml"))
        for ds in _load_yaml(path)["datasources"]
    ]
    uids = {ds["uid"] for ds in datasources}
    assert len(uids) == len(datasources) >= 1
    # Grafana fills ${VAR} in provisioning files from its own environment.
    grafana_env = _environment(grafana)
    for path in provisioning.rglob("*.yaml"):
        for name in re.findall(r"\$\{(\w+)\}", path.read_text(encoding="utf-8")):
            assert name in grafana_env, f"{path.name} needs {name} in the grafana service"
    providers = [
        p
        for path in sorted((provisioning / "dashboards").glob("*.yaml"))
        for p in _load_yaml(path)["providers"]
    ]
    assert {p["options"]["path"] for p in providers} == {mounts["./grafana/dashboards"]}
    dashboards = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        used = set(_datasource_uids(dashboard))
        assert used and used <= uids, f"{path.name} uses datasources {used - uids}"


def test_dashboard_queries_name_catalog_fields() -> None:
    text = (DEPLOY / "grafana" / "dashboards" / "pantau.json").read_text(encoding="utf-8")
    queries = [t["query"] for p in json.loads(text)["panels"] for t in p.get("targets", [])]
    measurements = set()
    for query in queries:
        for field, measurement in re.findall(r'(?:mean|last)\("(\w+)"\)[^"]* FROM "(\w+)"', query):
            measurements.add(measurement)
            if measurement in CATALOG:
                assert field in CATALOG[measurement].field_names, f"{measurement}.{field}"
    assert measurements == {"air_quality", "water_level", "streetlight", "indicator"}


# --- systemd -------------------------------------------------------------------------------


def _unit(path: Path) -> configparser.ConfigParser:
    # strict=False: systemd allows repeated keys. No interpolation: %i is a systemd specifier.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def _all_values(path: Path, key: str) -> list[str]:
    """Every value of a key systemd accumulates (configparser keeps only the last)."""
    prefix = f"{key}="
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


def test_systemd_units_exist() -> None:
    assert [u.name for u in UNITS] == ["pantau-api.service", "pantau-ingest@.service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_unit_runs_a_real_subcommand_hardened(path: Path) -> None:
    unit = _unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/pantau"), argv[0]
    subcommand = _check_pantau_argv(argv[1:], path.name)
    assert subcommand == ("ingest" if path.name.startswith("pantau-ingest@") else "api")
    assert "/etc/pantau/pantau.env" in _all_values(path, "EnvironmentFile")
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service.get("StateDirectory")
    assert service.get("User") or service.get("DynamicUser") == "yes"
    assert _seconds(service["TimeoutStopSec"]) > Settings().shutdown_timeout_s


def test_collector_unit_takes_identity_and_spool_from_the_instance() -> None:
    argv = shlex.split(_unit(DEPLOY / "systemd" / "pantau-ingest@.service")["Service"]["ExecStart"])
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert options["--client-id"] == "pantau-ingest-%i"
    assert options["--spool-dir"].endswith("/%i")
    # The account is the client id; its password comes from a root-only file through systemd.
    path = DEPLOY / "systemd" / "pantau-ingest@.service"
    environment = dict(v.split("=", 1) for v in _all_values(path, "Environment"))
    assert environment["PANTAU_MQTT_USERNAME"] == options["--client-id"]
    credential = _all_values(path, "LoadCredential")
    assert credential == ["mqtt-password:/etc/pantau/mqtt/pantau-ingest-%i.password"]
    assert environment["PANTAU_MQTT_PASSWORD_FILE"] == "%d/mqtt-password"


def test_api_unit_has_its_own_account_from_a_credential() -> None:
    path = DEPLOY / "systemd" / "pantau-api.service"
    environment = dict(v.split("=", 1) for v in _all_values(path, "Environment"))
    assert service_role(environment["PANTAU_MQTT_USERNAME"]) == "api"
    assert environment["PANTAU_MQTT_PASSWORD_FILE"] == "%d/mqtt-password"
    assert _all_values(path, "LoadCredential")


def test_systemd_env_template_uses_real_settings() -> None:
    env = _env_file(DEPLOY / "systemd" / "pantau.env.example")
    # The units pass these per instance; a value here would be overridden (or, for the env
    # file's own precedence, confuse), so the template must not set them.
    assert "PANTAU_CLIENT_ID" not in env and "PANTAU_SPOOL_DIR" not in env
    # Every unit has its own broker account: no shared login, no password in the URL.
    assert not {"PANTAU_MQTT_USERNAME", "PANTAU_MQTT_PASSWORD", "PANTAU_MQTT_PASSWORD_FILE"} & set(
        env
    )
    endpoint = mqtt_endpoint(env["PANTAU_MQTT_URL"])
    assert endpoint.username is None and endpoint.password is None
    _check_settings(env, "pantau.env.example")
    timeout = _seconds(
        _unit(DEPLOY / "systemd" / "pantau-ingest@.service")["Service"]["TimeoutStopSec"]
    )
    assert float(env["PANTAU_SHUTDOWN_TIMEOUT_S"]) < timeout
