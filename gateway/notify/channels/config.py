"""The site file's `channels:` entries: one model per kind, told apart by `kind`.

Secrets (tokens, signing secrets, passwords) are references only, `${ENV_VAR}` or
`file:/run/secrets/name`, exactly as the rest of the site file writes them; the channel gets a
resolver function and asks it once, when it is built, so a missing variable or file is a
start-up error and the configuration never holds a literal secret.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_types import Duration, Host, Secret
from gateway.notify.ratelimit import RateLimit

DINGTALK_URL = "https://oapi.dingtalk.com/robot/send"
WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"

_NAME = r"^[a-z0-9][a-z0-9_-]*$"
_BASE_URL = r"^https?://[^\s?#]+$"  # a base: the channel adds the query itself
_URL = r"^https?://\S+$"
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP token (RFC 9110)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RateConfig(_Strict):
    """How fast the channel may send (a sliding window), and its pause after "too fast"."""

    max: int = Field(ge=1, le=100_000, description="Messages allowed in any window of `per`.")
    per: Duration = Field(default=60.0, gt=0, description="The window, e.g. 1m.")
    hold: Duration = Field(
        description='After the service answers "too fast", send nothing for this long.'
    )
    red_reserve: int = Field(
        default=2,
        ge=0,
        description="Slots of each window the lower grades leave free for red alarms.",
    )

    @model_validator(mode="after")
    def _reserve_below_max(self) -> RateConfig:
        if self.red_reserve >= self.max:
            raise ValueError(
                f"red_reserve ({self.red_reserve}) must be below max ({self.max}); "
                "lower it or raise max"
            )
        return self

    def limit(self) -> RateLimit:
        return RateLimit(self.max, self.per, self.hold, self.red_reserve)


def _rate(max_: int, hold: float) -> RateConfig:
    return RateConfig(max=max_, per=60.0, hold=hold)


class _Channel(_Strict):
    name: str = Field(pattern=_NAME, description="Name the routing refers to, e.g. `duty-group`.")
    timeout: Duration = Field(default=10.0, gt=0, description="Timeout of one send.")


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name in headers:
        if not _HEADER.match(name):
            raise ValueError(f"{name!r} is not an HTTP header name (letters, digits, -)")
    return headers


class DingTalkConfig(_Channel):
    """A DingTalk group's custom robot (自定义机器人), markdown messages with @mobile."""

    kind: Literal["dingtalk"] = Field(description="`dingtalk`")
    url: str = Field(
        default=DINGTALK_URL,
        pattern=_BASE_URL,
        description="The robot API without query; change it only for a proxy or a test.",
    )
    access_token: Secret = Field(description="The webhook's access_token.")
    secret: Secret | None = Field(
        default=None, description="The signing secret (`SEC…`) when the robot uses 加签."
    )
    keyword: str | None = Field(
        default=None,
        min_length=1,
        description="One of the robot's custom keywords; put before texts that lack it.",
    )
    max_bytes: int = Field(
        default=19_000,
        ge=500,
        le=20_000,
        description="Bound on the markdown text in UTF-8 bytes; longer texts are cut.",
    )
    rate: RateConfig = Field(
        default_factory=lambda: _rate(20, 600.0),
        description="DingTalk: 20 a minute per robot, blocked for 10 minutes above that.",
    )


class WeComConfig(_Channel):
    """A WeCom (企业微信) group robot."""

    kind: Literal["wecom"] = Field(description="`wecom`")
    url: str = Field(
        default=WECOM_URL,
        pattern=_BASE_URL,
        description="The robot API without query; change it only for a proxy or a test.",
    )
    key: Secret = Field(description="The webhook's key.")
    msgtype: Literal["text", "markdown"] = Field(
        default="text",
        description="`text` @-mentions by mobile (mentioned_mobile_list); `markdown` only by "
        "WeCom user id (<@userid>).",
    )
    text_max_bytes: int = Field(
        default=2048, ge=200, le=5120, description="Bound on a text message, UTF-8 bytes."
    )
    markdown_max_bytes: int = Field(
        default=4096, ge=200, le=4096, description="Bound on a markdown message, UTF-8 bytes."
    )
    rate: RateConfig = Field(
        default_factory=lambda: _rate(20, 60.0),
        description="WeCom: 20 a minute per robot; its pause after that is not documented.",
    )


class SuccessField(_Strict):
    """Where the SMS gateway's JSON answer says whether it took the message."""

    field: str = Field(
        min_length=1, description="Dotted path in the JSON answer, e.g. `code` or `result.code`."
    )
    value: str = Field(description="The value meaning success, e.g. `OK` (compared as text).")
    throttled: list[str] = Field(
        default_factory=list,
        description='Values meaning "too fast", e.g. `isv.BUSINESS_LIMIT_CONTROL`.',
    )
    permanent: list[str] = Field(
        default_factory=list,
        description="Values no retry can fix (bad template, bad signature, blacklisted number).",
    )


class SmsConfig(_Channel):
    """The site's SMS gateway, a JSON webhook: template id, its variables, the numbers."""

    kind: Literal["sms"] = Field(description="`sms`")
    url: str = Field(pattern=_URL, description="The gateway's send URL.")
    token: Secret | None = Field(default=None, description="Token sent with every request.")
    token_header: str = Field(
        default="Authorization",
        description="Header carrying the token; `Authorization` sends `Bearer <token>`.",
    )
    template: str = Field(min_length=1, description="Template id approved by the provider.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Fixed fields added to every request, e.g. `{sign_name: 市行政中心}`.",
    )
    success: SuccessField | None = Field(
        default=None, description="Also require this answer field; without it, HTTP 2xx is ok."
    )
    rate: RateConfig = Field(
        default_factory=lambda: _rate(30, 60.0), description="Bound on requests to the gateway."
    )

    @field_validator("token_header")
    @classmethod
    def _header(cls, value: str) -> str:
        return next(iter(_check_headers({value: ""})))


class WebhookConfig(_Channel):
    """Any HTTP endpoint taking a JSON POST: a ticketing system, a site's own bridge."""

    kind: Literal["webhook"] = Field(description="`webhook`")
    url: str = Field(pattern=_URL, description="The URL to POST to.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Fixed headers (no secrets here: see secret_headers)."
    )
    secret_headers: dict[str, Secret] = Field(
        default_factory=dict, description="Headers whose values are secrets, by reference."
    )
    hmac_secret: Secret | None = Field(
        default=None, description="Sign each body with HMAC-SHA256 under this secret."
    )
    signature_header: str = Field(
        default="X-Guanjia-Signature",
        description="Header carrying `sha256=<hex of HMAC-SHA256(body)>`.",
    )
    rate: RateConfig = Field(
        default_factory=lambda: _rate(120, 60.0), description="Bound on requests."
    )

    @field_validator("headers", "secret_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)

    @field_validator("signature_header")
    @classmethod
    def _header(cls, value: str) -> str:
        return next(iter(_check_headers({value: ""})))


class EmailConfig(_Channel):
    """Email through an SMTP server (submission with STARTTLS, implicit TLS, or plain)."""

    kind: Literal["email"] = Field(description="`email`")
    host: Host = Field(description="SMTP server.")
    port: int = Field(default=587, ge=1, le=65535, description="587 STARTTLS, 465 TLS, 25 plain.")
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="`starttls`, `ssl` (implicit TLS) or `none`."
    )
    verify_tls: bool = Field(default=True, description="Verify the server's certificate.")
    username: str | None = Field(default=None, min_length=1, description="SMTP login.")
    password: Secret | None = Field(default=None, description="SMTP password reference.")
    from_address: str = Field(pattern=_EMAIL, description="Sender address.")
    from_name: str | None = Field(default=None, description="Sender name, e.g. 管家值班.")
    to: list[Annotated[str, Field(pattern=_EMAIL)]] = Field(
        default_factory=list,
        description="Mailbox for recipients without an email of their own (a duty mailbox).",
    )
    rate: RateConfig = Field(
        default_factory=lambda: _rate(30, 300.0), description="Bound on messages."
    )

    @model_validator(mode="after")
    def _login(self) -> EmailConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password without username; add `username:`")
        return self


_TOPIC_FIELDS = frozenset({"channel", "grade", "alarm_id", "recipient"})


class MqttChannelConfig(_Channel):
    """Publish each notification as JSON on the gateway's broker (a paging bridge, a display)."""

    kind: Literal["mqtt"] = Field(description="`mqtt`")
    topic: str = Field(
        min_length=1,
        description="Topic; may use {channel}, {grade}, {alarm_id}, {recipient} (the name).",
    )
    qos: int = Field(default=1, ge=0, le=2, description="MQTT QoS.")
    retain: bool = Field(default=False, description="Publish retained.")
    rate: RateConfig = Field(
        default_factory=lambda: _rate(600, 10.0), description="Bound on messages."
    )

    @field_validator("topic")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"topic {value!r}: {exc}; write fields as {{grade}}") from None
        unknown = names - _TOPIC_FIELDS
        if unknown:
            raise ValueError(
                f"topic {value!r} uses {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_TOPIC_FIELDS))}"
            )
        if "#" in value or "+" in value:
            raise ValueError(f"topic {value!r}: wildcards (#, +) cannot be published to")
        return value


ChannelConfig = Annotated[
    DingTalkConfig | WeComConfig | SmsConfig | WebhookConfig | EmailConfig | MqttChannelConfig,
    Field(discriminator="kind"),
]
