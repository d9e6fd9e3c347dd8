"""The console's words, Chinese first, English beside; times and durations as people read them."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")

WORDS: dict[str, tuple[str, str]] = {
    "title": ("管家值班台", "Guanjia duty console"),
    "nav_alarms": ("当前告警", "Alarms"),
    "nav_history": ("告警历史", "History"),
    "nav_devices": ("设备状态", "Devices"),
    "nav_rounds": ("巡查", "Patrols"),
    "nav_system": ("系统", "System"),
    "switch": ("English", "中文"),
    "logout": ("退出", "Log out"),
    "login": ("登录", "Log in"),
    "user": ("账号", "User"),
    "password": ("密码", "Password"),
    "login_failed": ("账号或密码错误。", "Wrong user or password."),
    "login_throttled": (
        "失败次数过多，请 {wait} 后再试。",
        "Too many failed attempts; try again in {wait}.",
    ),
    "login_busy": ("登录请求过多，请稍后再试。", "Too many logins at once; try again shortly."),
    "login_expired": ("页面已过期，请重新登录。", "The page expired; please log in again."),
    "session_over": ("登录已过期，请重新登录。", "Your session ended; please log in again."),
    "open_alarms": ("当前告警", "Open alarms"),
    "no_alarms": ("当前没有未关闭的告警。", "No open alarms."),
    "place": ("地点", "Place"),
    "age": ("已持续", "for"),
    "respond_in": ("剩余响应时间 {left}", "respond within {left}"),
    "overdue": ("已超时 {late}", "overdue by {late}"),
    "escalated": ("已升级 {n} 级", "escalated {n}×"),
    "shelved_until": ("已搁置至 {until}", "shelved until {until}"),
    "acked_by": ("{by} 于 {at} 确认", "acknowledged by {by} at {at}"),
    "flapping": ("频繁抖动", "flapping"),
    "ack": ("确认", "Acknowledge"),
    "note": ("备注", "Note"),
    "shelve": ("搁置", "Shelve"),
    "shelve_for": ("搁置时长", "Shelve for"),
    "reason": ("原因", "Reason"),
    "details": ("详情", "Details"),
    "details_shelve": ("详情 / 搁置", "Details / shelve"),
    "value": ("数值", "Value"),
    "limit": ("限值", "Limit"),
    "raised_at": ("发生时间", "Raised"),
    "state": ("状态", "State"),
    "grade": ("等级", "Grade"),
    "rule": ("规则", "Rule"),
    "subject": ("对象", "Subject"),
    "count": ("次数", "Occurrences"),
    "time": ("时间", "Time"),
    "alarm": ("告警", "Alarm"),
    "what": ("事件", "Event"),
    "by": ("操作人", "By"),
    "all": ("全部", "All"),
    "filter": ("筛选", "Filter"),
    "older": ("更早的记录", "Older"),
    "newest": ("最新记录", "Newest"),
    "no_history": ("没有记录。", "Nothing recorded."),
    "device": ("设备", "Device"),
    "driver": ("驱动", "Driver"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "unknown": ("未知", "unknown"),
    "timing": ("轮询耗时", "Timing"),
    "polls": ("次数", "Polls"),
    "errors": ("错误", "Errors"),
    "last_error": ("最近错误", "Last error"),
    "no_devices": ("没有设备。", "No devices."),
    "msg_acked": ("已确认。", "Acknowledged."),
    "msg_already acknowledged": ("此前已确认。", "It was already acknowledged."),
    "msg_shelved": ("已搁置。", "Shelved."),
    "msg_unknown alarm": ("没有这条告警。", "No such alarm."),
    "refused": ("未执行：{why}", "Not done: {why}"),
    "forbidden_role": ("您的角色不能执行此操作。", "Your role may not do this."),
    "csrf": (
        "表单已失效（页面过旧或来自别处），请刷新后重试。",
        "The form is no longer valid (an old page, or from elsewhere); reload and try again.",
    ),
    "not_found": ("页面不存在。", "No such page."),
    "stats": ("控制台统计", "Console figures"),
    "users": ("用户", "Users"),
    "role": ("角色", "Role"),
    "api_clients": ("接口客户端", "API clients"),
    "scopes": ("权限", "Scopes"),
    "refresh": ("刷新", "Refresh"),
    "rounds_title": ("巡查记录", "Patrol rounds"),
    "no_routes": ("本站没有巡查路线。", "No patrol routes at this site."),
    "today": ("今天", "Today"),
    "yesterday": ("昨天", "Yesterday"),
    "no_rounds": ("没有巡查记录。", "No rounds recorded."),
    "rounds_since": (
        "网关 {since} 启动，此前的记录见数据库。",
        "The gateway started at {since}; earlier rounds are in the database.",
    ),
    "routes": ("巡查路线", "Routes"),
    "scheduled": ("计划开始", "scheduled"),
    "guard": ("巡查人", "guard"),
    "not_watched": (
        "此轮开始时网关未运行，不作判定。",
        "The gateway was not running when this round opened: not judged.",
    ),
    "checkpoint": ("巡查点", "Checkpoint"),
}

RESULT_NAMES: dict[str, tuple[str, str]] = {
    "ok": ("正常", "ok"),
    "late": ("迟到", "late"),
    "out_of_order": ("顺序错误", "out of order"),
    "missed": ("漏巡", "missed"),
}

CHECKPOINT_NAMES: dict[str, tuple[str, str]] = {
    "pending": ("待巡", "pending"),
    "on_time": ("准时", "on time"),
    "late": ("迟到", "late"),
    "skipped": ("被跳过", "skipped"),
    "out_of_order": ("顺序错误", "out of order"),
    "missed": ("漏巡", "missed"),
}

ROUND_STATES: dict[str, tuple[str, str]] = {
    "open": ("进行中", "in progress"),
    "closed": ("已结束", "finished"),
}

DAY_TYPES: dict[str, tuple[str, str]] = {
    "workday": ("工作日", "workday"),
    "restday": ("休息日", "rest day"),
    "holiday": ("节假日", "holiday"),
}

GRADE_NAMES: dict[str, tuple[str, str]] = {
    "red": ("红色（I级）", "Red (I)"),
    "orange": ("橙色（II级）", "Orange (II)"),
    "yellow": ("黄色（III级）", "Yellow (III)"),
    "blue": ("蓝色（IV级）", "Blue (IV)"),
}

STATE_NAMES: dict[str, tuple[str, str]] = {
    "active": ("未确认", "unacknowledged"),
    "acknowledged": ("已确认", "acknowledged"),
    "cleared": ("已恢复，待确认", "cleared, unacknowledged"),
    "closed": ("已关闭", "closed"),
}

WHAT_NAMES: dict[str, tuple[str, str]] = {
    "raised": ("发生", "raised"),
    "updated": ("更新", "updated"),
    "acked": ("确认", "acknowledged"),
    "cleared": ("恢复", "cleared"),
    "closed": ("关闭", "closed"),
    "shelved": ("搁置", "shelved"),
    "unshelved": ("解除搁置", "unshelved"),
    "escalated": ("升级", "escalated"),
    "flapping": ("抖动", "flapping"),
}

ROLE_NAMES: dict[str, tuple[str, str]] = {
    "duty": ("值班人员", "duty"),
    "leader": ("值班领导", "leader"),
    "admin": ("管理员", "admin"),
}

# Offered on the shelving form; the desk takes any duration up to its maximum.
SHELVE_CHOICES: tuple[tuple[str, float], ...] = (
    ("30m", 1800.0),
    ("1h", 3600.0),
    ("2h", 7200.0),
    ("4h", 14400.0),
    ("8h", 28800.0),
    ("1d", 86400.0),
    ("3d", 3 * 86400.0),
    ("7d", 7 * 86400.0),
)


def pick(lang: Lang, pair: tuple[str, str]) -> str:
    return pair[0] if lang == "zh" else pair[1]


def tr(lang: Lang, key: str, **fields: object) -> str:
    pair = WORDS.get(key)
    if pair is None:
        return key
    text = pick(lang, pair)
    return text.format(**fields) if fields else text


def named(lang: Lang, table: dict[str, tuple[str, str]], key: str) -> str:
    pair = table.get(key)
    return key if pair is None else pick(lang, pair)


def duration(seconds: float, lang: Lang) -> str:
    """'3 分钟', '2 小时 5 分', '1 d 4 h': two units at most, rounded down."""
    s = max(0, int(seconds))
    zh = lang == "zh"
    if s < 60:
        return f"{s} 秒" if zh else f"{s} s"
    if s < 3600:
        return f"{s // 60} 分钟" if zh else f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} 小时 {m} 分" if zh else f"{h} h {m} min"
    d, h = divmod(s // 3600, 24)
    return f"{d} 天 {h} 小时" if zh else f"{d} d {h} h"


def clock(t: float, tz: tzinfo, now: float) -> str:
    """Time of day for today's, month-day and time for older."""
    moment = datetime.fromtimestamp(t, tz)
    today = datetime.fromtimestamp(now, tz).date()
    return moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")
