"""Each notification carries a signed link that acknowledges the alarm for the person it was
sent to, in one step, on the duty console; the link of another alarm or a tampered one does
nothing."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from gateway.config_load import load_site
from gateway.console.passwords import hash_password
from gateway.service import Gateway
from tests.modbus_devices import free_port, meter_image, modbus_server
from tests.notify_endpoints import DingTalkRobot
from tests.test_notify_e2e import SECRET, _site, _until


@pytest.mark.asyncio
async def test_the_link_in_a_notification_acknowledges_for_its_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DT_TOKEN", "robot-token")
    monkeypatch.setenv("DT_SECRET", SECRET)
    monkeypatch.setenv("LINK_SECRET", "a link secret of thirty-two bytes")
    port = free_port()
    digest = hash_password("a long enough password")
    with DingTalkRobot(token="robot-token", secret=SECRET) as robot:
        async with modbus_server({1: meter_image(voltage=230.5)}) as meter:
            site = _site(tmp_path, meter, robot)
            site.write_text(
                site.read_text(encoding="utf-8") + f"console:\n  enabled: true\n  port: {port}\n"
                f'  public_url: "http://127.0.0.1:{port}"\n'
                '  link_secret: "${LINK_SECRET}"\n  users:\n'
                f"    - {{id: zhang-wei, name: 张伟, role: duty, password_hash: '{digest}'}}\n",
                encoding="utf-8",
            )
            gateway = Gateway(load_site(site), health_interval=3600)
            await gateway.start()
            try:
                await _until(lambda: len(robot.posted) >= 2)
                links = {}
                for r in robot.posted:
                    text = r.json["markdown"]["text"]
                    url = re.search(rf"http://127\.0\.0\.1:{port}/\S+?(?=[)\s]|$)", text)
                    assert url is not None, text
                    links[r.json["at"]["atMobiles"][0]] = url.group(0)
                mine = links["13800138001"]  # 张伟's, not the leader's
                async with aiohttp.ClientSession() as http:
                    forged = mine[:-3] + ("AAA" if not mine.endswith("AAA") else "BBB")
                    async with http.post(forged) as answer:
                        assert answer.status == 403
                    async with http.get(mine) as answer:
                        assert answer.status == 200  # a page to confirm; nothing done yet
                    assert gateway.alarms is not None
                    assert gateway.alarms.book.open_alarms()[0].acked_at is None
                    async with http.post(mine) as answer:
                        assert answer.status == 200
                alarm = gateway.alarms.book.open_alarms()[0]
                assert alarm.acked_by == "console:zhang-wei"
            finally:
                await gateway.stop()
    # The console's acknowledgement is in the audit trail the database gets (spooled here).
    spooled = "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (tmp_path / "spool").rglob("*")
        if p.is_file()
    )
    assert "console,action=ack,outcome=ok,site=t1" in spooled
