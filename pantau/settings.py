"""The one typed settings object: every value from CLI options or `PANTAU_*` variables."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MqttEndpoint", "Settings", "mqtt_endpoint"]


def _default_client_id() -> str:
    # Stable across restarts of the same collector, so the broker resumes its session.
    return f"pantau-ingest-{socket.gethostname()}"[:64]


class Settings(BaseSettings):
    """Pantau settings; build once at start-up and pass down."""

    model_config = SettingsConfigDict(env_prefix="PANTAU_", extra="ignore", frozen=True)

    # Where things are.
    mqtt_url: str = "mqtt://127.0.0.1:11883"
    # TLS for mqtts:// URLs (pantau/tls.py): the CA that signed the broker's certificate
    # (default: the system trust store), and an optional client certificate and key.
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    influx_url: str = "http://127.0.0.1:18086"
    influx_db: str = Field(default="pantau", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_token: SecretStr | None = None  # InfluxDB 2.x/3.x v1-compatible endpoints
    # A write slower than this counts as a failure: the batch goes to the spool instead.
    influx_timeout_s: float = Field(default=5.0, gt=0)
    registry: Path | None = None  # None: development mode, any well-formed device is accepted

    # The MQTT session.
    topic: str = "city/+/+/+/+"
    share_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    reconnect_max_s: float = Field(default=30.0, gt=0)
    client_id: str = Field(default_factory=_default_client_id, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0, le=0xFFFFFFFF)
    receive_maximum: int | None = Field(default=None, ge=1, le=65535)

    # The local spool (used while InfluxDB is down, slow or failing).
    spool_dir: Path | None = None  # default: <services_dir>/spool/<client_id>
    spool_max_bytes: int = Field(default=1024**3, ge=1024)
    spool_segment_bytes: int = Field(default=16 * 1024**2, ge=1024)

    # Batching.
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    batch_interval_s: float = Field(default=0.2, gt=0, le=60)

    # Validation limits.
    max_payload_bytes: int = Field(default=1_048_576, ge=16)
    max_readings_per_message: int = Field(default=10_000, ge=1)
    clock_skew_s: float = Field(default=120.0, ge=0)
    max_age_days: float = Field(default=30 * 365.25, gt=0)  # replays of old archives stay storable
    rejected_payload_bytes: int = Field(default=1024, ge=0, le=65536)

    # Process.
    shutdown_timeout_s: float = Field(default=8.0, gt=0)
    log_level: str = "INFO"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)  # Prometheus /metrics

    # The API (`pantau api`).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_tokens_file: Path | None = None  # default: <services_dir>/tokens.json
    api_cors_origins: list[str] = Field(default_factory=list)  # e.g. ["https://ops.example"]
    api_scoring_model: Path = Path("deploy/scoring-model.toml")
    api_city: str = Field(default="+", pattern=r"^(\+|[a-z0-9_-]{1,64})$")  # "+": every city
    api_client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # History queries: the longest range and the most intervals one answer may hold.
    api_history_max_days: float = Field(default=366.0, gt=0)
    api_history_max_points: int = Field(default=5000, ge=10, le=100_000)
    # Anomalies unacknowledged for less than this long count as open.
    api_open_anomaly_s: float = Field(default=24 * 3600.0, gt=0)
    # A device shows status "anomaly" while it has an open anomaly this recent.
    api_anomaly_status_s: float = Field(default=3600.0, gt=0)
    # Live feeds: frames are sent this often; a client holds at most this many unsent frames.
    api_feed_interval_s: float = Field(default=0.25, gt=0, le=5)
    api_feed_max_frames: int = Field(default=50, ge=1, le=10_000)
    api_max_body_bytes: int = Field(default=16 * 1024, ge=256)
    # Requests per second per token on average, and at once; 0 turns the limit off.
    api_rate_per_s: float = Field(default=100.0, ge=0)
    api_rate_burst: float = Field(default=200.0, ge=1)

    # Private services for development and tests (`pantau services`).
    services_dir: Path = Path(".pantau")
    services_mqtt_port: int = Field(default=11883, ge=1, le=65535)
    services_influx_port: int = Field(default=18086, ge=1, le=65535)

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        mqtt_endpoint(value)
        return value

    @field_validator("influx_url")
    @classmethod
    def _check_influx_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"influx_url must be http(s)://host:port, got {value!r}")
        return value.rstrip("/")

    @property
    def subscription(self) -> str:
        """The filter to subscribe: the topic, inside a shared-subscription group if one is set."""
        if self.share_group:
            return f"$share/{self.share_group}/{self.topic}"
        return self.topic

    @property
    def effective_tokens_file(self) -> Path:
        """Where the API's hashed tokens live."""
        return self.api_tokens_file or self.services_dir / "tokens.json"

    @property
    def effective_spool_dir(self) -> Path:
        """The spool folder; one per collector identity, so replicas never share one."""
        if self.spool_dir is not None:
            return self.spool_dir
        return self.services_dir / "spool" / self.client_id

    @property
    def effective_receive_maximum(self) -> int:
        """MQTT v5 Receive Maximum: room for two full batches of single-reading messages."""
        if self.receive_maximum is not None:
            return self.receive_maximum
        return max(20, min(65535, 2 * self.batch_size))


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A parsed MQTT URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


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
