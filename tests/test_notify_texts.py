"""Notification texts: what a notice says, each channel's limits in UTF-8 bytes with Chinese
text (never a split character, the acknowledgement kept), DingTalk's @mobile, SMS variables,
and digests that fold many alarms into one message."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.messages import AlarmTransition
from gateway.notify.delivery import Message, Recipient
from gateway.notify.digest import fold, render_digest
from gateway.notify.texts import (
    LIMITS,
    DeviceLabel,
    TextContext,
    compose,
    cut_bytes,
    cut_chars,
    fit,
    label_from_tags,
    render,
    render_all,
    utf8_len,
)
from rules.alarms import Alarm, Transition
from rules.model import Grade

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 10, 10, 14, 3, 12, tzinfo=SHANGHAI).timestamp()
ACK_URL = "https://duty.example.gov.cn/ack/fire.smoke-301?token=0123456789abcdef"
ZHANG = Recipient("张伟", mobile="13800138001")
LABELS = {"smoke-301": DeviceLabel("主楼 3层 301会议室", "301 烟感探测器")}
KINDS = ("wecom", "dingtalk", "sms", "email", "webhook")


def ctx(language: str = "zh", **changes: object) -> TextContext:
    fields: dict[str, object] = {
        "site_name": "市行政中心",
        "tz": SHANGHAI,
        "language": language,
        "labels": LABELS,
        "response_times": {"red": 300.0, "orange": 900.0, "yellow": 3600.0, "blue": 86400.0},
        "mqtt_ack": "guanjia/city-hall/alarm/{alarm_id}/ack",
        "cli_site": "/etc/guanjia/site.yaml",
    }
    fields.update(changes)
    return TextContext(**fields)  # type: ignore[arg-type]


def event(
    what: str = "raised",
    grade: Grade = "red",
    text_zh: str = "main / 3F / 301 烟感 smoke-301 火警",
    text_en: str = "main / 3F / 301: fire alarm at smoke-301",
    t: float = T0,
    alarm_id: str = "fire.smoke-301",
    device: str = "smoke-301",
    **changes: object,
) -> AlarmTransition:
    fields: dict[str, object] = {
        "id": alarm_id,
        "rule": "fire",
        "subject": device,
        "kind": "fire_alarm",
        "grade": grade,
        "raised_at": t,
        "updated_at": t,
        "value": 1,
        "limit": 0,
        "escalation_since": t,
    }
    fields.update(changes)
    alarm = Alarm(**fields)  # type: ignore[arg-type]
    return AlarmTransition(Transition(alarm, what, t), text_zh, text_en)  # type: ignore[arg-type]


def within_limits(kind: str, message: Message) -> None:
    lim = LIMITS[kind]
    if lim.text_chars is not None:
        assert len(message.text) <= lim.text_chars
        return
    assert lim.text_bytes is not None
    assert utf8_len(message.text) <= lim.text_bytes
    if lim.markdown_bytes is not None:
        assert utf8_len(message.markdown) <= lim.markdown_bytes
    # The WeCom and DingTalk channels put the title in front unless the text starts with it.
    assert message.text.startswith(message.title)
    if message.markdown:
        assert message.title in message.markdown


# -- what a notice says ---------------------------------------------------------------------


def test_a_red_notice_names_grade_place_device_value_time_and_how_to_acknowledge() -> None:
    notice = compose(event(), ctx(), now=T0 + 60, ack_url=ACK_URL)
    message = render(notice, "wecom")
    assert message.title == "【红色预警】主楼 3层 301会议室 301 烟感探测器"
    lines = message.text.splitlines()
    assert lines[1] == "main / 3F / 301 烟感 smoke-301 火警"
    for line in (
        "级别：红色预警（I 级）",
        "位置：主楼 3层 301会议室",
        "设备：301 烟感探测器（smoke-301）",
        "数值：1（限值 0）",
        "时间：2026-10-10 14:03:12",
        "响应：请于 4 分钟内确认",
        f"确认: {ACK_URL}",
        "MQTT: guanjia/city-hall/alarm/fire.smoke-301/ack",
        "命令: guanjia ack /etc/guanjia/site.yaml fire.smoke-301",
    ):
        assert line in lines


def test_times_are_the_sites_and_overdue_responses_say_so() -> None:
    utc = ctx(tz=ZoneInfo("UTC"))
    assert "时间：2026-10-10 06:03:12" in render(compose(event(), utc), "email").text
    late = compose(event(escalation=2), ctx(), now=T0 + 420)
    assert "响应：已超时 2 分钟（已升级 2 次）" in render(late, "email").text
    assert "【红色预警·升级】" in compose(event("escalated"), ctx()).title


def test_english_and_both() -> None:
    english = render(compose(event(), ctx("en"), ack_url=ACK_URL), "email")
    assert english.title == "[RED alert] 主楼 3层 301会议室 301 烟感探测器"
    assert "Grade: red (I)" in english.text
    assert f"Acknowledge: {ACK_URL}" in english.text
    assert "级别" not in english.text
    both = render(compose(event(), ctx("both")), "email").text
    assert both.index("级别：红色预警") < both.index("Grade: red (I)")


def test_a_device_without_a_label_is_named_by_its_id() -> None:
    notice = compose(event(device="ac-9f-901", alarm_id="ac.ac-9f-901"), ctx())
    assert notice.title == "【红色预警】ac-9f-901"
    assert "设备：ac-9f-901" in notice.body


def test_labels_from_tags() -> None:
    names = {"main": "主楼", "3": "3层"}
    tags = {"building": "main", "floor": "3", "zone": "301会议室", "use": "hvac"}
    assert label_from_tags(tags, names, "会议室空调") == DeviceLabel(
        "主楼 / 3层 / 301会议室", "会议室空调"
    )


def test_resolved_notices_say_who_took_it_and_drop_the_ack_lines() -> None:
    acked = event("acked", acked_at=T0 + 120, acked_by="zhang-wei", ack_note="误报")
    message = render(compose(acked, ctx(), ack_url=ACK_URL), "wecom")
    assert message.title.startswith("【已确认·红色】")
    assert "状态：已确认，zhang-wei 于 14:05 确认：误报" in message.text
    assert ACK_URL not in message.text
    assert "响应" not in message.text
    cleared = render(compose(event("cleared", cleared_at=T0 + 60), ctx(), ack_url=ACK_URL), "wecom")
    assert "状态：已恢复，尚未确认" in cleared.text
    assert ACK_URL in cleared.text  # nobody acknowledged it yet


def test_dingtalk_names_the_mobiles_it_mentions() -> None:
    message = render(compose(event(), ctx()), "dingtalk", mentions=[ZHANG, ZHANG])
    assert message.text.endswith("@13800138001")
    assert message.markdown.endswith("@13800138001")
    assert message.text.count("@13800138001") == 1
    assert "@" not in render(compose(event(), ctx()), "wecom", mentions=[ZHANG]).text


def test_sms_has_template_variables_and_a_short_text() -> None:
    long_text = "主楼 3F 301 烟感探测器报警，" * 30
    message = render(compose(event(text_zh=long_text), ctx(), ack_url=ACK_URL), "sms")
    assert len(message.text) <= 300
    assert message.text.endswith(f"确认：{ACK_URL}")
    assert message.params["grade"] == "红色"
    assert message.params["url"] == ACK_URL
    assert message.params["time"] == "10-10 14:03"
    assert all(len(v) <= 35 for k, v in message.params.items() if k != "url")


def test_markdown_escapes_outside_text() -> None:
    notice = compose(event(text_zh="门 *A_1* <font>[x]"), ctx())
    markdown = render(notice, "wecom").markdown
    assert r"**门 \*A\_1\* ＜font＞\[x\]**" in markdown


def test_render_all_composes_once_for_every_kind() -> None:
    messages = render_all(event(), ctx(), KINDS, ack_url=ACK_URL, mentions=[ZHANG])
    assert set(messages) == set(KINDS)
    for kind, message in messages.items():
        within_limits(kind, message)


# -- limits ---------------------------------------------------------------------------------


def test_a_long_chinese_text_is_cut_within_each_limit_keeping_the_ack() -> None:
    huge = "楼宇设备报警，温度过高🌡️。" * 2000
    notice = compose(event(text_zh=huge, text_en="x" * 30000), ctx("both"), ack_url=ACK_URL)
    for kind in KINDS:
        message = render(notice, kind, mentions=[ZHANG])
        within_limits(kind, message)
        assert ACK_URL in message.text
    wecom = render(notice, "wecom")
    assert utf8_len(wecom.text) > 2000  # cut to the limit, not far below it
    assert "…" in wecom.text
    assert wecom.text.endswith("guanjia ack /etc/guanjia/site.yaml fire.smoke-301")
    dingtalk = render(notice, "dingtalk", mentions=[ZHANG])
    assert dingtalk.markdown.endswith("@13800138001")


CJK = st.text(
    st.characters(codec="utf-8") | st.sampled_from("楼层门禁报警温度🌡️👨‍👩‍👧é\u0301"),
    max_size=3000,
)


@settings(max_examples=200, deadline=None)
@given(CJK, st.integers(min_value=0, max_value=5000))
def test_cut_bytes_never_splits_a_character(text: str, limit: int) -> None:
    cut = cut_bytes(text, limit)
    assert utf8_len(cut) <= limit
    if cut != text:
        assert cut == "" or (cut.endswith("…") and text.startswith(cut[:-1]))


@settings(max_examples=200, deadline=None)
@given(CJK, st.integers(min_value=0, max_value=500))
def test_cut_chars(text: str, limit: int) -> None:
    cut = cut_chars(text, limit)
    assert len(cut) <= limit
    assert cut == text or text.startswith(cut[:-1])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(CJK, max_size=5),
    st.lists(CJK, max_size=20),
    st.lists(st.text("确认ack:/https", max_size=40), max_size=3),
    st.integers(min_value=0, max_value=4096),
)
def test_fit_keeps_the_tail_while_the_body_can_give_way(
    head: list[str], body: list[str], tail: list[str], limit: int
) -> None:
    text = fit(head, body, tail, limit)
    assert utf8_len(text) <= limit
    if utf8_len("\n".join(tail)) + 1 <= limit and tail:
        assert text.endswith("\n".join(tail))


@settings(max_examples=100, deadline=None)
@given(CJK, CJK, CJK, st.sampled_from(["zh", "en", "both"]))
def test_every_channel_stays_within_its_limits(
    text_zh: str, text_en: str, place: str, language: str
) -> None:
    labels = {"smoke-301": DeviceLabel(place, text_zh[:50])}
    c = ctx(language, labels=labels)
    notice = compose(event(text_zh=text_zh, text_en=text_en), c, ack_url=ACK_URL)
    for kind in KINDS:
        message = render(notice, kind, mentions=[ZHANG])
        within_limits(kind, message)
        assert ACK_URL in message.text


def test_text_from_outside_is_made_safe() -> None:
    notice = compose(event(text_zh="门\ud800禁\x07报警\x1b[31m"), ctx())
    text = render(notice, "wecom").text
    text.encode("utf-8")  # a lone surrogate would not encode
    assert "门?禁 报警 [31m" in text


# -- digests --------------------------------------------------------------------------------


def flood(n: int) -> list[AlarmTransition]:
    grades: list[Grade] = ["blue", "yellow", "orange", "red"]
    return [
        event(
            grade=grades[i % 4],
            text_zh=f"{i} 号门禁控制器离线，已持续 {i} 分钟，请检查网络与供电",
            text_en=f"access controller {i} offline for {i} min",
            t=T0 + i,
            alarm_id=f"offline.acc-{i}",
            device=f"acc-{i}",
        )
        for i in range(n)
    ]


def test_a_digest_counts_by_grade_lists_the_most_urgent_and_says_how_many_more() -> None:
    events = flood(400)
    digest = fold(events, datetime(2026, 10, 11, 8, 30, tzinfo=SHANGHAI))
    assert digest.counts == {"red": 100, "orange": 100, "yellow": 100, "blue": 100}
    message = render_digest(digest, ctx(), "wecom", url="https://duty.example.gov.cn/alarms")
    within_limits("wecom", message)
    lines = message.text.splitlines()
    assert lines[0] == "【预警汇总】市行政中心 10-11 08:30 共 400 条"
    assert lines[1] == "红色 100，橙色 100，黄色 100，蓝色 100（共 400 条）"
    listed = [x for x in lines if x.startswith("【")][1:]
    assert listed
    assert all(x.startswith("【红】") for x in listed)
    assert listed[0].startswith("【红】10-10 14:09 399 号门禁")  # newest red first
    more = next(x for x in lines if x.startswith("……另有"))
    assert more == f"……另有 {400 - len(listed)} 条未列出"
    assert lines[-2:] == [
        "查看与确认: https://duty.example.gov.cn/alarms",
        "命令: guanjia alarms /etc/guanjia/site.yaml",
    ]


def test_a_small_digest_lists_everything() -> None:
    digest = fold(flood(4), datetime(2026, 10, 11, 8, 30, tzinfo=SHANGHAI))
    message = render_digest(digest, ctx("en"), "dingtalk", mentions=[ZHANG])
    assert "more" not in message.text
    assert [x[:8] for x in message.text.splitlines()[2:6]] == [
        "[red] 10",
        "[orange]",
        "[yellow]",
        "[blue] 1",
    ]
    assert message.markdown.endswith("@13800138001")


def test_a_digest_shows_each_alarm_once_as_it_is_now() -> None:
    raised = event(t=T0)
    acked = event("acked", t=T0 + 60, acked_at=T0 + 60, acked_by="li-na")
    digest = fold([acked, raised], datetime(2026, 10, 11, 8, 30, tzinfo=SHANGHAI))
    assert digest.events == (acked,)
    assert "（已确认，fire.smoke-301）" in render_digest(digest, ctx(), "email").text


@pytest.mark.parametrize("kind", KINDS)
def test_digests_stay_within_every_limit(kind: str) -> None:
    digest = fold(flood(1000), datetime(2026, 10, 11, 8, 30, tzinfo=SHANGHAI))
    message = render_digest(digest, ctx("both"), kind, url="https://d.example/a")
    within_limits(kind, message)
    if kind == "sms":
        assert message.params["red"] == "250"
        assert message.text.endswith("https://d.example/a")
