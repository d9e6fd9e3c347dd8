"""The duty console against a real AlarmService (its book, its SQLite store on its own thread),
through aiohttp's client: login, CSRF, sessions, roles, API tokens, signed links, brute force."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from drivers.contract import DeviceStatus
from gateway.alarm_service import AlarmService
from gateway.alarm_store import AlarmStore
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.commands import CommandRouter
from gateway.config_load import load_site
from gateway.console import Console, ConsoleConfig, ConsoleError, ServiceDesk, hash_password
from gateway.console.desk import HistoryQuery
from gateway.console.passwords import PasswordHashError, parse_hash, verify_password
from rules.catalog import Catalog
from rules.model import Raise

PASSWORDS = {"duty": "zhiban-2024!", "leader": "lingdao-2024!", "admin": "guanli-2024!"}
HASHES = {role: hash_password(pw) for role, pw in PASSWORDS.items()}
SECRETS = {
    "${LINK_KEY}": "k" * 32,
    "${BOT_TOKEN}": "bot-token-0123456789abcdef-xyz",
    "${BMS_TOKEN}": "bms-token-0123456789abcdef-xyz",
}
RED = "doors.door-archive"
YELLOW = "ac.ac-301"
EVIL = "<script>alert(1)</script>"

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


class Clock:
    """The console's clock, moved by the tests (sessions, throttling, link expiry)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def resolve(ref: str) -> str:
    if ref not in SECRETS:
        raise ValueError(f"environment variable {ref[2:-1]} is not set; export it")
    return SECRETS[ref]


def console_config(**overrides: Any) -> ConsoleConfig:
    doc: dict[str, Any] = {
        "enabled": True,
        "port": 0,
        "link_secret": "${LINK_KEY}",
        "session_idle": "30m",
        "session_lifetime": "12h",
        "login": {"free_user": 3, "free_address": 6, "base_delay": "60s"},
        "users": [
            {"id": "wang", "name": "王值班", "role": "duty", "password_hash": HASHES["duty"]},
            {"id": "li", "name": "李领导", "role": "leader", "password_hash": HASHES["leader"]},
            {"id": "zhao", "name": "赵管理", "role": "admin", "password_hash": HASHES["admin"]},
        ],
        "api_clients": [
            {"name": "bot", "token": "${BOT_TOKEN}", "scopes": ["read", "ack"]},
            {"name": "bms", "token": "${BMS_TOKEN}", "scopes": ["read"]},
        ],
    }
    doc.update(overrides)
    return ConsoleConfig.model_validate(doc)


def seed_alarms(path: Path, extra: int = 0) -> None:
    """Alarms as the rules would have left them, in the store the service loads."""
    store = AlarmStore(path)
    book = store.load()
    catalog = Catalog.load()
    t = time.time() - 120
    transitions = book.apply(Raise("doors", "door-archive", "duress"), t, catalog.grade_of)
    transitions += book.apply(
        Raise("ac", "ac-301", "ac_setpoint_violation", 22.0, 26.0), t, catalog.grade_of
    )
    transitions += book.apply(
        Raise("win", "door-archive", "ac_window_open", details={"place": EVIL, "window": "w-301"}),
        t,
        catalog.grade_of,
    )
    for i in range(extra):
        transitions += book.apply(Raise("m", f"m{i}", "meter_offline", 600), t, catalog.grade_of)
    store.save(transitions, book)
    store.close()


@dataclass
class Harness:
    console: Console
    service: AlarmService
    desk: ServiceDesk
    clock: Clock
    store_path: Path

    @property
    def url(self) -> str:
        return self.console.url

    def client(self) -> aiohttp.ClientSession:
        # unsafe: keep cookies of an IP address (127.0.0.1), as browsers do
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait for the service's store commit (the ack is durable once it is in history)."""
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("condition never met")

    async def history_of(self, alarm_id: str) -> list[tuple[str, str, str]]:
        page = await self.desk.history(HistoryQuery(alarm_id=alarm_id))
        return [(h.what, h.by, h.note) for h in page.entries]


DEVICES = [
    DeviceStatus("ac-301", "modbus", False, False, "", 12, 12, "connection refused"),
    DeviceStatus("door-archive", "mqtt", True, True, "mqtt", 40, 0),
]


async def start_harness(
    tmp_path: Path, config: ConsoleConfig | None = None, extra: int = 0
) -> tuple[Harness, Callable[[], Any]]:
    site = tmp_path / "site.yaml"
    site.write_text(SITE, encoding="utf-8")
    loaded = load_site(site, need_broker=False)
    seed_alarms(loaded.alarm_store_path(), extra)
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
    desk = ServiceDesk(service, lambda: DEVICES)
    clock = Clock()
    console = Console(config or console_config(), desk, resolve, base_dir=tmp_path, clock=clock)
    await console.start()

    async def stop() -> None:
        await console.stop()
        await service.stop()
        desk.close()

    return Harness(console, service, desk, clock, loaded.alarm_store_path()), stop


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness, stop = await start_harness(tmp_path)
    try:
        yield harness
    finally:
        await stop()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def login(
    h: Harness, http: aiohttp.ClientSession, user: str, password: str
) -> aiohttp.ClientResponse:
    form_page = await (await http.get(f"{h.url}/login")).text()
    return await http.post(
        f"{h.url}/login",
        data={"user": user, "password": password, "csrf": csrf_of(form_page)},
        allow_redirects=False,
    )


async def logged_in(h: Harness, http: aiohttp.ClientSession, user: str, role: str) -> str:
    """Log in; the CSRF token of the session, from the alarm page."""
    r = await login(h, http, user, PASSWORDS[role])
    assert r.status == 303, await r.text()
    page = await (await http.get(f"{h.url}/alarms")).text()
    return csrf_of(page)


# -- login, sessions --------------------------------------------------------------------------


async def test_login_shows_the_red_alarm_first_in_chinese_then_english(h: Harness) -> None:
    async with h.client() as http:
        r = await login(h, http, "wang", PASSWORDS["duty"])
        assert r.status == 303
        assert r.headers["Location"] == "/alarms"
        cookie = r.cookies["gj_session"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert not cookie["secure"]  # no TLS here
        page = await (await http.get(f"{h.url}/alarms")).text()
        assert "当前告警 (3)" in page
        cards = re.findall(r'<article class="alarm g-(\w+) s-(\w+)"', page)
        assert cards[0] == ("red", "active")
        assert [g for g, _s in cards] == ["red", "yellow", "blue"]
        assert "胁迫报警" in page
        assert "main / B1 / archive" in page
        assert "剩余响应时间" in page  # red: 5 minutes, two gone
        english = await (await http.get(f"{h.url}/alarms?lang=en")).text()
        assert "DURESS at door door-archive" in english
        assert "respond within" in english
        # the choice sticks (cookie) until switched back
        assert "Open alarms" in await (await http.get(f"{h.url}/alarms")).text()


async def test_texts_from_outside_are_escaped(h: Harness) -> None:
    async with h.client() as http:
        await logged_in(h, http, "wang", "duty")
        page = await (await http.get(f"{h.url}/alarms")).text()
        assert EVIL not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_wrong_password_and_unknown_user_are_refused_alike(h: Harness) -> None:
    async with h.client() as http:
        wrong = await login(h, http, "wang", "not-the-password")
        nobody = await login(h, http, "nobody", "not-the-password")
        for r in (wrong, nobody):
            assert r.status == 401
            assert "gj_session" not in r.cookies
            assert "账号或密码错误" in await r.text()
        assert (await http.get(f"{h.url}/alarms", allow_redirects=False)).status == 303
    stats = h.console.stats()
    assert stats["login_failures"] == 2
    assert stats["logins"] == 0


async def test_login_form_without_its_token_is_refused(h: Harness) -> None:
    async with h.client() as http:
        r = await http.post(
            f"{h.url}/login",
            data={"user": "wang", "password": PASSWORDS["duty"], "csrf": "made-up"},
            allow_redirects=False,
        )
        assert r.status == 403
        assert "gj_session" not in r.cookies
    assert h.console.stats()["csrf_refused"] == 1


async def test_session_ends_when_idle_or_past_its_lifetime(h: Harness) -> None:
    async with h.client() as http:
        await logged_in(h, http, "wang", "duty")
        h.clock.t += 29 * 60  # used within the idle time: still on
        assert (await http.get(f"{h.url}/alarms", allow_redirects=False)).status == 200
        h.clock.t += 31 * 60
        r = await http.get(f"{h.url}/alarms", allow_redirects=False)
        assert r.status == 303
        assert r.headers["Location"] == "/login?expired=1"
        page = await (await http.get(f"{h.url}/login?expired=1")).text()
        assert "登录已过期" in page
        assert h.console.stats()["sessions"] == 0

        await logged_in(h, http, "wang", "duty")
        for _ in range(25):  # busy all shift long: the lifetime still ends it
            h.clock.t += 29 * 60
            await http.get(f"{h.url}/devices", allow_redirects=False)
        assert (await http.get(f"{h.url}/alarms", allow_redirects=False)).status == 303


async def test_logout_ends_the_session(h: Harness) -> None:
    async with h.client() as http:
        token = await logged_in(h, http, "wang", "duty")
        r = await http.post(f"{h.url}/logout", data={"csrf": token}, allow_redirects=False)
        assert r.status == 303
        assert (await http.get(f"{h.url}/alarms", allow_redirects=False)).status == 303
    assert h.console.stats()["sessions"] == 0


# -- acknowledging, shelving, CSRF, roles ---------------------------------------------------------


async def test_ack_needs_the_session_csrf_token_and_records_the_person(h: Harness) -> None:
    async with h.client() as http:
        token = await logged_in(h, http, "wang", "duty")
        for data in ({}, {"csrf": "forged"}, {"csrf": token[:-1]}):
            r = await http.post(f"{h.url}/alarms/{RED}/ack", data=data, allow_redirects=False)
            assert r.status == 403
            assert "表单已失效" in await r.text()
        assert h.service.book.get(RED).acked_at is None  # type: ignore[union-attr]
        assert h.console.stats()["csrf_refused"] == 3

        r = await http.post(
            f"{h.url}/alarms/{RED}/ack",
            data={"csrf": token, "note": "已到现场"},
            allow_redirects=False,
        )
        assert r.status == 303
        assert r.headers["Location"] == "/alarms?msg=acked"
        page = await (await http.get(f"{h.url}{r.headers['Location']}")).text()
        assert "已确认。" in page
        assert "console:wang" in page
    await h.until(lambda: h.service.book.get(RED).acked_by == "console:wang")  # type: ignore[union-attr]
    for _ in range(100):
        history = await h.history_of(RED)
        if history[0][0] == "acked":
            break
        await asyncio.sleep(0.02)
    assert history[0] == ("acked", "console:wang", "已到现场")
    assert h.console.stats()["acks"] == 1


async def test_a_session_token_of_another_session_does_not_pass(h: Harness) -> None:
    async with h.client() as first, h.client() as second:
        token_first = await logged_in(h, first, "wang", "duty")
        await logged_in(h, second, "li", "leader")
        r = await second.post(
            f"{h.url}/alarms/{RED}/ack", data={"csrf": token_first}, allow_redirects=False
        )
        assert r.status == 403


async def test_duty_acknowledges_but_only_a_leader_shelves(h: Harness) -> None:
    async with h.client() as duty, h.client() as leader:
        token = await logged_in(h, duty, "wang", "duty")
        detail = await (await duty.get(f"{h.url}/alarms/{YELLOW}")).text()
        assert 'action="/alarms/ac.ac-301/ack"' in detail
        assert "/shelve" not in detail
        r = await duty.post(
            f"{h.url}/alarms/{YELLOW}/shelve",
            data={"csrf": token, "for": "2h", "reason": "维修已预约"},
            allow_redirects=False,
        )
        assert r.status == 403
        assert "角色" in await r.text()
        assert h.service.book.get(YELLOW).shelved_until is None  # type: ignore[union-attr]

        token = await logged_in(h, leader, "li", "leader")
        detail = await (await leader.get(f"{h.url}/alarms/{YELLOW}")).text()
        assert 'action="/alarms/ac.ac-301/shelve"' in detail
        refused = await leader.post(
            f"{h.url}/alarms/{YELLOW}/shelve",
            data={"csrf": token, "for": "2h", "reason": "  "},
            allow_redirects=False,
        )
        assert refused.status == 400
        assert "a reason is required" in await refused.text()
        too_long = await leader.post(
            f"{h.url}/alarms/{YELLOW}/shelve",
            data={"csrf": token, "for": "30d", "reason": "x"},
            allow_redirects=False,
        )
        assert too_long.status == 400
        r = await leader.post(
            f"{h.url}/alarms/{YELLOW}/shelve",
            data={"csrf": token, "for": "2h", "reason": "维修已预约"},
            allow_redirects=False,
        )
        assert r.status == 303
        alarm = h.service.book.get(YELLOW)
        assert alarm is not None
        assert alarm.shelve_reason == "维修已预约"
        assert alarm.shelved_until is not None
        assert alarm.shelved_until > time.time() + 7000
    for _ in range(100):
        history = await h.history_of(YELLOW)
        if history[0][0] == "shelved":
            break
        await asyncio.sleep(0.02)
    assert history[0] == ("shelved", "console:li", "维修已预约")
    assert h.console.stats()["shelves"] == 1


async def test_only_an_admin_sees_the_system_page(h: Harness) -> None:
    async with h.client() as duty, h.client() as admin:
        await logged_in(h, duty, "wang", "duty")
        assert (await duty.get(f"{h.url}/system")).status == 403
        assert "/system" not in await (await duty.get(f"{h.url}/alarms")).text()
        await logged_in(h, admin, "zhao", "admin")
        page = await (await admin.get(f"{h.url}/system")).text()
        assert "login_failures" in page
        assert "李领导" in page
        assert "bot" in page
        assert "bot-token" not in page  # names and scopes, never tokens


async def test_history_pages_and_filters(tmp_path: Path) -> None:
    h, stop = await start_harness(tmp_path, extra=60)
    try:
        async with h.client() as http:
            await logged_in(h, http, "wang", "duty")
            page = await (await http.get(f"{h.url}/history")).text()
            assert page.count("<tr>") == 51  # header + 50
            older = re.search(r'href="(/history\?before=\d+)"', page)
            assert older, "no link to older entries"
            rest = await (await http.get(f"{h.url}{older.group(1)}")).text()
            assert rest.count("<tr>") == 1 + 63 - 50
            assert "更早的记录" not in rest
            assert "最新记录" in rest
            red = await (await http.get(f"{h.url}/history?grade=red")).text()
            assert red.count("<tr>") == 2
            assert "胁迫报警" in red
        page_of = await h.desk.history(HistoryQuery(what="raised", limit=10))
        assert len(page_of.entries) == 10
        assert page_of.next_before is not None
    finally:
        await stop()


async def test_devices_page(h: Harness) -> None:
    async with h.client() as http:
        await logged_in(h, http, "wang", "duty")
        page = await (await http.get(f"{h.url}/devices")).text()
        assert page.index("ac-301") < page.index("door-archive")  # offline first
        assert "离线" in page
        assert "connection refused" in page


async def test_every_page_carries_the_security_headers(h: Harness) -> None:
    async with h.client() as http:
        for path in ("/login", "/nowhere", "/api/alarms"):
            r = await http.get(f"{h.url}{path}")
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
            assert r.headers["Referrer-Policy"] == "no-referrer"
            assert r.headers["X-Frame-Options"] == "DENY"
        missing = await http.get(f"{h.url}/nowhere")
        assert missing.status == 404
        assert "页面不存在" in await missing.text()
        login_page = await (await http.get(f"{h.url}/login")).text()
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', login_page):
            r = await http.get(f"{h.url}{asset}")
            assert r.status == 200
            assert "immutable" in r.headers["Cache-Control"]


# -- brute force ----------------------------------------------------------------------------------


async def test_failed_logins_lock_the_name_then_the_address(h: Harness) -> None:
    async with h.client() as http:
        for _ in range(3):  # free_user: 3
            assert (await login(h, http, "wang", "guess")).status == 401
        assert (await login(h, http, "wang", "guess")).status == 401  # the 4th starts a lock
        locked = await login(h, http, "wang", PASSWORDS["duty"])
        assert locked.status == 429
        assert "失败次数过多" in await locked.text()
        assert "gj_session" not in locked.cookies  # even the right password waits
        stats = h.console.stats()
        assert stats["login_throttled"] == 1
        assert stats["login_failures"] == 4

        # another name from the same address: free_address is 6, four used
        assert (await login(h, http, "li", "guess")).status == 401
        assert (await login(h, http, "li", "guess")).status == 401
        assert (await login(h, http, "zhao", "guess")).status == 401  # 7th: the address locks
        assert (await login(h, http, "zhao", PASSWORDS["admin"])).status == 429

        h.clock.t += 61  # the first lock of each is base_delay
        assert (await login(h, http, "zhao", PASSWORDS["admin"])).status == 303
    async with h.client() as http:
        # the success cleared the address; wang's own failures still count
        assert (await login(h, http, "wang", "guess")).status == 401
        assert (await login(h, http, "wang", PASSWORDS["duty"])).status == 429
        h.clock.t += 121  # the lock doubled
        assert (await login(h, http, "wang", PASSWORDS["duty"])).status == 303
    assert h.console.stats()["logins"] == 2


# -- the JSON API ----------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_api_needs_a_token_with_the_right_scope(h: Harness) -> None:
    bot, bms = bearer(SECRETS["${BOT_TOKEN}"]), bearer(SECRETS["${BMS_TOKEN}"])
    async with aiohttp.ClientSession() as http:
        for headers in ({}, bearer("wrong-token-0123456789abcdef"), {"Authorization": "Basic x"}):
            r = await http.get(f"{h.url}/api/alarms", headers=headers)
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await http.get(f"{h.url}/api/alarms", headers=bms)
        assert r.status == 200
        doc = await r.json()
        assert doc["count"] == 3
        first = doc["alarms"][0]
        assert first["id"] == RED
        assert first["grade"] == "red"
        assert first["state"] == "active"
        assert "胁迫报警" in first["text_zh"]
        assert first["place"] == "main / B1 / archive"
        assert first["respond_by"] > time.time()

        r = await http.post(f"{h.url}/api/alarms/{RED}/ack", headers=bms)
        assert r.status == 403
        assert "ack" in (await r.json())["error"]
        r = await http.post(f"{h.url}/api/alarms/{YELLOW}/shelve", headers=bot, json={})
        assert r.status == 403  # bot has read and ack, not shelve

        r = await http.post(
            f"{h.url}/api/alarms/{RED}/ack", headers=bot, json={"note": "on my way", "by": "wang"}
        )
        assert (r.status, await r.json()) == (200, {"result": "acked"})
        r = await http.post(f"{h.url}/api/alarms/{RED}/ack", headers=bot)
        assert (await r.json()) == {"result": "already acknowledged"}
        r = await http.post(f"{h.url}/api/alarms/nope/ack", headers=bot)
        assert r.status == 404
        r = await http.post(f"{h.url}/api/alarms/{RED}/ack", headers=bot, data=b"[1]")
        assert r.status == 400

        await h.until(lambda: h.service.book.get(RED).acked_by == "api:bot:wang")  # type: ignore[union-attr]
        for _ in range(100):
            r = await http.get(f"{h.url}/api/alarms/{RED}", headers=bms)
            detail = await r.json()
            if detail["history"][0]["what"] == "acked":
                break
            await asyncio.sleep(0.02)
        assert detail["alarm"]["acked_by"] == "api:bot:wang"
        assert detail["history"][0]["by"] == "api:bot:wang"
        assert (await http.get(f"{h.url}/api/alarms/nope", headers=bms)).status == 404

        r = await http.get(f"{h.url}/api/history?limit=2", headers=bms)
        page = await r.json()
        assert len(page["entries"]) == 2
        assert page["next_before"] is not None
        r = await http.get(f"{h.url}/api/history?before={page['next_before']}", headers=bms)
        assert len((await r.json())["entries"]) == 2  # 4 transitions in all
        devices = await (await http.get(f"{h.url}/api/devices", headers=bms)).json()
        assert {d["device"]: d["online"] for d in devices["devices"]} == {
            "ac-301": False,
            "door-archive": True,
        }
    stats = h.console.stats()
    assert stats["api_refused"] == 5
    assert stats["acks"] == 1
    assert stats["api_requests"] >= 10


async def test_api_shelve_with_the_shelve_scope(tmp_path: Path) -> None:
    config = console_config(
        api_clients=[{"name": "bot", "token": "${BOT_TOKEN}", "scopes": ["read", "shelve"]}]
    )
    h, stop = await start_harness(tmp_path, config)
    try:
        bot = bearer(SECRETS["${BOT_TOKEN}"])
        async with aiohttp.ClientSession() as http:
            r = await http.post(
                f"{h.url}/api/alarms/{YELLOW}/shelve", headers=bot, json={"for": "1h"}
            )
            assert r.status == 400
            assert "reason" in (await r.json())["result"]
            r = await http.post(
                f"{h.url}/api/alarms/{YELLOW}/shelve",
                headers=bot,
                json={"for": "1h", "reason": "repair booked"},
            )
            assert (await r.json()) == {"result": "shelved"}
        alarm = h.service.book.get(YELLOW)
        assert alarm is not None
        assert alarm.shelve_reason == "repair booked"
        await h.until(lambda: h.service.store.commits >= 1)
    finally:
        await stop()


# -- signed links ---------------------------------------------------------------------------------


async def test_a_signed_link_acknowledges_for_its_person(h: Harness) -> None:
    path = h.console.sign_link(RED, "wang")
    assert path.startswith(f"/link/ack/{RED}/wang/")
    assert h.console.link_url(RED, "wang").startswith(h.url + "/link/ack/")
    async with h.client() as http:
        r = await http.get(f"{h.url}{path}")
        page = await r.text()
        assert r.status == 200
        assert "data-auto-submit" in page
        assert "王值班" in page
        assert h.service.book.get(RED).acked_at is None  # type: ignore[union-attr]  # GET: shows
        r = await http.post(f"{h.url}{path}")
        assert r.status == 200
        assert "已确认" in await r.text()
        again = await (await http.post(f"{h.url}{path}")).text()
        assert "此前已由 console:wang 确认" in again
    for _ in range(100):
        history = await h.history_of(RED)
        if history[0][0] == "acked":
            break
        await asyncio.sleep(0.02)
    assert history[0] == ("acked", "console:wang", "signed link")
    assert h.console.stats()["link_acks"] == 1


async def test_tampered_and_expired_links_are_refused(h: Harness) -> None:
    good = h.console.sign_link(RED, "wang")
    _, _, _, alarm, person, expires, signature = good.split("/")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = [
        f"/link/ack/{alarm}/{person}/{expires}/{flipped}",
        f"/link/ack/{YELLOW}/{person}/{expires}/{signature}",  # another alarm
        f"/link/ack/{alarm}/li/{expires}/{signature}",  # another person
        f"/link/ack/{alarm}/{person}/{int(expires) + 86400}/{signature}",  # a later expiry
        f"/link/ack/{alarm}/{person}/{expires}/",
    ]
    async with h.client() as http:
        for path in forged[:4]:
            for method in (http.get, http.post):
                r = await method(f"{h.url}{path}")
                text = await r.text()
                assert r.status == 403, path
                assert "链接无效" in text
                assert "Invalid link" in text
        assert (await http.get(f"{h.url}{forged[4]}")).status == 404
        expired = h.console.sign_link(RED, "wang", expires=h.clock() + 60)
        h.clock.t += 61
        for method in (http.get, http.post):
            r = await method(f"{h.url}{expired}")
            text = await r.text()
            assert r.status == 410
            assert "链接已过期" in text
            assert "Link expired" in text
    assert h.service.book.get(RED).acked_at is None  # type: ignore[union-attr]
    assert h.console.stats()["links_refused"] == 10


# -- TLS ------------------------------------------------------------------------------------------


async def test_over_tls_the_session_cookie_is_secure(tmp_path: Path) -> None:
    cert, key = tmp_path / "console.crt", tmp_path / "console.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    config = console_config(tls={"cert_file": "console.crt", "key_file": "console.key"})
    h, stop = await start_harness(tmp_path, config)
    try:
        assert h.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        connector = aiohttp.TCPConnector(ssl=trust)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            r = await login(h, http, "wang", PASSWORDS["duty"])
            assert r.status == 303
            assert r.cookies["gj_session"]["secure"]
            assert "胁迫报警" in await (await http.get(f"{h.url}/alarms")).text()
    finally:
        await stop()


# -- configuration, passwords ---------------------------------------------------------------------


def test_password_hashes_are_salted_scrypt_with_their_parameters() -> None:
    one, two = hash_password("same-password"), hash_password("same-password")
    assert one != two  # a salt of its own each
    n, r, p, salt, key = parse_hash(one)
    assert (n, r, p) == (2**15, 8, 1)
    assert len(salt) == 16
    assert len(key) == 32
    assert one.startswith("scrypt$n=32768,r=8,p=1$")
    assert verify_password("same-password", one)
    assert not verify_password("same-passwork", one)
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")
    with pytest.raises(PasswordHashError, match="power of two"):
        parse_hash(one.replace("n=32768", "n=1073741824"))
    assert not verify_password("x", "plain-text-password")


def test_config_refuses_mistakes() -> None:
    with pytest.raises(ValidationError, match="not a password hash"):
        console_config(users=[{"id": "w", "name": "W", "role": "duty", "password_hash": "pw"}])
    user = {"id": "w", "name": "W", "role": "duty", "password_hash": HASHES["duty"]}
    with pytest.raises(ValidationError, match="appears twice"):
        console_config(users=[user, user])
    with pytest.raises(ValidationError, match="Extra inputs"):
        console_config(prot=8080)
    with pytest.raises(ValidationError, match="pattern"):
        console_config(link_secret="literal-secret-in-the-file")
    assert ConsoleConfig().enabled is False  # off unless configured


class _NoDesk:
    """A desk the console never asks: construction must fail first."""


def test_console_construction_names_the_key_of_a_bad_secret() -> None:
    desk: Any = _NoDesk()
    missing = console_config(link_secret="${NOT_SET}")
    with pytest.raises(ConsoleError, match=r"console.link_secret: environment variable NOT_SET"):
        Console(missing, desk, resolve)
    short = console_config(api_clients=[{"name": "x", "token": "${SHORT}", "scopes": ["read"]}])
    with pytest.raises(ConsoleError, match=r"api_clients\[0\].token: 5 characters"):
        Console(short, desk, lambda ref: "short" if ref == "${SHORT}" else resolve(ref))
    weak = console_config(link_secret="${WEAK}")
    with pytest.raises(ConsoleError, match="at least 16"):
        Console(weak, desk, lambda ref: "weak" if ref == "${WEAK}" else resolve(ref))
    no_cert = console_config(tls={"cert_file": "/nonexistent.crt", "key_file": "/nonexistent.key"})
    with pytest.raises(ConsoleError, match=r"console\.tls"):
        Console(no_cert, desk, resolve)


# -- the parts on their own ---------------------------------------------------------------------


def test_session_and_counter_tables_are_bounded() -> None:
    from gateway.console.sessions import SessionStore
    from gateway.console.throttle import LoginThrottle, ThrottlePolicy

    sessions = SessionStore(lifetime=3600, idle=600, bound=3)
    first = sessions.create("wang", 0.0)
    for _ in range(3):
        sessions.create("li", 1.0)
    assert len(sessions) == 3
    assert sessions.evicted == 1
    assert sessions.get(first.token, 2.0) is None  # the oldest went first

    throttle = LoginThrottle(ThrottlePolicy(free_user=1, base_delay=10, bound=4))
    for i in range(6):
        throttle.failed([("user", f"u{i}")], 0.0)
    assert throttle.evicted == 2
    assert throttle.failed([("user", "u5")], 1.0) == 10  # second failure: locked
    assert throttle.failed([("user", "u5")], 2.0) == 20  # and doubling
    assert throttle.wait([("user", "u5")], 3.0) == 19


def test_link_signatures_bind_every_field() -> None:
    from gateway.console.links import LinkSigner

    signer = LinkSigner(b"s" * 16)
    path = signer.sign("ac.ac-301", "wang", 1000)
    *_, alarm, person, expires, signature = path.split("/")
    assert signer.verify(alarm, person, expires, signature, 999)[0] == "ok"
    assert signer.verify(alarm, person, expires, signature, 1000)[0] == "expired"
    assert signer.verify(alarm, person, "2000", signature, 1500)[0] == "forged"
    assert signer.verify(alarm, "li", expires, signature, 999)[0] == "forged"
    assert signer.verify(alarm, person, "٣", signature, 999)[0] == "forged"  # ASCII digits only
    assert LinkSigner(b"t" * 16).verify(alarm, person, expires, signature, 999)[0] == "forged"
    with pytest.raises(ValueError, match="cannot go into a link"):
        signer.sign("a/b", "wang", 1000)
