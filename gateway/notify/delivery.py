"""What the notifier hands to the outbox, and what a channel answers: the seam between
deciding who is told (roster, routing, texts) and getting it there (outbox, channels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Grade = Literal["red", "orange", "yellow", "blue"]


@dataclass(frozen=True, slots=True)
class Recipient:
    """A person as a channel addresses them: a mobile for DingTalk @ and SMS, an email."""

    name: str
    mobile: str = ""
    email: str = ""
    dingtalk_user: str = ""
    wecom_user: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One notification's texts, already within the channel's limits."""

    title: str  # a line: the chat list, the mail subject
    text: str  # plain text (SMS, WeCom text, email body)
    markdown: str = ""  # where the channel takes markdown; "" = use text
    params: dict[str, str] = field(default_factory=dict)  # an SMS template's variables


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message to one person on one channel, stored in the outbox before it is sent.

    `key` is the idempotency key: (alarm transition, person, channel), so a retry, a restart
    or a second enqueue of the same transition never sends it twice to the same place."""

    key: str
    channel: str  # a channel's name in the site file
    recipient: Recipient
    message: Message
    grade: Grade
    alarm_id: str = ""  # "" for a digest of several
    created: float = 0.0  # epoch seconds


@dataclass(frozen=True, slots=True)
class SendResult:
    """A channel's answer: delivered, or why not and whether trying again may help."""

    ok: bool
    reason: str = ""
    retry: bool = True  # False: a permanent refusal (bad key, content refused)
    throttled: bool = False  # the endpoint said "too fast": hold the whole channel
