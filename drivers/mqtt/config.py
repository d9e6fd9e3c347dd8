"""How the site file describes an MQTT device: its broker and its profile's topic variables."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MqttDeviceConfig(BaseModel):
    """How an MQTT device is found: its broker and the variables its profile's topics name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str | None = Field(default=None, description="Broker name; default the first.")
    vars: dict[str, str] = Field(
        default_factory=dict,
        description="Values of the profile's topic variables, e.g. {id: door_1f_east}.",
    )
