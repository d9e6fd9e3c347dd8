"""WeCom (企业微信) group robot: a thin aiohttp client of our own.

Why not apprise's `wecombot://` (shared facts channels.md, section 3, read from apprise
2.3.0): its host is hard-coded and `parse_native_url` accepts only qyapi.weixin.qq.com (no proxy,
no local test endpoint); it never reads `errcode`, so a refused message (40058 too long) counts
as sent; it sends text only, without `mentioned_mobile_list`, so nobody is @-ed; and its
2048 limit counts characters, not the bytes WeCom counts (1000 Chinese characters are 3000
bytes, refused).

From the same facts (section 2): `POST <url>?key=<key>`, UTF-8 JSON; `text` (≤ 2048 bytes by
the doc, 5120 observed) with `mentioned_list` / `mentioned_mobile_list`, or `markdown`
(≤ 4096 bytes) that can only @ by user id written as `<@userid>` in the content. Texts are cut
to the configured byte bound here, so a long message arrives shortened instead of refused. The
robot has no idempotency key: a retry after a lost answer may post twice (at least once).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from yarl import URL

from gateway.notify.channels.base import (
    JSON_HEADERS,
    HttpAnswer,
    HttpClient,
    SecretResolver,
    cut_utf8,
    dumps,
    judge_http,
)
from gateway.notify.channels.config import WeComConfig
from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit

THROTTLED = frozenset({45009})
TOO_LONG = 40058
# 93000 bad or removed key; 40008/44004/47001 a body no retry will fix (type, empty, format).
PERMANENT = frozenset({93000, TOO_LONG, 40008, 44004, 47001})


def judge(answer: HttpAnswer) -> SendResult:
    verdict = judge_http(answer)
    if verdict is not None:
        return verdict
    data = answer.json()
    if not isinstance(data, dict) or "errcode" not in data:
        return SendResult(ok=False, reason=f"not a robot answer: {answer.snippet()}")
    try:
        code = int(data["errcode"])
    except (TypeError, ValueError):
        return SendResult(ok=False, reason=f"errcode {data['errcode']!r} is not a number")
    if code == 0:
        return SendResult(ok=True)
    message = str(data.get("errmsg", "")).split(", hint:", 1)[0]
    reason = f"errcode {code}: {message}"
    if code == TOO_LONG:
        return SendResult(ok=False, reason=f"too long ({reason})", retry=False)
    if code in THROTTLED:
        return SendResult(ok=False, reason=reason, throttled=True)
    if code in PERMANENT:
        return SendResult(ok=False, reason=reason, retry=False)
    return SendResult(ok=False, reason=reason)


class WeComChannel:
    kind = "wecom"

    def __init__(self, config: WeComConfig, resolve: SecretResolver) -> None:
        self.name = config.name
        self.config = config
        self.rate: RateLimit = config.rate.limit()
        self._url = URL(f"{config.url}?key={quote(resolve(config.key), safe='')}", encoded=True)
        self._http = HttpClient(config.timeout)

    def body(self, delivery: Delivery) -> dict[str, Any]:
        message, person = delivery.message, delivery.recipient
        if self.config.msgtype == "markdown":
            content = message.markdown or message.text
            if message.title and message.title not in content:
                content = f"**{message.title}**\n{content}"
            tail = f"\n<@{person.wecom_user}>" if person.wecom_user else ""
            content = cut_utf8(content, self.config.markdown_max_bytes - len(tail.encode())) + tail
            return {"msgtype": "markdown", "markdown": {"content": content}}
        content = message.text
        if message.title and not content.startswith(message.title):
            content = f"{message.title}\n{content}"
        text: dict[str, Any] = {"content": cut_utf8(content, self.config.text_max_bytes)}
        if person.wecom_user:
            text["mentioned_list"] = [person.wecom_user]
        if person.mobile:
            text["mentioned_mobile_list"] = [person.mobile]
        return {"msgtype": "text", "text": text}

    async def send(self, delivery: Delivery) -> SendResult:
        answer = await self._http.post(self._url, dumps(self.body(delivery)), JSON_HEADERS)
        if isinstance(answer, SendResult):
            return answer
        return judge(answer)

    async def close(self) -> None:
        await self._http.close()
