"""The duty console in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver, against a console over a real AlarmService and its SQLite store."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from pathlib import Path

import pytest

from gateway.alarm_service import AlarmService
from gateway.alarm_store import AlarmStore
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.commands import CommandRouter
from gateway.config_load import load_site
from gateway.console import Console, ConsoleConfig, ServiceDesk, hash_password
from rules.catalog import Catalog
from rules.model import Raise

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
    "chromium-driver): /usr/bin/chromium or /usr/bin/chromedriver is missing",
)

PASSWORD = "zhiban-2024!"
RED = "doors.door-archive"
YELLOW = "ac.ac-301"
SITE = textwrap.dedent("""\
    site: {name: 市行政中心, id: city-hall, tags: {building: main}}
    alarms: {store: alarms.sqlite}
    devices:
      - id: door-archive
        profile: hikvision_access_controller
        mqtt: {vars: {device: archive}}
        tags: {floor: B1, zone: archive}
      - id: ac-301
        profile: coolmaster_indoor
        modbus: {transport: tcp, host: 127.0.0.1, port: 1, base: 16}
        tags: {floor: "3", zone: "301"}
    """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drive(base: str, profile: Path, forged: str, good_link: str) -> dict[str, object]:
    """The whole visit, synchronous as selenium is (run in a thread beside the console)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=390,844",  # a phone
    ):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), port=free_port())
    browser = webdriver.Chrome(service=service, options=options)
    seen: dict[str, object] = {}
    try:
        wait = WebDriverWait(browser, 15)
        browser.get(f"{base}/login")
        browser.find_element(By.ID, "user").send_keys("wang")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "article.alarm")))
        red = browser.find_element(By.CSS_SELECTOR, f"article[data-alarm='{RED}']")
        seen["first"] = browser.find_element(By.CSS_SELECTOR, "article.alarm").get_attribute(
            "data-alarm"
        )
        seen["red_text"] = red.text
        seen["red_border"] = red.value_of_css_property("border-left-color")
        seen["overflow"] = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        red.find_element(By.CSS_SELECTOR, "form button").click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "已确认"))
        red = browser.find_element(By.CSS_SELECTOR, f"article[data-alarm='{RED}']")
        seen["red_after"] = red.get_attribute("class")
        seen["red_after_text"] = red.text

        browser.find_element(By.LINK_TEXT, "English").click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Open alarms"))
        seen["english"] = browser.find_element(By.TAG_NAME, "main").text

        browser.get(f"{base}{forged}")
        seen["forged"] = browser.find_element(By.TAG_NAME, "main").text

        # The confirmation page submits itself: the script is served and allowed by the CSP.
        browser.get(f"{base}{good_link}")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "Acknowledged."))
        seen["link"] = browser.find_element(By.TAG_NAME, "main").text
    finally:
        browser.quit()  # stops chromedriver too
    seen["driver_stopped"] = service.process is None or service.process.poll() is not None
    return seen


async def test_duty_officer_logs_in_and_acknowledges_the_red_alarm(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE, encoding="utf-8")
    loaded = load_site(site, need_broker=False)
    store = AlarmStore(loaded.alarm_store_path())
    book, catalog, t = store.load(), Catalog.load(), time.time() - 60
    raised = book.apply(Raise("doors", "door-archive", "duress"), t, catalog.grade_of)
    raised += book.apply(
        Raise("ac", "ac-301", "ac_setpoint_violation", 22.0, 26.0), t, catalog.grade_of
    )
    store.save(raised, book)
    store.close()

    bus = Bus()
    service = AlarmService(
        loaded,
        DeviceCatalog.build(loaded),
        CommandRouter("city-hall", lambda _d: None, [], bus.publish),
        bus,
        store_path=loaded.alarm_store_path(),
        rules=[],
    )
    service.start()
    desk = ServiceDesk(service, list)
    config = ConsoleConfig.model_validate(
        {
            "enabled": True,
            "port": 0,
            "link_secret": "${LINK_KEY}",
            "users": [
                {
                    "id": "wang",
                    "name": "王值班",
                    "role": "duty",
                    "password_hash": hash_password(PASSWORD),
                }
            ],
        }
    )
    console = Console(config, desk, lambda _ref: "browser-test-link-key-0123456789")
    await console.start()
    try:
        good = console.sign_link(YELLOW, "wang")
        parts = console.sign_link(RED, "wang").split("/")
        parts[-1] = ("A" if parts[-1][0] != "A" else "B") + parts[-1][1:]
        forged = "/".join(parts)
        seen = await asyncio.to_thread(drive, console.url, tmp_path / "chromium", forged, good)

        assert seen["first"] == RED
        assert "胁迫报警" in str(seen["red_text"])
        assert "未确认" in str(seen["red_text"])
        assert seen["red_border"] in ("rgb(198, 40, 40)", "rgba(198, 40, 40, 1)")
        assert seen["overflow"] == 0, "the alarm page is wider than a phone"
        assert "s-acknowledged" in str(seen["red_after"])
        assert "console:wang" in str(seen["red_after_text"])
        assert "Open alarms" in str(seen["english"])
        assert "DURESS" in str(seen["english"])
        assert "链接无效" in str(seen["forged"])
        assert "Invalid link" in str(seen["forged"])
        assert "已确认" in str(seen["link"])
        assert seen["driver_stopped"]

        assert console.stats()["acks"] == 2
        assert console.stats()["links_refused"] == 1
    finally:
        await console.stop()
        await service.stop()  # everything acknowledged is committed by now
        desk.close()
    with AlarmStore(loaded.alarm_store_path()) as saved:
        acks = {(h.alarm_id, h.by) for h in saved.history() if h.what == "acked"}
        assert acks == {(RED, "console:wang"), (YELLOW, "console:wang")}
        assert saved.load().get(RED).acked_by == "console:wang"  # type: ignore[union-attr]
