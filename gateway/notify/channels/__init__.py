"""Notification channels: one module per kind, their configuration in `config`.

The built-in kinds, in one place (kind -> config model -> channel class):

    dingtalk  DingTalkConfig      DingTalkChannel   (thin aiohttp client)
    wecom     WeComConfig         WeComChannel      (thin aiohttp client)
    sms       SmsConfig           SmsChannel        (the site's SMS gateway, JSON webhook)
    webhook   WebhookConfig       WebhookChannel    (thin aiohttp client)
    email     EmailConfig         EmailChannel      (apprise mailto://, in a thread)
    mqtt      MqttChannelConfig   MqttChannel       (the gateway's broker connection)
"""

from __future__ import annotations

from gateway.notify.channels.base import Channel, SecretResolver
from gateway.notify.channels.config import (
    ChannelConfig,
    DingTalkConfig,
    EmailConfig,
    MqttChannelConfig,
    SmsConfig,
    WebhookConfig,
    WeComConfig,
)
from gateway.notify.channels.dingtalk import DingTalkChannel
from gateway.notify.channels.email import EmailChannel
from gateway.notify.channels.mqtt import MqttChannel, Publish
from gateway.notify.channels.sms import SmsChannel
from gateway.notify.channels.webhook import WebhookChannel
from gateway.notify.channels.wecom import WeComChannel

__all__ = ["Channel", "ChannelConfig", "Publish", "SecretResolver", "build_channel"]


def build_channel(
    config: ChannelConfig, resolve: SecretResolver, *, publish: Publish | None = None
) -> Channel:
    """The channel for one `channels:` entry. Secrets are resolved now: a missing variable or
    file raises the resolver's ValueError at start-up. `publish` is needed by `mqtt` only."""
    if isinstance(config, DingTalkConfig):
        return DingTalkChannel(config, resolve)
    if isinstance(config, WeComConfig):
        return WeComChannel(config, resolve)
    if isinstance(config, SmsConfig):
        return SmsChannel(config, resolve)
    if isinstance(config, WebhookConfig):
        return WebhookChannel(config, resolve)
    if isinstance(config, EmailConfig):
        return EmailChannel(config, resolve)
    if isinstance(config, MqttChannelConfig):
        if publish is None:
            raise ValueError(f"channel {config.name}: an mqtt channel needs the broker's publish")
        return MqttChannel(config, publish)
    raise TypeError(f"unknown channel config {type(config).__name__}")
