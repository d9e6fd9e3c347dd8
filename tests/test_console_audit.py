"""Console actions in the audit trail: every login (ok, failed, locked), logout, acknowledgement
and shelving done at the console, through its API or a signed link goes on the bus as a
ConsoleEvent, and the InfluxDB sink stores it in the `console` measurement of a real InfluxDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.alarm_service import AlarmService
from gateway.bus import Bus
from gateway.catalog import DeviceCatalog
from gateway.commands import CommandRouter
from gateway.config_load import load_site
from gateway.console import Console, ServiceDesk
from gateway.influx_sink import InfluxSink
from gateway.influx_writer import V1Transport, Writer
from gateway.lineproto import LineEncoder
from gateway.messages import ConsoleEvent
from gateway.spool import Spool
from tests.servers import InfluxDB1Server
from tests.test_console import (
    DEVICES,
    PASSWORDS,
    RED,
    SECRETS,
    SITE,
    YELLOW,
    Clock,
    Harness,
    bearer,
    console_config,
    logged_in,
    login,
    resolve,
    seed_alarms,
)

WINDOW = "win.door-archive"
DB = "building"


@dataclass
class Audited:
    h: Harness
    bus: Bus
    events: list[ConsoleEvent]

    def seen(self) -> list[tuple[str, str, str, str, str]]:
        """(action, outcome, who, via, alarm) of each event, in order."""
        return [(e.action, e.outcome, e.who, e.via, e.alarm_id) for e in self.events]


@pytest.fixture
async def a(tmp_path: Path) -> AsyncIterator[Audited]:
    site = tmp_path / "site.yaml"
    site.write_text(SITE, encoding="utf-8")
    loaded = load_site(site, need_broker=False)
    seed_alarms(loaded.alarm_store_path())
    bus = Bus()
    events: list[ConsoleEvent] = []
    bus.subscribe(ConsoleEvent, events.append, name="test")
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
    console = Console(
        console_config(), desk, resolve, base_dir=tmp_path, clock=clock, publish=bus.publish
    )
    await console.start()
    try:
        yield Audited(
            Harness(console, service, desk, clock, loaded.alarm_store_path()), bus, events
        )
    finally:
        await console.stop()
        await service.stop()
        desk.close()


async def test_logins_ok_failed_and_locked_and_the_logout(a: Audited) -> None:
    h = a.h
    async with h.client() as http:
        assert (await login(h, http, "nobody", "guess")).status == 401
        for _ in range(4):  # three free failures, the fourth locks the name for a minute
            assert (await login(h, http, "wang", "not-the-password")).status == 401
        assert (await login(h, http, "wang", PASSWORDS["duty"])).status == 429
        refused = await http.post(
            f"{h.url}/login", data={"user": "wang", "password": "x", "csrf": "made-up"}
        )
        assert refused.status == 403
        h.clock.t += 61
        token = await logged_in(h, http, "wang", "duty")
        r = await http.post(f"{h.url}/logout", data={"csrf": token}, allow_redirects=False)
        assert r.status == 303

    assert a.seen() == [
        ("login", "failed", "(unknown name)", "page", ""),  # never what was typed
        *[("login", "failed", "wang", "page", "")] * 4,
        ("login", "locked", "wang", "page", ""),
        ("login", "refused", "wang", "page", ""),
        ("login", "ok", "console:wang", "page", ""),
        ("logout", "ok", "console:wang", "page", ""),
    ]
    assert [e.detail for e in a.events[:2]] == ["unknown user", "wrong password"]
    assert a.events[5].detail == "60 s left"
    assert {e.address for e in a.events} == {"127.0.0.1"}
    stamps = [e.ts for e in a.events]
    # The console's clock stood still for most of them: still one instant each.
    assert stamps == sorted(set(stamps))
    assert h.console.stats()["events"] == len(a.events)


async def test_acks_and_shelvings_at_the_pages_with_their_outcomes(a: Audited) -> None:
    h = a.h
    async with h.client() as duty, h.client() as leader:
        token = await logged_in(h, duty, "wang", "duty")
        for alarm_id in (RED, RED, "no-such-alarm"):
            await duty.post(
                f"{h.url}/alarms/{alarm_id}/ack", data={"csrf": token}, allow_redirects=False
            )
        await duty.post(f"{h.url}/alarms/{YELLOW}/ack", data={"csrf": "forged"})
        r = await duty.post(
            f"{h.url}/alarms/{YELLOW}/shelve",
            data={"csrf": token, "for": "2h", "reason": "维修已预约"},
        )
        assert r.status == 403  # a duty officer may not shelve

        token = await logged_in(h, leader, "li", "leader")
        for reason in ("维修已预约", "  "):
            await leader.post(
                f"{h.url}/alarms/{YELLOW}/shelve",
                data={"csrf": token, "for": "2h", "reason": reason},
                allow_redirects=False,
            )

    assert a.seen() == [
        ("login", "ok", "console:wang", "page", ""),
        ("ack", "ok", "console:wang", "page", RED),
        ("ack", "already", "console:wang", "page", RED),
        ("ack", "unknown", "console:wang", "page", "no-such-alarm"),
        ("ack", "refused", "console:wang", "page", YELLOW),
        ("shelve", "forbidden", "console:wang", "page", YELLOW),
        ("login", "ok", "console:li", "page", ""),
        ("shelve", "ok", "console:li", "page", YELLOW),
        ("shelve", "refused", "console:li", "page", YELLOW),
    ]
    assert a.events[4].detail == "csrf token"
    assert a.events[7].detail == "for 2h: 维修已预约"
    assert "reason" in a.events[8].detail


async def test_api_and_signed_link_actions_name_the_client_or_the_person(a: Audited) -> None:
    h = a.h
    bot, bms = bearer(SECRETS["${BOT_TOKEN}"]), bearer(SECRETS["${BMS_TOKEN}"])
    async with aiohttp.ClientSession() as http:
        await http.get(f"{h.url}/api/alarms", headers=bms)  # reading is no action
        await http.post(f"{h.url}/api/alarms/{RED}/ack", headers=bms)
        await http.post(f"{h.url}/api/alarms/{RED}/ack", headers=bearer("x" * 30))
        await http.post(f"{h.url}/api/alarms/{RED}/ack", headers=bot, json={"by": "wang"})
        await http.post(f"{h.url}/api/alarms/{YELLOW}/shelve", headers=bot, json={"for": "1h"})

        link = h.console.sign_link(WINDOW, "wang")
        assert (await http.get(f"{h.url}{link}")).status == 200  # looking acknowledges nothing
        assert (await http.post(f"{h.url}{link}")).status == 200
        forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        assert (await http.post(f"{h.url}{forged}")).status == 403

    assert a.seen() == [
        ("ack", "forbidden", "api:bms", "api", RED),
        ("ack", "forbidden", "", "api", RED),
        ("ack", "ok", "api:bot:wang", "api", RED),
        ("shelve", "forbidden", "api:bot", "api", YELLOW),
        ("ack", "ok", "console:wang", "link", WINDOW),
        ("ack", "refused", "", "link", WINDOW),
    ]
    assert a.events[-1].detail == "forged link, for wang"


async def test_console_events_land_in_influxdb(tmp_path: Path, influx1: InfluxDB1Server) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE, encoding="utf-8")
    loaded = load_site(site, need_broker=False)
    seed_alarms(loaded.alarm_store_path())
    bus = Bus()
    with Spool(tmp_path / "spool", 1 << 26) as spool:
        sink = InfluxSink(
            LineEncoder({}),
            Writer(V1Transport(influx1.url, DB, None, None, None, 5.0), spool),
            max_points=100,
            max_age=0.1,
            site_id="city-hall",
        )
        sink.attach(bus)
        sink.start()
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
        console = Console(console_config(), desk, resolve, base_dir=tmp_path, publish=bus.publish)
        await console.start()
        h = Harness(console, service, desk, Clock(), loaded.alarm_store_path())
        try:
            async with h.client() as http:
                assert (await login(h, http, "wang", "wrong")).status == 401
                token = await logged_in(h, http, "wang", "duty")
                await http.post(f"{h.url}/alarms/{RED}/ack", data={"csrf": token})
                await http.post(f"{h.url}/logout", data={"csrf": token})
        finally:
            await console.stop()
            await service.stop()
            desk.close()
            await sink.stop()
        assert len(spool) == 0  # all delivered
    result = influx1.query(
        'SELECT "action", "outcome", "who", "alarm_id", "address", "site" FROM "console"', db=DB
    )
    rows = [row[1:] for row in result["results"][0]["series"][0]["values"]]
    assert rows == [
        ["login", "failed", "wang", None, "127.0.0.1", "city-hall"],
        ["login", "ok", "console:wang", None, "127.0.0.1", "city-hall"],
        ["ack", "ok", "console:wang", RED, "127.0.0.1", "city-hall"],
        ["logout", "ok", "console:wang", None, "127.0.0.1", "city-hall"],
    ]
    keys = influx1.query('SHOW TAG KEYS FROM "console"', db=DB)["results"][0]["series"][0]
    assert sorted(k[0] for k in keys["values"]) == ["action", "outcome", "site"]


async def test_without_a_publisher_the_console_works_as_before(tmp_path: Path) -> None:
    """The default publisher does nothing: a console built without one still counts."""
    site = tmp_path / "site.yaml"
    site.write_text(SITE, encoding="utf-8")
    loaded = load_site(site, need_broker=False)
    seed_alarms(loaded.alarm_store_path())
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
    console = Console(console_config(), desk, resolve, base_dir=tmp_path)
    await console.start()
    h = Harness(console, service, desk, Clock(), loaded.alarm_store_path())
    try:
        async with h.client() as http:
            token = await logged_in(h, http, "wang", "duty")
            await http.post(f"{h.url}/alarms/{RED}/ack", data={"csrf": token})
        assert console.stats()["events"] == 2
        assert bus.published["ConsoleEvent"] == 0
    finally:
        await console.stop()
        await service.stop()
        desk.close()
