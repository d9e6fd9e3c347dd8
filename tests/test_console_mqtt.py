"""The duty console in a running gateway, end to end: a real meter (pymodbus) crosses a
threshold, the rules raise a red alarm, the duty officer logs in with chromium and
acknowledges it, and the acknowledgement shows in `guanjia alarms` (the alarm store) and on
the alarm's retained MQTT topic of a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main as cli_main
from gateway.config_load import load_site
from gateway.console import hash_password
from gateway.service import Gateway
from tests.modbus_devices import PROFILE, meter_image, modbus_server
from tests.mqtt_helpers import Client, until
from tests.servers import MosquittoServer
from tests.test_console_browser import CHROMEDRIVER, CHROMIUM, PASSWORD, chromium, log_in, rgb

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver): /usr/bin/chromium or /usr/bin/chromedriver is missing",
    ),
]

RED = (198, 40, 40)


def write_site(tmp_path: Path, meter_port: int, broker: MosquittoServer) -> Path:
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
        mqtt:
          brokers: [{{name: site, host: 127.0.0.1, port: {broker.port}}}]
        devices:
          - id: m0
            profile: test_meter
            modbus: {{transport: tcp, host: 127.0.0.1, port: {meter_port}, timeout: 1s}}
            poll: 0.1s
            tags: {{floor: "3", zone: "301"}}
        rules:
          - {{id: volts, kind: threshold, point: voltage_v, above: 200, grade: red}}
        console:
          enabled: true
          host: 127.0.0.1
          port: 0
          users:
            - {{id: wang, name: 王值班, role: duty, password_hash: "{hash_password(PASSWORD)}"}}
        """)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def acknowledge_in_browser(base: str, profile: Path, alarm_id: str) -> dict[str, object]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, object] = {}
    card = f"article[data-alarm='{alarm_id}']"
    with chromium(profile, seen) as browser:
        wait = WebDriverWait(browser, 15)
        log_in(browser, base)
        alarm = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, card)))
        seen["before"] = alarm.get_attribute("class")
        seen["border"] = rgb(alarm.value_of_css_property("border-left-color"))
        seen["text"] = alarm.text
        alarm.find_element(By.CSS_SELECTOR, "form button").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "已确认"))
        alarm = browser.find_element(By.CSS_SELECTOR, card)
        seen["after"] = alarm.get_attribute("class")
        seen["after_text"] = alarm.text
    return seen


def alarm_states(client: Client, topic: str) -> list[dict[str, Any]]:
    with client.arrived:
        return [json.loads(p) for t, p, _ in client.messages if t == topic and p]


async def test_a_red_alarm_acknowledged_in_the_browser_shows_in_the_cli_and_on_mqtt(
    tmp_path: Path, broker: MosquittoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with modbus_server({1: meter_image(voltage=230.5)}) as meter_port:
        site = write_site(tmp_path, meter_port, broker)
        gateway = Gateway(load_site(site), health_interval=3600)
        assert gateway.console is not None  # wired by the gateway: the site has rules
        watcher = Client(broker.port)
        watcher.subscribe("guanjia/t1/alarm/#")
        await gateway.start()
        try:
            alarms = gateway.alarms
            assert alarms is not None
            await until(lambda: bool(alarms.book.open_alarms()), timeout=15)
            [alarm] = alarms.book.open_alarms()
            assert (alarm.id, alarm.grade, alarm.state) == ("volts.m0", "red", "active")
            topic = f"guanjia/t1/alarm/{alarm.id}"
            await until(lambda: bool(alarm_states(watcher, topic)), timeout=10)
            assert alarm_states(watcher, topic)[0]["state"] == "active"

            base = f"http://127.0.0.1:{gateway.console.port}"
            seen = await asyncio.to_thread(
                acknowledge_in_browser, base, tmp_path / "chromium", alarm.id
            )

            def acknowledged() -> bool:
                return any(s["state"] == "acknowledged" for s in alarm_states(watcher, topic))

            await until(acknowledged, timeout=10)
            # Someone who subscribes now gets the retained state: acknowledged, by whom.
            late = Client(broker.port)
            try:
                late.subscribe(topic)
                await late.wait(topic)
                [(payload, retained)] = [(p, r) for t, p, r in late.messages if t == topic]
            finally:
                late.close()
            code = await asyncio.to_thread(cli_main, ["alarms", str(site)])
            listed = capsys.readouterr().out
        finally:
            await gateway.stop()
            watcher.close()

    assert "g-red" in str(seen["before"])
    assert "s-active" in str(seen["before"])
    assert seen["border"] == RED
    assert "未确认" in str(seen["text"])
    assert "s-acknowledged" in str(seen["after"])
    assert "console:wang" in str(seen["after_text"])
    assert seen["driver_stopped"]

    state = json.loads(payload)
    assert retained
    assert (state["id"], state["grade"], state["state"]) == ("volts.m0", "red", "acknowledged")
    assert state["acked_by"] == "console:wang"

    assert code == 0
    [line] = [row for row in listed.splitlines() if row.startswith("volts.m0")]
    assert line.split()[1:3] == ["red", "acknowledged"]
