"""Vehicles through the real gateway (gateway.service.Gateway): a Hikvision ANPR camera and a
Dahua traffic camera, each a local server streaming its events with Digest authentication
(tests/test_http_events_devices.py), the ANPR alerts as multipart parts of XML followed by
JPEG pictures. Every vehicle is one Sample with its plate, lane, direction and speed, and the
real rules runtime raises vehicle_speeding and unknown_plate_after_hours from them.

Office hours: the alerts carry a time of 03:00 last night (the site's zone), which the site
calendar never counts as office hours whatever day the test runs; the rules judge a vehicle
by the time it passed, not by when the gateway heard of it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.config_load import load_site
from gateway.service import Gateway
from tests.test_http_events_devices import JPEG, StreamDevice, anpr_alert, traffic_event
from tests.test_http_events_driver import (
    PASSWORD_ENV,
    SHANGHAI,
    Recorder,
    _conn,
    _site,
    until,
)


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    return "s3cret"


def last_night() -> datetime:
    """03:00 in Shanghai, the last one before now (at most a day ago: a trusted device time)."""
    now = datetime.now(SHANGHAI).replace(microsecond=0)
    night = now.replace(hour=3, minute=0, second=0)
    return night if night < now else night - timedelta(days=1)


def anpr_parts(device: StreamDevice, xml: str) -> bytes:
    """An ANPR alert as the camera streams it: the XML part, then its two pictures."""
    return (
        device.part(xml, 'application/xml; charset="UTF-8"')
        + device.part(JPEG, "image/jpeg")
        + device.part(JPEG, "image/jpeg")
    )


async def test_vehicles_from_both_vendors_raise_speeding_and_unknown_plates(
    tmp_path: Path, password: str
) -> None:
    night = last_night()
    async with (
        StreamDevice.serve("hikvision") as anpr,
        StreamDevice.serve("dahua") as itc,
    ):
        site = _site(
            tmp_path,
            f"""\
            - id: cam-gate
              profile: hikvision_isapi_anpr_camera
              http_events: {_conn(anpr)}
              tags: {{zone: gate}}
            - id: cam-road
              profile: dahua_traffic_camera
              http_events: {_conn(itc, ", vendor: dahua")}
              tags: {{zone: road}}
            """,
            """\
            - {id: speed, kind: vehicle_speeding, limit_kmh: 30, per_lane: {2: 15}}
            - {id: plates, kind: unknown_vehicle, allowed_plates: ["京A·12345", "浙A 12345"]}
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
        seen = Recorder(gateway)
        await gateway.start()
        try:
            await anpr.wait_streams(1)
            await itc.wait_streams(1)
            when = night.isoformat()
            # Staff at 03:00, slow: nothing. A visitor in lane 2 at 20 km/h: speeding there
            # (15 km/h) and unknown after hours. A car the camera read no plate of: unknown.
            anpr.send(anpr_parts(anpr, anpr_alert("京A12345", speed=12, when=when, uuid="u1")))
            anpr.send(
                anpr_parts(anpr, anpr_alert("沪C55555", speed=20, lane=2, when=when, uuid="u2"))
            )
            anpr.send(anpr_parts(anpr, anpr_alert("无车牌", speed=0, when=when, uuid="u3")))
            utc = int(night.timestamp())
            itc.send_part(traffic_event("TrafficJunction", "浙A12345", speed=88, real_utc=utc))
            itc.send_part("Heartbeat")
            await until(lambda: len(seen.values("cam-gate", "vehicle")) == 3, "three vehicles")
            await until(lambda: seen.values("cam-road", "plate") == ["浙A12345"], "the ITC's car")
            await until(lambda: len(seen.raised("unknown_plate_after_hours")) == 2, "unknowns")
            await until(lambda: len(seen.raised("vehicle_speeding")) == 2, "speeding")

            assert seen.values("cam-gate", "plate") == ["京A12345", "沪C55555", "无车牌"]
            assert seen.values("cam-gate", "speed_kmh") == [12.0, 20.0, 0.0]
            assert seen.values("cam-gate", "lane") == [1, 2, 1]
            assert seen.values("cam-gate", "direction") == ["forward"] * 3
            [first] = [s for s in seen.samples if s.values.get("plate") == "京A12345"]
            assert first.ts == int(night.timestamp()) * 1_000_000_000  # the camera's own time
            assert sorted(seen.raised("unknown_plate_after_hours")) == [
                "cam-gate:unread",
                "cam-gate:沪C55555",
            ]
            assert sorted(seen.raised("vehicle_speeding")) == [
                "cam-gate:沪C55555",
                "cam-road:浙A12345",
            ]
            [road] = [s for s in seen.samples if s.device == "cam-road" and "plate" in s.values]
            assert road.ts == utc * 1_000_000_000  # RealUTC, not the camera's local "UTC"

            # The camera streams the last alert again (as after a reconnect): no new vehicle.
            anpr.send(anpr_parts(anpr, anpr_alert("无车牌", speed=0, when=when, uuid="u3")))
            anpr.send_part(anpr_alert("京A12345", speed=12, when=when, uuid="u4"))
            await until(lambda: len(seen.values("cam-gate", "vehicle")) == 4, "the fourth car")
            await asyncio.sleep(0.2)  # anything more would have arrived by now
            health = gateway.health()
            assert health["http_events_duplicates"] == 1
            assert health["http_events_parts_skipped"] == 8  # the pictures, never decoded
            assert health["http_events_undecodable"] == 0
            assert health["http_events_bad_values"] == 0
            assert health["http_events_clock_refused"] == 0
        finally:
            await gateway.stop()
