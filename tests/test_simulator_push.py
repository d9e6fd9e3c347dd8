"""The virtual building's Hikvision devices set to an HTTP host: they post their alerts to the
gateway's own push listener (drivers/http_events/push.py) with Digest, as multipart forms with
pictures (plates, faces) or bare XML, and the gateway makes of them what it makes of the same
devices' alertStreams. When the listener is away they keep what they could not deliver and
send it again: nothing is lost, and an alert whose answer was lost counts once."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from core.types import Sample
from drivers.contract import RuntimeContext
from drivers.http_events.multipart import MultipartParser, boundary_of
from drivers.http_events.runtime import HttpEventsDriver
from gateway.config_load import load_site
from simulator.building import start_building
from simulator.clock import SimClock
from simulator.mqtt.device import EventRates
from simulator.site import read_site
from simulator.streams.building import StreamBuilding
from simulator.streams.payloads import acs_event, anpr_alert, camera_alert, camera_heartbeat
from simulator.streams.push import push_post
from tests.servers import free_ports
from tests.sites import demo_on_free_ports
from tests.test_simulator_streams import DEMO_BROKER, STREAM_DEVICES
from tests.waiting import until

QUIET = EventRates(
    entrance_passes_per_hour=0.0,
    secured_passes_per_hour=0.0,
    invalid_cards_per_day=0.0,
    forced_doors_per_night=0.0,
    persons_per_hour=0.0,
    video_losses_per_day=0.0,
)

PUSH_DEVICES = {"cam-gate-car-park", "door-rear-entrance", "cam-loading-bay"}
# A pushing device, the streamed one of the same kind in the demo site, and the point an
# injected event gives both.
PAIRS = {
    "cam-gate-car-park": ("cam-gate-in", "plate"),
    "door-rear-entrance": ("door-side-entrance", "door_forced_open"),
    "cam-loading-bay": ("cam-lobby-hik", "video_loss"),
}


class Samples(list[Sample]):
    def points(self, device: str, point: str) -> list[object]:
        return [s.values[point] for s in self if s.device == device and point in s.values]

    def with_point(self, device: str, point: str) -> list[Sample]:
        return [s for s in self if s.device == device and point in s.values]

    def has(
        self, device: str, point: str, values: list[object] | None = None
    ) -> Callable[[], bool]:
        """A condition: the device has given the point (these values of it, in order)."""
        if values is None:
            return lambda: self.points(device, point) != []
        return lambda: self.points(device, point) == values


def _parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    boundary = boundary_of(content_type)
    assert boundary is not None
    parser = MultipartParser(boundary, max_part=1 << 20, skip_types=())
    parts = parser.feed(body)
    return [(p.headers.get("content-disposition", ""), p.body) for p in parts]


def test_posts_are_shaped_as_the_devices_post_them() -> None:
    plate = push_post(anpr_alert("苏A12345", speed=30))
    assert plate is not None
    assert plate.content_type == "multipart/form-data; boundary=MIME_boundary"
    names = [d for d, _ in _parts(plate.content_type, plate.body)]
    assert names == [
        'form-data; name="anpr.xml"; filename="anpr.xml"',
        'form-data; name="detectionPicture.jpg"; filename="detectionPicture.jpg"',
        'form-data; name="licensePlatePicture.jpg"; filename="licensePlatePicture.jpg"',
    ]
    assert plate.body.rstrip().endswith(b"--MIME_boundary--")

    face = push_post(
        acs_event(5, 75, 9, employee="5001").replace('"doorNo"', '"picturesNumber": 1, "doorNo"', 1)
    )
    assert face is not None
    parts = _parts(face.content_type, face.body)
    assert [d for d, _ in parts] == [
        'form-data; name="event_log"',
        'form-data; name="Picture"; filename="Picture.jpg"',
    ]
    assert parts[0][1].startswith(b"{")
    door = push_post(acs_event(5, 27, 10))
    assert door is not None
    assert [d for d, _ in _parts(door.content_type, door.body)] == ['form-data; name="event_log"']

    motion = push_post(camera_alert("VMD"))
    assert motion is not None
    assert motion.content_type == 'application/xml; charset="UTF-8"'
    assert motion.body.startswith(b"<EventNotificationAlert")
    assert push_post(camera_heartbeat()) is None  # a stream's sign of life, not posted


async def test_the_buildings_push_devices_give_what_its_streams_give(tmp_path: Path) -> None:
    path, moved = demo_on_free_ports(tmp_path)
    assert "15046" in moved  # the listener's port moves with the others
    loaded = load_site(path, mqtt=DEMO_BROKER)
    entries = loaded.driver_devices("http_events")
    assert {e.id for e in entries} == STREAM_DEVICES | PUSH_DEVICES
    samples = Samples()
    clock = SimClock(speed=1.0, start=datetime(2025, 7, 15, 10, 0))
    building = await start_building(read_site(path), clock)
    driver = HttpEventsDriver(
        RuntimeContext(entries, samples.append, "Asia/Shanghai", secrets=loaded.secrets)
    )
    assert building.streams is not None
    devices = building.streams.devices
    pushers = building.streams.pushers
    assert set(pushers) == PUSH_DEVICES
    assert {p.url for p in pushers.values()} == {f"http://127.0.0.1:{moved['15046']}/"}
    driver.start()
    try:
        await until(
            lambda: all(samples.points(d, "available") == [True] for d in STREAM_DEVICES),
            "every stream up",
        )
        now = clock.now().timestamp()
        for device in ("door-side-entrance", "door-rear-entrance"):
            devices[device].inject("forced_door", now, count=1, duration_s=None)
            devices[device].inject("card_pass", now, count=1, duration_s=None)
        for device in ("cam-lobby-hik", "cam-loading-bay"):
            devices[device].inject("video_loss", now, count=1, duration_s=600.0)
        for device in ("cam-gate-in", "cam-gate-car-park"):
            devices[device].inject("card_pass", now, count=1, duration_s=None)

        for pushed, (streamed, point) in PAIRS.items():
            await until(samples.has(pushed, point), pushed)
            await until(samples.has(streamed, point), streamed)
            # The same points, and values of the same kinds, from a post as from the stream.
            a = samples.with_point(pushed, point)[0]
            b = samples.with_point(streamed, point)[0]
            assert {k: type(v) for k, v in a.values.items()} == {
                k: type(v) for k, v in b.values.items()
            }, pushed
        assert samples.points("door-rear-entrance", "door_forced_open")[:1] == [True]
        await until(lambda: samples.points("door-rear-entrance", "card_no") != [], "a card")
        for device in PUSH_DEVICES:
            await until(samples.has(device, "available", [True]), device)

        # Each device's alerts went to it alone, though all post from one address.
        assert samples.points("cam-loading-bay", "plate") == []
        assert samples.points("cam-gate-car-park", "video_loss") == []
        health = driver.health()
        assert health["http_events_push_auth_refused"] == 0
        assert health["http_events_push_unknown_senders"] == 0
        assert health["http_events_push_bad_bodies"] == 0
        assert health["http_events_unmatched"] == 0
        assert health["http_events_undecodable"] == 0
        assert health["http_events_parts_skipped"] >= 3  # the plate's two pictures, a face
        assert health["http_events_push_keepalives"] == 0  # a pushing device posts no sign of life
        for pusher in pushers.values():
            assert pusher.stats.refused == pusher.stats.dropped == 0
    finally:
        await driver.stop()
        await building.stop()


def _small_site(tmp_path: Path, port: int) -> Path:
    (tmp_path / "camera.secret").write_text("push-s3cret\n", encoding="utf-8")
    text = textwrap.dedent(f"""\
        site: {{name: 测试楼, id: push-site, timezone: Asia/Shanghai, tags: {{building: main}}}}
        spool: {{path: spool}}
        devices:
          - id: cam-gate
            profile: hikvision_isapi_anpr_camera
            http_events:
              host: 127.0.0.1
              username: camera
              password: "file:camera.secret"
              push: {{port: {port}, bind: 127.0.0.1, device_id: "44:19:b6:00:aa:01"}}
            tags: {{zone: gate}}
          - id: door-gate
            profile: hikvision_isapi_access_controller
            http_events:
              host: 127.0.0.1
              username: camera
              password: "file:camera.secret"
              push: {{port: {port}, bind: 127.0.0.1, device_id: "44:19:b6:00:aa:02"}}
            tags: {{zone: gate}}
        """)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_a_push_device_sends_again_across_a_listener_restart_and_nothing_counts_twice(
    tmp_path: Path,
) -> None:
    [port] = free_ports(1)
    path = _small_site(tmp_path, port)
    loaded = load_site(path)
    samples = Samples()
    clock = SimClock(speed=1.0, start=datetime(2025, 7, 15, 10, 0))
    # Nothing happens but what the test sets off.
    streams = StreamBuilding(read_site(path), clock, rates=QUIET)
    await streams.start()
    driver = HttpEventsDriver(
        RuntimeContext(
            loaded.driver_devices("http_events"),
            samples.append,
            "Asia/Shanghai",
            secrets=loaded.secrets,
        )
    )
    camera = streams.devices["cam-gate"]
    door = streams.devices["door-gate"]
    pusher = streams.pushers["cam-gate"]
    door_pusher = streams.pushers["door-gate"]
    for p in (pusher, door_pusher):
        p.retry_first = p.retry_max = 1.0  # room to stop the listener before the next try
    [listener] = driver.listeners

    def plates() -> list[object]:
        return samples.points("cam-gate", "plate")

    def forced() -> list[object]:
        return samples.points("door-gate", "door_forced_open")

    # The devices post before the gateway listens: refused connections, sent again.
    camera.inject("card_pass", clock.now().timestamp(), count=1, duration_s=None)
    await until(lambda: pusher.stats.failures >= 1, "a post refused before the listener is up")
    driver.start()
    try:
        await until(lambda: len(plates()) == 1, "the first car, once the listener is up")
        await pusher.wait_idle()

        # The second car reaches the gateway, but its answer does not reach the camera.
        pusher.lose_answers(1)
        camera.inject("card_pass", clock.now().timestamp(), count=1, duration_s=None)
        await until(lambda: len(plates()) == 2, "the second car")
        assert pusher.stats.lost_answers == 1
        await listener.stop()  # before the camera tries again

        # While the listener is away, a third car and a forced door wait in the devices.
        failures = pusher.stats.failures
        camera.inject("card_pass", clock.now().timestamp(), count=1, duration_s=None)
        door.inject("forced_door", clock.now().timestamp(), count=1, duration_s=None)
        await until(lambda: pusher.stats.failures > failures, "a post refused while away")
        await until(lambda: door_pusher.stats.failures >= 1, "the door's post refused")
        assert len(pusher.pending) == 2  # the second car (its answer lost) and the third
        assert len(plates()) == 2
        assert forced() == []

        await listener.start()
        assert listener.error == ""
        await pusher.wait_idle()
        await door_pusher.wait_idle()
        await until(lambda: len(plates()) == 3 and forced() == [True], "all after the restart")

        # Every car once, in order; the second one's repeat was recognised as a duplicate.
        assert len(set(plates())) == 3
        health = driver.health()
        assert health["http_events_duplicates"] == 1
        assert health["http_events_push_events"] == 5  # 3 cars + a repeat + the door
        assert pusher.stats.delivered == pusher.stats.queued == 3
        assert pusher.stats.refused == pusher.stats.dropped == 0
        assert door_pusher.stats.delivered == 1
        assert not pusher.pending
        assert not door_pusher.pending
    finally:
        await driver.stop()
        await streams.stop()
