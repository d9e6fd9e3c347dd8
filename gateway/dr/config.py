"""`demand_response:` in a site file: where events come from besides MQTT, and the meter whose
readings measure what an event shed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_types import Duration
from core.config_types import Secret as SecretRef
from gateway.dr.openadr_config import OpenAdrConfig
from rules.model import DR_STRATEGIES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeMap(_Strict):
    """A field whose values are the platform's codes, mapped to ours."""

    field: str = Field(description="Dot path of the field, e.g. data.responseType.")
    values: dict[str, str] = Field(description="The platform's value -> ours.")

    @field_validator("values", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false: the strategy was meant.
        if isinstance(value, dict):
            return {k: "off" if v is False else v for k, v in value.items()}
        return value


class CancelMap(_Strict):
    """Which values of which field cancel an event (the id names it)."""

    field: str = Field(description="Dot path of the field, e.g. status.")
    values: list[str] = Field(min_length=1, description="Values that mean cancelled.")


class WebhookMapping(_Strict):
    """Where our event's parts are in the platform's JSON (dot paths: `data.eventId`)."""

    id: str = Field(default="id", description="The event id.")
    start: str = Field(default="start", description="The start time.")
    end: str = Field(default="end", description="The end time.")
    offset: str | None = Field(default=None, description="The setpoint raise, °C.")
    strategy: CodeMap | None = Field(
        default=None, description="The platform's codes for offset / off / precool_off."
    )
    zones: str | None = Field(default=None, description="A list of zone globs (or one).")
    cancel: CancelMap | None = Field(default=None, description="What cancels an event.")
    time_format: str = Field(
        default="iso",
        description="iso (ISO 8601; a time without zone is the site's), epoch_s, epoch_ms, "
        "or a strptime format such as %Y-%m-%d %H:%M:%S (the site's zone).",
    )

    @model_validator(mode="after")
    def _strategies(self) -> WebhookMapping:
        if self.strategy is not None:
            wrong = sorted(v for v in self.strategy.values.values() if v not in DR_STRATEGIES)
            if wrong:
                raise ValueError(
                    f"strategy values {', '.join(wrong)} are none of {', '.join(DR_STRATEGIES)}"
                )
        return self


class WebhookConfig(_Strict):
    """`demand_response.webhook`: where the gateway listens for a platform's events."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(ge=1, le=65535, description="Port to listen on.")
    path: str = Field(default="/dr/event", pattern=r"^/", description="The POST path.")
    token: SecretRef | None = Field(
        default=None, description="Bearer token reference (`${ENV}` or `file:`)."
    )
    hmac_secret: SecretRef | None = Field(
        default=None, description="HMAC-SHA256 secret reference for signed requests."
    )
    max_skew: Duration = Field(
        default=300.0, gt=0, description="Signed requests must be this fresh."
    )
    mapping: WebhookMapping | None = Field(
        default=None, description="The platform's field names; none: the gateway's format."
    )

    @model_validator(mode="after")
    def _authenticated(self) -> WebhookConfig:
        if self.token is None and self.hmac_secret is None:
            raise ValueError(
                "the webhook needs token or hmac_secret: nobody may send events unchecked"
            )
        return self


class ShedConfig(BaseModel):
    """The measured load shed (gateway/dr/shed.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: str = Field(description="The AC meter's device id (all the AC load, or most).")
    point: str = Field(default="energy_import_kwh", description="Its cumulative energy, kWh.")
    power_point: str | None = Field(
        default="active_power_total_w",
        description="Its power (W), integrated on days without counter readings; null: none.",
    )
    days: int = Field(default=5, ge=1, le=30, description="Similar days the baseline averages.")
    min_days: int = Field(default=3, ge=1, description="Fewer similar days: no baseline.")
    look_back_days: int = Field(
        default=30, ge=1, le=366, description="How far back similar days are looked for."
    )
    interval: Duration = Field(
        default=60.0, gt=0, description="How often a running event's figure is worked out."
    )
    settle: Duration = Field(
        default=120.0,
        ge=0,
        description="The figure is complete this long after the event's end (the meter's "
        "reading after the end has reached the database).",
    )

    @model_validator(mode="after")
    def _days(self) -> ShedConfig:
        if self.min_days > self.days:
            raise ValueError(f"min_days {self.min_days} is more than days {self.days}")
        return self


class DemandResponseConfig(BaseModel):
    """Demand-response sources and accounting. The events go to the site's demand_response
    rules; MQTT (`<prefix>/<site>/dr/event`) is enabled under mqtt.control."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: WebhookConfig | None = Field(
        default=None, description="An authenticated HTTP webhook for a provincial platform."
    )
    openadr: OpenAdrConfig | None = Field(
        default=None, description="An OpenADR 2.0b VEN registered with the grid's VTN."
    )
    shed: ShedConfig | None = Field(
        default=None, description="Measure each event's load shed on the AC meter."
    )
    state: str = Field(
        default="var/dr_events.json",
        description="The events taken and their figures, kept across restarts (relative to "
        "the site file).",
    )
