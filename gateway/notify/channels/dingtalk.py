"""DingTalk custom robot (自定义机器人): a thin aiohttp client of our own.

Why not apprise's `dingtalk://` (shared facts channels.md, section 3, read from apprise 2.3.0):
its host is hard-coded (no base URL, so neither a proxy nor a local test endpoint can be aimed
at), it URL-encodes the signature twice (the real service then answers `sign not match`), it
never reads `errcode` (a refused message counts as sent, as the service answers HTTP 200 to
errors), and it puts mobiles in `at.atMobiles` without writing `@mobile` into the text, so
nobody is @-ed.

What this client does, from the same facts (section 1):
- `POST <url>?access_token=…[&timestamp=<ms>&sign=…]`, UTF-8 JSON; the sign is
  base64(HMAC-SHA256(key=secret, msg="<timestamp>\\n<secret>")), URL-encoded exactly once
  (the URL is handed to aiohttp as already encoded, so nothing encodes it again);
- markdown with `at.atMobiles` / `at.atUserIds`, and each `@<mobile>` written into the text,
  which is what makes the @ work;
- `msgUuid` = the delivery key: the service does not post a retried message twice;
- the verdict comes from `errcode`, never from the HTTP status alone.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable
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
from gateway.notify.channels.config import DingTalkConfig
from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit

THROTTLED = frozenset({130101, 410100})  # 130101 observed; 410100 in the doc's table
# 310000: keyword missing, bad timestamp, sign mismatch, IP not allowed (reason in errmsg).
# 3000xx/4001xx: no such token or robot, robot disabled, group disbanded, unsupported type.
# 43004/40035: our request is malformed; 4301xx: content refused as unsafe.
PERMANENT = frozenset(
    {310000, 300001, 300005, 400101, 400102, 400106, 400013, 400105, 43004, 40035}
    | set(range(430101, 430105))
)


# The signature is base64: of its characters only these three need URL-encoding.
_URL_ENCODE_B64 = str.maketrans({"+": "%2B", "/": "%2F", "=": "%3D"})


def sign(secret: str, timestamp_ms: int) -> str:
    """The 加签 signature, base64, not yet URL-encoded."""
    key = secret.encode("utf-8")
    mac = hmac.digest(key, b"%d\n%b" % (timestamp_ms, key), "sha256")
    return base64.b64encode(mac).decode("ascii")


def judge(answer: HttpAnswer) -> SendResult:
    verdict = judge_http(answer)
    if verdict is not None:
        return verdict
    data = answer.json()
    if not isinstance(data, dict) or "errcode" not in data:
        return SendResult(ok=False, reason=f"not a robot answer: {answer.snippet()}")
    try:
        code = int(data["errcode"])  # the doc's example has "0" as a string
    except (TypeError, ValueError):
        return SendResult(ok=False, reason=f"errcode {data['errcode']!r} is not a number")
    if code == 0:
        return SendResult(ok=True)
    reason = f"errcode {code}: {data.get('errmsg', '')}"
    if code in THROTTLED:
        return SendResult(ok=False, reason=reason, throttled=True)
    if code in PERMANENT:
        return SendResult(ok=False, reason=reason, retry=False)
    return SendResult(ok=False, reason=reason)  # -1 system busy, and codes not documented


class DingTalkChannel:
    kind = "dingtalk"

    def __init__(
        self,
        config: DingTalkConfig,
        resolve: SecretResolver,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.name = config.name
        self.config = config
        self.rate: RateLimit = config.rate.limit()
        self._token = resolve(config.access_token)
        self._secret = resolve(config.secret) if config.secret is not None else None
        self._clock_ms = clock_ms
        self._http = HttpClient(config.timeout)
        self._base = f"{config.url}?access_token={quote(self._token, safe='')}"

    def url(self) -> URL:
        """The robot's URL, signed now when a secret is set. Handed to aiohttp as already
        encoded, so nothing encodes the signature twice."""
        if self._secret is None:
            return URL(self._base, encoded=True)
        ts = self._clock_ms()
        signature = sign(self._secret, ts).translate(_URL_ENCODE_B64)
        return URL(f"{self._base}&timestamp={ts}&sign={signature}", encoded=True)

    def body(self, delivery: Delivery) -> dict[str, Any]:
        message, person = delivery.message, delivery.recipient
        title = message.title or message.text.split("\n", 1)[0]
        keyword = self.config.keyword
        text = message.markdown or message.text
        if title not in text:  # the title shows in the chat list only, not in the message
            text = f"#### {title}\n\n{text}"
        if keyword and keyword not in text:
            text = f"【{keyword}】{text}"  # a robot with keywords refuses texts without one
        mentions = [f"@{m}" for m in (person.mobile, person.dingtalk_user) if m]
        tail = "".join(f" {m}" for m in mentions if m not in text)
        text = cut_utf8(text, self.config.max_bytes - len(tail.encode())) + tail
        at: dict[str, Any] = {"isAtAll": False}
        if person.mobile:
            at["atMobiles"] = [person.mobile]
        if person.dingtalk_user:
            at["atUserIds"] = [person.dingtalk_user]
        return {
            "msgtype": "markdown",
            "markdown": {"title": cut_utf8(title, 200), "text": text},
            "at": at,
            "msgUuid": delivery.key,
        }

    async def send(self, delivery: Delivery) -> SendResult:
        answer = await self._http.post(self.url(), dumps(self.body(delivery)), JSON_HEADERS)
        if isinstance(answer, SendResult):
            return answer
        return judge(answer)

    async def close(self) -> None:
        await self._http.close()
