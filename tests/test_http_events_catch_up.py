"""An access controller's events logged while its stream was down are read back from the
device's own log when the stream returns (AcsEvent search, Digest-authenticated POST), each
once, with the controller's time; a record the stream had already brought is not doubled."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.types import Sample
from drivers.contract import DeviceEntry, RuntimeContext, secret_key
from drivers.http_events.config import HttpEventsConnection
from drivers.http_events.runtime import HttpEventsDriver
from gateway.config_load import BUILTIN_PROFILES, load_profile
from simulator.streams.payloads import acs_event
from simulator.streams.server import StreamDevice
from tests.waiting import until

SHANGHAI = ZoneInfo("Asia/Shanghai")
LEGAL_CARD, INVALID_CARD, FORCED = 1, 9, 27


def _driver(port: int, samples: list[Sample]) -> HttpEventsDriver:
    profile = load_profile(BUILTIN_PROFILES / "hikvision_isapi_access_controller.yaml")
    conn = HttpEventsConnection(
        host="127.0.0.1", port=port, username="guanjia", password="${UNUSED}", retry_max=1.0
    )
    entry = DeviceEntry("door-1", profile, conn, 10.0)
    secrets = {secret_key("door-1", "password"): "s3cret"}
    context = RuntimeContext([entry], samples.append, "Asia/Shanghai", secrets=secrets)
    return HttpEventsDriver(context)


async def test_events_logged_during_an_outage_arrive_once_after_the_reconnect() -> None:
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    t0, t1, t2 = (now - timedelta(seconds=s) for s in (90, 60, 30))
    samples: list[Sample] = []

    def values(point: str) -> list[tuple[object, int]]:
        return [(s.values[point], s.ts) for s in samples if point in s.values]

    async with StreamDevice.serve("hikvision") as device:
        driver = _driver(device.port, samples)
        driver.start()
        try:
            await device.wait_streams(1)
            device.send_part(acs_event(5, LEGAL_CARD, 100, when=t0.isoformat(), card="1234"))
            await until(lambda: len(values("access_granted")) == 1, "the first pass")
            # The network goes away; the controller logs a forced door and a strange card.
            device.drop()
            device.record(acs_event(5, FORCED, 101, when=t1.isoformat()))
            device.record(acs_event(5, INVALID_CARD, 102, when=t2.isoformat(), card="9999"))
            await until(lambda: len(values("invalid_card")) == 1, "the logged events")
            await until(lambda: driver.health()["http_events_caught_up"] == 3, "the search")
            (forced,) = values("door_forced_open")
            assert forced == (True, int(t1.timestamp() * 1e9))  # the controller's own time
            assert values("invalid_card") == [(True, int(t2.timestamp() * 1e9))]
            assert len(values("access_granted")) == 1  # the pass came twice, counted once
            health = driver.health()
            assert health["http_events_catch_ups"] == 1
            assert health["http_events_catch_up_failures"] == 0
            assert health["http_events_duplicates"] == 1
            (search,) = device.searches
            assert search["startTime"] == t0.isoformat()
            assert (search["major"], search["minor"]) == (0, 0)
            # Nothing new: another reconnect searches from the last record, finds it again,
            # and adds nothing.
            device.drop()
            await until(lambda: driver.health()["http_events_catch_ups"] == 2, "the 2nd search")
            await until(lambda: driver.health()["http_events_caught_up"] == 4, "its record")
            assert device.searches[1]["startTime"] == t2.isoformat()
            assert len(values("invalid_card")) == 1
        finally:
            await driver.stop()


async def test_a_search_the_device_refuses_is_counted_and_the_stream_goes_on() -> None:
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    samples: list[Sample] = []
    async with StreamDevice.serve("hikvision") as device:
        driver = _driver(device.port, samples)
        driver.start()
        try:
            await device.wait_streams(1)
            device.send_part(acs_event(5, LEGAL_CARD, 7, when=now.isoformat(), card="1"))
            await until(lambda: any("access_granted" in s.values for s in samples), "a pass")
            device.log.append({"major": 5, "minor": 1, "time": "yesterday", "serialNo": 8})
            device.drop()  # the device's answer now has a record it cannot compare: HTTP 500
            await until(lambda: driver.health()["http_events_catch_up_failures"] == 1, "failed")
            device.send_part(acs_event(5, FORCED, 9, when=now.isoformat()))
            await until(lambda: any("door_forced_open" in s.values for s in samples), "live")
        finally:
            await driver.stop()
