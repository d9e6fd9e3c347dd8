"""Alarms reach the people on duty, end to end: a real meter (pymodbus) crosses a threshold,
the rules raise a red alarm, the notifier routes it along the roster and a local DingTalk
robot that checks the signature as the real service does receives it, once per person; a
restart sends nothing twice; the acknowledgement sends the resolved notice."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.config_load import load_site
from gateway.service import Gateway
from gateway.view import render
from tests.modbus_devices import PROFILE, meter_image, modbus_server
from tests.notify_endpoints import DingTalkRobot

SECRET = "SECtest0123456789"


def _site(tmp_path: Path, port: int, robot: DingTalkRobot) -> Path:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "test_meter.yaml").write_text(
        yaml.safe_dump(PROFILE.model_dump(mode="json", exclude_defaults=True))
    )
    text = textwrap.dedent(f"""\
        site: {{name: 测试楼, id: t1, tags: {{building: main}}}}
        profile_dirs: [profiles]
        spool: {{path: spool}}
        alarms: {{store: alarms.db}}
        devices:
          - id: m0
            profile: test_meter
            modbus: {{transport: tcp, host: 127.0.0.1, port: {port}, timeout: 1s}}
            poll: 0.1s
            tags: {{floor: "3", zone: "301"}}
        rules:
          - {{id: volts, kind: threshold, point: voltage_v, above: 200, grade: red}}
        notify:
          channels:
            - {{kind: dingtalk, name: duty, url: "{robot.url}", access_token: "${{DT_TOKEN}}",
               secret: "${{DT_SECRET}}"}}
          places: {{main: 主楼, "3": 3层, "301": 301室}}
          routing: {{quiet: null}}
          roster:
            people:
              - {{id: zhang-wei, name: 张伟, mobile: "13800138001", channels: [duty]}}
              - {{id: chen-jun, name: 陈军, role: leader, mobile: "13800138005",
                 channels: [duty]}}
            shifts:
              - {{name: all, time: "00:00-00:00", days: [any], on_duty: [zhang-wei],
                 leader: chen-jun}}
        """)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def _until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.asyncio
async def test_a_red_alarm_reaches_the_person_on_duty_and_the_leader_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DT_TOKEN", "robot-token")
    monkeypatch.setenv("DT_SECRET", SECRET)
    with DingTalkRobot(token="robot-token", secret=SECRET) as robot:
        async with modbus_server({1: meter_image(voltage=230.5)}) as port:
            site = _site(tmp_path, port, robot)
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:
                await _until(lambda: len(robot.posted) >= 2)
                await asyncio.sleep(1.2)  # nothing more is coming; the outbox figures refresh
                health = gateway.health()
                view = render(gateway)
            finally:
                await gateway.stop()
            first = [r.json for r in robot.posted]
            assert len(first) == 2  # the person on duty and the duty leader, one each
            texts = [doc["markdown"]["text"] for doc in first]
            mentioned = sorted(m for doc in first for m in doc["at"]["atMobiles"])
            assert mentioned == ["13800138001", "13800138005"]
            for doc in first:
                mobile = doc["at"]["atMobiles"][0]
                assert f"@{mobile}" in doc["markdown"]["text"]  # or DingTalk @-s nobody
            assert all("红色" in t and "主楼" in t and "301室" in t for t in texts)
            assert all("230.5" in t for t in texts)
            assert len({doc["msgUuid"] for doc in first}) == 2
            assert health["outbox_depth"] == 0
            assert health["notify_duty_sent"] == 2
            assert "notifications: 2 queued, outbox 0 waiting" in view

            # A restart with the alarm still open and unacknowledged: nothing is sent twice.
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:
                await asyncio.sleep(1.0)
                assert len(robot.requests) == 2
                assert gateway.alarms is not None
                alarm_id = gateway.alarms.book.open_alarms()[0].id
                assert gateway.alarms.ack(alarm_id, "console:zhang-wei") == "acked"
                await _until(lambda: len(robot.posted) >= 4)
            finally:
                await gateway.stop()
    resolved = [r.json["markdown"]["text"] for r in robot.posted[2:]]
    assert all("确认" in text or "acknowledged" in text.lower() for text in resolved), resolved
    assert all("console:zhang-wei" in text for text in resolved)  # who took it


@pytest.mark.asyncio
async def test_nobody_acknowledges_an_orange_alarm_so_it_escalates_to_the_leader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orange goes to the person on duty; 15 minutes (its response time) unacknowledged, the
    notice is repeated to them and goes to the leader (tier 1); a tick at the same time sends
    nothing more."""
    import time

    monkeypatch.setenv("DT_TOKEN", "robot-token")
    monkeypatch.setenv("DT_SECRET", SECRET)
    with DingTalkRobot(token="robot-token", secret=SECRET) as robot:
        async with modbus_server({1: meter_image(voltage=230.5)}) as port:
            site = _site(tmp_path, port, robot)
            text = site.read_text(encoding="utf-8").replace("grade: red", "grade: orange")
            site.write_text(text, encoding="utf-8")
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:
                await _until(lambda: len(robot.posted) >= 1)
                await asyncio.sleep(0.5)
                assert [r.json["at"]["atMobiles"] for r in robot.posted] == [["13800138001"]]
                assert gateway.alarms is not None
                later = time.time() + 16 * 60
                await gateway.alarms.tick(later)
                await _until(lambda: len(robot.posted) >= 3)
                await gateway.alarms.tick(later)
                await asyncio.sleep(0.5)
            finally:
                await gateway.stop()
    escalated = [r.json for r in robot.posted[1:]]
    assert len(escalated) == 2  # nothing twice
    assert sorted(doc["at"]["atMobiles"][0] for doc in escalated) == [
        "13800138001",
        "13800138005",
    ]
    assert all(
        "升级" in doc["markdown"]["text"] or "scalat" in doc["markdown"]["text"]
        for doc in escalated
    ), escalated[0]["markdown"]["text"]
