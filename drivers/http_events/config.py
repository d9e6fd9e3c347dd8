"""How the site file describes a device on an HTTP event stream: its `http_events:` block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.config_types import Duration, Host, Secret


class HttpEventsConnection(BaseModel):
    """Where a camera, recorder or access controller serves its event stream, and who may
    read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Host = Field(description="The device's address, e.g. 10.0.8.30.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="HTTP port; default 80, or 443 with https."
    )
    https: bool = Field(default=False, description="Speak HTTPS to the device.")
    tls_verify: bool = Field(
        default=True,
        description="Verify the device's certificate (with https). Most devices have one they "
        "signed themselves: give its CA as ca_file, or turn this off on a closed network.",
    )
    ca_file: str | None = Field(
        default=None, description="CA bundle (PEM) the device's certificate is checked against."
    )
    username: str = Field(min_length=1, description="User on the device, e.g. an operator.")
    password: Secret = Field(
        description="`${ENV_VAR}` or `file:/absolute/path`; a literal password is refused."
    )
    vendor: Literal["hikvision", "dahua"] | None = Field(
        default=None,
        description="Optional: the vendor, checked against the profile's protocol "
        "(hikvision_isapi, dahua_events).",
    )
    retry_max: Duration = Field(
        default=20.0,
        gt=0,
        description="Longest wait between two attempts to open the stream (each wait is drawn "
        "at random, so many devices do not all call at once).",
    )
    channels: list[int] | None = Field(
        default=None,
        min_length=1,
        description="Take only these channels' events (1 = the first channel), e.g. one "
        "device per camera of a recorder; events without a channel always pass.",
    )

    @field_validator("channels")
    @classmethod
    def _channels(cls, channels: list[int] | None) -> list[int] | None:
        if channels is not None:
            for c in channels:
                if c < 1:
                    raise ValueError(f"channel {c}: channels are numbered from 1")
            if len(set(channels)) != len(channels):
                raise ValueError("a channel is listed twice")
        return channels

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else 443 if self.https else 80
