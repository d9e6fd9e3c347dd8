"""Server-side sessions: a random token in the cookie, everything else here.

A session ends at the first of: its absolute lifetime (a duty shift), an idle spell, logout,
or eviction when the table is full (the oldest first, counted). Each carries its own CSRF
token, which every form of that session sends back.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class Session:
    token: str
    user_id: str
    csrf: str
    created: float
    last_seen: float

    def csrf_ok(self, sent: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), sent.encode())


class SessionStore:
    def __init__(self, lifetime: float, idle: float, bound: int = 1000) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self.bound = bound
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # oldest first
        self.expired = 0
        self.evicted = 0

    def create(self, user_id: str, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), user_id, secrets.token_urlsafe(32), now, now)
        self._sessions[session.token] = session
        while len(self._sessions) > self.bound:
            self._sessions.popitem(last=False)
            self.evicted += 1
        return session

    def get(self, token: str, now: float) -> Session | None:
        """The live session of this token, its idle clock restarted; None if none."""
        session = self._sessions.get(token)
        if session is None:
            return None
        if self._over(session, now):
            del self._sessions[token]
            self.expired += 1
            return None
        session.last_seen = now
        return session

    def _over(self, session: Session, now: float) -> bool:
        return now - session.created >= self.lifetime or now - session.last_seen >= self.idle

    def drop(self, token: str) -> None:
        self._sessions.pop(token, None)

    def sweep(self, now: float) -> None:
        """Forget the sessions that are over (their tokens would be refused anyway)."""
        for token in [t for t, s in self._sessions.items() if self._over(s, now)]:
            del self._sessions[token]
            self.expired += 1

    def __len__(self) -> int:
        return len(self._sessions)
