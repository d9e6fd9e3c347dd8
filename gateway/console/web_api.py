"""The JSON API for programs (a chat bot, a building management system): bearer tokens, one per
client, each with its scopes. No cookies, so no CSRF: a browser never sends the token by itself."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from typing import Any

from aiohttp import web

from core.config_types import parse_duration
from gateway.alarm_store import HistoryEntry
from gateway.console.config import ApiClient, Scope
from gateway.console.desk import DeskAlarm, HistoryQuery
from gateway.console.state import ConsoleState, desk_outcome, token_digest
from gateway.console.web_pages import Abort, history_query

_PERSON = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_BODY = 4096


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: a value that is neither number nor text becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(_plain(data), ensure_ascii=False),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def alarm_json(d: DeskAlarm, now: float) -> dict[str, Any]:
    row = d.alarm.to_row()
    for internal in ("flap_clears", "clear_pending_since"):
        row.pop(internal, None)
    row.update(
        text_zh=d.text_zh,
        text_en=d.text_en,
        place=d.place,
        respond_by=d.respond_by,
        age_s=round(now - d.alarm.raised_at, 1),
    )
    return row


def entry_json(h: HistoryEntry) -> dict[str, Any]:
    return asdict(h)


class ApiHandlers:
    def __init__(self, state: ConsoleState) -> None:
        self.s = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/alarms", self.alarms),
            web.get("/api/alarms/{id}", self.alarm),
            web.post("/api/alarms/{id}/ack", self.ack),
            web.post("/api/alarms/{id}/shelve", self.shelve),
            web.get("/api/history", self.history),
            web.get("/api/devices", self.devices),
        ]

    def _client(self, request: web.Request, scope: Scope) -> ApiClient:
        """The client of the bearer token, with `scope`; else the refusal (of an ack or a
        shelving also on the audit trail)."""
        header = request.headers.get("Authorization", "")
        kind, _, token = header.partition(" ")
        client = self.s.clients.get(token_digest(token.strip())) if kind == "Bearer" else None
        action = "" if scope == "read" else scope
        alarm_id = request.match_info.get("id", "")
        if client is None:
            self.s.counts["api_refused"] += 1
            if action:
                self.s.event(
                    request,
                    action,
                    "forbidden",
                    "",
                    alarm_id=alarm_id,
                    via="api",
                    detail="no valid bearer token",
                )
            response = answer({"error": "a valid bearer token is required"}, 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="guanjia"'
            raise Abort(response)
        if scope not in client.scopes:
            self.s.counts["api_refused"] += 1
            if action:
                self.s.event(
                    request,
                    action,
                    "forbidden",
                    f"api:{client.name}",
                    alarm_id=alarm_id,
                    via="api",
                    detail=f"lacks the {scope} scope",
                )
            raise Abort(answer({"error": f"client {client.name} lacks the {scope} scope"}, 403))
        self.s.counts["api_requests"] += 1
        return client

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise Abort(answer({"error": f"body larger than {MAX_BODY} bytes"}, 413))
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise Abort(answer({"error": "the body is not JSON"}, 400)) from None
        if not isinstance(doc, dict):
            raise Abort(answer({"error": "the body is a JSON object"}, 400))
        return doc

    def _by(self, client: ApiClient, doc: dict[str, Any]) -> str:
        person = doc.get("by")
        if person is None:
            return f"api:{client.name}"
        if not isinstance(person, str) or not _PERSON.match(person):
            raise Abort(answer({"error": "by: letters, digits, . _ - (at most 64)"}, 400))
        return f"api:{client.name}:{person}"

    async def alarms(self, request: web.Request) -> web.StreamResponse:
        self._client(request, "read")
        now = self.s.clock()
        listed = [alarm_json(d, now) for d in self.s.desk.open_alarms()]
        return answer({"count": len(listed), "alarms": listed})

    async def alarm(self, request: web.Request) -> web.StreamResponse:
        self._client(request, "read")
        d = self.s.desk.alarm(request.match_info["id"])
        if d is None:
            return answer({"error": "unknown alarm"}, 404)
        page = await self.s.desk.history(HistoryQuery(alarm_id=d.alarm.id, limit=50))
        return answer(
            {
                "alarm": alarm_json(d, self.s.clock()),
                "history": [entry_json(h) for h in page.entries],
            }
        )

    async def history(self, request: web.Request) -> web.StreamResponse:
        self._client(request, "read")
        page = await self.s.desk.history(history_query(request, default_limit=100))
        return answer(
            {"entries": [entry_json(h) for h in page.entries], "next_before": page.next_before}
        )

    async def devices(self, request: web.Request) -> web.StreamResponse:
        self._client(request, "read")
        return answer({"devices": [asdict(s) for s in self.s.desk.devices()]})

    async def ack(self, request: web.Request) -> web.StreamResponse:
        client = self._client(request, "ack")
        alarm_id = request.match_info["id"]
        doc = await self._body(request)
        note = doc.get("note", "")
        if not isinstance(note, str):
            return answer({"error": "note: text"}, 400)
        by = self._by(client, doc)
        outcome = self.s.desk.ack(alarm_id, by, note)
        if outcome == "acked":
            self.s.counts["acks"] += 1
        self.s.event(request, "ack", desk_outcome(outcome), by, alarm_id=alarm_id, via="api")
        return answer({"result": outcome}, 404 if outcome == "unknown alarm" else 200)

    async def shelve(self, request: web.Request) -> web.StreamResponse:
        client = self._client(request, "shelve")
        alarm_id = request.match_info["id"]
        doc = await self._body(request)
        reason = doc.get("reason", "")
        by = self._by(client, doc)
        try:
            seconds = parse_duration(doc.get("for"))
        except ValueError as exc:
            outcome = f"refused: for: {exc}"
        else:
            if not isinstance(reason, str):
                outcome = "refused: reason: text"
            else:
                outcome = self.s.desk.shelve(alarm_id, by, seconds, reason)
        if outcome == "shelved":
            self.s.counts["shelves"] += 1
            detail = f"for {doc.get('for')}: {reason}"
        else:
            detail = outcome.removeprefix("refused: ")
        self.s.event(
            request,
            "shelve",
            desk_outcome(outcome),
            by,
            alarm_id=alarm_id,
            via="api",
            detail=detail,
        )
        status = {"shelved": 200, "unknown alarm": 404}.get(outcome, 400)
        return answer({"result": outcome}, status)
