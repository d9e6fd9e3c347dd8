"""What every channel is to the delivery worker, and the pieces the HTTP channels share."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit

# aiohttp when a channel sends (HttpClient): the site file's model imports this package, and
# a gateway without notification does not carry an HTTP client (bench/bench_fleet.py).
if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

SecretResolver = Callable[[str], str]  # `${ENV}` / `file:...` reference -> the secret

ELLIPSIS = "…"


class Channel(Protocol):
    """One configured destination. `send` never raises for a failed delivery: it answers."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def rate(self) -> RateLimit: ...

    async def send(self, delivery: Delivery) -> SendResult: ...

    async def close(self) -> None: ...


def cut_utf8(text: str, max_bytes: int) -> str:
    """`text` within `max_bytes` of UTF-8, cut at a character boundary, marked with `…`."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    room = max(0, max_bytes - len(ELLIPSIS.encode("utf-8")))
    return data[:room].decode("utf-8", errors="ignore") + ELLIPSIS


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """The notification as one JSON object: the webhook body, the MQTT payload."""
    r, m = delivery.recipient, delivery.message
    return {
        "key": delivery.key,
        "channel": delivery.channel,
        "grade": delivery.grade,
        "alarm_id": delivery.alarm_id,
        "created": delivery.created,
        "recipient": {
            "name": r.name,
            "mobile": r.mobile,
            "email": r.email,
            "dingtalk_user": r.dingtalk_user,
            "wecom_user": r.wecom_user,
        },
        "title": m.title,
        "text": m.text,
        "markdown": m.markdown,
        "params": dict(m.params),
    }


# One encoder: json.dumps with options builds a new one at every call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(body: Mapping[str, Any]) -> bytes:
    return _ENCODE(body).encode("utf-8")


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def snippet(self) -> str:
        return self.body[:200].decode("utf-8", errors="replace")


def judge_http(answer: HttpAnswer) -> SendResult | None:
    """A verdict from the HTTP status alone; None for 2xx (the body decides).

    408, 425, 429 and 5xx may pass: retry (429 also holds the channel). Any other 4xx means the
    request itself is wrong (URL, credentials, body): no retry will change that.
    """
    status = answer.status
    if 200 <= status < 300:
        return None
    reason = f"HTTP {status}: {answer.snippet()}"
    if status == 429:
        return SendResult(ok=False, reason=reason, throttled=True)
    if status in (408, 425) or status >= 500:
        return SendResult(ok=False, reason=reason)
    return SendResult(ok=False, reason=reason, retry=False)


class HttpClient:
    """One aiohttp session per channel, made on first use (it needs the running loop).

    Proxy variables from the environment are not used (aiohttp's default): the endpoints are
    the site's own or the vendors', reached as configured.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout_s = timeout
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self, url: str | URL, body: bytes, headers: Mapping[str, str]
    ) -> HttpAnswer | SendResult:
        """POST; the answer, or a retryable SendResult when no answer came."""
        import aiohttp

        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                return HttpAnswer(response.status, await response.read())
        except TimeoutError:
            return SendResult(ok=False, reason=f"no answer within {self._timeout_s} s")
        except aiohttp.ClientError as exc:
            return SendResult(ok=False, reason=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
