"""Response bodies of the API as pydantic models: what `/openapi.json` says each route returns.

The routes build their JSON from the live state (`api.livestate`, `api.areas`, `api.scoring`)
and hand it to orjson as it is: these models document those bodies, key for key, and the tests
check real answers against them. They are not run on every answer: validating a few thousand
devices per request would cost more than building them, and coercing numbers (an integer
reading to a float) would change the bytes clients get.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Acknowledgement",
    "AirSummary",
    "AlertEpisode",
    "AlertEvent",
    "AlertList",
    "AlertStatus",
    "Anomaly",
    "AnomalyEvent",
    "AnomalyList",
    "AreaScores",
    "AreaSummary",
    "CatalogAnswer",
    "Contribution",
    "DeadLetter",
    "DeadLetterList",
    "DeviceDetail",
    "DeviceIndicators",
    "DeviceList",
    "DeviceStatus",
    "DimensionScore",
    "DistrictScores",
    "DistrictSummaries",
    "DistrictSummary",
    "FeedEvent",
    "FeedFrame",
    "FieldAnswer",
    "FloodCounts",
    "Health",
    "History",
    "HistoryPoint",
    "IndicatorEvent",
    "IndicatorList",
    "KindAnswer",
    "LatestIndicators",
    "LatestReading",
    "Readiness",
    "ReadinessChecks",
    "ReadingEvent",
    "RegencySummary",
    "Scores",
    "SiteAnswer",
    "Status",
    "StreetlightSummary",
    "WaterSummary",
]

Status = Literal["ok", "anomaly", "offline", "unknown"]
FloodStatus = Literal["Normal", "Waspada", "Siaga", "Awas"]

# Indicator values: numbers and labels by name, as the collector computed them.
IndicatorValues = dict[str, Any]
# Reading values: finite numbers by field name.
ReadingValues = dict[str, float]

_Ts = Annotated[float, Field(description="epoch seconds")]


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- health -----------------------------------------------------------------------------------


class Health(_Body):
    """The process is up."""

    status: Literal["ok"]


class ReadinessChecks(_Body):
    """Whether each dependency answers."""

    broker: bool = Field(description="the broker link is connected and its task runs")
    feed: bool = Field(description="the live feed's flush task runs")
    influxdb: bool


class Readiness(_Body):
    """Ready (200) when every check passes, else not ready (503)."""

    status: Literal["ready", "not ready"]
    checks: ReadinessChecks


# -- devices ----------------------------------------------------------------------------------


class DeviceStatus(_Body):
    """A device, where it is and its status."""

    device_id: str
    kind: str
    city: str
    district: str
    lat: float | None
    lon: float | None
    interval_s: float | None = Field(description="its reporting interval (registry)")
    registered: bool = Field(description="in the registry (else only seen on the broker)")
    status: Status = Field(
        description="unknown: never reported; offline: silent for 3 intervals; "
        "anomaly: an open anomaly within the status window; else ok"
    )
    last_seen: float | None = Field(description="epoch seconds of its newest reading")
    open_anomalies: int = Field(description="unacknowledged anomalies within the open window")


class DeviceList(_Body):
    """Devices, sorted by id."""

    count: int
    devices: list[DeviceStatus]


class LatestReading(_Body):
    """A device's newest reading."""

    ts: _Ts
    values: ReadingValues


class LatestIndicators(_Body):
    """A device's latest indicators."""

    ts: _Ts
    values: IndicatorValues


class Acknowledgement(_Body):
    """Who acknowledged an anomaly, when, and why."""

    by: str
    at: _Ts
    note: str


class Anomaly(_Body):
    """One anomaly and its acknowledgement, if any."""

    id: str = Field(description="device.detector.field.ns")
    ts: _Ts
    kind: str
    city: str
    district: str
    device_id: str
    detector: str
    field: str
    severity: str = Field(description="critical, warning or info")
    score: float | None
    value: float | None
    kept_out: str = Field(
        "",
        description="the indicators the reading was kept out of as a fault, comma-separated "
        "(e.g. ispu,aqi); empty when none",
    )
    acknowledged: Acknowledgement | None


class DeviceDetail(_Body):
    """One device: its newest reading, latest indicators and open anomalies (newest first)."""

    device: DeviceStatus
    latest: LatestReading | None
    indicators: LatestIndicators | None
    anomalies: list[Anomaly]


class HistoryPoint(_Body):
    """One interval of a field's history (intervals without data are left out)."""

    ts: _Ts = Field(description="epoch seconds of the interval's start")
    mean: float | None
    min: float | None
    max: float | None
    last: float | None


class History(_Body):
    """A field of one device over a time range, downsampled per interval."""

    device_id: str
    kind: str
    field: str
    start: _Ts
    end: _Ts
    interval_s: int
    source: Literal["raw", "rollup_1h", "rollup_1d"] = Field(
        description="where the points come from: raw readings or an hourly or daily rollup "
        "(the newest intervals, not rolled up yet, always come from raw readings)"
    )
    points: list[HistoryPoint]


# -- anomalies --------------------------------------------------------------------------------


class AnomalyList(_Body):
    """Anomalies, newest first."""

    count: int
    anomalies: list[Anomaly]


# -- indicators -------------------------------------------------------------------------------


class DeviceIndicators(_Body):
    """The latest indicators of one device."""

    kind: str
    city: str
    district: str
    device_id: str
    ts: _Ts
    values: IndicatorValues


class IndicatorList(_Body):
    """The latest indicators of every device, sorted by kind and device id."""

    count: int
    indicators: list[DeviceIndicators]


class AirSummary(_Body):
    """Air quality stations of an area with an ISPU."""

    stations: int
    ispu_max: float
    ispu_mean: float
    category: str | None = Field(description="ISPU category of the worst station")
    colour: str | None = Field(description="its ISPU colour")
    critical: str | None = Field(description="its critical pollutant")
    ts: _Ts = Field(description="the newest indicator's time")


class FloodCounts(_Body):
    """Gauges at each flood alert status."""

    Normal: int
    Waspada: int
    Siaga: int
    Awas: int


class WaterSummary(_Body):
    """Water level gauges of an area with a flood status."""

    gauges: int
    worst_status: FloodStatus
    worst_level: int = Field(description="0 Normal .. 3 Awas")
    counts: FloodCounts
    share_normal: float
    ts: _Ts = Field(description="the newest indicator's time")


class StreetlightSummary(_Body):
    """Street lamps of an area (from the district indicators)."""

    lamps: int
    lamps_due: int
    availability: float | None = Field(description="share of the lamps due that work")
    energy_today_wh: float
    day_burn_h_today: float
    day_burn_h_per_lamp: float | None
    ts: _Ts = Field(description="the newest indicator's time")


class AreaSummary(_Body):
    """An area's air, flood and streetlight summaries; null where it has no data."""

    air_quality: AirSummary | None
    water_level: WaterSummary | None
    streetlight: StreetlightSummary | None


class RegencySummary(_Body):
    """The regency's summary."""

    ts: _Ts
    air_quality: AirSummary | None
    water_level: WaterSummary | None
    streetlight: StreetlightSummary | None


class DistrictSummary(_Body):
    """One district's summary."""

    ts: _Ts
    district: str
    air_quality: AirSummary | None
    water_level: WaterSummary | None
    streetlight: StreetlightSummary | None


class DistrictSummaries(_Body):
    """Every district's summary, by district."""

    ts: _Ts
    districts: dict[str, AreaSummary]


# -- dimensions -------------------------------------------------------------------------------


class Contribution(_Body):
    """One indicator of a dimension: its value, normalised score and share of the score."""

    indicator: str
    label: str
    source: str = Field(description="the area metric it reads, e.g. air_quality.ispu_mean")
    weight: float
    value: float | None
    normalised: float | None = Field(description="0 at the model's worst, 100 at its best")
    contribution: float | None = Field(description="its part of the dimension score")
    age_s: float | None
    stale: bool | None = Field(description="older than its max_age_s: shown, not used")


class DimensionScore(_Body):
    """One smart-city dimension's score, or why it is not measured."""

    dimension: Literal[
        "smart_governance",
        "smart_economy",
        "smart_living",
        "smart_environment",
        "smart_society",
        "smart_branding",
    ]
    label: str
    score: float | None = Field(description="0-100; null when not measured")
    measured: bool
    reason: str | None = Field(description="why it is not measured")
    contributions: list[Contribution]


class AreaScores(_Body):
    """The six dimensions of one area."""

    dimensions: list[DimensionScore]


class Scores(_Body):
    """Dimension scores for the regency and each district."""

    ts: _Ts
    model: str = Field(description="the scoring model file")
    regency: AreaScores
    districts: dict[str, AreaScores]


class DistrictScores(_Body):
    """One district's dimension scores."""

    ts: _Ts
    model: str = Field(description="the scoring model file")
    district: str
    dimensions: list[DimensionScore]


# -- live feed --------------------------------------------------------------------------------


class ReadingEvent(_Body):
    """A device's newest reading."""

    type: Literal["reading"]
    ts: _Ts
    kind: str
    city: str
    district: str
    device_id: str
    values: ReadingValues


class IndicatorEvent(_Body):
    """A device's (or, with device `_district`, a district's) latest indicators."""

    type: Literal["indicator"]
    ts: _Ts
    kind: str
    city: str
    district: str
    device_id: str
    values: IndicatorValues


class AnomalyEvent(Anomaly):
    """A new anomaly (`anomaly`) or an acknowledgement of one (`ack`)."""

    type: Literal["anomaly", "ack"]


class AlertEpisode(_Body):
    """One alert episode: a rule's condition on a device or area, from open to close."""

    id: str = Field(description="rule.16hex, stable across replicas")
    rule: str
    severity: Literal["info", "warning", "critical"]
    state: Literal["open", "closed"]
    kind: str = Field(description="a device kind, or area for a district's or the regency's")
    city: str
    district: str = Field(description="empty for the regency")
    device_id: str = Field(description="empty for an area")
    started_at: _Ts
    opened_at: _Ts
    updated_at: _Ts
    closed_at: float | None
    value: float | None
    peak: float | None
    detail: str
    level: int = Field(description="escalation level reached; 0 is the first notification")
    escalated_at: float | None
    acknowledged: Acknowledgement | None


class AlertList(_Body):
    """Alert episodes, newest first."""

    count: int
    alerts: list[AlertEpisode]


class DeadLetter(_Body):
    """A notification given up after its tries."""

    key: str = Field(description="idempotency key: episode:event:level")
    episode_id: str
    event: str
    channel: Literal["webhook", "email"]
    address: str
    tries: int
    last_error: str
    at: _Ts


class DeadLetterList(_Body):
    """Dead letters, newest first."""

    count: int
    dead_letters: list[DeadLetter]


class AlertStatus(_Body):
    """The replica answering, the replicas it hears, its rules and its notification queue."""

    replica: str
    replicas: list[str]
    rules: int
    open: int
    pending_notifications: int
    dead_letters: int


class AlertEvent(AlertEpisode):
    """A live-feed event: something happened to an episode."""

    type: Literal["alert"]
    event: Literal["open", "update", "escalate", "close", "ack"]


FeedEvent = Annotated[
    ReadingEvent | IndicatorEvent | AnomalyEvent | AlertEvent, Field(discriminator="type")
]


class FeedFrame(_Body):
    """One frame of the live feed: the events since the last, and how many this client lost."""

    seq: int
    dropped: int
    events: list[FeedEvent]


# -- catalog and site ------------------------------------------------------------------------


class FieldAnswer(_Body):
    """One measured field of a kind."""

    name: str = Field(examples=["pm25"])
    unit: str = Field(description="as stored, e.g. ug/m3, C, cm; 0/1 for binary fields")
    low: float = Field(description="lowest value a working sensor can physically report")
    high: float = Field(description="highest value a working sensor can physically report")
    binary: bool = Field(description="only 0 or 1 is valid")
    description: str


class KindAnswer(_Body):
    """A device kind and its fields, in column order."""

    kind: str = Field(examples=["air_quality"])
    fields: list[FieldAnswer]
    default_field: str = Field(
        description="the field a device's history shows when none is asked for", examples=["pm25"]
    )


class CatalogAnswer(_Body):
    """Every device kind the platform knows."""

    kinds: list[KindAnswer]


class SiteAnswer(_Body):
    """The deployment's public settings: what a page needs to name the area and show times."""

    region_name: str = Field(examples=["Kabupaten Purbalingga"])
    time_zone: str = Field(description="IANA time zone name", examples=["Asia/Jakarta"])
    time_zone_abbr: str = Field(
        description="its abbreviation now (WIB, WITA, WIT), or the UTC offset", examples=["WIB"]
    )
