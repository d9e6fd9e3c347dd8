"""How the site file describes a device on an HTTP event stream: its `http_events:` block."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_types import Duration, Host, Secret


class HttpEventsPush(BaseModel):
    """The device posts its events to a listener on the gateway (Hikvision "HTTP listening",
    ISAPI httpHosts) instead of the gateway holding its alertStream open."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(
        ge=1, le=65535, description="Port the gateway listens on, as set in the device, e.g. 8099."
    )
    bind: Host = Field(
        default="0.0.0.0",
        description="Address the listener binds to: 0.0.0.0 for every interface, or the "
        "gateway's address on the camera network.",
    )
    device_id: str | None = Field(
        default=None,
        min_length=1,
        description="The device's deviceID or MAC address as its alerts carry them, for posts "
        "that do not come from `host` (a NAT, a platform forwarding them).",
    )


class HttpEventsConnection(BaseModel):
    """Where a camera, recorder or access controller serves its event stream, and who may
    read it; or, with `push:`, where it posts its events and how it proves who it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Host = Field(
        description="The device's address, e.g. 10.0.8.30; with push, the address its posts "
        "come from."
    )
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
    username: str | None = Field(
        default=None,
        min_length=1,
        description="User on the device, e.g. an operator. With push: the user the device "
        "authenticates its posts with (its httpHosts MD5digest setting); omit both for none.",
    )
    password: Secret | None = Field(
        default=None,
        description="`${ENV_VAR}` or `file:path` (relative to the site file); a literal "
        "password is refused. Resolved when the site file is loaded.",
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

    push: HttpEventsPush | None = Field(
        default=None,
        description="The device posts its events to the gateway (HTTP host push) instead: "
        "where the gateway listens, e.g. {port: 8099}.",
    )

    @model_validator(mode="after")
    def _credentials(self) -> HttpEventsConnection:
        if self.push is None:
            missing = [k for k in ("username", "password") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} missing: the gateway logs in to read the event "
                    'stream, e.g. username: guanjia, password: "${CAMERA_PASSWORD}" '
                    "(or add push: {port: 8099} if the device posts its events)"
                )
        elif (self.username is None) != (self.password is None):
            raise ValueError(
                "push: give both username and password (the device authenticates its posts "
                "with them), or neither"
            )
        return self

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


StreamKey = tuple[str, int, bool, str]  # host, port, https, user: one connection each


def stream_key(conn: HttpEventsConnection) -> StreamKey:
    """The connection a device's stream is (here, not in stream.py: `guanjia check` needs it
    without the HTTP client)."""
    return (conn.host, conn.effective_port, conn.https, conn.username or "")
