"""Notification texts: one alarm transition as each channel can carry it.

A notice names the grade (红色预警 …), the place and device as people know them (not raw ids),
the value against its limit, the time in the site's zone, the response time left, and how to
acknowledge: a link, the MQTT topic, the CLI command. `compose` gathers that once; `render`
fits it to one kind of channel:

    wecom     text ≤ 2048 bytes UTF-8, markdown ≤ 4096 bytes (shared facts, channels.md §2)
    dingtalk  ≤ 18000 bytes (the service takes ~20000 for the whole body; the channel may put its
              keyword in front), with `@<mobile>` written in for each person mentioned: an @
              only works when the content names the mobile (channels.md §1)
    sms       the template's variables, each ≤ 35 characters (Aliyun's bound per variable,
              *unverified*), and a text ≤ 300 characters (five 70-character segments at most)
    email     subject and plain text

Cutting keeps whole lines where it can, cuts on UTF-8 character boundaries with an ellipsis,
and never drops the acknowledgement lines or the mentions while the body can give way.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal
from urllib.parse import quote

from gateway.messages import AlarmTransition
from gateway.notify.delivery import Message, Recipient
from rules.alarms import Alarm, What
from rules.catalog import format_value
from rules.model import Grade

Language = Literal["zh", "en", "both"]
ELLIPSIS = "…"

GRADE_ZH: dict[Grade, str] = {"red": "红色", "orange": "橙色", "yellow": "黄色", "blue": "蓝色"}
GRADE_EN: dict[Grade, str] = {"red": "RED", "orange": "ORANGE", "yellow": "YELLOW", "blue": "BLUE"}
LEVEL: dict[Grade, str] = {"red": "I", "orange": "II", "yellow": "III", "blue": "IV"}
GRADE_RANK: dict[Grade, int] = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
_STATE_ZH = {"acked": "已确认", "cleared": "已恢复", "closed": "已关闭", "shelved": "已搁置"}
_STATE_EN = {
    "acked": "Acknowledged",
    "cleared": "Cleared",
    "closed": "Closed",
    "shelved": "Shelved",
}


# -- cutting --------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_JOINERS = "\u200d\ufe0e\ufe0f"


def clean(text: str, *, one_line: bool = False) -> str:
    """Text from outside, safe to send: valid UTF-8 (lone surrogates become '?'), no control
    characters; one line where a line is wanted."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    if one_line:
        text = " ".join(text.split())
    return _CONTROL.sub(" ", text)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _tidy_end(text: str) -> str:
    # A cut between a character and its joiner or combining mark leaves half a glyph.
    while text and (text[-1] in _JOINERS or unicodedata.combining(text[-1])):
        text = text[:-1]
    return text


def cut_bytes(text: str, limit: int) -> str:
    """`text` within `limit` UTF-8 bytes, cut on a character boundary and ended with '…'."""
    if utf8_len(text) <= limit:
        return text
    room = limit - utf8_len(ELLIPSIS)
    if room < 0:
        return ""
    head = text.encode("utf-8")[:room].decode("utf-8", "ignore")
    return _tidy_end(head) + ELLIPSIS


def cut_chars(text: str, limit: int) -> str:
    """`text` within `limit` characters, ended with '…' when cut."""
    if len(text) <= limit:
        return text
    if limit < 1:
        return ""
    return _tidy_end(text[: limit - 1]) + ELLIPSIS


@dataclass(frozen=True, slots=True)
class Measure:
    size: Callable[[str], int]
    cut: Callable[[str, int], str]


BYTES = Measure(utf8_len, cut_bytes)
CHARS = Measure(len, cut_chars)


def fit(
    head: Sequence[str],
    body: Sequence[str],
    tail: Sequence[str],
    limit: int,
    measure: Measure = BYTES,
    sep: str = "\n",
    more: Callable[[int], str] | None = None,
) -> str:
    """head + body + tail joined by `sep`, within `limit`. The body gives way first: whole
    lines from its end, then (without `more`) the last line kept is cut with '…'; `more(n)`
    instead adds a line saying n lines were left out. Then the head; the tail last."""
    size, s = measure.size, measure.size(sep)

    def total(lines: Sequence[str]) -> int:
        return sum(size(x) for x in lines) + s * max(len(lines) - 1, 0)

    whole = [*head, *body, *tail]
    if total(whole) <= limit:
        return sep.join(whole)
    # Sizes summed once, so a digest of thousands of lines is not measured a thousand times.
    prefix = [0]
    for line in body:
        prefix.append(prefix[-1] + size(line))
    fixed = sum(size(x) for x in (*head, *tail))
    for keep in range(len(body) - 1, -1, -1):
        extra = [more(len(body) - keep)] if more is not None else []
        count = len(head) + len(tail) + keep + len(extra)
        used = fixed + prefix[keep] + sum(size(x) for x in extra) + s * max(count - 1, 0)
        if used > limit:
            continue
        lines = [*head, *body[:keep], *extra, *tail]
        if more is None:
            part = measure.cut(body[keep], limit - used - s if lines else limit - used)
            if part:
                lines.insert(len(head) + keep, part)
        return sep.join(lines)
    if total(tail) <= limit:
        room = limit - total(tail) - (s if tail else 0)
        top = measure.cut(sep.join(head), room) if room > 0 else ""
        return sep.join([top, *tail] if top else tail)
    return measure.cut(sep.join(tail), limit)


# -- what is known of the site --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceLabel:
    """A device as people know it: where it is and what it is called."""

    place: str  # "主楼 3层 301会议室"
    name: str = ""  # "301 会议室空调"


def label_from_tags(
    tags: Mapping[str, str], names: Mapping[str, str] | None = None, device_name: str = ""
) -> DeviceLabel:
    """A label from a device's building/floor/zone tags, each tag value replaced by its
    readable name where `names` has one (e.g. {"main": "主楼", "B1": "地下一层"})."""
    names = names or {}
    parts = [tags.get(k, "") for k in ("building", "floor", "zone")]
    return DeviceLabel(" / ".join(names.get(p, p) for p in parts if p), device_name)


@dataclass(frozen=True, slots=True)
class TextContext:
    """What the texts know of the site, set once by the gateway."""

    site_name: str
    tz: tzinfo
    language: Language = "zh"
    labels: Mapping[str, DeviceLabel] = field(default_factory=dict)  # by device id
    response_times: Mapping[Grade, float] = field(default_factory=dict)  # seconds
    mqtt_ack: str = ""  # topic template, e.g. "guanjia/city-hall/alarm/{alarm_id}/ack"; "" off
    cli_site: str = ""  # the site file as `guanjia ack <site> <id>` takes it; "" to leave out
    sms_chars: int = 300
    sms_param_chars: int = 35

    def langs(self) -> tuple[Literal["zh", "en"], ...]:
        return ("zh", "en") if self.language == "both" else (self.language,)

    def local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz)


def device_of(alarm: Alarm) -> str:
    """The device an alarm is about (as rules/texts.py finds it)."""
    return str(alarm.details.get("device") or alarm.subject.split(":", 1)[0])


def where(alarm: Alarm, ctx: TextContext) -> tuple[str, str, str]:
    """(place, device name, device id) as people read them."""
    device = device_of(alarm)
    label = ctx.labels.get(device)
    place = label.place if label is not None else str(alarm.details.get("place", ""))
    name = label.name if label is not None else ""
    return clean(place, one_line=True), clean(name, one_line=True), device


def bi(zh: str, en: str, ctx: TextContext) -> str:
    """A short phrase in the context's language(s)."""
    return {"zh": zh, "en": en, "both": f"{zh} {en}"}[ctx.language]


# -- the notice -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmsText:
    """An SMS: the free text (a head that may be cut, the link that may not) and the
    template's variables."""

    head: str
    tail: str
    sep: str
    chars: int
    params: Mapping[str, str]

    def text(self, limit: int | None = None) -> str:
        chars = self.chars if limit is None else min(limit, self.chars)
        return fit([], [self.head], [self.tail] if self.tail else [], chars, CHARS, self.sep)


@dataclass(frozen=True, slots=True)
class Notice:
    """A transition's texts, before a channel's limits: title, body lines per language, and
    the acknowledgement lines that must survive any cut."""

    alarm_id: str
    grade: Grade
    what: What
    title: str
    body: tuple[str, ...]  # plain lines: "位置：主楼 / 3F"
    body_md: tuple[str, ...]  # the same as markdown
    ack: tuple[str, ...]
    ack_md: tuple[str, ...]
    sms: SmsText


def _minutes(seconds: float) -> tuple[str, str]:
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 120:
        return f"{minutes} 分钟", f"{minutes} min"
    hours = math.ceil(minutes / 60)
    return f"{hours} 小时", f"{hours} h"


def _response(alarm: Alarm, ctx: TextContext, now: float) -> tuple[str, str] | None:
    rt = ctx.response_times.get(alarm.grade)
    if alarm.acked_at is not None or rt is None or rt <= 0 or not math.isfinite(rt):
        return None
    left = alarm.escalation_since + rt - now
    zh_m, en_m = _minutes(abs(left))
    zh, en = (f"请于 {zh_m}内确认", f"acknowledge within {en_m}")
    if left <= 0:
        zh, en = f"已超时 {zh_m}", f"overdue by {en_m}"
    if alarm.escalation:
        zh += f"（已升级 {alarm.escalation} 次）"
        en += f" (escalated {alarm.escalation}x)"
    return zh, en


def _state(alarm: Alarm, what: What, ctx: TextContext) -> tuple[str, str] | None:
    if what == "acked" or (what == "closed" and alarm.acked_at is not None):
        by = clean(alarm.acked_by, one_line=True) or "?"
        at = f"{ctx.local(alarm.acked_at or 0):%H:%M}"
        note = f"：{clean(alarm.ack_note, one_line=True)}" if alarm.ack_note else ""
        zh = f"{_STATE_ZH[what]}，{by} 于 {at} 确认{note}"
        return zh, f"{_STATE_EN[what]} by {by} at {at}{note.replace('：', ': ')}"
    if what == "cleared":
        return "已恢复，尚未确认", "cleared, not yet acknowledged"
    if what == "closed":
        return "已关闭", "closed"
    if what == "shelved":
        why = clean(alarm.shelve_reason, one_line=True)
        if alarm.shelved_until is None:
            return f"已搁置 {why}".strip(), f"shelved {why}".strip()
        until = f"{ctx.local(alarm.shelved_until):%m-%d %H:%M}"
        return f"已搁置至 {until} {why}".strip(), f"shelved until {until} {why}".strip()
    return None


def _title(alarm: Alarm, what: What, ctx: TextContext, place: str, name: str) -> str:
    subject = " ".join(p for p in (place, name or device_of(alarm)) if p)
    g = alarm.grade
    if what in _STATE_ZH:
        zh, en = f"【{_STATE_ZH[what]}·{GRADE_ZH[g]}】", f"[{_STATE_EN[what]} · {g}]"
    elif what == "escalated":
        zh, en = f"【{GRADE_ZH[g]}预警·升级】", f"[{GRADE_EN[g]} alert · escalated]"
    else:
        zh, en = f"【{GRADE_ZH[g]}预警】", f"[{GRADE_EN[g]} alert]"
    lead = {"zh": zh, "en": en, "both": f"{zh}{en}"}[ctx.language]
    space = "" if lead.endswith("】") else " "  # no space after full-width brackets
    return cut_chars(f"{lead}{space}{subject}".strip(), 120)


def md_escape(text: str) -> str:
    """Outside text inside markdown: markup characters escaped, angle brackets (WeCom's
    <font>, <@user>) made harmless."""
    text = re.sub(r"([\\`*_\[\]])", r"\\\1", text)
    return text.replace("<", "＜").replace(">", "＞")


def _url(url: str) -> str:
    return quote(url, safe=":/?#[]@!$&'*+,;=%~")


def compose(
    event: AlarmTransition,
    ctx: TextContext,
    *,
    now: float | None = None,
    ack_url: str = "",
    unit: str = "",
) -> Notice:
    """The notice of one transition. `now`: when it is sent (the transition's time if None),
    for the response time left; `ack_url`: the link that acknowledges this alarm."""
    tr = event.transition
    alarm, what = tr.alarm, tr.what
    now = tr.t if now is None else now
    place, name, device = where(alarm, ctx)
    facts: list[tuple[str, str, str, str]] = []  # zh label, en label, zh value, en value
    headline = {"zh": clean(event.text_zh), "en": clean(event.text_en)}
    state = _state(alarm, what, ctx)
    if state is not None:
        facts.append(("状态", "State", *state))
    g, level = alarm.grade, LEVEL[alarm.grade]
    facts.append(("级别", "Grade", f"{GRADE_ZH[g]}预警（{level} 级）", f"{g} ({level})"))
    if place:
        facts.append(("位置", "Place", place, place))
    if name:
        facts.append(("设备", "Device", f"{name}（{device}）", f"{name} ({device})"))
    else:
        facts.append(("设备", "Device", device, device))
    value = _value(alarm, unit)
    if value is not None:
        facts.append(("数值", "Value", *value))
    raised = f"{ctx.local(alarm.raised_at):%Y-%m-%d %H:%M:%S}"
    facts.append(("时间", "Time", raised, raised))
    response = _response(alarm, ctx, now)
    if response is not None and what not in ("shelved", "closed"):
        facts.append(("响应", "Response", *response))
    facts.append(("编号", "Alarm", alarm.id, alarm.id))

    body: list[str] = []
    body_md: list[str] = []
    for i, lang in enumerate(ctx.langs()):
        zh = lang == "zh"
        colon = "：" if zh else ": "
        if i:
            body.append("")
            body_md.append("")
        if headline[lang]:
            body.append(headline[lang])
            body_md.append(f"**{md_escape(headline[lang])}**")
        for zh_label, en_label, zh_value, en_value in facts:
            label, val = (zh_label, zh_value) if zh else (en_label, en_value)
            body.append(f"{label}{colon}{val}")
            body_md.append(f"{label}{colon}{md_escape(val)}")

    ack, ack_md = _ack_lines(alarm, what, ctx, ack_url)
    title = _title(alarm, what, ctx, place, name)
    sms = _sms(alarm, what, ctx, headline, place, name or device, ack_url, response or state)
    return Notice(alarm.id, alarm.grade, what, title, tuple(body), tuple(body_md), ack, ack_md, sms)


def _value(alarm: Alarm, unit: str) -> tuple[str, str] | None:
    v, lim = alarm.value, alarm.limit
    if v is None or isinstance(v, bool):
        return None  # a boolean is a state, and the alarm's own text says it
    text = clean(f"{format_value(v)}{unit}", one_line=True)
    if lim is None or isinstance(lim, bool):
        return text, text
    limit = clean(f"{format_value(lim)}{unit}", one_line=True)
    return f"{text}（限值 {limit}）", f"{text} (limit {limit})"


def _ack_lines(
    alarm: Alarm, what: What, ctx: TextContext, ack_url: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if alarm.acked_at is not None or what in ("closed", "shelved"):
        return (), ()
    label = bi("确认", "Acknowledge", ctx)
    plain: list[str] = []
    md: list[str] = []
    if ack_url:
        plain.append(f"{label}: {ack_url}")
        md.append(f"{label}: [{bi('点击确认', 'open', ctx)}]({_url(ack_url)})")
    if ctx.mqtt_ack:
        topic = ctx.mqtt_ack.replace("{alarm_id}", alarm.id)
        plain.append(f"MQTT: {topic}")
        md.append(f"MQTT: `{topic}`")
    if ctx.cli_site:
        command = f"guanjia ack {ctx.cli_site} {alarm.id}"
        plain.append(f"{bi('命令', 'CLI', ctx)}: {command}")
        md.append(f"{bi('命令', 'CLI', ctx)}: `{command}`")
    return tuple(plain), tuple(md)


def _sms(
    alarm: Alarm,
    what: What,
    ctx: TextContext,
    headline: Mapping[str, str],
    place: str,
    device: str,
    ack_url: str,
    extra: tuple[str, str] | None,
) -> SmsText:
    """SMS in one language (Chinese unless the site reads English only): a head that may be
    cut and the acknowledgement link that may not; and the template's variables."""
    en = ctx.language == "en"
    when = f"{ctx.local(alarm.raised_at):%m-%d %H:%M}"
    g = alarm.grade
    grade = GRADE_EN[g] if en else f"{GRADE_ZH[g]}预警"
    kind = _STATE_EN.get(what, "") if en else _STATE_ZH.get(what, "")
    lead = (
        f"[{grade}{' ' + kind if kind else ''}]"
        if en
        else f"【{grade}{'·' + kind if kind else ''}】"
    )
    # The alarm's own text names the place already; without one, place and device do.
    text = headline["en" if en else "zh"] or f"{place} {device}".strip()
    parts = [f"{lead}{text}", when]
    if extra is not None:
        parts.append(extra[1 if en else 0])
    head = (", " if en else "，").join(parts)
    tail = (
        (f"Ack: {ack_url}" if en else f"确认：{ack_url}") if ack_url and not alarm.acked_at else ""
    )
    n = ctx.sms_param_chars
    params = {
        "grade": GRADE_EN[g] if en else GRADE_ZH[g],
        "level": LEVEL[g],
        "state": kind,
        "place": cut_chars(place, n),
        "device": cut_chars(device, n),
        "text": cut_chars(text, n),
        "time": when,
        "response": cut_chars(extra[1 if en else 0], n) if extra else "",
        "alarm_id": alarm.id,
        "url": ack_url,
    }
    return SmsText(head, tail, ", " if en else "，", ctx.sms_chars, params)


# -- one channel ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """A channel kind's bounds. Bytes are UTF-8 bytes."""

    text_bytes: int | None = None
    markdown_bytes: int | None = None  # None: the kind takes no markdown
    text_chars: int | None = None  # SMS
    title_chars: int = 64
    md_sep: str = "\n"
    mention: bool = False  # write @<mobile> into the text (DingTalk)


LIMITS: dict[str, Limits] = {
    "wecom": Limits(text_bytes=2048, markdown_bytes=4096),
    "dingtalk": Limits(text_bytes=18_000, markdown_bytes=18_000, md_sep="\n\n", mention=True),
    "sms": Limits(text_chars=300),
    "email": Limits(text_bytes=256_000, title_chars=150),
    "webhook": Limits(text_bytes=64_000, markdown_bytes=64_000, title_chars=150),
    "mqtt": Limits(text_bytes=64_000, markdown_bytes=64_000, title_chars=150),
}


def mention_line(kind: str, mentions: Sequence[Recipient]) -> list[str]:
    """DingTalk's @ works only when the text names the mobile (or user id)."""
    if not LIMITS.get(kind, Limits()).mention:
        return []
    ats = [f"@{m}" for r in mentions for m in (r.mobile, r.dingtalk_user) if m]
    return [" ".join(dict.fromkeys(ats))] if ats else []


def render(
    notice: Notice,
    kind: str,
    *,
    mentions: Sequence[Recipient] = (),
    limits: Limits | None = None,
) -> Message:
    """The notice as a Message for one kind of channel (dingtalk, wecom, sms, email, webhook,
    mqtt), within its limits. `mentions`: whom a DingTalk text @-s."""
    lim = limits or LIMITS.get(kind, LIMITS["email"])
    title = cut_chars(clean(notice.title, one_line=True), lim.title_chars)
    if lim.text_chars is not None:  # SMS
        return Message(
            title=title, text=notice.sms.text(lim.text_chars), params=dict(notice.sms.params)
        )
    at = mention_line(kind, mentions)
    text = fit([title], list(notice.body), [*notice.ack, *at], lim.text_bytes or 256_000)
    markdown = ""
    if lim.markdown_bytes is not None:
        head = [f"### {title}"]
        tail = [*notice.ack_md, *at]
        markdown = fit(head, list(notice.body_md), tail, lim.markdown_bytes, sep=lim.md_sep)
    return Message(title=title, text=text, markdown=markdown)


def render_all(
    event: AlarmTransition,
    ctx: TextContext,
    kinds: Sequence[str],
    *,
    now: float | None = None,
    ack_url: str = "",
    unit: str = "",
    mentions: Sequence[Recipient] = (),
) -> dict[str, Message]:
    """compose() once, render() per kind."""
    notice = compose(event, ctx, now=now, ack_url=ack_url, unit=unit)
    return {k: render(notice, k, mentions=mentions) for k in kinds}
