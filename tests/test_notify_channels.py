"""Each notification channel against a local endpoint speaking its vendor's wire format
(tests/notify_endpoints.py), a real SMTP server (aiosmtpd) and a real Mosquitto."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import TypeAdapter, ValidationError

from core.secret_refs import resolve_secret
from gateway.notify.channels import ChannelConfig, SecretResolver, build_channel
from gateway.notify.channels.config import (
    DingTalkConfig,
    EmailConfig,
    MqttChannelConfig,
    SmsConfig,
    WebhookConfig,
    WeComConfig,
)
from gateway.notify.channels.dingtalk import DingTalkChannel, sign
from gateway.notify.channels.email import EmailChannel
from gateway.notify.channels.mqtt import MqttChannel
from gateway.notify.channels.sms import SmsChannel
from gateway.notify.channels.webhook import WebhookChannel
from gateway.notify.delivery import Delivery, Grade, Message, Recipient
from tests.mqtt_helpers import Client
from tests.notify_endpoints import DingTalkRobot, SmsGateway, Webhook, WeComRobot, dingtalk_sign
from tests.servers import MosquittoServer, free_port

TOKEN = "a1b2c3d4-token"
SECRET = "SECf0e1d2c3b4a5968778695a4b3c2d1e0f"
ZHANG = Recipient(name="张伟", mobile="13800138000", email="zhang@example.org")

ADAPTER: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)


def delivery(
    key: str = "t1:zhang:duty",
    *,
    channel: str = "duty",
    recipient: Recipient = ZHANG,
    title: str = "B1 配电室 门被强行打开",
    text: str = "B1 配电室 门被强行打开 (door forced open), 10:42",
    markdown: str = "",
    grade: Grade = "orange",
    params: dict[str, str] | None = None,
) -> Delivery:
    return Delivery(
        key=key,
        channel=channel,
        recipient=recipient,
        message=Message(title, text, markdown, params or {}),
        grade=grade,
        alarm_id="door-b1",
        created=time.time(),
    )


@pytest.fixture
def resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SecretResolver:
    """The site file's own resolver: secrets from the environment and from files."""
    monkeypatch.setenv("DT_TOKEN", TOKEN)
    monkeypatch.setenv("DT_SECRET", SECRET)
    monkeypatch.setenv("WECOM_KEY", "wk-123")
    monkeypatch.setenv("SMS_TOKEN", "sms-token")
    (tmp_path / "hook.secret").write_text("hook-hmac-secret\n", encoding="utf-8")
    monkeypatch.setenv("HOOK_TOKEN", "hook-bearer")
    monkeypatch.setenv("SMTP_PASSWORD", "p@ss:/w#rd?%")
    return lambda ref: resolve_secret(ref, tmp_path)


@pytest.fixture
def robot() -> Iterator[DingTalkRobot]:
    with DingTalkRobot(token=TOKEN, secret=SECRET) as server:
        yield server


def dingtalk(url: str, resolve: SecretResolver, **extra: Any) -> DingTalkChannel:
    config = ADAPTER.validate_python(
        {
            "kind": "dingtalk",
            "name": "duty",
            "url": url,
            "access_token": "${DT_TOKEN}",
            "secret": "${DT_SECRET}",
            **extra,
        }
    )
    channel = build_channel(config, resolve)
    assert isinstance(channel, DingTalkChannel)
    return channel


# -- configuration -------------------------------------------------------------------------


def test_config_refuses_literal_secrets_unknown_keys_and_bad_values() -> None:
    base = {"kind": "dingtalk", "name": "duty", "access_token": "${DT_TOKEN}"}
    ADAPTER.validate_python(base)
    with pytest.raises(ValidationError, match="access_token"):
        ADAPTER.validate_python({**base, "access_token": "a1b2c3d4"})  # a literal token
    with pytest.raises(ValidationError, match="Extra inputs"):
        ADAPTER.validate_python({**base, "acces_token": "${X}"})
    with pytest.raises(ValidationError, match="red_reserve"):
        ADAPTER.validate_python({**base, "rate": {"max": 2, "hold": "10m", "red_reserve": 2}})
    with pytest.raises(ValidationError, match="recipient_mobile"):
        ADAPTER.validate_python({"kind": "mqtt", "name": "m", "topic": "n/{recipient_mobile}"})
    with pytest.raises(ValidationError, match="password without username"):
        ADAPTER.validate_python(
            {
                "kind": "email",
                "name": "mail",
                "host": "smtp.example.org",
                "from_address": "gw@example.org",
                "password": "${P}",
            }
        )
    with pytest.raises(ValidationError, match="kind"):
        ADAPTER.validate_python({"kind": "fax", "name": "f"})


def test_config_defaults_and_durations() -> None:
    config = ADAPTER.validate_python(
        {
            "kind": "wecom",
            "name": "wx",
            "key": "file:wecom.key",
            "rate": {"max": 10, "per": "30s", "hold": "2m"},
        }
    )
    assert isinstance(config, WeComConfig)
    assert config.url == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
    assert config.rate.limit().per_s == 30.0
    assert config.rate.limit().hold_s == 120.0
    ding = DingTalkConfig(kind="dingtalk", name="d", access_token="${T}")
    assert ding.url == "https://oapi.dingtalk.com/robot/send"
    assert (ding.rate.max, ding.rate.per, ding.rate.hold) == (20, 60.0, 600.0)
    schema = ADAPTER.json_schema()
    assert {"dingtalk", "wecom", "sms", "webhook", "email", "mqtt"} <= set(
        json.dumps(schema).split('"')
    )


def test_mqtt_channel_needs_the_broker_publish(resolve: SecretResolver) -> None:
    config = MqttChannelConfig(kind="mqtt", name="m", topic="t/{grade}")
    with pytest.raises(ValueError, match="publish"):
        build_channel(config, resolve)


def test_a_missing_secret_is_a_start_up_error(resolve: SecretResolver) -> None:
    config = SmsConfig(kind="sms", name="s", url="http://x/", template="T", token="${NOPE}")
    with pytest.raises(ValueError, match="NOPE is not set"):
        build_channel(config, resolve)


# -- DingTalk ------------------------------------------------------------------------------


def test_dingtalk_sign_matches_the_robots_own_check() -> None:
    now = time.time_ns() // 1_000_000
    for ts in range(now, now + 500):
        assert sign(SECRET, ts) == dingtalk_sign(SECRET, ts)


async def test_dingtalk_signed_markdown_with_mention(
    robot: DingTalkRobot, resolve: SecretResolver
) -> None:
    # A timestamp whose signature has characters URL encoding changes (+, /, =): encoded
    # twice, or not at all, the robot would answer "sign not match".
    now = time.time_ns() // 1_000_000
    ts = next(t for t in range(now, now + 10_000) if {"+", "/"} <= set(sign(SECRET, t)))
    channel = dingtalk(robot.url, resolve)
    channel._clock_ms = lambda: ts
    try:
        result = await channel.send(delivery())
    finally:
        await channel.close()
    assert result.ok, result.reason
    [posted] = robot.posted
    assert posted.query["sign"] == sign(SECRET, ts)  # what the robot decoded, once
    assert "%25" not in posted.raw_query
    assert "+" not in posted.raw_query
    body = posted.json
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "B1 配电室 门被强行打开"
    assert body["at"]["atMobiles"] == ["13800138000"]
    assert "@13800138000" in body["markdown"]["text"]  # without it nobody is @-ed
    assert body["msgUuid"] == "t1:zhang:duty"


async def test_dingtalk_refusals_are_judged_on_errcode(
    robot: DingTalkRobot, resolve: SecretResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = dingtalk(robot.url, resolve)
    try:
        robot.script({"errcode": -1, "errmsg": "系统繁忙"})
        busy = await channel.send(delivery())
        assert (busy.ok, busy.retry, busy.throttled) == (False, True, False)
        robot.script({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        fast = await channel.send(delivery())
        assert (fast.ok, fast.throttled) == (False, True)
        robot.script({"errcode": "0", "errmsg": "ok"})  # the doc's example: a string
        assert (await channel.send(delivery())).ok
        robot.fail(502, times=1)
        bad_gateway = await channel.send(delivery())
        assert (bad_gateway.ok, bad_gateway.retry) == (False, True)
        assert "HTTP 502" in bad_gateway.reason
    finally:
        await channel.close()

    # Wrong signing secret, stale timestamp, unknown token: permanent, with the vendor's words.
    monkeypatch.setenv("DT_SECRET", "SECwrong")
    wrong = dingtalk(robot.url, resolve)
    stale = dingtalk(robot.url, resolve)
    stale._clock_ms = lambda: time.time_ns() // 1_000_000 - 2 * 3600_000
    monkeypatch.setenv("DT_TOKEN", "gone")
    unknown = dingtalk(robot.url, resolve)
    try:
        for channel, words in (
            (wrong, "sign not match"),
            (stale, "invalid timestamp"),
            (unknown, "token is not exist"),
        ):
            result = await channel.send(delivery())
            assert (result.ok, result.retry) == (False, False)
            assert words in result.reason
    finally:
        for channel in (wrong, stale, unknown):
            await channel.close()
    assert not robot.posted


async def test_dingtalk_connection_refused_is_retryable(
    robot: DingTalkRobot, resolve: SecretResolver
) -> None:
    channel = dingtalk(robot.url, resolve)
    try:
        robot.down()
        result = await channel.send(delivery())
        assert (result.ok, result.retry) == (False, True)
        robot.up()
        assert (await channel.send(delivery())).ok
    finally:
        await channel.close()


async def test_dingtalk_keyword_and_byte_bound(resolve: SecretResolver) -> None:
    with DingTalkRobot(token=TOKEN, secret=SECRET, keywords=("告警",)) as robot:
        channel = dingtalk(robot.url, resolve, keyword="告警", max_bytes=1000)
        try:
            result = await channel.send(delivery(text="门" * 2000))  # 6000 bytes
        finally:
            await channel.close()
        assert result.ok, result.reason
        text = robot.posted[0].json["markdown"]["text"]
        assert text.startswith("【告警】")
        assert len(text.encode()) <= 1000
        assert text.endswith("@13800138000")  # the mention survives the cut


# -- WeCom ---------------------------------------------------------------------------------


async def test_wecom_text_mentions_by_mobile_within_2048_bytes(resolve: SecretResolver) -> None:
    with WeComRobot(key="wk-123") as wecom:
        config = WeComConfig(kind="wecom", name="wx", url=wecom.url, key="${WECOM_KEY}")
        channel = build_channel(config, resolve)
        try:
            # 1000 Chinese characters are 3000 bytes: refused with 40058 unless cut.
            result = await channel.send(delivery(text="温" * 1000))
        finally:
            await channel.close()
        assert result.ok, result.reason
        [accepted] = wecom.accepted
        text = accepted.json["text"]
        assert text["mentioned_mobile_list"] == ["13800138000"]
        assert len(text["content"].encode()) <= 2048
        assert text["content"].startswith("B1 配电室 门被强行打开\n")


async def test_wecom_markdown_and_errors(resolve: SecretResolver) -> None:
    with WeComRobot(key="wk-123") as wecom:
        config = WeComConfig(
            kind="wecom", name="wx", url=wecom.url, key="${WECOM_KEY}", msgtype="markdown"
        )
        channel = build_channel(config, resolve)
        lin = Recipient(name="林", mobile="13900139000", wecom_user="LinFang")
        try:
            ok = await channel.send(delivery(recipient=lin, markdown="**门** 被打开" * 600))
            assert ok.ok, ok.reason
            content = wecom.accepted[0].json["markdown"]["content"]
            assert len(content.encode()) <= 4096
            assert content.endswith("<@LinFang>")

            wecom.script({"errcode": 45009, "errmsg": "api freq out of limit"})
            assert (await channel.send(delivery())).throttled
            wecom.script({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"})
            too_long = await channel.send(delivery())
            assert (too_long.retry, "too long" in too_long.reason) == (False, True)
        finally:
            await channel.close()
        wrong = WeComConfig(kind="wecom", name="wx", url=wecom.url, key="file:hook.secret")
        channel = build_channel(wrong, resolve)
        try:
            refused = await channel.send(delivery())
        finally:
            await channel.close()
        assert (refused.ok, refused.retry) == (False, False)
        assert "93000" in refused.reason
        assert "invalid webhook url" in refused.reason
        assert "hint" not in refused.reason


async def test_wecom_rate_limit_answer_is_throttled(resolve: SecretResolver) -> None:
    with WeComRobot(key="wk-123", limit=2, window_s=60.0) as wecom:
        config = WeComConfig(kind="wecom", name="wx", url=wecom.url, key="${WECOM_KEY}")
        channel = build_channel(config, resolve)
        try:
            results = [await channel.send(delivery(key=f"k{i}")) for i in range(3)]
        finally:
            await channel.close()
        assert [r.ok for r in results] == [True, True, False]
        assert results[2].throttled
        assert "45009" in results[2].reason


# -- SMS -----------------------------------------------------------------------------------


async def test_sms_gateway_template_params_and_success_field(resolve: SecretResolver) -> None:
    with SmsGateway(token="sms-token") as gateway:
        config = ADAPTER.validate_python(
            {
                "kind": "sms",
                "name": "sms",
                "url": gateway.url,
                "token": "${SMS_TOKEN}",
                "template": "SMS_20261201",
                "fields": {"sign_name": "市行政中心"},
                "success": {
                    "field": "code",
                    "value": "OK",
                    "throttled": ["isv.BUSINESS_LIMIT_CONTROL"],
                    "permanent": ["isv.MOBILE_NUMBER_ILLEGAL"],
                },
            }
        )
        channel = build_channel(config, resolve)
        assert isinstance(channel, SmsChannel)
        params = {"place": "B1 配电室", "event": "门被强行打开"}
        try:
            assert (await channel.send(delivery(params=params))).ok
            [request] = gateway.accepted
            assert request.headers["Authorization"] == "Bearer sms-token"
            assert request.json == {
                "sign_name": "市行政中心",
                "template": "SMS_20261201",
                "params": params,
                "phones": ["13800138000"],
                "key": "t1:zhang:duty",
            }
            gateway.script({"code": "isv.BUSINESS_LIMIT_CONTROL"})
            assert (await channel.send(delivery())).throttled
            gateway.script({"code": "isv.MOBILE_NUMBER_ILLEGAL"})
            assert not (await channel.send(delivery())).retry
            gateway.script({"code": "isp.SYSTEM_ERROR"})
            unknown = await channel.send(delivery())
            assert (unknown.ok, unknown.retry) == (False, True)
            assert "isp.SYSTEM_ERROR" in unknown.reason
            nobody = await channel.send(delivery(recipient=Recipient(name="值班室")))
            assert (nobody.ok, nobody.retry) == (False, False)
        finally:
            await channel.close()


async def test_sms_wrong_token_is_permanent(resolve: SecretResolver) -> None:
    with SmsGateway(token="another") as gateway:
        config = SmsConfig(
            kind="sms", name="s", url=gateway.url, template="T", token="${SMS_TOKEN}"
        )
        channel = build_channel(config, resolve)
        try:
            result = await channel.send(delivery())
        finally:
            await channel.close()
        assert (result.ok, result.retry) == (False, False)
        assert "HTTP 401" in result.reason


# -- webhook -------------------------------------------------------------------------------


async def test_webhook_signs_the_body_and_sends_secret_headers(resolve: SecretResolver) -> None:
    with Webhook(hmac_secret="hook-hmac-secret") as hook:
        config = ADAPTER.validate_python(
            {
                "kind": "webhook",
                "name": "tickets",
                "url": hook.url,
                "headers": {"X-Site": "city-hall"},
                "secret_headers": {"Authorization": "${HOOK_TOKEN}"},
                "hmac_secret": "file:hook.secret",
            }
        )
        channel = build_channel(config, resolve)
        assert isinstance(channel, WebhookChannel)
        try:
            assert (await channel.send(delivery(grade="red"))).ok
        finally:
            await channel.close()
        [request] = hook.accepted
        assert request.headers["X-Site"] == "city-hall"
        assert request.headers["Authorization"] == "hook-bearer"
        assert request.headers["Idempotency-Key"] == "t1:zhang:duty"
        assert request.json["key"] == "t1:zhang:duty"
        assert request.json["grade"] == "red"
        assert request.json["recipient"]["mobile"] == "13800138000"
        assert request.json["title"] == "B1 配电室 门被强行打开"


async def test_webhook_status_codes(resolve: SecretResolver) -> None:
    with Webhook(hmac_secret="another secret") as hook:
        signed = WebhookConfig(
            kind="webhook", name="h", url=hook.url, hmac_secret="file:hook.secret"
        )
        channel = build_channel(signed, resolve)
        try:
            refused = await channel.send(delivery())
            assert (refused.ok, refused.retry) == (False, False)
            assert "401" in refused.reason
        finally:
            await channel.close()
        plain = build_channel(WebhookConfig(kind="webhook", name="h", url=hook.url), resolve)
        hook.hmac_secret = None
        try:
            hook.fail(503, times=1)
            assert (await plain.send(delivery())).retry
            hook.fail(429, times=1)
            assert (await plain.send(delivery())).throttled
            hook.down()
            down = await plain.send(delivery())
            assert (down.ok, down.retry) == (False, True)
            hook.up()
            assert (await plain.send(delivery())).ok
        finally:
            await plain.close()


# -- email ---------------------------------------------------------------------------------


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 OK"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"gateway",
        b"p@ss:/w#rd?%",
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, _Mailbox]]:
    mailbox = _Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        auth_require_tls=False,
        authenticator=_authenticator,
    )
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


def email_channel(port: int, resolve: SecretResolver, **extra: Any) -> EmailChannel:
    config = EmailConfig(
        **{
            "kind": "email",
            "name": "mail",
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "username": "gateway",
            "password": "${SMTP_PASSWORD}",
            "from_address": "guanjia@example.org",
            "from_name": "管家值班",
            "to": ["duty@example.org"],
            "timeout": 5.0,
            **extra,
        }
    )
    channel = build_channel(config, resolve)
    assert isinstance(channel, EmailChannel)
    return channel


async def test_email_through_smtp(
    smtp: tuple[Controller, _Mailbox], resolve: SecretResolver
) -> None:
    controller, mailbox = smtp
    channel = email_channel(controller.port, resolve)
    ok = await channel.send(delivery())
    assert ok.ok, ok.reason
    no_email = await channel.send(delivery(key="k2", recipient=Recipient(name="值班室")))
    assert no_email.ok, no_email.reason
    (sender, to, message), (_, to2, _) = mailbox.messages
    assert sender == "guanjia@example.org"
    assert to == ["zhang@example.org"]
    assert to2 == ["duty@example.org"]  # the channel's mailbox for who has no email
    assert message["Subject"] == "B1 配电室 门被强行打开"
    assert message["X-Guanjia-Key"] == "t1:zhang:duty"
    body = message.get_body(("plain",))
    assert body is not None
    assert "door forced open" in body.get_content()


async def test_email_failures_are_reported(
    smtp: tuple[Controller, _Mailbox], resolve: SecretResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, mailbox = smtp
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    # (aiosmtpd keeps a refused AUTH LOGIN waiting: a short timeout keeps the test short)
    wrong = await email_channel(controller.port, resolve, timeout=1.0).send(delivery())
    assert not wrong.ok
    assert wrong.reason
    port = free_port()  # nobody listens there
    down = await email_channel(port, resolve).send(delivery())
    assert (down.ok, down.retry) == (False, True)
    nowhere = await email_channel(controller.port, resolve, to=[]).send(
        delivery(recipient=Recipient(name="值班室"))
    )
    assert (nowhere.ok, nowhere.retry) == (False, False)
    assert not mailbox.messages


# -- MQTT ----------------------------------------------------------------------------------


async def test_mqtt_channel_publishes_through_the_given_publish(broker: MosquittoServer) -> None:
    subscriber = Client(broker.port)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        subscriber.subscribe("guanjia/t1/notify/#")
        subscriber.publish("guanjia/t1/notify/probe", "1")  # the subscription is in place
        assert await subscriber.wait("guanjia/t1/notify/probe")

        def publish(topic: str, payload: str, qos: int, retain: bool) -> None:
            publisher.publish(topic, payload, qos=qos, retain=retain)

        config = MqttChannelConfig(
            kind="mqtt", name="pager", topic="guanjia/t1/notify/{grade}/{recipient}"
        )
        channel = build_channel(config, lambda ref: ref, publish=publish)
        assert isinstance(channel, MqttChannel)
        assert (await channel.send(delivery(grade="red"))).ok
        [payload] = await subscriber.wait("guanjia/t1/notify/red/张伟")
        data = json.loads(payload)
        assert data["key"] == "t1:zhang:duty"
        assert data["text"].startswith("B1 配电室")

        def broken(topic: str, payload: str, qos: int, retain: bool) -> None:
            raise ConnectionError("not connected")

        failing = MqttChannel(config, broken)
        result = await failing.send(delivery())
        assert (result.ok, result.retry) == (False, True)
        assert "not connected" in result.reason
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        subscriber.close()
