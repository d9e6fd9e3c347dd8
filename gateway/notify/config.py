"""The site file's `notify:` section: channels, the duty roster (inline or a file it names),
routing, the texts' language and readable place names, and where the outbox lives."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from gateway.notify.channels.config import ChannelConfig
from gateway.notify.roster import RosterConfig
from gateway.notify.routing import RoutingConfig


class NotifyConfig(BaseModel):
    """Who is told of alarms, how and when (docs: README, "Alarms reach the people on duty")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: list[ChannelConfig] = Field(
        min_length=1, description="Where messages go: DingTalk, WeCom, SMS, email, webhook, MQTT."
    )
    roster: Annotated[
        Annotated[RosterConfig, Tag("RosterConfig")] | Annotated[str, Tag("str")],
        Discriminator(lambda v: "str" if isinstance(v, str) else "RosterConfig"),
    ] = Field(
        description="The duty roster, here or in a YAML file named relative to the site file."
    )
    routing: RoutingConfig = Field(
        default_factory=RoutingConfig, description="Who gets which grade, quiet hours, digest."
    )
    language: Literal["zh", "en", "both"] = Field(
        default="both", description="Texts in Chinese, English, or Chinese then English."
    )
    places: dict[str, str] = Field(
        default_factory=dict,
        description="Readable names of tag values in texts, e.g. {main: 主楼, b1: 地下一层}.",
    )
    outbox: str = Field(
        default="var/notify/outbox.db",
        description="The outbox (SQLite), relative to the site file: every message is stored "
        "here before it is sent, so a restart or power cut loses none.",
    )
    keep_days: int = Field(
        default=30, ge=1, le=3650, description="Delivered messages are kept this long."
    )

    @model_validator(mode="after")
    def _unique_channels(self) -> NotifyConfig:
        seen: set[str] = set()
        for channel in self.channels:
            if channel.name in seen:
                raise ValueError(f"channels: {channel.name!r} appears twice; names are unique")
            seen.add(channel.name)
        return self

    def kinds(self) -> dict[str, str]:
        """Channel name -> kind (dingtalk, sms, ...), for routing and texts."""
        return {c.name: c.kind for c in self.channels}
