"""A generic JSON webhook: the notification as one JSON object, POSTed to any URL.

A thin aiohttp client of our own, not apprise's `json://`. Tried against a local server
(apprise 2.3.0): `json://127.0.0.1:<port>/path` does reach any host and port, sends `+Header`
query arguments as headers, and reports HTTP 500 and a refused connection as failures. It
still does not fit:
- apprise builds the body itself (`{"version", "title", "message", "attachments", "type"}`),
  so it cannot carry the delivery key, grade, alarm id or recipient, and an HMAC computed here
  is over bytes we do not control;
- its verdict is success or failure only: a 401 (wrong secret, never fixed by a retry) cannot
  be told from a 503, nor a 429 ("too fast") from either;
- it is a blocking `requests` call, needing a thread per send.

The body is gateway.notify.channels.base.delivery_json; headers: the configured ones, the
secret ones (resolved at start-up), `Idempotency-Key: <delivery key>`, and, with
`hmac_secret`, `<signature_header>: sha256=<hex HMAC-SHA256 of the exact body bytes>`.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.notify.channels.base import (
    JSON_HEADERS,
    HttpClient,
    SecretResolver,
    delivery_json,
    dumps,
    judge_http,
)
from gateway.notify.channels.config import WebhookConfig
from gateway.notify.delivery import Delivery, SendResult
from gateway.notify.ratelimit import RateLimit


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    kind = "webhook"

    def __init__(self, config: WebhookConfig, resolve: SecretResolver) -> None:
        self.name = config.name
        self.config = config
        self.rate: RateLimit = config.rate.limit()
        self._headers = {**JSON_HEADERS, **config.headers}
        self._headers.update({k: resolve(v) for k, v in config.secret_headers.items()})
        self._hmac = resolve(config.hmac_secret) if config.hmac_secret is not None else None
        self._http = HttpClient(config.timeout)

    async def send(self, delivery: Delivery) -> SendResult:
        body = dumps(delivery_json(delivery))
        headers = {**self._headers, "Idempotency-Key": delivery.key}
        if self._hmac is not None:
            headers[self.config.signature_header] = signature(self._hmac, body)
        answer = await self._http.post(self.config.url, body, headers)
        if isinstance(answer, SendResult):
            return answer
        return judge_http(answer) or SendResult(ok=True)

    async def close(self) -> None:
        await self._http.close()
