"""Today's patrol rounds on the console: the real patrol rule (in the real Engine, on a fake
clock and the real working calendar) sends its Records on a real Bus; the RoundsBoard keeps
yesterday's and today's, and the console's /rounds page lists them, Chinese first."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.types import Value
from gateway.alarm_service import AlarmService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.commands import CommandRouter
from gateway.config_load import load_site
from gateway.console import Console, RoundsBoard, ServiceDesk
from gateway.console.rounds import PatrolRound, RouteInfo
from rules.model import Record
from tests.test_console import DEVICES, PASSWORDS, SITE, console_config, csrf_of, resolve
from tests.test_rules_patrol import ROUTE, TZ, Site, at

MONDAY = (2025, 10, 13)  # workdays, both
TUESDAY = (2025, 10, 14)
WEDNESDAY = (2025, 10, 15)

# A day route beside the night one: lobby then gate, at 09:00 and 14:00 on workdays.
DAY_ROUTE: dict[str, Any] = {
    "id": "day",
    "name": "日间大堂巡查",
    "checkpoints": [{"reader": "ctl-lobby", "name": "大堂"}, {"reader": "ctl-gate"}],
    "within": "15m",
    "starts": {"workday": ["09:00", "14:00"]},
    "start_tolerance": "10m",
    "grace": "10m",
}
RULES = [{"id": "patrol", "kind": "patrol", "routes": [ROUTE, DAY_ROUTE]}]


class Patrol:
    """The patrol rule on a fake clock; every Record it makes goes on the bus at once, as the
    alarm service sends it."""

    def __init__(self, now: datetime) -> None:
        self.site = Site(now, routes=[ROUTE, DAY_ROUTE])
        self.bus = Bus()
        board = RoundsBoard.for_rules(RULES, "Asia/Shanghai", clock=self.clock)
        assert board is not None
        self.board = board
        self.board.attach(self.bus)
        self._sent = 0

    def clock(self) -> float:
        return self.site.now.timestamp()

    def _publish(self) -> None:
        records = self.site.records()
        for record in records[self._sent :]:
            self.bus.publish(record)
        self._sent = len(records)

    def run_until(self, when: datetime) -> None:
        self.site.run_until(when)
        self._publish()

    def swipe(self, when: datetime, reader: str) -> None:
        self.site.swipe(when, reader)
        self._publish()


def two_days() -> Patrol:
    """Monday: nobody walks (three rounds missed). Tuesday: the 09:00 round fine, the 14:00 one
    in the wrong order, the 22:00 one late at the garage and still going at 22:30."""
    p = Patrol(at(MONDAY, "08:00"))
    p.run_until(at(TUESDAY, "08:00"))
    p.swipe(at(TUESDAY, "08:58"), "ctl-lobby")
    p.swipe(at(TUESDAY, "09:05"), "ctl-gate")
    p.swipe(at(TUESDAY, "14:02"), "ctl-gate")  # the lobby passed over...
    p.swipe(at(TUESDAY, "14:08"), "ctl-lobby")  # ...and read after the gate
    p.swipe(at(TUESDAY, "22:05"), "ctl-gate")
    p.swipe(at(TUESDAY, "22:26"), "ctl-b1")  # 21 minutes, 15 allowed
    p.run_until(at(TUESDAY, "22:30"))
    return p


def summary(rounds: list[PatrolRound]) -> list[tuple[str, str, str, str]]:
    return [
        (datetime.fromtimestamp(r.start, TZ).strftime("%H:%M"), r.route, r.state, r.result)
        for r in rounds
    ]


# -- the board ------------------------------------------------------------------------------------


def test_the_board_keeps_the_last_record_of_each_round_of_yesterday_and_today() -> None:
    p = two_days()
    [(today, now_rounds), (yesterday, before)] = p.board.days()
    assert (today.isoformat(), yesterday.isoformat()) == ("2025-10-14", "2025-10-13")
    assert summary(now_rounds) == [
        ("22:00", "night", "open", "late"),
        ("14:00", "day", "closed", "out_of_order"),
        ("09:00", "day", "closed", "ok"),
    ]
    assert summary(before) == [
        ("22:00", "night", "closed", "missed"),
        ("14:00", "day", "closed", "missed"),
        ("09:00", "day", "closed", "missed"),
    ]
    night = now_rounds[0]
    assert (night.name, night.guard, night.day_type, night.watched) == (
        "夜间外围巡查",
        "G001",
        "workday",
        True,
    )
    assert [(c.n, c.name, c.device, c.status) for c in night.checkpoints] == [
        (1, "东门", "ctl-gate", "on_time"),
        (2, "地下车库", "ctl-b1", "late"),
        (3, "屋面", "ctl-roof", "pending"),
    ]
    assert night.checkpoints[1].at == at(TUESDAY, "22:26").timestamp()
    assert night.checkpoints[1].card == "G001"
    assert night.checkpoints[2].at is None
    day = now_rounds[1]
    assert [(c.name, c.status) for c in day.checkpoints] == [
        ("大堂", "out_of_order"),
        ("", "on_time"),  # the gate has no name on this route
    ]

    # The roof is read: the round closes, and the board shows the last word on it.
    p.swipe(at(TUESDAY, "22:35"), "ctl-roof")
    assert summary(p.board.days()[0][1])[0] == ("22:00", "night", "closed", "late")
    # Wednesday morning: Tuesday is yesterday, Monday is gone.
    p.run_until(at(WEDNESDAY, "08:00"))
    [(_, today_rounds), (_, yesterday_rounds)] = p.board.days()
    assert today_rounds == []
    assert [r.result for r in yesterday_rounds] == ["late", "out_of_order", "ok"]
    assert p.board.stats() == {"rounds": 3, "rounds_evicted": 0}


def test_the_board_is_bounded_and_keeps_only_patrol_records() -> None:
    now = at(TUESDAY, "12:00").timestamp()
    board = RoundsBoard("Asia/Shanghai", bound=3, clock=lambda: now)
    bus = Bus()
    board.attach(bus)

    def record(hhmm: str, fields: dict[str, Value], day: tuple[int, int, int] = TUESDAY) -> Record:
        ts = round(at(day, hhmm).timestamp()) * 1_000_000_000
        return Record("patrol", {"rule": "patrol", "route": "r"}, fields, ts)

    bus.publish(Record("energy", {"rule": "x", "route": "r"}, {"kwh": 1.0}, 1))
    bus.publish(record("22:00", {"state": "closed"}, day=(2025, 10, 12)))  # before yesterday
    for hhmm in ("01:00", "02:00", "03:00", "04:00", "05:00"):
        bus.publish(record(hhmm, {"state": "open", "result": "ok", "cp1_status": "pending"}))
    # A later record of a round replaces the fields it repeats and keeps the others.
    bus.publish(record("05:00", {"state": "closed", "result": "missed", "cp1_status": "missed"}))

    rounds = board.days()[0][1]
    assert summary(rounds) == [
        ("05:00", "r", "closed", "missed"),
        ("04:00", "r", "open", "ok"),
        ("03:00", "r", "open", "ok"),
    ]
    assert [c.status for c in rounds[0].checkpoints] == ["missed"]
    assert rounds[0].name == "r"  # no route_name and no configured route: its id
    assert board.stats() == {"rounds": 3, "rounds_evicted": 2}
    assert board.too_old == 1


def test_a_board_for_the_site_only_when_it_has_patrol_rules() -> None:
    assert RoundsBoard.for_rules([{"id": "v", "kind": "threshold"}], "Asia/Shanghai") is None
    board = RoundsBoard.for_rules(RULES, "Asia/Shanghai")
    assert board is not None
    assert board.routes[("patrol", "day")] == RouteInfo(
        "patrol", "day", "日间大堂巡查", ("大堂", "")
    )


# -- the page -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_console(
    tmp_path: Path, board: RoundsBoard | None, clock: Callable[[], float]
) -> AsyncIterator[Console]:
    site = tmp_path / "site.yaml"
    site.write_text(SITE, encoding="utf-8")
    loaded = load_site(site, need_broker=False)
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
    console = Console(console_config(), desk, resolve, clock=clock, rounds=board)
    await console.start()
    try:
        yield console
    finally:
        await console.stop()
        await service.stop()
        desk.close()


@pytest.fixture
async def patrolled(tmp_path: Path) -> AsyncIterator[Console]:
    p = two_days()
    async with running_console(tmp_path, p.board, p.clock) as console:
        yield console


async def page(console: Console, path: str) -> str:
    """The page as the duty officer wang sees it, logged in."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        form = await (await http.get(f"{console.url}/login")).text()
        r = await http.post(
            f"{console.url}/login",
            data={"user": "wang", "password": PASSWORDS["duty"], "csrf": csrf_of(form)},
            allow_redirects=False,
        )
        assert r.status == 303
        return await (await http.get(f"{console.url}{path}")).text()


async def test_the_rounds_page_lists_today_then_yesterday(patrolled: Console) -> None:
    text = await page(patrolled, "/rounds")
    assert '<a href="/rounds" class=on>巡查</a>' in text
    assert "<h1>巡查记录</h1>" in text
    assert "夜间外围巡查、日间大堂巡查" in text  # the routes configured
    today, yesterday = text.index("今天 · 2025-10-14"), text.index("昨天 · 2025-10-13")
    assert today < yesterday
    cards = re.findall(r'<article class="round r-(\w+) st-(\w+)" data-route="(\w+)"', text)
    assert cards == [
        ("late", "open", "night"),
        ("out_of_order", "closed", "day"),
        ("ok", "closed", "day"),
        ("missed", "closed", "night"),
        ("missed", "closed", "day"),
        ("missed", "closed", "day"),
    ]
    night = text[text.index('data-route="night"') : text.index('data-route="day"')]
    assert "计划开始 22:00" in night
    assert "工作日" in night
    assert "巡查人 G001" in night
    assert "进行中" in night
    assert '<span class="badge r-late">迟到</span>' in night
    assert (
        '<span class="badge c-on_time">准时</span> 1. 东门 <span class="muted">ctl-gate</span>'
        in night
    )
    assert "2. 地下车库" in night
    assert "22:26:00" in night
    assert '<span class="badge c-pending">待巡</span> 3. 屋面' in night
    assert "顺序错误" in text
    assert "漏巡" in text
    assert "网关 2025-10-13 08:00:00 启动" in text  # the board began on Monday: it says so

    english = await page(patrolled, "/rounds?lang=en")
    assert "<h1>Patrol rounds</h1>" in english
    assert "Today · 2025-10-14" in english
    assert "scheduled 22:00" in english
    assert "in progress" in english
    assert '<span class="badge r-out_of_order">out of order</span>' in english
    assert '<span class="badge c-missed">missed</span>' in english


async def test_without_patrol_routes_the_page_says_so(tmp_path: Path) -> None:
    noon = at(TUESDAY, "12:00").timestamp()
    async with running_console(tmp_path, None, lambda: noon) as console:
        text = await page(console, "/rounds")
        assert "本站没有巡查路线。" in text
        assert 'href="/rounds"' not in text  # not in the nav either
        alarms = await page(console, "/alarms")
        assert 'href="/rounds"' not in alarms
        assert "rounds" not in console.stats()


async def test_the_page_needs_a_login(patrolled: Console) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{patrolled.url}/rounds", allow_redirects=False)
        assert r.status == 303
        assert r.headers["Location"] == "/login"
    assert patrolled.stats()["rounds"] == 6
