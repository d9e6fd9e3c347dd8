"""Quiet hours: a yellow alarm at 23:00 is held (in a fsynced file beside the outbox, so a
restart keeps it) and reaches the duty group in one digest when the quiet hours end; a red
alarm at the same time goes at once."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.bus import Bus
from gateway.messages import AlarmTransition
from gateway.notify.channels import build_channel
from gateway.notify.channels.config import DingTalkConfig
from gateway.notify.notifier import Notifier
from gateway.notify.roster import Roster, RosterConfig
from gateway.notify.routing import Router, RoutingConfig
from gateway.notify.texts import TextContext
from rules.alarms import Alarm, Transition
from rules.calendar import WorkCalendar
from tests.notify_endpoints import DingTalkRobot

TZ = ZoneInfo("Asia/Shanghai")
ROSTER = RosterConfig.model_validate(
    {
        "people": [
            {"id": "zhang-wei", "name": "张伟", "mobile": "13800138001", "channels": ["duty"]},
            {"id": "li-na", "name": "李娜", "mobile": "13800138002", "channels": ["duty"]},
        ],
        "shifts": [
            {
                "name": "all",
                "time": "00:00-00:00",
                "days": ["any"],
                "on_duty": ["zhang-wei"],
                "people": ["li-na"],
            }
        ],
    }
)


def _event(alarm_id: str, grade: str, t: float) -> AlarmTransition:
    alarm = Alarm(alarm_id, "r", alarm_id, "threshold", grade, t, t, 5.0, 1.0)  # type: ignore[arg-type]
    return AlarmTransition(Transition(alarm, "raised", t), f"{alarm_id} 超限", f"{alarm_id} high")


def _notifier(tmp_path: Path, robot: DingTalkRobot, now: list[float]) -> Notifier:
    roster = Roster(ROSTER, WorkCalendar("Asia/Shanghai"))
    router = Router(RoutingConfig(), roster, {"duty": "dingtalk"})
    config = DingTalkConfig(
        kind="dingtalk", name="duty", url=robot.url, access_token="${T}", secret=None
    )
    channel = build_channel(config, lambda _ref: "robot-token")
    texts = TextContext(site_name="测试楼", tz=TZ, response_times={"yellow": 3600.0})
    return Notifier(Bus(), router, texts, tmp_path / "outbox.db", [channel], clock=lambda: now[0])


@pytest.mark.asyncio
async def test_quiet_hours_hold_yellow_into_a_morning_digest_across_a_restart(
    tmp_path: Path,
) -> None:
    night = datetime(2026, 7, 14, 23, 0, tzinfo=TZ).timestamp()
    morning = datetime(2026, 7, 15, 7, 0, 5, tzinfo=TZ).timestamp()
    now = [night]
    with DingTalkRobot(token="robot-token") as robot:
        notifier = _notifier(tmp_path, robot, now)
        notifier.start()
        try:
            await notifier._handle([_event("a1", "yellow", night), _event("a2", "yellow", night)])
            await notifier._handle([_event("fire", "red", night)])
            await robot.until(lambda r: len(r.posted) >= 1)
            await asyncio.sleep(0.3)
        finally:
            await notifier.stop()
        assert len(robot.posted) == 1  # red went at once, to the person on duty
        assert "fire" in robot.posted[0].json["markdown"]["text"]
        assert (tmp_path / "held.jsonl").read_text(encoding="utf-8").count("\n") == 2

        now[0] = morning  # a restart, then the quiet hours end
        notifier = _notifier(tmp_path, robot, now)
        notifier.start()
        try:
            assert await notifier.send_digests() == 2  # one per person of the duty group
            await robot.until(lambda r: len(r.posted) >= 3)
            assert await notifier.send_digests() == 0  # taken: nothing twice
        finally:
            await notifier.stop()
    digests = [r.json["markdown"]["text"] for r in robot.posted[1:]]
    assert all("a1" in text and "a2" in text for text in digests)
    mentioned = sorted(r.json["at"]["atMobiles"][0] for r in robot.posted[1:])
    assert mentioned == ["13800138001", "13800138002"]
    assert (tmp_path / "held.jsonl").read_text(encoding="utf-8") == ""
