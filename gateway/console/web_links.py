"""Signed acknowledgement links: opened from a notification on a phone, no login.

GET shows the alarm and a form that submits itself (a link previewer in a chat app fetches
the page but runs no script, so it acknowledges nothing); POST verifies the link again and
acknowledges for the person it names. A forged link is refused with 403, an expired one with
410, both in Chinese and English, and neither changes anything.
"""

from __future__ import annotations

from aiohttp import web

from gateway.console import pages
from gateway.console.links import PREFIX, LinkClaim
from gateway.console.state import ConsoleState, desk_outcome
from gateway.console.web_pages import html

LINK_ROUTE = PREFIX + "/{alarm}/{person}/{expires}/{signature}"

FORGED = pages.notice_page(
    ("链接无效", "Invalid link"),
    [
        (
            "此链接已被改动或不完整，未执行任何操作。",
            "This link was altered or is incomplete; nothing was done.",
        ),
        ("请登录值班台处理告警。", "Please log in to the duty console to handle the alarm."),
    ],
    '<p><a href="/login">登录 / Log in</a></p>',
)
EXPIRED = pages.notice_page(
    ("链接已过期", "Link expired"),
    [
        (
            "此确认链接已过期，未执行任何操作。",
            "This acknowledgement link has expired; nothing was done.",
        ),
        ("请登录值班台处理告警。", "Please log in to the duty console to handle the alarm."),
    ],
    '<p><a href="/login">登录 / Log in</a></p>',
)
UNKNOWN = pages.notice_page(
    ("没有这条告警", "No such alarm"),
    [("链接中的告警已不存在。", "The alarm of this link no longer exists.")],
)
DISABLED = pages.notice_page(
    ("链接未启用", "Links are off"),
    [("此值班台未配置确认链接。", "This console has no acknowledgement links configured.")],
)


class LinkHandlers:
    def __init__(self, state: ConsoleState) -> None:
        self.s = state

    def routes(self) -> list[web.RouteDef]:
        return [web.get(LINK_ROUTE, self.show), web.post(LINK_ROUTE, self.confirm)]

    def _claim(self, request: web.Request, acting: bool = False) -> LinkClaim | web.Response:
        """The link's claim, or the refusal page (`acting`: a refused acknowledgement, on the
        audit trail; a link only looked at is not)."""
        if self.s.signer is None:
            return html(DISABLED, 404)
        m = request.match_info
        verdict, claim = self.s.signer.verify(
            m["alarm"], m["person"], m["expires"], m["signature"], self.s.clock()
        )
        if verdict == "ok" and claim is not None:
            return claim
        self.s.counts["links_refused"] += 1
        if acting:
            # Nobody is known: the person and the alarm are only what the link claims.
            self.s.event(
                request,
                "ack",
                "refused",
                "",
                alarm_id=m["alarm"],
                via="link",
                detail=f"{verdict} link, for {m['person']}",
            )
        return html(FORGED, 403) if verdict == "forged" else html(EXPIRED, 410)

    async def show(self, request: web.Request) -> web.StreamResponse:
        claim = self._claim(request)
        if isinstance(claim, web.Response):
            return claim
        d = self.s.desk.alarm(claim.alarm_id)
        if d is None:
            return html(UNKNOWN, 404)
        return html(pages.link_confirm_page(d, self._name(claim.person), request.path))

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        claim = self._claim(request, acting=True)
        if isinstance(claim, web.Response):
            return claim
        who = f"console:{claim.person}"
        d = self.s.desk.alarm(claim.alarm_id)
        if d is None:
            self.s.event(request, "ack", "unknown", who, alarm_id=claim.alarm_id, via="link")
            return html(UNKNOWN, 404)
        outcome = self.s.desk.ack(claim.alarm_id, who, "signed link")
        self.s.event(
            request, "ack", desk_outcome(outcome), who, alarm_id=claim.alarm_id, via="link"
        )
        if outcome == "acked":
            self.s.counts["acks"] += 1
            self.s.counts["link_acks"] += 1
            lines = [("已确认。", "Acknowledged.")]
        elif outcome == "already acknowledged":
            by = d.alarm.acked_by
            lines = [(f"此告警此前已由 {by} 确认。", f"It was already acknowledged by {by}.")]
        else:
            return html(UNKNOWN, 404)
        lines.insert(0, (d.text_zh, d.text_en))
        extra = '<p><a href="/alarms">值班台 / Duty console</a></p>'
        return html(pages.notice_page(("确认告警", "Acknowledge alarm"), lines, extra))

    def _name(self, person: str) -> str:
        user = self.s.users.get(person)
        return f"{user.name} ({person})" if user is not None else person
