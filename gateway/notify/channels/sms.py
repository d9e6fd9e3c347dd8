"""SMS through the site's SMS gateway, a JSON webhook in front of the provider.

Providers (Aliyun, Tencent Cloud, a carrier's platform) require an approved template and
signature, so the gateway sends the template id and its variables, never free text:

    POST <url>
    {"template": "<id>", "params": {...Message.params}, "phones": ["138…"], "key": "<delivery key>",
     ...fixed `fields` from the configuration}

Success is HTTP 2xx, and, when configured, one field of the JSON answer equal to a value
(Aliyun answers `{"Code": "OK"}`); other values can be declared "too fast" or permanent.
The `key` lets a gateway that deduplicates drop a retried request; one that does not may send
a retried SMS twice (at least once).
"""

from __future__ import annotations

from typing import Any

from gateway.notify.channels.base import (
    JSON_HEADERS,
    HttpAnswer,
    HttpClient,
    SecretResolver,
    dumps,
    judge_http,
)
from gateway.notify.channels.config import SmsConfig, SuccessField
from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit


def field_at(data: Any, path: str) -> Any:
    """`data["a"]["b"]` for "a.b"; None where the path leads nowhere."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def judge(answer: HttpAnswer, success: SuccessField | None) -> SendResult:
    verdict = judge_http(answer)
    if verdict is not None or success is None:
        return verdict or SendResult(ok=True)
    value = field_at(answer.json(), success.field)
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if value is not None and text == success.value:
        return SendResult(ok=True)
    reason = f"{success.field} = {text!r}: {answer.snippet()}"
    if text in success.throttled:
        return SendResult(ok=False, reason=reason, throttled=True)
    if text in success.permanent:
        return SendResult(ok=False, reason=reason, retry=False)
    return SendResult(ok=False, reason=reason)


class SmsChannel:
    kind = "sms"

    def __init__(self, config: SmsConfig, resolve: SecretResolver) -> None:
        self.name = config.name
        self.config = config
        self.rate: RateLimit = config.rate.limit()
        self._headers = dict(JSON_HEADERS)
        if config.token is not None:
            token = resolve(config.token)
            bearer = config.token_header.lower() == "authorization"
            self._headers[config.token_header] = f"Bearer {token}" if bearer else token
        self._http = HttpClient(config.timeout)

    def body(self, delivery: Delivery) -> dict[str, Any]:
        return {
            **self.config.fields,
            "template": self.config.template,
            "params": dict(delivery.message.params),
            "phones": [delivery.recipient.mobile],
            "key": delivery.key,
        }

    async def send(self, delivery: Delivery) -> SendResult:
        if not delivery.recipient.mobile:
            return SendResult(
                ok=False, reason=f"{delivery.recipient.name} has no mobile number", retry=False
            )
        answer = await self._http.post(self.config.url, dumps(self.body(delivery)), self._headers)
        if isinstance(answer, SendResult):
            return answer
        return judge(answer, self.config.success)

    async def close(self) -> None:
        await self._http.close()
