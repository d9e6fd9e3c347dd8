"""The duty console in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver, against a console over a real AlarmService and its SQLite store, and
the patrol rounds page fed by the real patrol rule."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@contextlib.contextmanager
def chromium(profile: Path, seen: dict[str, object]) -> Iterator[Any]:
    """Headless chromium at a phone's size; quits (and stops chromedriver) on the way out,
    then notes in `seen["driver_stopped"]` whether chromedriver is gone."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
    try:
        yield browser
    finally:
        browser.quit()  # stops chromedriver too
    seen["driver_stopped"] = service.process is None or service.process.poll() is not None


def log_in(browser: Any, base: str, user: str = "wang", password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base}/login")
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.TAG_NAME, "nav")))


def overflow(browser: Any) -> int:
    """How much wider than the window the page is (0: no sideways scrolling on a phone)."""
    # clientWidth, not innerWidth: a long page's vertical scrollbar takes its share.
    width = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    return int(browser.execute_script(f"return {width}"))


def drive(base: str, profile: Path, forged: str, good_link: str) -> dict[str, object]:
    """The whole visit, synchronous as selenium is (run in a thread beside the console)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, object] = {}
    with chromium(profile, seen) as browser:
        wait = WebDriverWait(browser, 15)
        log_in(browser, base)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "article.alarm")))
        red = browser.find_element(By.CSS_SELECTOR, f"article[data-alarm='{RED}']")
        seen["first"] = browser.find_element(By.CSS_SELECTOR, "article.alarm").get_attribute(
            "data-alarm"
        )
        seen["red_text"] = red.text
        seen["red_border"] = red.value_of_css_property("border-left-color")
        seen["overflow"] = overflow(browser)
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


# -- patrol rounds ------------------------------------------------------------------------------

GREEN, YELLOW_RGB, ORANGE, RED_RGB = (46, 125, 50), (249, 168, 37), (239, 108, 0), (198, 40, 40)


def rgb(css: str) -> tuple[int, ...]:
    """'rgb(1, 2, 3)' or 'rgba(1, 2, 3, 1)' -> (1, 2, 3)."""
    return tuple(int(part) for part in css[css.index("(") + 1 : -1].split(",")[:3])


def visit_rounds(base: str, profile: Path) -> dict[str, object]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict[str, object] = {}
    with chromium(profile, seen) as browser:
        wait = WebDriverWait(browser, 15)
        log_in(browser, base)
        browser.find_element(By.LINK_TEXT, "巡查").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "article.round")))
        rounds = browser.find_elements(By.CSS_SELECTOR, "article.round")
        seen["borders"] = [rgb(r.value_of_css_property("border-left-color")) for r in rounds]
        seen["first"] = rounds[0].text
        seen["badges"] = {
            b.text: rgb(b.value_of_css_property("background-color"))
            for b in browser.find_elements(By.CSS_SELECTOR, "article.round .badge")
        }
        seen["overflow"] = overflow(browser)
        browser.find_element(By.LINK_TEXT, "English").click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Patrol rounds"))
        seen["english"] = browser.find_element(By.TAG_NAME, "main").text
    return seen


async def test_the_patrol_rounds_page_on_a_phone(tmp_path: Path) -> None:
    from tests.test_console_rounds import running_console, two_days

    patrol = two_days()
    async with running_console(tmp_path, patrol.board, patrol.clock) as console:
        seen = await asyncio.to_thread(visit_rounds, console.url, tmp_path / "chromium")

    # Today: 22:00 late (still going), 14:00 out of order, 09:00 fine; yesterday: all missed.
    assert seen["borders"] == [YELLOW_RGB, ORANGE, GREEN, RED_RGB, RED_RGB, RED_RGB]
    first = str(seen["first"])
    assert "夜间外围巡查" in first
    assert "进行中" in first
    assert "2. 地下车库" in first
    assert "22:26:00" in first
    badges = seen["badges"]
    assert isinstance(badges, dict)
    assert (badges["准时"], badges["迟到"], badges["漏巡"]) == (GREEN, YELLOW_RGB, RED_RGB)
    assert badges["顺序错误"] == ORANGE
    assert seen["overflow"] == 0, "the rounds page is wider than a phone"
    assert "Yesterday · 2025-10-13" in str(seen["english"])
    assert seen["driver_stopped"]
