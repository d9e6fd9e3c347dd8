"""The site file's schema: the site, its database, its devices."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from accounts.config import AccountsConfig
from core.config_types import ByteSize, Duration, Host, Secret
from drivers.registry import DRIVERS
from gateway.console.config import ConsoleConfig
from gateway.dr.config import DemandResponseConfig
from gateway.metrics_config import MetricsConfig
from gateway.notify.config import NotifyConfig
from rules.calendar import CalendarConfig

_ID = r"^[a-z0-9][a-z0-9_-]*$"
RESERVED_TAGS = frozenset({"site", "device", "kind"})
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tag keys are short identifiers; values are one line of text; the gateway's own are
    not overridden (they would merge two devices' series)."""
    for key, value in tags.items():
        if key in RESERVED_TAGS:
            raise ValueError(f"tag {key!r} is set by the gateway; remove it")
        if not _TAG_KEY.match(key):
            raise ValueError(f"tag key {key!r} must be lower case letters, digits and _")
        if value != value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError(f"tag {key}: {value!r} has line breaks or spaces at its ends")
    return tags


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(_Strict):
    """Who and where this gateway is."""

    name: str = Field(min_length=1, description="Site name, shown in texts (may be Chinese).")
    id: str = Field(
        pattern=_ID,
        description="Short ASCII id used in MQTT topics and the `site` tag, e.g. `city-hall`.",
    )
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone of the site.")
    gateway: str | None = Field(
        default=None,
        pattern=_ID,
        description="This gateway's id within the site, for a site too large for one box and "
        "split across gateways by line, each owning its own devices (e.g. `gw-b`): its MQTT "
        "client id, status topic and last will become its own and its InfluxDB lines carry a "
        "`gateway` tag. `guanjia check a.yaml b.yaml` checks that no device, serial server or "
        "Modbus TCP device is owned twice. Omit it for a site with one gateway.",
    )
    area_m2: float | None = Field(default=None, gt=0, description="Gross floor area.")
    tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags every device inherits (building, floor, zone); a device may override.",
    )

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; e.g. Asia/Shanghai") from None
        return value


class _InfluxTarget(_Strict):
    server: Literal["influxdb", "victoriametrics"] = Field(
        default="influxdb",
        description=(
            "What answers: `victoriametrics` keeps every write of a timestamp, so a period the "
            "accounts write again (late data) is stamped a millisecond later per revision."
        ),
    )


class InfluxV2(_InfluxTarget):
    """InfluxDB 2.x/3.x or a compatible server, through the v2 write API."""

    api: Literal["v2"] = Field(description="`v2`")
    url: str = Field(pattern=r"^https?://", description="Base URL, e.g. http://127.0.0.1:8086.")
    org: str = Field(min_length=1, description="Organisation.")
    bucket: str = Field(min_length=1, description="Bucket.")
    token: Secret | None = Field(default=None, description="API token reference.")
    timeout: Duration = Field(default=10.0, description="HTTP timeout of one write.")


class InfluxV1(_InfluxTarget):
    """InfluxDB 1.x, through the v1 `/write` API."""

    api: Literal["v1"] = Field(description="`v1`")
    url: str = Field(pattern=r"^https?://", description="Base URL, e.g. http://127.0.0.1:8086.")
    database: str = Field(min_length=1, description="Database name.")
    retention_policy: str | None = Field(default=None, description="Retention policy.")
    username: str | None = Field(default=None, description="User name, if auth is on.")
    password: Secret | None = Field(default=None, description="Password reference.")
    timeout: Duration = Field(default=10.0, description="HTTP timeout of one write.")


class Batching(_Strict):
    """When a batch of points is sent."""

    max_points: int = Field(default=5000, ge=1, le=100_000, description="Send when this full.")
    max_age: Duration = Field(default=1.0, gt=0, description="Send at least this often.")


class SpoolConfig(_Strict):
    """The disk buffer that holds points while the database is away."""

    path: str = Field(default="var/spool", description="Directory (relative to the site file).")
    max_bytes: ByteSize = Field(
        default=256 * 1024 * 1024, description="Bound on disk; the oldest points go first."
    )
    fsync: bool = Field(default=True, description="fsync every batch (crash-safe).")
    dead_letter_max_bytes: ByteSize = Field(
        default=64 * 1024 * 1024,
        description="Bound of the dead-letter file (lines the database refused, kept until "
        "`guanjia replay --dead-letter`); past it refusals are counted as lost.",
    )


class TlsConfig(_Strict):
    """TLS to the broker."""

    ca_file: str | None = Field(default=None, description="CA bundle (PEM) to verify the broker.")
    cert_file: str | None = Field(default=None, description="Client certificate (PEM).")
    key_file: str | None = Field(default=None, description="Client key (PEM).")


class BrokerConfig(_Strict):
    """An MQTT broker: the site broker, a vendor bridge, a central cluster."""

    name: str = Field(pattern=_ID, description="Name devices refer to, e.g. `site`.")
    host: Host = Field(description="Broker address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Port (8883 for TLS).")
    tls: TlsConfig | None = Field(default=None, description="TLS settings; omit for plain TCP.")
    username: str | None = Field(default=None, description="User name.")
    password: Secret | None = Field(default=None, description="Password reference.")
    client_id: str | None = Field(
        default=None,
        description="Fixed client id (the persistent session is keyed by it); "
        "default guanjia-<site>-<broker>.",
    )
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT version.")
    keepalive: int = Field(default=30, ge=5, le=3600, description="Keep-alive seconds.")


class CommandsConfig(_Strict):
    """Which points may be written, by anyone (MQTT .../set, rules, demand response), beyond
    the profile's writable range; and how old a command may be."""

    allow: list[str] = Field(
        default_factory=list,
        description="`device:point` patterns with * wildcards, e.g. `ac-*:setpoint_degc`; "
        "empty allows none. Rules that write (ac_policy with `enforce: true`, "
        "demand_response) need their points here too.",
    )
    max_age: Duration = Field(
        default=30.0,
        gt=0,
        description="A command older than this (by its `ts`) is refused and audited, not "
        "executed; an MQTT 5 message expiry, where the sender sets one, replaces it.",
    )
    max_payload: ByteSize = Field(
        default=4096,
        ge=64,
        le=65536,
        description="Larger command, acknowledgement, shelving and demand-response payloads "
        "are refused.",
    )


class ControlConfig(_Strict):
    """Which control topics the gateway listens to. Each is off until enabled here: whoever
    may publish on the broker may use it, so enable one only with the broker's ACL in place
    (config/mosquitto/)."""

    commands: bool = Field(
        default=False,
        description="`<prefix>/<site>/<device>/<point>/set`: writes, checked against "
        "`commands.allow`.",
    )
    ack: bool = Field(
        default=False, description="`<prefix>/<site>/alarm/<id>/ack`: acknowledge alarms."
    )
    shelve: bool = Field(
        default=False, description="`<prefix>/<site>/alarm/<id>/shelve`: shelve alarms."
    )
    demand_response: bool = Field(
        default=False,
        description="`<prefix>/<site>/dr/event`: demand-response events for the "
        "demand_response rules.",
    )


class MqttConfig(_Strict):
    """MQTT: brokers to ingest from, and where the gateway publishes its own topics."""

    brokers: list[BrokerConfig] = Field(min_length=1, description="Brokers.")
    publish_to: str | None = Field(
        default=None, description="Broker for status/state/commands; default the first."
    )
    prefix: str = Field(default="guanjia", description="Topic prefix of the gateway's topics.")
    state_interval: Duration = Field(
        default=5.0, gt=0, description="At most one retained state message per device this often."
    )
    max_payload: ByteSize = Field(
        default=256 * 1024, description="Larger payloads are refused and counted."
    )
    heartbeat_check: Duration = Field(
        default=10.0, gt=0, description="How often silence is checked."
    )
    control: ControlConfig = Field(
        default_factory=ControlConfig,
        description="Control topics to listen to (all off by default).",
    )


class DeviceBase(_Strict):
    """One device: its profile, how to reach it, how often to poll it, where it is.

    Its connection is under the key of its driver (`modbus:`, `mqtt:`, ...: one per driver in
    drivers/registry.py), exactly one, the one its profile's driver needs: `load_site` checks
    that against the profile, so the error can say which one to keep.
    """

    id: str = Field(pattern=_ID, description="Unique id, e.g. `meter-b1-main`.")
    profile: str = Field(description="Profile name, a file in config/profiles/ without .yaml.")
    poll: Duration = Field(default=10.0, gt=0, description="Poll interval.")
    points: list[str] | None = Field(
        default=None, description="Read only these profile points (default: all)."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="building, floor, zone, use (sub-metering category)."
    )
    kind: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*$", description="Overrides the profile's kind."
    )
    enabled: bool = Field(default=True, description="false keeps the entry but doesn't poll.")

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        return check_tags(tags)

    def connections(self) -> dict[str, Any]:
        """The driver keys this entry gives, with their blocks (one, when it is right)."""
        return {name: c for name in DRIVERS if (c := getattr(self, name, None)) is not None}

    def connection(self, driver: str) -> Any:
        return getattr(self, driver, None)


def _device_config() -> type[DeviceBase]:
    """DeviceBase with one optional key per registered driver."""
    fields: dict[str, Any] = {
        name: (
            driver.connection_model | None,
            Field(default=None, description=f"{driver.title} connection, e.g. {driver.example}"),
        )
        for name, driver in DRIVERS.items()
    }
    model: type[DeviceBase] = create_model(
        "DeviceConfig", __base__=DeviceBase, __doc__=DeviceBase.__doc__, **fields
    )
    return model


if TYPE_CHECKING:
    DeviceConfig = DeviceBase
else:
    DeviceConfig = _device_config()


class AlarmsConfig(_Strict):
    """Alarm grades and where alarm state is kept."""

    store: str = Field(
        default="var/alarms.sqlite", description="SQLite file (relative to the site file)."
    )
    grades: dict[str, Literal["red", "orange", "yellow", "blue"]] = Field(
        default_factory=dict, description="Grade per alarm kind, over the defaults."
    )


class Site(_Strict):
    """A site file."""

    site: SiteInfo = Field(description="The site.")
    influxdb: Annotated[InfluxV2 | InfluxV1, Field(discriminator="api")] | None = Field(
        default=None, description="Database; without one, readings wait in the spool."
    )
    batching: Batching = Field(default_factory=Batching, description="Write batching.")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="Disk spool.")
    profile_dirs: list[str] = Field(
        default_factory=list, description="Extra profile directories, searched first."
    )
    mqtt: MqttConfig | None = Field(default=None, description="MQTT brokers and publishing.")
    commands: CommandsConfig = Field(
        default_factory=CommandsConfig, description="Allowlist of writable points."
    )
    calendar: CalendarConfig = Field(
        default_factory=CalendarConfig, description="Office hours and the site's own days."
    )
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig, description="Alarm settings.")
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Rules: {id, kind, ...parameters of the kind}; `guanjia schema --rules`.",
    )
    devices: list[DeviceConfig] = Field(default_factory=list, description="Devices.")
    accounts: AccountsConfig | None = Field(
        default=None, description="Energy, water and carbon accounts (none: not kept)."
    )
    notify: NotifyConfig | None = Field(
        default=None, description="Who is told of alarms, on which channels (none: nobody)."
    )
    console: ConsoleConfig | None = Field(
        default=None, description="The duty console (web pages and JSON API); off by default."
    )
    demand_response: DemandResponseConfig | None = Field(
        default=None,
        description="Demand-response sources (webhook, OpenADR VEN) and the measured load shed.",
    )
    metrics: MetricsConfig | None = Field(
        default=None,
        description="The gateway's own metrics for Prometheus, e.g. {port: 9108}; off by default.",
    )
