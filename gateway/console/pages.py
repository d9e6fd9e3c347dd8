"""HTML of the console's pages: plain forms, a stylesheet and one small script of its own.

Every value from outside (alarm texts, places, notes, names) goes through `esc`. Pages work
without the script; it only reloads the alarm list and submits a signed link's confirmation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from html import escape
from urllib.parse import urlencode

from drivers.contract import DeviceStatus
from gateway.alarm_store import HistoryEntry
from gateway.console.assets import CSS_PATH, JS_PATH
from gateway.console.config import ApiClient, ConsoleUser
from gateway.console.desk import DeskAlarm, HistoryPage, HistoryQuery
from gateway.console.i18n import (
    CHECKPOINT_NAMES,
    DAY_TYPES,
    GRADE_NAMES,
    RESULT_NAMES,
    ROLE_NAMES,
    ROUND_STATES,
    SHELVE_CHOICES,
    STATE_NAMES,
    WHAT_NAMES,
    Lang,
    clock,
    duration,
    named,
    tr,
)
from gateway.console.rounds import PatrolRound
from rules.alarms import GRADES


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def show_value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if isinstance(value, str | int | bool) else json.dumps(value)


@dataclass(frozen=True, slots=True)
class View:
    """Who is looking, in which language, from where, when."""

    lang: Lang
    path: str  # for the language switch
    tz: tzinfo
    now: float
    user: ConsoleUser | None = None
    csrf: str = ""
    patrol: bool = False  # the site has patrol routes: the nav links their page

    def switch_href(self) -> str:
        other = "en" if self.lang == "zh" else "zh"
        return f"{self.path}{'&' if '?' in self.path else '?'}lang={other}"


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(token)}">'


def layout(view: View, title: str, body: str, *, nav: str = "", refresh: int = 0) -> str:
    lang = view.lang
    links = ""
    if view.user is not None:
        items = [
            ("/alarms", "nav_alarms"),
            ("/history", "nav_history"),
            ("/devices", "nav_devices"),
        ]
        if view.patrol:
            items.insert(1, ("/rounds", "nav_rounds"))
        if view.user.role == "admin":
            items.append(("/system", "nav_system"))
        links = (
            "<nav>"
            + "".join(
                f'<a href="{href}"{" class=on" if key == nav else ""}>{tr(lang, key)}</a>'
                for href, key in items
            )
            + "</nav>"
        )
    who = ""
    if view.user is not None:
        who = (
            f"<span>{esc(view.user.name)}</span>"
            f'<form method="post" action="/logout">{csrf_field(view.csrf)}'
            f'<button type="submit">{tr(lang, "logout")}</button></form>'
        )
    refresh_attr = f' data-refresh="{refresh}"' if refresh else ""
    return (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        '<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · {tr(lang, 'title')}</title>"
        f'<link rel="stylesheet" href="{CSS_PATH}"><script src="{JS_PATH}" defer></script>'
        f"</head><body{refresh_attr}><header>"
        f'<span class="brand">{tr(lang, "title")}</span>{links}'
        f'<a href="{esc(view.switch_href())}" lang="{"en" if lang == "zh" else "zh"}">'
        f"{tr(lang, 'switch')}</a>{who}</header><main>{body}</main></body></html>"
    )


def flash(lang: Lang, message: str | None, error: bool = False) -> str:
    if not message:
        return ""
    return f'<p class="{"error" if error else "flash"}" role="status">{esc(message)}</p>'


# -- alarms ---------------------------------------------------------------------------------


def timing(view: View, d: DeskAlarm) -> str:
    """How long it has been, and how long the responders have left."""
    lang, a = view.lang, d.alarm
    parts = [f"{tr(lang, 'age')} {duration(view.now - a.raised_at, lang)}"]
    if a.shelved(view.now) and a.shelved_until is not None:
        until = clock(a.shelved_until, view.tz, view.now)
        parts.append(esc(tr(lang, "shelved_until", until=until)))
    elif a.state == "active" and d.respond_by is not None:
        left = d.respond_by - view.now
        if left >= 0:
            parts.append(tr(lang, "respond_in", left=duration(left, lang)))
        else:
            late = tr(lang, "overdue", late=duration(-left, lang))
            parts.append(f'<span class="overdue">{late}</span>')
    if a.escalation:
        parts.append(f'<span class="overdue">{tr(lang, "escalated", n=a.escalation)}</span>')
    if a.acked_at is not None:
        at = clock(a.acked_at, view.tz, view.now)
        parts.append(esc(tr(lang, "acked_by", by=a.acked_by, at=at)))
    return " · ".join(parts)


def alarm_card(view: View, d: DeskAlarm, can_ack: bool, csrf: str) -> str:
    lang, a = view.lang, d.alarm
    aid = esc(a.id)
    flap = f'<span class="muted">{tr(lang, "flapping")}</span>' if a.flapping else ""
    ack = ""
    if can_ack and a.acked_at is None:
        ack = (
            f'<form method="post" action="/alarms/{aid}/ack">{csrf_field(csrf)}'
            f'<button class="primary" type="submit">{tr(lang, "ack")}</button></form>'
        )
    return (
        f'<article class="alarm g-{a.grade} s-{a.state}" id="a-{aid}" data-alarm="{aid}">'
        f'<div class="head"><span class="badge">{named(lang, GRADE_NAMES, a.grade)}</span>'
        f'<span class="state">{named(lang, STATE_NAMES, a.state)}</span>{flap}</div>'
        f'<p class="text">{esc(d.text(lang))}</p>'
        f'<p class="meta">{tr(lang, "place")} {esc(d.place)}</p>'
        f'<p class="meta">{timing(view, d)}</p>'
        f'<div class="actions">{ack}<a href="/alarms/{aid}">{tr(lang, "details_shelve")}</a>'
        "</div></article>"
    )


def alarm_list(view: View, alarms: Sequence[DeskAlarm], can_ack: bool, csrf: str) -> str:
    lang = view.lang
    if not alarms:
        return f'<p class="box">{tr(lang, "no_alarms")}</p>'
    by_grade: dict[str, list[DeskAlarm]] = {g: [] for g in GRADES}
    for d in alarms:
        by_grade.setdefault(d.alarm.grade, []).append(d)
    counts = "".join(
        f'<a class="badge g-{g}" href="#g-{g}">{named(lang, GRADE_NAMES, g)} {len(items)}</a>'
        for g, items in by_grade.items()
        if items
    )
    sections = [f'<div class="counts">{counts}</div>']
    for grade, items in by_grade.items():
        if not items:
            continue
        sections.append(
            f'<section class="g-{grade}" id="g-{grade}"><h2>'
            f"{named(lang, GRADE_NAMES, grade)} · {len(items)}</h2>"
        )
        sections.extend(alarm_card(view, d, can_ack, csrf) for d in items)
        sections.append("</section>")
    return "".join(sections)


def alarms_page(view: View, listing: str, count: int, message: str | None) -> str:
    body = f"<h1>{tr(view.lang, 'open_alarms')} ({count})</h1>{flash(view.lang, message)}{listing}"
    return layout(view, tr(view.lang, "open_alarms"), body, nav="nav_alarms", refresh=30)


def alarm_page(
    view: View,
    d: DeskAlarm,
    history: HistoryPage,
    *,
    can_ack: bool,
    can_shelve: bool,
    message: str | None,
    error: bool = False,
) -> str:
    lang, a = view.lang, d.alarm
    aid = esc(a.id)
    rows = [
        ("grade", named(lang, GRADE_NAMES, a.grade)),
        ("state", named(lang, STATE_NAMES, a.state)),
        ("place", d.place),
        ("value", show_value(a.value)),
        ("limit", show_value(a.limit)),
        ("raised_at", clock(a.raised_at, view.tz, view.now)),
        ("count", str(a.count)),
        ("rule", a.rule),
        ("subject", a.subject),
    ]
    table = "".join(f"<tr><th>{tr(lang, k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    forms = ""
    if can_ack and a.acked_at is None:
        forms += (
            f'<form class="box" method="post" action="/alarms/{aid}/ack">{csrf_field(view.csrf)}'
            '<input type="hidden" name="back" value="alarm">'
            f'<label for="note">{tr(lang, "note")}</label>'
            '<input id="note" name="note" maxlength="200">'
            f'<p><button class="primary" type="submit">{tr(lang, "ack")}</button></p></form>'
        )
    if can_shelve:
        options = "".join(f'<option value="{v}">{v}</option>' for v, _s in SHELVE_CHOICES)
        forms += (
            f'<form class="box" method="post" action="/alarms/{aid}/shelve">'
            f"{csrf_field(view.csrf)}"
            f'<label for="for">{tr(lang, "shelve_for")}</label>'
            f'<select id="for" name="for">{options}</select>'
            f'<label for="reason">{tr(lang, "reason")}</label>'
            '<input id="reason" name="reason" required maxlength="200">'
            f'<p><button class="primary" type="submit">{tr(lang, "shelve")}</button></p></form>'
        )
    body = (
        f"<h1>{esc(d.text(lang))}</h1>{flash(lang, message, error)}"
        f'<div class="alarm g-{a.grade} s-{a.state}"><p class="meta">{timing(view, d)}</p></div>'
        f'<div class="wide"><table>{table}</table></div>{forms}'
        f"<h2>{tr(lang, 'nav_history')}</h2>{history_table(view, history.entries, {})}"
    )
    return layout(view, tr(lang, "details"), body, nav="nav_alarms")


# -- history ----------------------------------------------------------------------------------


def history_table(
    view: View, entries: Sequence[HistoryEntry], texts: Mapping[str, DeskAlarm]
) -> str:
    lang = view.lang
    if not entries:
        return f'<p class="box">{tr(lang, "no_history")}</p>'
    head = "".join(
        f"<th{' class=hide-narrow' if k in ('by', 'note') else ''}>{tr(lang, k)}</th>"
        for k in ("time", "alarm", "what", "grade", "by", "note")
    )
    rows = []
    for h in entries:
        known = texts.get(h.alarm_id)
        label = esc(known.text(lang)) if known is not None else esc(h.alarm_id)
        rows.append(
            f"<tr><td>{esc(clock(h.t, view.tz, view.now))}</td>"
            f'<td><a href="/alarms/{esc(h.alarm_id)}">{label}</a></td>'
            f"<td>{esc(named(lang, WHAT_NAMES, h.what))}</td>"
            f'<td><span class="badge g-{esc(h.grade)}">{named(lang, GRADE_NAMES, h.grade)}'
            "</span></td>"
            f'<td class="hide-narrow">{esc(h.by)}</td><td class="hide-narrow">{esc(h.note)}</td>'
            "</tr>"
        )
    return f'<div class="wide"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _select(name: str, label: str, choices: Sequence[tuple[str, str]], chosen: str | None) -> str:
    options = "".join(
        f'<option value="{esc(v)}"{" selected" if v == (chosen or "") else ""}>{esc(t)}</option>'
        for v, t in choices
    )
    return f'<label>{label}<br><select name="{name}">{options}</select></label>'


def history_page(
    view: View, page: HistoryPage, query: HistoryQuery, texts: Mapping[str, DeskAlarm]
) -> str:
    lang = view.lang
    everything = ("", tr(lang, "all"))
    grades = [everything, *((g, named(lang, GRADE_NAMES, g)) for g in GRADES)]
    whats = [everything, *((w, named(lang, WHAT_NAMES, w)) for w in WHAT_NAMES)]
    form = (
        '<form class="filters box" method="get" action="/history">'
        f"{_select('grade', tr(lang, 'grade'), grades, query.grade)}"
        f"{_select('what', tr(lang, 'what'), whats, query.what)}"
        f'<label>{tr(lang, "alarm")}<br><input name="alarm" value="{esc(query.alarm_id or "")}"'
        ' maxlength="128"></label>'
        f'<input type="submit" value="{tr(lang, "filter")}"></form>'
    )
    kept = {k: v for k, v in (("grade", query.grade), ("what", query.what)) if v}
    if query.alarm_id:
        kept["alarm"] = query.alarm_id
    pager = ""
    if query.before is not None:
        pager += f'<a href="/history?{esc(urlencode(kept))}">{tr(lang, "newest")}</a> '
    if page.next_before is not None:
        older = urlencode({**kept, "before": str(page.next_before)})
        pager += f'<a href="/history?{esc(older)}">{tr(lang, "older")}</a>'
    body = (
        f"<h1>{tr(lang, 'nav_history')}</h1>{form}"
        f"{history_table(view, page.entries, texts)}<p>{pager}</p>"
    )
    return layout(view, tr(lang, "nav_history"), body, nav="nav_history")


# -- patrol rounds ----------------------------------------------------------------------------


def _start_label(start: float, tz: tzinfo, day: date) -> str:
    moment = datetime.fromtimestamp(start, tz)
    return moment.strftime("%H:%M" if moment.date() == day else "%m-%d %H:%M")


def round_card(view: View, r: PatrolRound, day: date) -> str:
    lang = view.lang
    meta = [
        f"{tr(lang, 'scheduled')} {_start_label(r.start, view.tz, day)}",
        esc(named(lang, DAY_TYPES, r.day_type)) if r.day_type else "",
        f"{tr(lang, 'guard')} {esc(r.guard)}" if r.guard else "",
    ]
    points = []
    for cp in r.checkpoints:
        label = esc(cp.name or cp.device)
        device = f' <span class="muted">{esc(cp.device)}</span>' if cp.name else ""
        when = f" · {esc(clock(cp.at, view.tz, view.now))}" if cp.at is not None else ""
        card = f' · <span class="muted">{esc(cp.card)}</span>' if cp.card else ""
        points.append(
            f'<li class="c-{esc(cp.status)}"><span class="badge c-{esc(cp.status)}">'
            f"{esc(named(lang, CHECKPOINT_NAMES, cp.status))}</span> "
            f"{cp.n}. {label}{device}{when}{card}</li>"
        )
    unwatched = "" if r.watched else f'<p class="meta">{tr(lang, "not_watched")}</p>'
    return (
        f'<article class="round r-{esc(r.result)} st-{esc(r.state)}" '
        f'data-route="{esc(r.route)}" data-start="{int(r.start)}">'
        f'<div class="head"><span class="badge r-{esc(r.result)}">'
        f"{esc(named(lang, RESULT_NAMES, r.result))}</span>"
        f'<span class="state">{esc(named(lang, ROUND_STATES, r.state))}</span></div>'
        f'<p class="text">{esc(r.name)}</p>'
        f'<p class="meta">{" · ".join(m for m in meta if m)}</p>{unwatched}'
        f'<ol class="cps">{"".join(points)}</ol></article>'
    )


def rounds_page(
    view: View,
    days: Sequence[tuple[date, Sequence[PatrolRound]]] | None,
    since: float | None = None,
    routes: Sequence[str] = (),
) -> str:
    """Yesterday's and today's rounds; `days` None: the site has no patrol routes."""
    lang = view.lang
    title = tr(lang, "rounds_title")
    if days is None:
        body = f'<h1>{title}</h1><p class="box">{tr(lang, "no_routes")}</p>'
        return layout(view, title, body, nav="nav_rounds")
    parts = [f"<h1>{title}</h1>"]
    if routes:
        parts.append(f'<p class="meta">{tr(lang, "routes")}: {esc("、".join(routes))}</p>')
    first_day = days[-1][0] if days else None
    if since is not None and first_day is not None:
        started = datetime.fromtimestamp(since, view.tz).date()
        if started >= first_day:  # the board missed rounds of the days shown
            at = esc(clock(since, view.tz, view.now))
            parts.append(f'<p class="muted">{tr(lang, "rounds_since", since=at)}</p>')
    for index, (day, rounds) in enumerate(days):
        heading = tr(lang, "today" if index == 0 else "yesterday")
        parts.append(f'<section id="d-{day.isoformat()}"><h2>{heading} · {day.isoformat()}</h2>')
        if rounds:
            parts.extend(round_card(view, r, day) for r in rounds)
        else:
            parts.append(f'<p class="box">{tr(lang, "no_rounds")}</p>')
        parts.append("</section>")
    return layout(view, title, "".join(parts), nav="nav_rounds", refresh=60)


# -- devices, system ----------------------------------------------------------------------------


def devices_page(view: View, devices: Sequence[DeviceStatus]) -> str:
    lang = view.lang
    if not devices:
        table = f'<p class="box">{tr(lang, "no_devices")}</p>'
    else:
        head = "".join(
            f"<th>{tr(lang, k)}</th>"
            for k in ("device", "state", "driver", "timing", "polls", "errors", "last_error")
        )
        rows = []
        for s in sorted(devices, key=lambda s: (s.online is not False, s.device)):
            state = "unknown" if s.online is None else "online" if s.online else "offline"
            css = "overdue" if s.online is False else ""
            rows.append(
                f'<tr><td>{esc(s.device)}</td><td class="{css}">{tr(lang, state)}</td>'
                f"<td>{esc(s.driver)}</td><td>{esc(s.timing)}</td><td>{s.count}</td>"
                f"<td>{s.errors}</td><td>{esc(s.last_error)}</td></tr>"
            )
        table = f'<div class="wide"><table><tr>{head}</tr>{"".join(rows)}</table></div>'
    body = f"<h1>{tr(lang, 'nav_devices')}</h1>{table}"
    return layout(view, tr(lang, "nav_devices"), body, nav="nav_devices", refresh=30)


def system_page(
    view: View,
    stats: Mapping[str, int],
    users: Sequence[ConsoleUser],
    clients: Sequence[ApiClient],
) -> str:
    lang = view.lang
    figures = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in stats.items())
    people = "".join(
        f"<tr><td>{esc(u.id)}</td><td>{esc(u.name)}</td>"
        f"<td>{named(lang, ROLE_NAMES, u.role)}</td></tr>"
        for u in users
    )
    programs = "".join(
        f"<tr><td>{esc(c.name)}</td><td>{esc(', '.join(c.scopes))}</td></tr>" for c in clients
    )
    body = (
        f"<h1>{tr(lang, 'nav_system')}</h1><h2>{tr(lang, 'stats')}</h2>"
        f'<div class="wide"><table>{figures}</table></div>'
        f'<h2>{tr(lang, "users")}</h2><div class="wide"><table><tr><th>ID</th>'
        f"<th>{tr(lang, 'user')}</th><th>{tr(lang, 'role')}</th></tr>{people}</table></div>"
        f'<h2>{tr(lang, "api_clients")}</h2><div class="wide"><table><tr><th>ID</th>'
        f"<th>{tr(lang, 'scopes')}</th></tr>{programs}</table></div>"
    )
    return layout(view, tr(lang, "nav_system"), body, nav="nav_system")


# -- login, notices, signed links -----------------------------------------------------------------


def login_page(view: View, form_token: str, message: str | None, user_id: str = "") -> str:
    lang = view.lang
    body = (
        f'<div class="login box"><h1>{tr(lang, "login")}</h1>{flash(lang, message, True)}'
        f'<form method="post" action="/login">{csrf_field(form_token)}'
        f'<label for="user">{tr(lang, "user")}</label>'
        f'<input id="user" name="user" autocomplete="username" required value="{esc(user_id)}"'
        ' autocapitalize="none" maxlength="64">'
        f'<label for="password">{tr(lang, "password")}</label>'
        '<input id="password" name="password" type="password" required maxlength="256"'
        ' autocomplete="current-password">'
        f'<p><button class="primary" type="submit">{tr(lang, "login")}</button></p>'
        "</form></div>"
    )
    return layout(view, tr(lang, "login"), body)


def notice_page(title: tuple[str, str], lines: Sequence[tuple[str, str]], extra: str = "") -> str:
    """A page in both languages at once, Chinese first: for people who arrive by a link,
    before any language is chosen."""
    paragraphs = "".join(
        f'<p lang="zh-CN">{esc(zh)}</p><p lang="en" class="muted">{esc(en)}</p>' for zh, en in lines
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title[0])} / {esc(title[1])}</title>"
        f'<link rel="stylesheet" href="{CSS_PATH}"><script src="{JS_PATH}" defer></script>'
        f'</head><body><header><span class="brand">管家值班台 · Guanjia</span></header><main>'
        f'<h1>{esc(title[0])}<br><span class="muted">{esc(title[1])}</span></h1>'
        f'<div class="box">{paragraphs}{extra}</div></main></body></html>'
    )


def link_confirm_page(d: DeskAlarm, person: str, action: str) -> str:
    a = d.alarm
    form = (
        f'<form method="post" action="{esc(action)}" data-auto-submit>'
        f'<button class="primary" type="submit">确认 / Acknowledge</button></form>'
    )
    return notice_page(
        ("确认告警", "Acknowledge alarm"),
        [
            (d.text_zh, d.text_en),
            (
                f"{named('zh', GRADE_NAMES, a.grade)} · {named('zh', STATE_NAMES, a.state)}",
                f"{named('en', GRADE_NAMES, a.grade)} · {named('en', STATE_NAMES, a.state)}",
            ),
            (f"确认人：{person}", f"Acknowledged as: {person}"),
        ],
        form,
    )
