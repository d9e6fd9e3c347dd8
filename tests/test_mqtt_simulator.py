"""The virtual building's MQTT side: the embedded broker and the simulated MQTT devices.

Every device publishes to a real broker (the embedded amqtt one on port 0, or Debian's
Mosquitto for one test) and a paho subscriber checks topics and JSON shapes against the device
facts (shared/facts/devices/*.yaml). Behaviour over days is checked on a paused clock through
MqttBuilding.step(), without a broker. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.ingest import Ingest, MqttDevice
from gateway.config_load import BUILTIN_PROFILES, load_profile
from simulator.broker import EmbeddedBroker, start_embedded_broker
from simulator.clock import SimClock
from simulator.models import MODE_COOL, AcUnit
from simulator.mqtt import (
    DeviceDescription,
    EventRates,
    MqttBuilding,
    ac_units_by_zone,
    from_site,
)
from simulator.site import read_site
from tests.servers import MosquittoServer

pytestmark = pytest.mark.timeout(30)

# A Tuesday in July, 08:40: staff arriving, doors and cameras busy.
ARRIVALS = datetime(2025, 7, 15, 8, 40)
FAST = 600.0  # ten simulated minutes per second
ISO_LOCAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
_ids = itertools.count()


def one_of_each() -> list[DeviceDescription]:
    return [
        DeviceDescription("door-1f-east", "door", {"device": "door_1f_east"}),
        DeviceDescription("door-archive", "door", {"device": "door_archive"}, role="secured"),
        DeviceDescription("contact-301", "contact", {"id": "office_301_door"}, zone="301"),
        DeviceDescription("th-301", "climate", {"id": "th_301"}, zone="301"),
        DeviceDescription("pir-301", "occupancy", {"id": "pir_301"}, zone="301"),
        DeviceDescription("plug-printer", "plug", {"topic": "plug_printer"}),
        DeviceDescription("cam-lobby", "frigate_camera", {"camera": "lobby"}),
        DeviceDescription("cam-gate", "hik_camera", {"device": "cam_gate"}),
    ]


class Msg(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    at: float  # monotonic

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """A paho subscriber that keeps every message it gets."""

    def __init__(self, host: str, port: int, filters: Iterable[str] = ("#",)) -> None:
        self.host, self.port = host, port
        self.filters = list(filters)
        self.messages: list[Msg] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-rec-{next(_ids)}")
        client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe([(f, 1) for f in self.filters])
        client.on_subscribe = lambda _c, _u, _m, _r, _p: self._subscribed.set()
        client.on_message = self._on_message
        self.client = client

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Msg(msg.topic, msg.payload, bool(msg.retain), time.monotonic()))

    async def __aenter__(self) -> Recorder:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        assert await asyncio.to_thread(self._subscribed.wait, 5.0), "no SUBACK"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    def snapshot(self, since: int = 0) -> list[Msg]:
        with self._lock:
            return self.messages[since:]

    def mark(self) -> int:
        with self._lock:
            return len(self.messages)

    async def wait_for(
        self, what: str, match: Callable[[Msg], bool], *, since: int = 0, timeout: float = 5.0
    ) -> Msg:
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            new = self.snapshot(checked)
            for m in new:
                if match(m):
                    return m
            checked += len(new)
            if time.monotonic() > deadline:
                topics = sorted({m.topic for m in self.snapshot()})
                raise AssertionError(f"no message for {what} within {timeout} s; topics: {topics}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    b = await start_embedded_broker("127.0.0.1", 0)
    try:
        yield b
    finally:
        await b.stop()


def fast_building(devices: list[DeviceDescription], **kw: Any) -> MqttBuilding:
    return MqttBuilding(devices, SimClock(speed=FAST, start=ARRIVALS), seed=7, **kw)


# --- shape checks, per the device facts -----------------------------------------------------


def _json(m: Msg) -> Any:
    try:
        return m.json()
    except ValueError:
        return None


def is_door_event(device: str) -> Callable[[Msg], bool]:
    def check(m: Msg) -> bool:
        doc = _json(m)
        if m.topic != f"hikvision/{device}/event" or not isinstance(doc, dict):
            return False
        acs = doc.get("AccessControllerEvent")
        return (
            doc["eventType"] == "AccessControllerEvent"
            and ISO_LOCAL.match(doc["dateTime"]) is not None
            and isinstance(acs, dict)
            and type(acs["majorEventType"]) is int
            and type(acs["subEventType"]) is int
            and type(acs["serialNo"]) is int
            and type(acs["doorNo"]) is int
        )

    return check


def door_minor(m: Msg) -> int:
    return int(m.json()["AccessControllerEvent"]["subEventType"])


def is_z2m(friendly: str, **types: type) -> Callable[[Msg], bool]:
    def check(m: Msg) -> bool:
        doc = _json(m)
        return (
            m.topic == f"zigbee2mqtt/{friendly}"
            and isinstance(doc, dict)
            and all(type(doc.get(k)) is t for k, t in types.items())
            and 0 <= doc["linkquality"] <= 255
            and 0 <= doc["battery"] <= 100
        )

    return check


def is_tasmota_sensor(topic: str) -> Callable[[Msg], bool]:
    def check(m: Msg) -> bool:
        doc = _json(m)
        if m.topic != f"tele/{topic}/SENSOR" or not isinstance(doc, dict):
            return False
        energy = doc["ENERGY"]
        return (
            re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", doc["Time"]) is not None
            and all(
                isinstance(energy[k], int | float)
                for k in ("Total", "Today", "Yesterday", "Power", "Factor", "Voltage", "Current")
            )
            and energy["Total"] > energy["Today"] >= 0
        )

    return check


def is_frigate_event(camera: str) -> Callable[[Msg], bool]:
    def check(m: Msg) -> bool:
        doc = _json(m)
        return (
            m.topic == "frigate/events"
            and isinstance(doc, dict)
            and doc["type"] in ("new", "update", "end")
            and doc["after"]["camera"] == camera
            and doc["after"]["label"] == "person"
            and doc["before"]["id"] == doc["after"]["id"]
            and 0 < doc["after"]["top_score"] <= 1
        )

    return check


def is_hik_camera_event(device: str, event_type: str | None = None) -> Callable[[Msg], bool]:
    def check(m: Msg) -> bool:
        doc = _json(m)
        return (
            m.topic == f"hikvision/{device}/event"
            and isinstance(doc, dict)
            and (event_type is None or doc["eventType"] == event_type)
            and doc["eventState"] in ("active", "inactive")
            and type(doc["channelID"]) is int
            and type(doc["activePostCount"]) is int
            and ISO_LOCAL.match(doc["dateTime"]) is not None
        )

    return check


# --- the embedded broker ----------------------------------------------------------------------


async def test_embedded_broker_qos_retain_will_and_sessions(broker: EmbeddedBroker) -> None:
    assert broker.host == "127.0.0.1"
    assert broker.port > 0
    assert broker.implementation == "amqtt"
    # Blocking paho calls go to a thread: the embedded broker runs on this event loop.
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-pub")
    pub.will_set("test/will", "gone", qos=1, retain=True)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        await asyncio.to_thread(
            pub.publish("test/retained", "kept", qos=1, retain=True).wait_for_publish, 3
        )
        async with Recorder(broker.host, broker.port, ["test/#"]) as rec:
            retained = await rec.wait_for("retained", lambda m: m.topic == "test/retained")
            assert retained.retain
            assert retained.text == "kept"
            pub.publish("test/q0", "zero", qos=0)
            await asyncio.to_thread(pub.publish("test/q1", "one", qos=1).wait_for_publish, 3)
            await rec.wait_for("QoS 0", lambda m: m.topic == "test/q0" and m.text == "zero")
            await rec.wait_for("QoS 1", lambda m: m.topic == "test/q1" and m.text == "one")
            # Killed without DISCONNECT: the broker publishes the will.
            await asyncio.to_thread(pub.loop_stop)
            sock = pub.socket()
            assert sock is not None
            sock.close()
            will = await rec.wait_for("last will", lambda m: m.topic == "test/will")
            assert will.text == "gone"
    finally:
        pub.loop_stop()

    # A persistent session keeps its subscription and gets what was published meanwhile.
    got: list[str] = []
    session = threading.Event()

    def persistent() -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="test-persistent", clean_session=False
        )
        c.on_message = lambda _c, _u, m: got.append(m.payload.decode())
        c.on_connect = lambda _c, _u, flags, _r, _p: (
            session.set() if flags.session_present else None
        )
        return c

    first = persistent()
    first.connect(broker.host, broker.port)
    first.loop_start()
    first.subscribe("queued/#", 1)
    await asyncio.sleep(0.3)
    first.disconnect()
    await asyncio.to_thread(first.loop_stop)
    other = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-other")
    other.connect(broker.host, broker.port)
    other.loop_start()
    await asyncio.to_thread(other.publish("queued/x", "while away", qos=1).wait_for_publish, 3)
    other.disconnect()
    other.loop_stop()
    second = persistent()
    second.connect(broker.host, broker.port)
    second.loop_start()
    try:
        assert await asyncio.to_thread(session.wait, 3.0), "session not kept"
        for _ in range(60):
            if "while away" in got:
                break
            await asyncio.sleep(0.05)
        assert "while away" in got
    finally:
        second.disconnect()
        second.loop_stop()


async def test_embedded_broker_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        await start_embedded_broker("0.0.0.0", 0)


# --- the devices on the embedded broker -------------------------------------------------------


async def test_every_device_publishes_its_real_format(broker: EmbeddedBroker) -> None:
    building = fast_building(one_of_each())
    async with Recorder(broker.host, broker.port) as rec:
        await building.start(broker.host, broker.port)
        try:
            await rec.wait_for("east door", is_door_event("door_1f_east"))
            await rec.wait_for("archive door", is_door_event("door_archive"), timeout=8.0)
            await rec.wait_for(
                "contact", is_z2m("office_301_door", contact=bool, voltage=int, battery=int)
            )
            await rec.wait_for(
                "climate", is_z2m("th_301", temperature=float, humidity=float, pressure=float)
            )
            await rec.wait_for("occupancy", is_z2m("pir_301", occupancy=bool, illuminance=int))
            await rec.wait_for("tasmota SENSOR", is_tasmota_sensor("plug_printer"))
            state = await rec.wait_for("tasmota STATE", lambda m: m.topic.endswith("/STATE"))
            assert state.json()["POWER"] == "ON"
            assert isinstance(state.json()["UptimeSec"], int)
            lwt = await rec.wait_for("tasmota LWT", lambda m: m.topic == "tele/plug_printer/LWT")
            assert lwt.text == "Online"
            await rec.wait_for("frigate event", is_frigate_event("lobby"))
            await rec.wait_for(
                "frigate motion",
                lambda m: m.topic == "frigate/lobby/motion" and m.text in ("ON", "OFF"),
            )
            detect = await rec.wait_for(
                "frigate detect", lambda m: m.topic == "frigate/lobby/status/detect"
            )
            assert detect.text == "online"
            beat = await rec.wait_for("hik heartbeat", is_hik_camera_event("cam_gate", "videoloss"))
            assert beat.json()["eventState"] == "inactive"
            assert beat.json()["activePostCount"] == 0
        finally:
            await building.stop()
        # Frigate's clean goodbye; the broker forwards it after acknowledging it.
        await rec.wait_for(
            "frigate stopped", lambda m: m.topic == "frigate/available" and m.text == "stopped"
        )
        msgs = rec.snapshot()
    # Every device id has published, and a door's serial numbers only count up.
    assert set(building.sent) == {d.id for d in one_of_each()}
    east = [m.json() for m in msgs if is_door_event("door_1f_east")(m)]
    serials = [e["AccessControllerEvent"]["serialNo"] for e in east]
    assert serials == sorted(serials)
    assert len(set(serials)) == len(serials)
    # Card events name a known employee; door contact events name nobody.
    for e in east:
        acs = e["AccessControllerEvent"]
        if acs["subEventType"] == 1:
            assert acs["employeeNoString"].isdigit()
            assert acs["cardNo"].isdigit()
        elif acs["subEventType"] in (25, 26):
            assert "cardNo" not in acs
    available = [m.text for m in msgs if m.topic == "frigate/available"]
    assert available == ["online", "stopped"]


async def test_retained_availability_reaches_a_late_subscriber(broker: EmbeddedBroker) -> None:
    building = fast_building(one_of_each())
    await building.start(broker.host, broker.port)
    try:
        await asyncio.sleep(0.3)
        filters = ["zigbee2mqtt/+/availability", "tele/+/LWT", "frigate/+/status/detect"]
        async with Recorder(broker.host, broker.port, filters) as late:
            for friendly in ("office_301_door", "th_301", "pir_301"):
                m = await late.wait_for(
                    friendly, lambda m, f=friendly: m.topic == f"zigbee2mqtt/{f}/availability"
                )
                assert m.retain
                assert m.json() == {"state": "online"}
            lwt = await late.wait_for("LWT", lambda m: m.topic == "tele/plug_printer/LWT")
            assert lwt.retain
            assert lwt.text == "Online"
            detect = await late.wait_for("detect", lambda m: m.topic.startswith("frigate/lobby"))
            assert detect.retain
            assert detect.text == "online"
    finally:
        await building.stop()


async def test_injected_events(broker: EmbeddedBroker) -> None:
    # Quiet rates: whatever shows up after an injection is the injection's.
    quiet = EventRates(
        entrance_passes_per_hour=0,
        secured_passes_per_hour=0,
        invalid_cards_per_day=0,
        forced_doors_per_night=0,
        persons_per_hour=0,
        video_losses_per_day=0,
    )
    building = fast_building(one_of_each(), rates=quiet)
    async with Recorder(broker.host, broker.port) as rec:
        await building.start(broker.host, broker.port)
        try:
            mark = rec.mark()
            await building.inject("forced_door", "door-archive")
            forced = await rec.wait_for("forced door", is_door_event("door_archive"), since=mark)
            assert door_minor(forced) == 27
            assert forced.json()["AccessControllerEvent"]["majorEventType"] == 5

            mark = rec.mark()
            await building.inject("invalid_cards", "door-1f-east", count=3)
            await asyncio.sleep(0.3)  # the retries come seconds apart in simulated time
            invalid = [m for m in rec.snapshot(mark) if is_door_event("door_1f_east")(m)]
            assert [door_minor(m) for m in invalid] == [9, 9, 9]
            cards = {m.json()["AccessControllerEvent"]["cardNo"] for m in invalid}
            assert len(cards) == 1  # one unknown card tried again and again

            mark = rec.mark()
            await building.inject("held_open", "door-1f-east")
            await rec.wait_for(
                "held open (5/28)",
                lambda m: is_door_event("door_1f_east")(m) and door_minor(m) == 28,
                since=mark,
            )
            minors = [door_minor(m) for m in rec.snapshot(mark) if is_door_event("door_1f_east")(m)]
            assert minors[:3] == [1, 25, 28]

            mark = rec.mark()
            await building.inject("video_loss", "cam-lobby", duration_s=120.0)
            lost = await rec.wait_for(
                "frigate video loss",
                lambda m: m.topic == "frigate/lobby/status/detect" and m.text == "offline",
                since=mark,
            )
            assert not lost.retain  # live delivery; the broker keeps the retained copy
            await rec.wait_for(
                "frigate recovers",
                lambda m: m.topic == "frigate/lobby/status/detect" and m.text == "online",
                since=mark,
            )

            mark = rec.mark()
            await building.inject("video_loss", "cam-gate", duration_s=60.0)
            active = await rec.wait_for(
                "hik video loss",
                lambda m: (
                    is_hik_camera_event("cam_gate", "videoloss")(m)
                    and m.json()["eventState"] == "active"
                ),
                since=mark,
            )
            assert active.json()["activePostCount"] == 1

            mark = rec.mark()
            await building.inject("person", "cam-lobby")
            await rec.wait_for("person", is_frigate_event("lobby"), since=mark)
        finally:
            await building.stop()


async def test_plug_last_will_when_power_is_cut(broker: EmbeddedBroker) -> None:
    plug = DeviceDescription("plug-printer", "plug", {"topic": "plug_printer"})
    building = fast_building([plug])
    async with Recorder(broker.host, broker.port, ["tele/plug_printer/#"]) as rec:
        await building.start(broker.host, broker.port)
        try:
            await rec.wait_for("Online", lambda m: m.topic.endswith("/LWT") and m.text == "Online")
            mark = rec.mark()
            await building.inject("power_loss", "plug-printer")
            await rec.wait_for(
                "last will", lambda m: m.topic.endswith("/LWT") and m.text == "Offline", since=mark
            )
            # No telemetry from a plug without power.
            await asyncio.sleep(1.2)
            assert not [m for m in rec.snapshot(mark) if m.topic.endswith("/SENSOR")]
            mark = rec.mark()
            await building.inject("power_restore", "plug-printer")
            await rec.wait_for(
                "back", lambda m: m.topic.endswith("/LWT") and m.text == "Online", since=mark
            )
            state = await rec.wait_for(
                "fresh boot", lambda m: m.topic.endswith("/STATE"), since=mark
            )
            assert state.json()["MqttCount"] == 1
        finally:
            await building.stop()


# --- behaviour on a paused clock, without a broker --------------------------------------------


def run_day(seed: int, rates: EventRates | None = None) -> list[tuple[str, str, str]]:
    clock = SimClock(speed=0, start=datetime(2025, 7, 15, 0, 0))
    building = MqttBuilding(one_of_each(), clock, seed=seed, rates=rates)
    out: list[tuple[str, str, str]] = []
    for _ in range(86400 // 20):
        clock.advance(20)
        out.extend((dev, m.topic, m.payload) for dev, m in building.step())
    return out


def test_a_day_is_repeatable_and_shaped_like_office_hours() -> None:
    day = run_day(1)
    assert day == run_day(1)
    assert day != run_day(2)
    # At 1x the whole building stays far below a message per second.
    assert len(day) / 86400 < 0.5
    passes = [
        json.loads(p)["dateTime"][11:13]
        for dev, _, p in day
        if dev == "door-1f-east" and '"subEventType":1,' in p
    ]
    by_hour = {h: passes.count(f"{h:02d}") for h in range(24)}
    assert by_hour[8] > 5 * max(by_hour[2], 1)  # arrivals against the dead of night
    assert by_hour[8] > by_hour[10]


def test_forced_doors_happen_at_night() -> None:
    rates = EventRates(forced_doors_per_night=3.0)
    forced = [
        json.loads(p)["dateTime"][11:13]
        for dev, _, p in run_day(3, rates)
        if dev.startswith("door") and '"subEventType":27,' in p
    ]
    assert forced
    assert all(int(h) >= 22 or int(h) < 6 for h in forced)


def test_climate_sensor_reports_its_ac_units_room() -> None:
    clock = SimClock(speed=0, start=datetime(2025, 7, 15, 10, 0))
    ac = AcUnit(
        load_profile(BUILTIN_PROFILES / "coolmaster_indoor.yaml"),
        clock,
        on=True,
        mode=MODE_COOL,
        setpoint=22.0,
        room_temperature=22.0,
    )
    sensor = DeviceDescription("th-301", "climate", {"id": "th_301"}, zone="301")
    free = DeviceDescription("th-999", "climate", {"id": "th_999"}, zone="999")
    building = MqttBuilding([sensor, free], clock, ac_units={"301": ac})
    temps: dict[str, list[float]] = {"zigbee2mqtt/th_301": [], "zigbee2mqtt/th_999": []}
    for _ in range(12):
        clock.advance(300)
        for _, m in building.step():
            if m.topic in temps:
                temps[m.topic].append(m.json()["temperature"])
    assert temps["zigbee2mqtt/th_301"]
    assert temps["zigbee2mqtt/th_999"]
    assert all(abs(t - 22.0) < 0.6 for t in temps["zigbee2mqtt/th_301"])
    assert min(temps["zigbee2mqtt/th_999"]) > 27.0  # July without A/C


async def test_fast_clock_is_thinned(broker: EmbeddedBroker) -> None:
    clock = SimClock(speed=36_000, start=ARRIVALS)  # ten hours per second
    building = MqttBuilding(one_of_each(), clock, seed=5)
    await building.start(broker.host, broker.port)
    try:
        await asyncio.sleep(1.0)
    finally:
        await building.stop()
    # Unthinned, the east door alone would send ~1200 messages in these 10 simulated hours.
    assert 0 < building.sent["door-1f-east"] < 60
    assert sum(building.sent.values()) < 600


def test_from_site_reads_mqtt_devices() -> None:
    def dev(id: str, profile: str, vars: dict[str, str] | None, **tags: str) -> SimpleNamespace:
        mqtt_block = SimpleNamespace(broker=None, vars=vars) if vars is not None else None
        return SimpleNamespace(id=id, profile=profile, enabled=True, tags=tags, mqtt=mqtt_block)

    site: Any = SimpleNamespace(
        devices=[
            dev("meter-1", "eastron_sdm630", None),
            dev("door-east", "hikvision_access_controller", {"device": "door_1f_east"}),
            dev("archive", "hikvision_access_controller", {"device": "arc"}, use="secured"),
            dev("th-301", "z2m_temperature_humidity", {"id": "th_301"}, zone="301"),
            dev("plug", "tasmota_energy_plug", {}),
            dev("cam", "frigate_camera", {"camera": "lobby"}),
            dev("hik", "hikvision_camera", {"device": "cam_gate"}),
        ]
    )
    descs = {d.id: d for d in from_site(site)}
    assert set(descs) == {"door-east", "archive", "th-301", "plug", "cam", "hik"}
    assert descs["door-east"].kind == "door"
    assert descs["door-east"].variables == {"device": "door_1f_east"}
    assert descs["archive"].role == "secured"
    assert descs["th-301"].kind == "climate"
    assert descs["th-301"].zone == "301"
    assert descs["hik"].kind == "hik_camera"
    # A plug without vars publishes under its device id.
    building = MqttBuilding([descs["plug"]], SimClock(speed=0, start=ARRIVALS))
    assert building.devices["plug"].var("topic") == "plug"

    ac = object.__new__(AcUnit)
    fake_building: Any = SimpleNamespace(models={"ac-301": ac, "meter-1": object()})
    site_ac: Any = SimpleNamespace(
        devices=[dev("ac-301", "coolmaster_indoor", None, zone="301"), dev("meter-1", "x", None)]
    )
    assert ac_units_by_zone(site_ac, fake_building) == {"301": ac}


def test_from_site_on_a_site_file(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        """
site: {name: 测试, id: test}
devices:
  - id: door-east
    profile: hikvision_access_controller
    mqtt: {vars: {device: door_1f_east}}
    tags: {zone: lobby, use: entrance}
  - id: pir-301
    profile: z2m_occupancy
    mqtt: {vars: {id: pir_301}}
  - id: pir-302
    profile: z2m_occupancy
    mqtt: {vars: {id: pir_302}}
    enabled: false
""",
        encoding="utf-8",
    )
    descs = from_site(read_site(path))
    assert [(d.id, d.kind, d.variables) for d in descs] == [
        ("door-east", "door", {"device": "door_1f_east"}),
        ("pir-301", "occupancy", {"id": "pir_301"}),
    ]
    assert descs[0].zone == "lobby"
    assert descs[0].role == "entrance"


def test_inject_without_a_broker_returns_what_it_sends() -> None:
    clock = SimClock(speed=0, start=ARRIVALS)
    building = MqttBuilding([DeviceDescription("cam-gate", "hik_camera", {})], clock)
    sent = asyncio.run(building.inject("tamper", "cam-gate", duration_s=30.0))
    assert [(d, m.json()["eventType"], m.json()["eventState"]) for d, m in sent] == [
        ("cam-gate", "tamperdetection", "active")
    ]
    assert sent[0][1].topic == "hikvision/cam-gate/event"  # no `device` var: the id
    clock.advance(40)
    later = [m.json() for _, m in building.step() if "tamper" in m.payload]
    assert [(e["eventState"], e["activePostCount"]) for e in later] == [("inactive", 1)]


# --- against Debian's Mosquitto ---------------------------------------------------------------


@pytest.mark.servers
@pytest.mark.skipif(not MosquittoServer.is_available(), reason="mosquitto not installed")
async def test_devices_on_real_mosquitto(tmp_path: Any) -> None:
    server = await asyncio.to_thread(lambda: MosquittoServer(tmp_path, persistence=False).start())
    try:
        devices = [
            DeviceDescription("door-1f-east", "door", {"device": "door_1f_east"}),
            DeviceDescription("contact-301", "contact", {"id": "office_301_door"}),
            DeviceDescription("plug-printer", "plug", {"topic": "plug_printer"}),
        ]
        building = fast_building(devices)
        async with Recorder(server.host, server.port) as rec:
            await building.start(server.host, server.port)
            try:
                await rec.wait_for("door", is_door_event("door_1f_east"))
                await rec.wait_for("contact", is_z2m("office_301_door", contact=bool))
                await rec.wait_for("sensor", is_tasmota_sensor("plug_printer"))
                mark = rec.mark()
                await building.inject("power_loss", "plug-printer")
                await rec.wait_for(
                    "will",
                    lambda m: m.topic == "tele/plug_printer/LWT" and m.text == "Offline",
                    since=mark,
                )
            finally:
                await building.stop()
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.servers
@pytest.mark.skipif(not MosquittoServer.is_available(), reason="mosquitto not installed")
async def test_embedded_broker_can_be_mosquitto() -> None:
    b = await start_embedded_broker(implementation="mosquitto")
    try:
        assert b.implementation == "mosquitto"
        assert b.port > 0
        async with Recorder(b.host, b.port, ["x/#"]) as rec:
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-pub-mosq")
            pub.connect(b.host, b.port)
            pub.loop_start()
            await asyncio.to_thread(pub.publish("x/y", "hello", qos=1).wait_for_publish, 3)
            await rec.wait_for("x/y", lambda m: m.topic == "x/y" and m.text == "hello")
            pub.disconnect()
            pub.loop_stop()
    finally:
        await b.stop()


# --- Shelly channels and the Dahua bridge, read back through their profiles -------------------


def _read_back(profile: str, variables: dict[str, str], sent: Iterable[Any]) -> list[Any]:
    """Every simulated message through the gateway's ingest of the device's profile."""
    ingest = Ingest(
        [MqttDevice("dev", load_profile(BUILTIN_PROFILES / f"{profile}.yaml"), "site", variables)]
    )
    samples = [s for m in sent for s in ingest.on_message(m.topic, m.payload.encode(), m.retain)]
    assert ingest.stats.rejected == 0
    return samples


def test_shelly_channels_publish_what_their_profile_reads() -> None:
    clock = SimClock(speed=0, start=ARRIVALS)
    channels = [
        DeviceDescription(
            f"circuit-{n}", "shelly_channel", {"prefix": "shellypro4pm-3f", "channel": str(n)}
        )
        for n in (0, 1)
    ]
    building = MqttBuilding(channels, clock, seed=3)
    clock.advance(130)
    out = building.step()
    assert {d for d, _ in out} == {"circuit-0", "circuit-1"}
    # Both channels are one Shelly: one client.
    assert {building._link_of(d) for d in building.devices.values()} == {"shelly:shellypro4pm-3f"}
    for n in (0, 1):
        mine = [m for d, m in out if d == f"circuit-{n}"]
        assert {m.topic for m in mine} == {
            "shellypro4pm-3f/events/rpc",
            f"shellypro4pm-3f/status/switch:{n}",
        }
        samples = _read_back(
            "shelly_pro_4pm", {"prefix": "shellypro4pm-3f", "channel": str(n)}, mine
        )
        assert samples
        assert all(not s.bad for s in samples)
        full = next(s.values for s in samples if "relay_on" in s.values)
        assert full["relay_on"] is True
        assert full["active_power_total_w"] > 0
        assert full["energy_import_kwh"] > 5  # the counter starts at 5-90 kWh


def test_dahua_bridge_camera_publishes_what_its_profile_reads() -> None:
    clock = SimClock(speed=0, start=ARRIVALS)
    cam = DeviceDescription(
        "cam-garage", "dahua_bridge_camera", {"topic": "cameras/1", "retain": "true"}
    )
    building = MqttBuilding([cam], clock)
    sent = [m for _, m in asyncio.run(building.inject("video_loss", "cam-garage", duration_s=30))]
    clock.advance(40)
    sent += [m for _, m in building.step()]
    assert [(m.topic, m.payload, m.retain) for m in sent] == [
        ("cameras/1/VideoLoss", "Start", True),
        ("cameras/1/VideoLoss", "Stop", True),
    ]
    samples = _read_back("dahua_mqtt_camera", {"topic": "cameras/1"}, sent)
    assert [s.values for s in samples] == [{"video_loss": True}, {"video_loss": False}]


async def test_a_shelly_says_it_is_online_and_leaves_its_will(broker: EmbeddedBroker) -> None:
    channels = [
        DeviceDescription(
            f"circuit-{n}", "shelly_channel", {"prefix": "shellypro4pm-3f", "channel": str(n)}
        )
        for n in (0, 1)
    ]
    building = fast_building(channels)
    await building.start(broker.host, broker.port)
    try:
        await asyncio.sleep(0.3)
        async with Recorder(broker.host, broker.port, ["shellypro4pm-3f/#"]) as late:
            up = await late.wait_for("online", lambda m: m.topic == "shellypro4pm-3f/online")
            assert up.retain
            assert up.text == "true"
            await late.wait_for("status", lambda m: m.topic.endswith("/status/switch:1"))
    finally:
        await building.stop()


def test_shelly_pro_em_clamps_publish_what_their_profile_reads() -> None:
    clock = SimClock(speed=0, start=ARRIVALS)
    clamp = DeviceDescription(
        "clamp-kitchen", "shelly_em_channel", {"prefix": "shellyproem50-b1", "channel": "1"}
    )
    building = MqttBuilding([clamp], clock, seed=5)
    clock.advance(130)
    sent = [m for _, m in building.step()]
    assert {m.topic for m in sent} == {
        "shellyproem50-b1/events/rpc",
        "shellyproem50-b1/status/em1:1",
        "shellyproem50-b1/status/em1data:1",
    }
    samples = _read_back("shelly_pro_em", {"prefix": "shellyproem50-b1", "channel": "1"}, sent)
    assert all(not s.bad for s in samples)
    values: dict[str, Any] = {}
    for s in samples:
        values |= s.values
    assert values["active_power_total_w"] > 0
    assert values["energy_import_kwh"] > 5
    assert values["apparent_power_total_va"] >= values["active_power_total_w"]
