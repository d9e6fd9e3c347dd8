"""Digests: many alarms folded into one message, for the daily blue digest, what quiet hours
held back, and floods (DingTalk blocks a robot for 10 minutes past 20 messages a minute).

A digest counts its alarms by grade, lists the most urgent first (grade, then not yet
acknowledged, then newest) as far as the channel's limit allows, and says how many more there
are. Each alarm appears once, as its latest transition left it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.messages import AlarmTransition
from gateway.notify.delivery import Message, Recipient
from gateway.notify.texts import (
    BYTES,
    CHARS,
    GRADE_RANK,
    GRADE_ZH,
    LIMITS,
    Limits,
    TextContext,
    bi,
    clean,
    cut_chars,
    fit,
    md_escape,
    mention_line,
    where,
)
from rules.alarms import GRADES, Alarm
from rules.model import Grade

_STATE_ZH = {"active": "未确认", "acknowledged": "已确认", "cleared": "已恢复", "closed": "已关闭"}
_STATE_EN = {"active": "unacked", "acknowledged": "acked", "cleared": "cleared", "closed": "closed"}


@dataclass(frozen=True, slots=True)
class Digest:
    """The alarms of one digest, each once, most urgent first."""

    at: datetime
    events: tuple[AlarmTransition, ...]

    @property
    def counts(self) -> dict[Grade, int]:
        out = dict.fromkeys(GRADES, 0)
        for e in self.events:
            out[e.transition.alarm.grade] += 1
        return out


def _urgency(event: AlarmTransition) -> tuple[int, int, float]:
    alarm = event.transition.alarm
    return (GRADE_RANK[alarm.grade], alarm.acked_at is not None, -event.transition.t)


def fold(events: Iterable[AlarmTransition], at: datetime) -> Digest:
    """The latest transition of each alarm, most urgent first."""
    latest: dict[str, AlarmTransition] = {}
    for e in events:
        old = latest.get(e.transition.alarm_id)
        if old is None or (e.transition.t, e.index) >= (old.transition.t, old.index):
            latest[e.transition.alarm_id] = e
    return Digest(at, tuple(sorted(latest.values(), key=_urgency)))


def _line(event: AlarmTransition, ctx: TextContext) -> str:
    alarm: Alarm = event.transition.alarm
    when = f"{ctx.local(event.transition.t):%m-%d %H:%M}"
    place, name, device = where(alarm, ctx)
    zh = clean(event.text_zh, one_line=True) or f"{place} {name or device}"
    en = clean(event.text_en, one_line=True) or f"{place} {name or device}"
    state = alarm.state
    if ctx.language == "en":
        return f"[{alarm.grade}] {when} {en} ({_STATE_EN[state]}, {alarm.id})"
    text = f"{zh} / {en}" if ctx.language == "both" else zh
    return f"【{GRADE_ZH[alarm.grade][0]}】{when} {text}（{_STATE_ZH[state]}，{alarm.id}）"


def _counts(digest: Digest, ctx: TextContext) -> str:
    c, n = digest.counts, len(digest.events)
    zh = "，".join(f"{GRADE_ZH[g]} {c[g]}" for g in GRADES) + f"（共 {n} 条）"
    en = ", ".join(f"{g} {c[g]}" for g in GRADES) + f" ({n} in all)"
    return {"zh": zh, "en": en, "both": f"{zh} / {en}"}[ctx.language]


def _title(digest: Digest, ctx: TextContext) -> str:
    n, when = len(digest.events), f"{digest.at:%m-%d %H:%M}"
    zh = f"【预警汇总】{ctx.site_name} {when} 共 {n} 条"
    en = f"[Alarm digest] {ctx.site_name} {when}: {n} alarms"
    text = {"zh": zh, "en": en, "both": f"{zh} {en}"}[ctx.language]
    return cut_chars(clean(text, one_line=True), 120)


def render_digest(
    digest: Digest,
    ctx: TextContext,
    kind: str,
    *,
    url: str = "",
    mentions: Sequence[Recipient] = (),
    limits: Limits | None = None,
) -> Message:
    """One message for the whole digest, within the channel kind's limits. `url`: where the
    list can be seen and acknowledged (the duty console)."""
    lim = limits or LIMITS.get(kind, LIMITS["email"])
    title = cut_chars(_title(digest, ctx), lim.title_chars)
    counts = _counts(digest, ctx)
    lines = [_line(e, ctx) for e in digest.events]

    def more(n: int) -> str:
        return bi(f"……另有 {n} 条未列出", f"... and {n} more", ctx)

    tail: list[str] = []
    if url:
        tail.append(f"{bi('查看与确认', 'View and acknowledge', ctx)}: {url}")
    if ctx.cli_site:
        tail.append(f"{bi('命令', 'CLI', ctx)}: guanjia alarms {ctx.cli_site}")
    if lim.text_chars is not None:  # SMS: the counts and the link
        sep = ", " if ctx.language == "en" else "，"
        head = f"{title}{sep}{counts}"
        text = fit([], [head], [url] if url else [], lim.text_chars, CHARS, sep)
        return Message(title=title, text=text, params=_params(digest, ctx, url))
    at = mention_line(kind, mentions)
    text = fit([title, counts], lines, [*tail, *at], lim.text_bytes or 256_000, BYTES, more=more)
    markdown = ""
    if lim.markdown_bytes is not None:
        md_lines = [md_escape(x) for x in lines]
        md_tail = [*(md_escape(x) for x in tail), *at]
        markdown = fit(
            [f"### {title}", f"**{md_escape(counts)}**"],
            md_lines,
            md_tail,
            lim.markdown_bytes,
            BYTES,
            sep=lim.md_sep,
            more=more,
        )
    return Message(title=title, text=text, markdown=markdown)


def _params(digest: Digest, ctx: TextContext, url: str) -> dict[str, str]:
    c = digest.counts
    out: dict[str, str] = {g: str(c[g]) for g in GRADES}
    out.update(
        count=str(len(digest.events)),
        time=f"{digest.at:%m-%d %H:%M}",
        site=cut_chars(ctx.site_name, ctx.sms_param_chars),
        url=url,
    )
    return out
