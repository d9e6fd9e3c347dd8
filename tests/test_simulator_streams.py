"""The virtual building serves the demo site's cameras, door stations and plate cameras as HTTP
event streams behind Digest authentication, and the gateway's own HTTP event driver reads them:
keep-alives keep every stream up, and what the simulated devices do (a forced door, a video
loss, a car at the gate) arrives as the points the profiles map, from every vendor's format."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core.types import Sample
from drivers.contract import RuntimeContext
from drivers.http_events.runtime import HttpEventsDriver
from gateway.config_load import load_site
from gateway.site import BrokerConfig, MqttConfig
from simulator.building import start_building
from simulator.clock import SimClock
from simulator.site import read_site
from tests.sites import demo_on_free_ports
from tests.waiting import until

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "config" / "demo-site.yaml"
DEMO_BROKER = MqttConfig(brokers=[BrokerConfig(name="site", host="127.0.0.1")])
STREAM_DEVICES = {
    "cam-lobby-hik",
    "door-side-entrance",
    "cam-gate-in",
    "cam-corridor-dahua",
    "vto-staff-entrance",
    "cam-gate-out",
}


def _demo_on_free_ports(tmp_path: Path) -> Path:
    return demo_on_free_ports(tmp_path)[0]


async def test_the_building_streams_its_cameras_and_doors_to_the_gateway(tmp_path: Path) -> None:
    path = _demo_on_free_ports(tmp_path)
    loaded = load_site(path, mqtt=DEMO_BROKER)
    entries = loaded.driver_devices("http_events")
    # The devices that post their events instead are tests/test_simulator_push.py's.
    assert {e.id for e in entries if e.connection.push is None} == STREAM_DEVICES
    samples: list[Sample] = []
    clock = SimClock(speed=1.0, start=datetime(2025, 7, 15, 10, 0))
    building = await start_building(read_site(path), clock)
    driver = HttpEventsDriver(
        RuntimeContext(entries, samples.append, "Asia/Shanghai", secrets=loaded.secrets)
    )
    assert building.streams is not None
    devices = building.streams.devices

    def points(device: str, point: str) -> list[object]:
        return [s.values[point] for s in samples if s.device == device and point in s.values]

    driver.start()
    try:
        # Every stream authenticated and up: each device is available.
        await until(
            lambda: all(points(d, "available") == [True] for d in STREAM_DEVICES),
            "every device available",
        )
        assert driver.health()["http_events_auth_refused"] == 0
        now = clock.now().timestamp()
        devices["door-side-entrance"].inject("forced_door", now, count=1, duration_s=None)
        devices["vto-staff-entrance"].inject("forced_door", now, count=1, duration_s=None)
        devices["vto-staff-entrance"].inject("invalid_cards", now, count=1, duration_s=None)
        devices["cam-corridor-dahua"].inject("video_loss", now, count=1, duration_s=600.0)
        devices["cam-lobby-hik"].inject("video_loss", now, count=1, duration_s=600.0)
        devices["cam-gate-in"].inject("card_pass", now, count=1, duration_s=None)
        devices["cam-gate-out"].inject("card_pass", now, count=1, duration_s=None)
        await until(lambda: points("door-side-entrance", "door_forced_open") == [True], "hik")
        await until(lambda: points("vto-staff-entrance", "door_forced_open") == [True], "vto")
        await until(lambda: points("vto-staff-entrance", "invalid_card") == [True], "card")
        await until(lambda: True in points("cam-corridor-dahua", "video_loss"), "dahua loss")
        await until(lambda: True in points("cam-lobby-hik", "video_loss"), "hik loss")
        await until(lambda: len(points("cam-gate-in", "plate")) == 1, "ANPR plate")
        await until(lambda: len(points("cam-gate-out", "plate")) == 1, "traffic plate")
        for camera in ("cam-gate-in", "cam-gate-out"):
            (plate,) = points(camera, "plate")
            assert isinstance(plate, str)
            assert plate.startswith("苏"), plate
            (speed,) = points(camera, "speed_kmh")
            assert isinstance(speed, (int, float))
            assert 0 < speed <= 60
        health = driver.health()
        assert health["http_events_undecodable"] == 0
        assert health["http_events_unmatched"] == 0
        assert health["http_events_duplicates"] == 0
    finally:
        await driver.stop()
        await building.stop()
