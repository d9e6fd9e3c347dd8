"""The OpenADR 2.0b VEN's configuration (gateway/dr/openadr.py): which VTN, who we are to it,
how OpenADR signals become demand-response events, and which report we offer."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.config_types import Duration, Secret
from rules.model import DR_STRATEGIES

SIMPLE_LEVELS = (1, 2, 3)  # OpenADR SIMPLE levels that ask for something; 0 is normal operation
_FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){9}[0-9A-F]{2}$")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

ReportValue = Literal["reduction", "baseline", "actual"]


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LevelAction(BaseModel):
    """What one SIMPLE signal level asks of the demand_response rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str | None = Field(
        default=None,
        description="offset (raise cooling setpoints), off (switch units off for the window) or "
        "precool_off (1+1: pre-cool before the window, then off); null: each rule's own.",
        json_schema_extra={"enum": [*DR_STRATEGIES, None]},
    )
    offset_c: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="°C the cooling setpoints rise by (strategy offset or the rule's own); "
        "null: each rule's own offset.",
    )

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None and value not in DR_STRATEGIES:
            raise ValueError(f"unknown strategy '{value}'; use one of {', '.join(DR_STRATEGIES)}")
        return value

    @model_validator(mode="after")
    def _offset_for_offset(self) -> LevelAction:
        if self.offset_c is not None and self.strategy not in (None, "offset"):
            raise ValueError(
                f"offset_c is for strategy offset; strategy {self.strategy} does not use it: "
                "remove offset_c"
            )
        return self


def _default_levels() -> dict[int, LevelAction]:
    return {
        1: LevelAction(strategy="offset", offset_c=1.0),
        2: LevelAction(strategy="offset", offset_c=2.0),
        3: LevelAction(strategy="off"),
    }


class OpenAdrReportConfig(BaseModel):
    """The telemetry report the VEN offers: the load each event shed, measured on the AC meter
    (the load-shed accounting's figures). Sent when, and as often as, the VTN asks for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    report_specifier_id: str = Field(
        default="guanjia-dr-shed",
        min_length=1,
        description="The report's id as the VTN sees it; keep it the same across restarts.",
    )
    resource_id: str = Field(
        default="hvac",
        min_length=1,
        description="The report's data source, as the VTN knows the site's AC load.",
    )
    values: tuple[ReportValue, ...] = Field(
        default=("reduction", "baseline", "actual"),
        min_length=1,
        description="What each event's entry carries: reduction (the load shed, W, averaged "
        "over the window so far), baseline and actual (the AC meter's energy over the window, "
        "Wh, expected and measured).",
    )
    min_sampling: Duration = Field(
        default=60.0,
        description="The shortest reporting interval the VTN may ask for (at least 1s).",
    )
    max_sampling: Duration = Field(
        default=3600.0,
        description="The longest reporting interval the VTN may ask for.",
    )

    @field_validator("values")
    @classmethod
    def _unique(cls, values: tuple[ReportValue, ...]) -> tuple[ReportValue, ...]:
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once; name each value once")
        return values

    @model_validator(mode="after")
    def _sampling(self) -> OpenAdrReportConfig:
        if self.min_sampling < 1:
            raise ValueError(
                f"min_sampling {self.min_sampling:g}s is below 1s; OpenADR counts whole seconds"
            )
        if self.min_sampling > self.max_sampling:
            raise ValueError(
                f"min_sampling {self.min_sampling:g}s is above max_sampling "
                f"{self.max_sampling:g}s; swap them"
            )
        return self


class OpenAdrConfig(BaseModel):
    """An OpenADR 2.0b VEN (pull model, simpleHttp): it registers with the VTN, polls it for
    events, hands each to the demand-response rules and answers optIn or optOut with their
    outcome, and reports the load shed when the VTN asks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_plain_http: bool = Field(
        default=False,
        description="Allow an http:// VTN that is not on this box (a VTN on the site's own "
        "network without TLS); messages and events then travel unencrypted.",
    )
    vtn_url: str = Field(
        description="The VTN's OpenADR 2.0b base URL, e.g. https://vtn.example.com/OpenADR2/"
        "Simple/2.0b; https, or http to a loopback address (or with allow_plain_http)."
    )
    ven_name: str = Field(
        min_length=1, description="This VEN's name, as the VTN operator registered it."
    )
    ven_id: str | None = Field(
        default=None,
        min_length=1,
        description="This VEN's id when the VTN operator assigned one; null: the VTN assigns "
        "it at registration (kept in state_file).",
    )
    state_file: Path | None = Field(
        default=None,
        description="A JSON file keeping the VTN-assigned venID and registrationID across "
        "restarts (relative paths: to the site file's folder); null: register anew each start.",
    )
    cert: Path | None = Field(
        default=None,
        description="PEM certificate of this VEN: TLS client certificate and the key to sign "
        "messages with (give key too).",
    )
    key: Path | None = Field(default=None, description="PEM private key of cert.")
    key_passphrase: Secret | None = Field(
        default=None, description="The key's passphrase, when the key is encrypted."
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificates the VTN's TLS certificate is checked against; null: "
        "the system's.",
    )
    vtn_fingerprint: str | None = Field(
        default=None,
        description="The VTN certificate's OpenADR fingerprint (10 hex pairs, AA:BB:...); "
        "when given, messages from the VTN must carry its signature.",
    )
    check_hostname: bool = Field(
        default=True, description="Check that the VTN's TLS certificate names its host."
    )
    request_timeout: Duration = Field(
        default=10.0, description="How long one request to the VTN may take."
    )
    reconnect_min: Duration = Field(
        default=5.0,
        description="Wait before the first retry when registration fails (VTN unreachable "
        "or refusing); doubled each failure up to reconnect_max.",
    )
    reconnect_max: Duration = Field(
        default=300.0, description="The longest wait between registration attempts."
    )
    poll_interval: Duration | None = Field(
        default=None,
        description="Poll the VTN this often instead of at the frequency it asks for at "
        "registration; null (usual): the VTN's.",
    )
    levels: dict[int, LevelAction] = Field(
        default_factory=_default_levels,
        description="SIMPLE signal level (1, 2, 3) -> what the event asks of the rules; an "
        "event whose highest level is not listed is opted out.",
    )
    resource_zones: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="An event target's resourceID (or groupID) -> the zone globs it means; "
        "an event that targets only resources not listed here is opted out, one that targets "
        "no resource covers every unit of the rules.",
    )
    report: OpenAdrReportConfig | None = Field(
        default_factory=OpenAdrReportConfig,
        description="The load-shed report offered to the VTN; null: offer none.",
    )

    @field_validator("vtn_url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not a VTN URL; write https://host/OpenADR2/Simple/2.0b")
        if parts.query or parts.fragment:
            raise ValueError(f"'{value}' has a query or fragment; write only the base URL")
        plain_ok = info.data.get("allow_plain_http", False)
        if parts.scheme == "http" and not plain_ok and not _is_loopback(parts.hostname):
            raise ValueError(
                f"'{value}' is plain http to another host; use https (or set "
                "allow_plain_http: true for a VTN on the site's own network)"
            )
        return value.rstrip("/")

    @field_validator("vtn_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        upper = value.strip().upper()
        if not _FINGERPRINT.match(upper):
            raise ValueError(
                f"'{value}' is not an OpenADR fingerprint: 10 hex pairs such as "
                "AB:CD:EF:01:23:45:67:89:AB:CD (the VTN operator has it)"
            )
        return upper

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: dict[int, LevelAction]) -> dict[int, LevelAction]:
        wrong = sorted(level for level in value if level not in SIMPLE_LEVELS)
        if wrong:
            raise ValueError(
                f"level {', '.join(map(str, wrong))}: SIMPLE levels are 1, 2 and 3 "
                "(0 is normal operation)"
            )
        return value

    @field_validator("resource_zones")
    @classmethod
    def _zones(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for resource, globs in value.items():
            if not globs or any(not g.strip() for g in globs):
                raise ValueError(f"{resource}: list the zone globs it means, e.g. ['3F-*']")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OpenAdrConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both (or neither)")
        if self.key_passphrase is not None and self.key is None:
            raise ValueError("key_passphrase without key: give cert and key, or remove it")
        if self.reconnect_min <= 0:
            raise ValueError("reconnect_min must be above 0s")
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(
                f"reconnect_min {self.reconnect_min:g}s is above reconnect_max "
                f"{self.reconnect_max:g}s; swap them"
            )
        if self.poll_interval is not None and self.poll_interval < 1:
            raise ValueError(f"poll_interval {self.poll_interval:g}s is below 1s")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be above 0s")
        return self
