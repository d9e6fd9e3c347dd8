"""An authenticated HTTP webhook for demand-response events from provincial platforms.

Provincial load-management platforms expose their own APIs (DL/T 1867-2018 describes the
information exchange; each platform names its fields its own way), so the webhook takes a JSON
body and maps it by configuration: which field is the event id, the start and end, the offset,
the strategy (with the platform's codes mapped to ours), the zones, and which values of which
field cancel an event. Without a mapping the body is the gateway's own format, as on MQTT
(rules/inputs.py).

Authentication, one or both:
- `token`: `Authorization: Bearer <token>`;
- `hmac_secret`: `X-Timestamp` (epoch seconds or milliseconds, within `max_skew` of the
  gateway's clock) and `X-Signature`, the hex HMAC-SHA256 of "<timestamp>\\n<body>" under the
  secret: a captured request cannot be replayed later, a changed body does not verify.

Answers: 200 {"result": "accepted" | "cancelled" | "unknown"}; 422 {"result": "refused",
"reason"} (the rules refused it, or the body does not map); 400 for a body that is no JSON
object; 401 without valid credentials; 413 for a body over 64 KiB.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from core.text import shorten
from gateway.dr.config import WebhookConfig, WebhookMapping
from gateway.dr.contract import DrInput, DrSink
from rules.inputs import parse_dr_event
from rules.model import DemandResponseCancel, DemandResponseEvent

log = logging.getLogger("guanjia.dr.webhook")

MAX_BODY = 64 * 1024


def _at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


class EventMapper:
    """A platform's JSON body -> a rules input, by the mapping."""

    def __init__(self, mapping: WebhookMapping, tz: ZoneInfo) -> None:
        self.m = mapping
        self.tz = tz

    def parse(self, doc: Mapping[str, Any]) -> DrInput:
        m = self.m
        event_id = self._text(doc, m.id)
        if m.cancel is not None:
            status = _at(doc, m.cancel.field)
            if status is not None and str(status) in m.cancel.values:
                if not event_id:
                    raise ValueError(f"a cancel needs the event id ({m.id})")
                return DemandResponseCancel(event_id)
        start, end = self._time(doc, m.start), self._time(doc, m.end)
        offset = None
        if m.offset is not None and _at(doc, m.offset) is not None:
            raw = _at(doc, m.offset)
            try:
                offset = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{m.offset} must be a number of °C, got {raw!r}") from None
        strategy = None
        if m.strategy is not None:
            code = _at(doc, m.strategy.field)
            if code is not None:
                strategy = m.strategy.values.get(str(code))
                if strategy is None:
                    known = ", ".join(sorted(m.strategy.values))
                    raise ValueError(f"{m.strategy.field} {code!r} is none of {known}")
        zones: tuple[str, ...] = ()
        if m.zones is not None:
            raw_zones = _at(doc, m.zones)
            if isinstance(raw_zones, str):
                zones = (raw_zones,)
            elif isinstance(raw_zones, list):
                zones = tuple(str(z) for z in raw_zones)
        return DemandResponseEvent(event_id, start, end, offset, strategy, zones, "webhook")

    def _text(self, doc: Mapping[str, Any], path: str) -> str:
        value = _at(doc, path)
        if isinstance(value, dict | list):
            raise ValueError(f"{path} must be a string")
        return "" if value is None else str(value)

    def _time(self, doc: Mapping[str, Any], path: str) -> datetime:
        value = _at(doc, path)
        if value is None:
            raise ValueError(f"{path} missing")
        fmt = self.m.time_format
        try:
            if fmt in ("epoch_s", "epoch_ms"):
                seconds = float(value) / (1000.0 if fmt == "epoch_ms" else 1.0)
                return datetime.fromtimestamp(seconds, self.tz)
            text = str(value)
            moment = datetime.fromisoformat(text) if fmt == "iso" else datetime.strptime(text, fmt)
        except (TypeError, ValueError, OverflowError, OSError):
            raise ValueError(f"{path} {str(value)[:40]!r} is no time as {fmt}") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=self.tz)


class DrWebhook:
    """The webhook's aiohttp server; `start()` listens, `stop()` closes."""

    def __init__(
        self,
        config: WebhookConfig,
        sink: DrSink,
        resolve: Callable[[str], str],
        *,
        timezone: str = "Asia/Shanghai",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`resolve` turns the secret references into secrets (raises ValueError)."""
        self.config = config
        self.sink = sink
        self.clock = clock
        self.token = resolve(config.token) if config.token else None
        self.secret = resolve(config.hmac_secret).encode() if config.hmac_secret else None
        self.mapper = EventMapper(config.mapping, ZoneInfo(timezone)) if config.mapping else None
        self.counts: dict[str, int] = {
            "dr_webhook_requests": 0,
            "dr_webhook_accepted": 0,
            "dr_webhook_refused": 0,
            "dr_webhook_unauthorized": 0,
            "dr_webhook_bad": 0,
        }
        self._runner: web.AppRunner | None = None
        self.port = config.port

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(self.config.path, self._handle)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        log.info(
            "demand-response webhook on http://%s:%d%s",
            self.config.host,
            self.config.port,
            self.config.path,
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def health(self) -> dict[str, int]:
        return dict(self.counts)

    def authorized(self, request: web.Request, body: bytes) -> bool:
        if self.token is not None:
            given = request.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return True
        if self.secret is not None:
            stamp = request.headers.get("X-Timestamp", "")
            signature = request.headers.get("X-Signature", "")
            try:
                seconds = float(stamp)
            except ValueError:
                return False
            seconds = seconds / 1000.0 if seconds > 1e11 else seconds  # milliseconds
            if abs(self.clock() - seconds) > self.config.max_skew:
                return False
            mac = hmac.new(self.secret, stamp.encode() + b"\n" + body, hashlib.sha256)
            return hmac.compare_digest(mac.hexdigest(), signature.lower())
        return False

    async def _handle(self, request: web.Request) -> web.Response:
        self.counts["dr_webhook_requests"] += 1
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.counts["dr_webhook_bad"] += 1
            return _answer(413, "refused", f"body over {MAX_BODY} bytes")
        if not self.authorized(request, body):
            self.counts["dr_webhook_unauthorized"] += 1
            log.warning("demand-response webhook: request from %s refused: not authorized",
                        request.remote)  # fmt: skip
            return _answer(401, "refused", "not authorized")
        try:
            event = self._parse(body)
        except ValueError as exc:
            self.counts["dr_webhook_bad"] += 1
            return _answer(400 if isinstance(exc, _BadBody) else 422, "refused", str(exc))
        outcome = self.sink(event)
        if outcome.startswith("refused"):
            self.counts["dr_webhook_refused"] += 1
            return _answer(422, "refused", outcome.removeprefix("refused").lstrip(": "))
        self.counts["dr_webhook_accepted"] += 1
        return _answer(200, outcome, "")

    def _parse(self, body: bytes) -> DrInput:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise _BadBody(f"not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise _BadBody("expected a JSON object {...}")
        if self.mapper is None:
            return parse_dr_event(body, source="webhook")
        return self.mapper.parse(doc)


class _BadBody(ValueError):
    """A body that is no JSON object at all (400, where a body that does not map is 422)."""


def _answer(status: int, result: str, reason: str) -> web.Response:
    doc = {"result": result, **({"reason": shorten(reason, 300)} if reason else {})}
    return web.json_response(doc, status=status)
