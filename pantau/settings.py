"""The one typed settings object: every value from CLI options or `PANTAU_*` variables."""

from __future__ import annotations

import dataclasses
import socket
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AlertSettings",
    "ApiSettings",
    "HistorySettings",
    "InfluxSettings",
    "MqttEndpoint",
    "MqttSettings",
    "ServicesSettings",
    "Settings",
    "SpoolSettings",
    "mqtt_endpoint",
]


def _read_password_file(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"PANTAU_MQTT_PASSWORD_FILE {path}: {exc.strerror or exc}") from None
    if not lines or not lines[0]:
        raise ValueError(f"PANTAU_MQTT_PASSWORD_FILE {path}: the first line must hold the password")
    return lines[0]


def _default_client_id() -> str:
    # Stable across restarts of the same collector, so the broker resumes its session.
    return f"pantau-ingest-{socket.gethostname()}"[:64]


_SECTION = ConfigDict(frozen=True, extra="ignore")


class MqttSettings(BaseModel):
    """The broker: where it is and how to prove who we are (`PANTAU_MQTT_*`)."""

    model_config = _SECTION

    url: str = Field(
        default="mqtt://127.0.0.1:11883",
        description="The broker, `mqtt://[user:password@]host[:port]`; `mqtts://` for TLS.",
    )
    # TLS for mqtts:// URLs (pantau/tls.py).
    ca_file: Path | None = Field(
        default=None,
        description="For `mqtts://`: the CA that signed the broker's certificate "
        "(unset: the system trust store).",
    )
    cert_file: Path | None = Field(
        default=None,
        description="For `mqtts://`: an optional client certificate (with `key_file`).",
    )
    key_file: Path | None = Field(
        default=None, description="The client certificate's key (with `cert_file`)."
    )
    # Credentials kept off the command line (a URL's user:password would show in `ps`).
    username: str | None = Field(
        default=None,
        min_length=1,
        description="The broker account (overrides a user name in the URL).",
    )
    password: SecretStr | None = Field(
        default=None,
        description="The account's password; prefer `password_file` (not with it).",
    )
    password_file: Path | None = Field(
        default=None,
        description="A file whose first line is the account's password, read at connect "
        "time (e.g. `.pantau/credentials/pantau-ingest-1.password`, a Docker secret or a "
        "systemd credential).",
    )
    username_is_client_id: bool = Field(
        default=True,
        description="The broker uses each account's user name as its client id (Mosquitto's "
        "`use_username_as_clientid`, as Pantau's broker configs set it): with a user name the "
        "collector's client id is that name, and a different `client_id` is refused.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        mqtt_endpoint(value)
        return value

    @model_validator(mode="after")
    def _check_password_source(self) -> MqttSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set mqtt_password or mqtt_password_file, not both")
        return self

    @property
    def effective_username(self) -> str | None:
        """The account: `username`, else the URL's user name."""
        return self.username or mqtt_endpoint(self.url).username

    def endpoint(self) -> MqttEndpoint:
        """Where the broker is and the credentials to log in with (the password file is read now).

        The password comes from `password`, else the first line of `password_file`, else the URL.
        """
        parsed = mqtt_endpoint(self.url)
        password = parsed.password
        if self.password is not None:
            password = self.password.get_secret_value()
        elif self.password_file is not None:
            password = _read_password_file(self.password_file)
        return dataclasses.replace(parsed, username=self.effective_username, password=password)


class InfluxSettings(BaseModel):
    """The database: where it is and its credentials (`PANTAU_INFLUX_*`)."""

    model_config = _SECTION

    url: str = Field(
        default="http://127.0.0.1:18086",
        description="InfluxDB's v1-compatible HTTP API, `http(s)://host:port`.",
    )
    db: str = Field(
        default="pantau",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="The database (on InfluxDB 2.x/3.x: the bucket of its DBRP mapping).",
    )
    username: str | None = Field(default=None, description="User name (InfluxDB 1.x auth).")
    password: SecretStr | None = Field(default=None, description="Password (InfluxDB 1.x auth).")
    token: SecretStr | None = Field(
        default=None, description="API token for InfluxDB 2.x/3.x v1-compatible endpoints."
    )
    timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="A write slower than this counts as a failure: the batch goes to the "
        "spool instead.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"influx_url must be http(s)://host:port, got {value!r}")
        return value.rstrip("/")


class SpoolSettings(BaseModel):
    """The collector's local spool, used while InfluxDB is down, slow or failing."""

    model_config = _SECTION

    dir: Path | None = Field(
        default=None,
        description="The spool folder, one per collector (unset: "
        "`<services dir>/spool/<client id>`).",
    )
    max_bytes: int = Field(
        default=1024**3,
        ge=1024,
        description="Spool size bound; when full the collector stops acknowledging and the "
        "broker holds the backlog.",
    )
    segment_bytes: int = Field(
        default=16 * 1024**2, ge=1024, description="Size of one append-only segment file."
    )


class ApiSettings(BaseModel):
    """The API service, `pantau api` (`PANTAU_API_*`)."""

    model_config = _SECTION

    host: str = Field(default="127.0.0.1", description="Address `pantau api` listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port `pantau api` listens on.")
    tokens_file: Path | None = Field(
        default=None,
        description="Hashed API tokens (unset: `<services dir>/tokens.json`).",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser, a JSON list such as "
        '`["https://ops.example"]`.',
    )
    scoring_model: Path = Field(
        default=Path("deploy/scoring-model.toml"),
        description="The declared model of the six dimension scores.",
    )
    city: str = Field(
        default="+",
        pattern=r"^(\+|[a-z0-9_-]{1,64})$",
        description="The city whose derived topics the API follows; `+`: every city.",
    )
    client_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT client id of this API replica (unset: `pantau-api-<random>`).",
    )
    history_max_days: float = Field(
        default=366.0, gt=0, description="The longest range one history query may cover."
    )
    history_max_points: int = Field(
        default=5000,
        ge=10,
        le=100_000,
        description="The most intervals one history answer may hold.",
    )
    open_anomaly_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="Anomalies unacknowledged for less than this long count as open.",
    )
    anomaly_status_s: float = Field(
        default=3600.0,
        gt=0,
        description='A device shows status "anomaly" while it has an open anomaly this recent.',
    )
    feed_interval_s: float = Field(
        default=0.25, gt=0, le=5, description="Live feeds send a frame this often."
    )
    feed_max_frames: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="A live-feed client holds at most this many unsent frames (oldest dropped).",
    )
    max_body_bytes: int = Field(
        default=16 * 1024, ge=256, description="Request body limit (413 beyond)."
    )
    # Bounds on what the broker may make the API hold (pantau/derived.py bounds each message).
    max_derived_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="A city's batch summary of readings larger than this is rejected (other "
        "derived messages: 64 KiB).",
    )
    max_summary_readings: int = Field(
        default=50_000,
        ge=1,
        description="A batch summary with more readings is rejected (a batch holds up to the "
        "collector's `batch_size` devices).",
    )
    max_unregistered_devices: int = Field(
        default=10_000,
        ge=0,
        description="Devices learned from the broker, not the registry, kept at most (more are "
        "refused); with a registry, unregistered devices are rejected anyway.",
    )
    max_indicators: int = Field(
        default=100_000,
        ge=1,
        description="Indicator entries (device and district) kept at most; new ones beyond are "
        "refused. Keep it above the registered devices plus districts.",
    )
    max_anomalies: int = Field(
        default=20_000,
        ge=1,
        description="Recent anomalies kept in memory at most (the oldest are evicted).",
    )
    max_pending_acks: int = Field(
        default=20_000,
        ge=1,
        description="Acknowledgements waiting for their anomaly kept at most (the oldest are "
        "evicted).",
    )
    rate_per_s: float = Field(
        default=100.0,
        ge=0,
        description="Requests per second per token on average; 0 turns the limit off "
        "(429 with `Retry-After` beyond).",
    )
    rate_burst: float = Field(
        default=200.0, ge=1, description="Requests per token allowed at once."
    )
    unauth_rate_per_s: float = Field(
        default=2.0,
        ge=0,
        description="Requests without a valid token per second per client address on average; "
        "0 turns the limit off (429 with `Retry-After` beyond).",
    )
    unauth_rate_burst: float = Field(
        default=20.0, ge=1, description="Requests without a valid token allowed at once."
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A request's line, headers and body must arrive within this long, or the "
        "connection is closed (slow clients).",
    )
    keep_alive_s: int = Field(
        default=5,
        ge=1,
        le=300,
        description="An idle HTTP keep-alive connection is closed after this.",
    )
    ws_ping_interval_s: float = Field(
        default=20.0, gt=0, le=600, description="The API pings each WebSocket client this often."
    )
    ws_ping_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="A WebSocket client that does not answer a ping within this long is dropped.",
    )
    send_timeout_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="A client that reads nothing for this long while data waits for it (a stuck "
        "live-feed client) is dropped.",
    )
    docs_enabled: bool = Field(
        default=False,
        description="Serve the interactive API docs at `/docs` and `/redoc` (their scripts come "
        "from a CDN); `/openapi.json` is always served.",
    )
    region_name: str = Field(
        default="Kabupaten Purbalingga",
        min_length=1,
        max_length=100,
        description="The regency or city, as the dashboard names it.",
    )
    time_zone: str = Field(
        default="Asia/Jakarta",
        description="IANA time zone the dashboard shows times in (Asia/Jakarta: WIB).",
    )

    @field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class AlertSettings(BaseModel):
    """Alert rules and their notifications, run by the API (`PANTAU_ALERTS_*`)."""

    model_config = _SECTION

    enabled: bool = Field(default=True, description="Evaluate the alert rules in the API.")
    rules: Path = Field(
        default=Path("deploy/alerts.toml"),
        description="The declared alert rules and recipients (docs/alerts.md).",
    )
    language: Literal["id", "en"] = Field(
        default="id",
        description="Language of notifications unless a rule says otherwise: `id` (Bahasa "
        "Indonesia) or `en`.",
    )
    dashboard_url: str = Field(
        default="http://127.0.0.1:8080",
        pattern=r"^https?://[^\s]{1,200}$",
        description="The dashboard's public address; notifications link to devices there.",
    )
    tick_s: float = Field(
        default=1.0, gt=0, le=60, description="How often rules are evaluated against time."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key that signs webhook bodies (a webhook may name its own "
        "variable in the rules file).",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Timeout of one webhook request."
    )
    max_tries: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Delivery tries of one notification before it goes to the dead-letter list.",
    )
    retry_base_s: float = Field(
        default=2.0, gt=0, le=3600, description="First retry delay; it doubles, with jitter."
    )
    retry_max_s: float = Field(default=300.0, gt=0, le=86400, description="Cap of the retry delay.")
    smtp_host: str | None = Field(
        default=None, description="SMTP server for e-mail notifications (unset: no e-mail)."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_starttls: bool = Field(
        default=True, description="Upgrade the SMTP connection with STARTTLS before login."
    )
    smtp_ca_file: Path | None = Field(
        default=None,
        description="CA that signed the SMTP server's certificate (unset: system trust store).",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login name.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(
        default="pantau@localhost",
        max_length=200,
        description="Sender address of notification e-mails.",
    )
    presence_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="API replicas announce themselves this often; the replica that owns an "
        "episode (rendezvous hash over live replicas) sends its notifications.",
    )


class HistorySettings(BaseModel):
    """Stored history: hourly area figures, rollups and retention (`PANTAU_HISTORY_*`)."""

    model_config = _SECTION

    record_hourly: bool = Field(
        default=True,
        description="The API stores the indicators and six dimension scores per district "
        "and for the regency every hour of observation time (measurement `area_hourly`).",
    )
    rollups: bool = Field(
        default=True,
        description="Create InfluxDB 1.x retention policies and continuous queries for hourly "
        "and daily rollups at API start (idempotent); `pantau history setup` does it alone.",
    )
    raw_retention: str = Field(
        default="INF",
        pattern=r"^(INF|[1-9][0-9]{0,5}[hdw])$",
        description="How long raw readings are kept (`INF`, or e.g. `90d`; at least 1h).",
    )
    hourly_retention: str = Field(
        default="INF",
        pattern=r"^(INF|[1-9][0-9]{0,5}[hdw])$",
        description="How long hourly rollups are kept.",
    )
    daily_retention: str = Field(
        default="INF",
        pattern=r"^(INF|[1-9][0-9]{0,5}[hdw])$",
        description="How long daily rollups are kept.",
    )


class ServicesSettings(BaseModel):
    """Private broker and database for development and tests (`pantau services`)."""

    model_config = _SECTION

    dir: Path = Field(
        default=Path(".pantau"),
        description="Configs, data and logs of the private services; also the default home "
        "of spools and API tokens.",
    )
    mqtt_port: int = Field(
        default=11883, ge=1, le=65535, description="Port of the private Mosquitto (127.0.0.1)."
    )
    influx_port: int = Field(
        default=18086, ge=1, le=65535, description="Port of the private InfluxDB (127.0.0.1)."
    )


_SECTIONS: Final = ("mqtt", "influx", "spool", "api", "alerts", "history", "services")


class Settings(BaseSettings):
    """Pantau settings; build once at start-up and pass down.

    Each value comes from a CLI option, a `PANTAU_*` variable or its default. Sections keep
    their variables flat: `PANTAU_MQTT_URL` is `settings.mqtt.url`, and keyword arguments
    take the same flat names (`Settings(mqtt_url=...)`).
    """

    model_config = SettingsConfigDict(
        env_prefix="PANTAU_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        frozen=True,
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)

    registry: Path | None = Field(
        default=None,
        description="Device registry CSV (deploy/README.md); unset: development mode, any "
        "well-formed device is accepted.",
    )

    # The collector's MQTT session.
    topic: str = Field(default="city/+/+/+/+", description="The collector's subscription filter.")
    share_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="MQTT v5 shared-subscription group of collector replicas (`$share/GROUP/...`).",
    )
    share_dispatch: Literal["round_robin", "hash_topic"] = Field(
        default="round_robin",
        description="How the broker spreads a share group: `round_robin` (Mosquitto; a "
        "device's readings would be split over replicas, so a share group then needs "
        "`processors=false`), or `hash_topic` (EMQX `shared_subscription_strategy = "
        "hash_topic`: each device always reaches the same replica).",
    )
    partition: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{0,2}/[1-9][0-9]{0,2}$",
        description="`K/N`: this collector processes partition K of N, the districts that "
        "hash to K (docs/collector.md, Scale-out). Partition 1 also takes districts the "
        "registry does not list. Needs the registry; one running collector per partition.",
    )
    catch_all: bool = Field(
        default=True,
        description="With `partition`: partition 1 subscribes to the whole topic filter, so a "
        "reading from a district the registry does not list is still rejected with a record. "
        "It then receives every partition's messages and skips the others'. Off: partition 1 "
        "subscribes to its own districts only, which is safe where the broker lets each device "
        "publish on its own topic only (the ACL `pantau devices` writes).",
    )
    processors: bool = Field(
        default=True,
        description="Run the detectors and live indicators. False: a store-only collector "
        "(readings and rejections, no anomalies, indicators or live feed).",
    )
    state_replay_hours: float = Field(
        default=26.0,
        ge=0,
        le=24 * 14,
        description="At start, stored readings newer than the processors' snapshot are "
        "replayed into them; with no usable snapshot (first start, new partition layout), "
        "this many hours of every device's history (a 24-hour mean needs 18).",
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, description="Cap of the jittered reconnect backoff."
    )
    client_id: str = Field(
        default_factory=_default_client_id,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Stable MQTT client id of this collector, so the broker resumes its "
        "session after a restart; unique per replica.",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        le=0xFFFFFFFF,
        description="How long the broker keeps a stopped collector's session and queues "
        "readings for it.",
    )
    receive_maximum: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="MQTT v5 Receive Maximum (unset: three times the batch size, 20 to 65535).",
    )

    # Batching.
    batch_size: int = Field(
        default=5000, ge=1, le=1_000_000, description="Readings per InfluxDB write."
    )
    batch_interval_s: float = Field(
        default=0.2,
        gt=0,
        le=60,
        description="Seconds before a part-filled batch is written.",
    )

    # Validation limits.
    max_payload_bytes: int = Field(
        default=1_048_576, ge=16, description="Larger messages are rejected."
    )
    max_readings_per_message: int = Field(
        default=10_000, ge=1, description="Larger gateway batches are rejected."
    )
    clock_skew_s: float = Field(
        default=120.0,
        ge=0,
        description="Readings further ahead of the collector's clock are rejected.",
    )
    max_age_days: float = Field(
        default=30 * 365.25,
        gt=0,
        description="Older readings are rejected; 30 years, so replays of old archives stay "
        "storable.",
    )
    rejected_payload_bytes: int = Field(
        default=1024,
        ge=0,
        le=65536,
        description="Size of the payload copy kept with a rejection.",
    )

    # Process.
    shutdown_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="On SIGTERM the collector drains (flush, acknowledge) for at most this long.",
    )
    log_level: str = Field(default="INFO", description="Python log level of the process.")
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus `/metrics` on this port."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Collector processes on this host: `pantau ingest` then supervises N "
        "workers, worker K taking partition K/N under the client id `{client_id}-K` (and "
        "metrics port `metrics_port`+K-1). Needs the registry.",
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """Take `mqtt_url=...` as `mqtt={"url": ...}`: the flat names of the variables."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            section, _, name = key.partition("_")
            if section in _SECTIONS and name:
                nested = out.get(section)
                merged = dict(nested) if isinstance(nested, dict) else {}
                merged[name] = value
                out[section] = merged
                del out[key]
        return out

    @model_validator(mode="after")
    def _bind_client_id(self) -> Settings:
        """With a user name on a broker that binds ids to names, the client id is that name."""
        username = self.mqtt.effective_username
        if username is None or not self.mqtt.username_is_client_id:
            return self
        if "client_id" not in self.model_fields_set:
            # The broker would replace any other id by the user name anyway; so the spool,
            # the logs and the stored collector id name what the broker knows.
            self.__dict__["client_id"] = username
        elif self.client_id != username:
            raise ValueError(
                f"client_id {self.client_id!r} differs from the MQTT user name {username!r}: "
                "the broker uses the user name as the client id (use_username_as_clientid), "
                f"so leave client_id unset or set it to {username!r} (one account per "
                "collector replica); mqtt_username_is_client_id=false for brokers that do not"
            )
        return self

    @model_validator(mode="after")
    def _keep_devices_whole(self) -> Settings:
        """Refuse replica layouts that would split one device's readings over processors."""
        if self.partition is not None:
            k, n = (int(part) for part in self.partition.split("/"))
            if k > n:
                raise ValueError(f"partition {self.partition!r}: K must be between 1 and N")
            if self.share_group:
                raise ValueError(
                    "partition and share_group exclude each other: a partition is one "
                    "collector with its own session (it fails over by coming back)"
                )
        if self.share_group and self.processors and self.share_dispatch == "round_robin":
            raise ValueError(
                f"share_group {self.share_group!r} with processors on a round-robin broker "
                "(Mosquitto) would split each device's readings over the replicas and corrupt "
                "their per-device state (baselines, runs, 24-hour means). Use partition=K/N "
                "(one collector per partition), or share_dispatch=hash_topic on a broker that "
                "hashes topics (EMQX), or processors=false for store-only replicas"
            )
        return self

    @property
    def partition_index(self) -> tuple[int, int] | None:
        """(K, N) of `partition`, if set."""
        if self.partition is None:
            return None
        k, n = (int(part) for part in self.partition.split("/"))
        return k, n

    @classmethod
    def from_options(cls, **options: Any) -> Settings:
        """Settings from CLI options by their flat names; None means "not given"."""
        given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
        return cls(**given)

    @classmethod
    def variables(cls) -> dict[str, tuple[str, ...]]:
        """Every `PANTAU_*` variable and the path of the setting it sets."""
        names: dict[str, tuple[str, ...]] = {}
        for name, info in cls.model_fields.items():
            section = info.annotation
            if name in _SECTIONS and isinstance(section, type) and issubclass(section, BaseModel):
                for inner in section.model_fields:
                    names[f"PANTAU_{name}_{inner}".upper()] = (name, inner)
            else:
                names[f"PANTAU_{name}".upper()] = (name,)
        return names

    @property
    def subscription(self) -> str:
        """The filter to subscribe: the topic, inside a shared-subscription group if one is set."""
        if self.share_group:
            return f"$share/{self.share_group}/{self.topic}"
        return self.topic

    @property
    def effective_tokens_file(self) -> Path:
        """Where the API's hashed tokens live."""
        return self.api.tokens_file or self.services.dir / "tokens.json"

    @property
    def effective_spool_dir(self) -> Path:
        """The spool folder; one per collector identity, so replicas never share one."""
        if self.spool.dir is not None:
            return self.spool.dir
        return self.services.dir / "spool" / self.client_id

    @property
    def effective_receive_maximum(self) -> int:
        """MQTT v5 Receive Maximum: room for three batches of single-reading messages.

        One batch is being written, the next waits for the writer, a third is filling.
        """
        if self.receive_maximum is not None:
            return self.receive_maximum
        return max(20, min(65535, 3 * self.batch_size))


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A parsed MQTT URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = dataclasses.field(repr=False)  # never in a log line


def mqtt_endpoint(url: str) -> MqttEndpoint:
    """Parse `mqtt://[user[:password]@]host[:port]` (or `mqtts://`)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ValueError(f"MQTT URL must be mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"bad port in MQTT URL {url!r}") from exc
    return MqttEndpoint(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
