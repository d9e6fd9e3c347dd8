"""What the console's handlers share: the desk, the people, sessions, limits, figures."""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.console.config import ApiClient, ConsoleConfig, ConsoleUser, Role
from gateway.console.desk import AlarmDesk
from gateway.console.i18n import Lang
from gateway.console.links import LinkSigner
from gateway.console.pages import View
from gateway.console.rounds import RoundsBoard
from gateway.console.sessions import Session, SessionStore
from gateway.console.throttle import LoginThrottle
from gateway.messages import ConsoleEvent

SESSION_COOKIE = "gj_session"
LOGIN_COOKIE = "gj_login"  # the login form's own CSRF token, before there is a session
LANG_COOKIE = "gj_lang"

CAN_ACK: frozenset[Role] = frozenset({"duty", "leader", "admin"})
CAN_SHELVE: frozenset[Role] = frozenset({"leader", "admin"})
CAN_ADMIN: frozenset[Role] = frozenset({"admin"})

# Figures every console reports, zero until something happens.
COUNTERS = (
    "logins",
    "login_failures",
    "login_throttled",
    "login_busy",
    "csrf_refused",
    "forbidden",
    "pages",
    "api_requests",
    "api_refused",
    "acks",
    "shelves",
    "link_acks",
    "links_refused",
    "events",
)

# What a desk's answer means for the audit trail (the `outcome` tag: a few words only).
DESK_OUTCOMES = {
    "acked": "ok",
    "shelved": "ok",
    "already acknowledged": "already",
    "unknown alarm": "unknown",
}


def desk_outcome(answer: str) -> str:
    return DESK_OUTCOMES.get(answer, "refused")


def _no_publish(_event: ConsoleEvent) -> None:
    pass


def token_digest(token: str) -> bytes:
    """API tokens are looked up by digest: a dict lookup by the token itself could leak
    through timing how much of a guess was right."""
    return hashlib.sha256(token.encode()).digest()


@dataclass
class ConsoleState:
    config: ConsoleConfig
    desk: AlarmDesk
    tz: ZoneInfo
    clock: Callable[[], float] = time.time
    users: dict[str, ConsoleUser] = field(default_factory=dict)
    clients: dict[bytes, ApiClient] = field(default_factory=dict)  # by token digest
    signer: LinkSigner | None = None
    sessions: SessionStore = field(default_factory=lambda: SessionStore(43200.0, 1800.0))
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    tls: bool = False
    rounds: RoundsBoard | None = None
    # Where the console's events go: the gateway's bus, so the InfluxDB sink stores them.
    publish: Callable[[ConsoleEvent], None] = _no_publish
    _last_event_ns: int = 0

    def event(
        self,
        request: web.Request,
        action: str,
        outcome: str,
        who: str,
        *,
        alarm_id: str = "",
        via: str = "page",
        detail: str = "",
    ) -> None:
        """Tell the audit trail what was done here (a login, an ack...) and what came of it."""
        # Never two at one instant: InfluxDB would keep only the last of a series' points.
        ts = max(round(self.clock() * 1e9), self._last_event_ns + 1)
        self._last_event_ns = ts
        self.counts["events"] += 1
        self.publish(
            ConsoleEvent(
                ts=ts,
                who=who,
                action=action,
                outcome=outcome,
                alarm_id=alarm_id,
                address=request.remote or "",
                via=via,
                detail=detail,
            )
        )

    def lang(self, request: web.Request) -> Lang:
        asked = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
        return "en" if asked == "en" else "zh"

    def session(self, request: web.Request) -> Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return self.sessions.get(token, self.clock())

    def user(self, session: Session | None) -> ConsoleUser | None:
        # A user removed from the site file (and the gateway reloaded) is logged out.
        return None if session is None else self.users.get(session.user_id)

    def view(self, request: web.Request, session: Session | None = None) -> View:
        path = request.path
        keep = [(k, v) for k, v in request.query.items() if k != "lang"]
        if keep:
            path = str(request.rel_url.with_query(keep))
        return View(
            lang=self.lang(request),
            path=path,
            tz=self.tz,
            now=self.clock(),
            user=self.user(session),
            csrf=session.csrf if session is not None else "",
            patrol=self.rounds is not None,
        )
