"""The console's pages for people: login, alarms, one alarm, history, devices, system."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Sequence
from urllib.parse import urlencode

from aiohttp import web

from core.config_types import parse_duration
from gateway.console import pages
from gateway.console.config import ConsoleUser, Role
from gateway.console.desk import DeskAlarm, HistoryQuery
from gateway.console.i18n import GRADE_NAMES, WHAT_NAMES, Lang, duration, tr
from gateway.console.passwords import DUMMY_HASH, verify_password
from gateway.console.sessions import Session
from gateway.console.state import (
    CAN_ACK,
    CAN_ADMIN,
    CAN_SHELVE,
    COUNTERS,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    ConsoleState,
    desk_outcome,
)

MESSAGES = ("acked", "already acknowledged", "shelved", "unknown alarm")
MAX_WAITING_LOGINS = 32  # password checks queued at once; more are answered "busy"


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


class Abort(Exception):
    """Ends a request early with this response (a redirect to login, a refusal)."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class PageHandlers:
    def __init__(self, state: ConsoleState) -> None:
        self.s = state
        # Password checks take tens of ms and 32 MiB each: two at a time, in threads.
        self._verifying = asyncio.Semaphore(2)
        self._waiting = 0
        # The alarm list of 500 alarms is the page people and the bench hit hardest: its
        # cards are rendered once per second and language/permission, then shared by every
        # session (each session's CSRF token is put in afterwards).
        self._placeholder = secrets.token_hex(16)
        self._listing: dict[tuple[str, bool], tuple[object, int, list[bytes]]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/login", self.login_form),
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/alarms", self.alarms),
            web.get("/alarms/{id}", self.alarm),
            web.post("/alarms/{id}/ack", self.ack),
            web.post("/alarms/{id}/shelve", self.shelve),
            web.get("/history", self.history),
            web.get("/devices", self.devices),
            web.get("/rounds", self.rounds),
            web.get("/system", self.system),
        ]

    # -- who is asking ----------------------------------------------------------------------

    def _who(
        self, request: web.Request, roles: frozenset[Role] = CAN_ACK, action: str = ""
    ) -> tuple[Session, ConsoleUser]:
        """The session and its user, or the redirect/refusal that ends the request (an
        `action` refused for the role goes on the audit trail)."""
        session = self.s.session(request)
        user = self.s.user(session)
        if session is None or user is None:
            expired = "?expired=1" if request.cookies.get(SESSION_COOKIE) else ""
            raise Abort(see_other(f"/login{expired}"))
        if user.role not in roles:
            self.s.counts["forbidden"] += 1
            if action:
                alarm_id = request.match_info.get("id", "")
                self.s.event(request, action, "forbidden", f"console:{user.id}", alarm_id=alarm_id)
            raise Abort(self._refusal(request, session, "forbidden_role", 403))
        self.s.counts["pages"] += 1
        return session, user

    def _refusal(
        self, request: web.Request, session: Session | None, key: str, status: int
    ) -> web.Response:
        view = self.s.view(request, session)
        lang = view.lang
        body = f'<h1>{tr(lang, key)}</h1><p><a href="/alarms">{tr(lang, "nav_alarms")}</a></p>'
        return html(pages.layout(view, tr(lang, key), body), status)

    async def _posted(
        self, request: web.Request, session: Session, action: str = ""
    ) -> dict[str, str]:
        """The form, once its CSRF token matched the session's; a 403 page otherwise (an
        `action` refused so goes on the audit trail: a forged form may be an attack)."""
        form = await request.post()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not session.csrf_ok(sent):
            self.s.counts["csrf_refused"] += 1
            if action:
                who = f"console:{session.user_id}"
                alarm_id = request.match_info.get("id", "")
                self.s.event(
                    request, action, "refused", who, alarm_id=alarm_id, detail="csrf token"
                )
            raise Abort(self._refusal(request, session, "csrf", 403))
        return {k: v for k, v in form.items() if isinstance(v, str)}

    # -- login ------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return see_other("/alarms")

    def _login_page(
        self, request: web.Request, message: str | None, status: int = 200, user_id: str = ""
    ) -> web.Response:
        token = secrets.token_urlsafe(24)
        view = self.s.view(request)
        response = html(pages.login_page(view, token, message, user_id), status)
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self.s.tls,
            path="/login",
            max_age=3600,
        )
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self.s.user(self.s.session(request)) is not None:
            return see_other("/alarms")
        lang = self.s.lang(request)
        message = tr(lang, "session_over") if request.query.get("expired") else None
        return self._login_page(request, message)

    async def login(self, request: web.Request) -> web.StreamResponse:
        s = self.s
        lang = s.lang(request)
        form = await request.post()
        user_id = str(form.get("user", ""))[:64].strip()
        password = str(form.get("password", ""))[:256]
        # What is stored of a name that is nobody's: a password typed into the name field
        # must not reach the database.
        who = user_id if user_id in s.users else "(unknown name)"
        sent, expected = str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
            s.counts["csrf_refused"] += 1
            s.event(request, "login", "refused", who, detail="login form token")
            return self._login_page(request, tr(lang, "login_expired"), 403, user_id)
        keys = [("user", user_id.lower()), ("addr", request.remote or "unknown")]
        now = s.clock()
        wait = s.throttle.wait(keys, now)
        if wait > 0:
            s.counts["login_throttled"] += 1
            s.event(request, "login", "locked", who, detail=f"{math.ceil(wait)} s left")
            text = tr(lang, "login_throttled", wait=duration(math.ceil(wait), lang))
            return self._login_page(request, text, 429, user_id)
        if self._waiting >= MAX_WAITING_LOGINS:
            s.counts["login_busy"] += 1
            s.event(request, "login", "busy", who)
            return self._login_page(request, tr(lang, "login_busy"), 503, user_id)
        # Counted as a failure before the check: parallel guesses meet the counter at once
        # instead of all passing while the first ones are still being checked.
        s.throttle.failed(keys, now)
        user = s.users.get(user_id)
        self._waiting += 1
        try:
            async with self._verifying:
                ok = await asyncio.to_thread(
                    verify_password, password, user.password_hash if user else DUMMY_HASH
                )
        finally:
            self._waiting -= 1
        if user is None or not ok:
            s.counts["login_failures"] += 1
            why = "unknown user" if user is None else "wrong password"
            s.event(request, "login", "failed", who, detail=why)
            return self._login_page(request, tr(lang, "login_failed"), 401, user_id)
        s.throttle.succeeded(keys)
        s.counts["logins"] += 1
        s.event(request, "login", "ok", f"console:{user.id}")
        s.sessions.sweep(now)
        session = s.sessions.create(user.id, now)
        response = see_other("/alarms")
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            httponly=True,
            samesite="Strict",
            secure=s.tls,
            path="/",
            max_age=int(s.config.session_lifetime),
        )
        response.del_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session, user = self._who(request)
        await self._posted(request, session)
        self.s.sessions.drop(session.token)
        self.s.event(request, "logout", "ok", f"console:{user.id}")
        response = see_other("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # -- alarms -----------------------------------------------------------------------------

    def _cards(self, view: pages.View, alarms: Sequence[DeskAlarm], can_ack: bool) -> list[bytes]:
        """The alarm cards as UTF-8, cut where each session's CSRF token goes."""
        key = (view.lang, can_ack)
        second = int(view.now)
        cached = self._listing.get(key)
        if cached is not None and cached[0] is alarms and cached[1] == second:
            return cached[2]
        text = pages.alarm_list(view, alarms, can_ack, self._placeholder)
        parts = text.encode().split(self._placeholder.encode())
        self._listing[key] = (alarms, second, parts)
        return parts

    async def alarms(self, request: web.Request) -> web.StreamResponse:
        session, user = self._who(request)
        view = self.s.view(request, session)
        alarms = self.s.desk.open_alarms()
        cards = self._cards(view, alarms, user.role in CAN_ACK)
        message = self._message(view.lang, request.query.get("msg"))
        head, tail = pages.alarms_page(view, self._placeholder, len(alarms), message).split(
            self._placeholder
        )
        body = b"".join((head.encode(), session.csrf.encode().join(cards), tail.encode()))
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    def _message(self, lang: Lang, key: str | None) -> str | None:
        return tr(lang, f"msg_{key}") if key in MESSAGES else None

    async def alarm(self, request: web.Request) -> web.StreamResponse:
        session, user = self._who(request)
        view = self.s.view(request, session)
        message = self._message(view.lang, request.query.get("msg"))
        return await self._alarm_page(request, session, user, view, message)

    async def _alarm_page(
        self,
        request: web.Request,
        session: Session,
        user: ConsoleUser,
        view: pages.View,
        message: str | None,
        error: bool = False,
        status: int = 200,
    ) -> web.Response:
        d = self.s.desk.alarm(request.match_info["id"])
        if d is None:
            return self._refusal(request, session, "msg_unknown alarm", 404)
        history = await self.s.desk.history(HistoryQuery(alarm_id=d.alarm.id, limit=50))
        page = pages.alarm_page(
            view,
            d,
            history,
            can_ack=user.role in CAN_ACK,
            can_shelve=user.role in CAN_SHELVE,
            message=message,
            error=error,
        )
        return html(page, status)

    async def ack(self, request: web.Request) -> web.StreamResponse:
        session, user = self._who(request, CAN_ACK, "ack")
        form = await self._posted(request, session, "ack")
        alarm_id = request.match_info["id"]
        who = f"console:{user.id}"
        outcome = self.s.desk.ack(alarm_id, who, form.get("note", ""))
        if outcome == "acked":
            self.s.counts["acks"] += 1
        self.s.event(request, "ack", desk_outcome(outcome), who, alarm_id=alarm_id)
        query = urlencode({"msg": outcome})
        if form.get("back") == "alarm":
            return see_other(f"/alarms/{alarm_id}?{query}")
        return see_other(f"/alarms?{query}")

    async def shelve(self, request: web.Request) -> web.StreamResponse:
        session, user = self._who(request, CAN_SHELVE, "shelve")
        form = await self._posted(request, session, "shelve")
        alarm_id = request.match_info["id"]
        view = self.s.view(request, session)
        who = f"console:{user.id}"
        try:
            seconds = parse_duration(form.get("for", ""))
        except ValueError as exc:
            outcome = f"refused: {exc}"
        else:
            outcome = self.s.desk.shelve(alarm_id, who, seconds, form.get("reason", ""))
        detail = f"for {form.get('for', '')}: {form.get('reason', '')}"
        if outcome.startswith("refused: "):
            detail = outcome.removeprefix("refused: ")
        self.s.event(
            request, "shelve", desk_outcome(outcome), who, alarm_id=alarm_id, detail=detail
        )
        if outcome == "shelved":
            self.s.counts["shelves"] += 1
            return see_other(f"/alarms/{alarm_id}?{urlencode({'msg': outcome})}")
        if outcome == "unknown alarm":
            return await self._alarm_page(request, session, user, view, None, status=404)
        why = outcome.removeprefix("refused: ")
        text = tr(view.lang, "refused", why=why)
        return await self._alarm_page(request, session, user, view, text, error=True, status=400)

    # -- history, devices, system -------------------------------------------------------------

    async def history(self, request: web.Request) -> web.StreamResponse:
        session, _user = self._who(request)
        view = self.s.view(request, session)
        query = history_query(request)
        page = await self.s.desk.history(query)
        texts = {}
        for entry in page.entries:
            if entry.alarm_id not in texts:
                known = self.s.desk.alarm(entry.alarm_id)
                if known is not None:
                    texts[entry.alarm_id] = known
        return html(pages.history_page(view, page, query, texts))

    async def rounds(self, request: web.Request) -> web.StreamResponse:
        session, _user = self._who(request)
        view = self.s.view(request, session)
        board = self.s.rounds
        if board is None:
            return html(pages.rounds_page(view, None))
        names = list(dict.fromkeys(r.name for r in board.routes.values()))  # as configured
        return html(pages.rounds_page(view, board.days(view.now), board.since, names))

    async def devices(self, request: web.Request) -> web.StreamResponse:
        session, _user = self._who(request)
        return html(pages.devices_page(self.s.view(request, session), self.s.desk.devices()))

    async def system(self, request: web.Request) -> web.StreamResponse:
        session, _user = self._who(request, CAN_ADMIN)
        view = self.s.view(request, session)
        stats = stats_of(self.s)
        clients = list(self.s.clients.values())
        return html(pages.system_page(view, stats, list(self.s.users.values()), clients))


def history_query(request: web.Request, default_limit: int = 50) -> HistoryQuery:
    """Filters from the query string; unknown values are ignored rather than failing a page."""
    q = request.query
    grade = q.get("grade") or None
    what = q.get("what") or None
    before = q.get("before", "")
    limit = q.get("limit", "")
    return HistoryQuery(
        alarm_id=(q.get("alarm") or "").strip()[:128] or None,
        grade=grade if grade in GRADE_NAMES else None,
        what=what if what in WHAT_NAMES else None,
        before=int(before) if before.isascii() and before.isdigit() else None,
        limit=int(limit) if limit.isascii() and limit.isdigit() else default_limit,
    )


def stats_of(state: ConsoleState) -> dict[str, int]:
    now = state.clock()
    state.sessions.sweep(now)
    out = {name: state.counts[name] for name in COUNTERS}
    out["sessions"] = len(state.sessions)
    out["sessions_expired"] = state.sessions.expired
    out["sessions_evicted"] = state.sessions.evicted
    out["login_counters_evicted"] = state.throttle.evicted
    out["logins_locked"] = state.throttle.locked(now)
    return out
