"""Simulated MQTT devices of the virtual building, publishing in their vendors' real formats.

What publishes, and as which MQTT client (one connection per real-world publisher):

* Hikvision access controllers (``door``) and Hikvision cameras (``hik_camera``): the devices
  speak ISAPI over HTTP, not MQTT, so one "bridge" client republishes their alertStream JSON on
  ``hikvision/{device}/event``;
* Zigbee door/window contacts, temperature/humidity and occupancy sensors: one Zigbee2MQTT
  client, ``zigbee2mqtt/{id}`` plus retained ``zigbee2mqtt/{id}/availability``;
* each Tasmota plug is its own client with the last will ``tele/{topic}/LWT`` = ``Offline``;
* Frigate is one client for all its cameras, last will ``frigate/available`` = ``offline``.

Behaviour runs on simulated time (SimClock): people arrive, swipe cards and walk past cameras
during office hours, windows are left open now and then, and rarer faults (a forced door at
night, a camera losing video) happen at configurable rates. Every random choice comes from a
generator seeded by (seed, device, process), and events are drawn in simulated time, so a run
is repeatable for a given seed and clock speed, whatever the tick timing.

Fast clocks are tamed in two ways so the broker and the gateway never drown: random events are
thinned when their rate would exceed ``EventRates.max_events_per_second`` real seconds per
process, and periodic reports (TelePeriod, heartbeats) come at most every
``EventRates.min_report_interval_s`` real seconds. Counters (energy) still integrate over the
full simulated time.

Payload shapes: /work/shared/facts/devices/{zigbee2mqtt,tasmota,frigate,hikvision_isapi}.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import math
import random
import secrets
import string
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from simulator.clock import SimClock
from simulator.models import (
    MODE_COOL,
    MODE_DRY,
    AcUnit,
    _Integrator,
    _window,
    clear_sky_fraction,
    indoor_free_temperature,
    load_fraction,
    noise,
    smoothstep,
)

if TYPE_CHECKING:
    from simulator.building import Building
    from simulator.site import BuildingSite

log = logging.getLogger("guanjia.simulator.mqtt")

DeviceKind = Literal[
    "door", "contact", "climate", "occupancy", "plug", "frigate_camera", "hik_camera"
]
DEVICE_KINDS: tuple[DeviceKind, ...] = get_args(DeviceKind)

# MQTT profile (config/profiles/<name>.yaml) -> the simulated device that publishes for it.
PROFILE_KINDS: dict[str, DeviceKind] = {
    "hikvision_access_controller": "door",
    "z2m_door_contact": "contact",
    "z2m_temperature_humidity": "climate",
    "z2m_occupancy": "occupancy",
    "tasmota_energy_plug": "plug",
    "frigate_camera": "frigate_camera",
    "hikvision_camera": "hik_camera",
}

Injection = Literal[
    "card_pass",  # door: a legal card, the door opens and closes
    "invalid_cards",  # door: `count` unknown cards in a row (5/9)
    "held_open",  # door: a legal pass, then the door stays open past the alarm time (5/28)
    "forced_door",  # door: opened without a card (5/27)
    "open",  # contact: the door or window opens for `duration_s` (default 60 s)
    "person",  # frigate_camera: persons walk through; hik_camera: VMD; occupancy: motion
    "video_loss",  # frigate_camera: detect stream offline; hik_camera: videoloss active
    "tamper",  # hik_camera: tamperdetection active, then inactive
    "power_loss",  # plug: the plug loses power; its connection drops without DISCONNECT
    "power_restore",  # plug: power is back, it reconnects (LWT Online)
]

# Hikvision access-control event codes (majorEventType 5 = MAJOR_EVENT, subEventType = minor).
MAJOR_EVENT = 5
MINOR_LEGAL_CARD_PASS = 1
MINOR_INVALID_CARD = 9
MINOR_DOOR_OPEN_NORMAL = 25
MINOR_DOOR_CLOSE_NORMAL = 26
MINOR_DOOR_OPEN_ABNORMAL = 27
MINOR_DOOR_OPEN_TIMEOUT = 28

_HIK_OUI = "44:19:b6"  # a Hikvision MAC prefix: payloads look like the real thing
_Z2M_BASE = "zigbee2mqtt"
_FRIGATE_BASE = "frigate"
_MOTION_OFF_DELAY_S = 30.0  # Frigate's mqtt_off_delay default
_OCCUPANCY_TIMEOUT_S = 90.0  # Zigbee2MQTT's occupancy_timeout default for RTCGQ11LM
_PIR_BLIND_S = 60.0  # RTCGQ11LM hardware: no new detection for 60 s after one
_ZIGBEE_CHECKIN_S = 3000.0  # Aqara end devices check in about every 50 minutes
_CLIMATE_REPORT_S = 300.0
_HIK_HEARTBEAT_S = 30.0
_HIK_ACTIVE_REPEAT_S = 5.0  # cameras repeat an active alarm while it lasts
_TASMOTA_TELE_PERIOD_S = 300.0
_ID_CHARS = string.ascii_lowercase + string.digits  # Frigate's event id suffix


@dataclass(frozen=True, slots=True)
class DeviceDescription:
    """One simulated MQTT device.

    ``variables`` are the device's profile variables as the site file gives them (`id` for
    Zigbee2MQTT, `topic` for Tasmota, `camera` for Frigate, `device` for Hikvision); a missing
    one defaults to the device id. ``zone`` ties a climate sensor to the A/C unit of the same
    zone. ``role`` refines the behaviour: a door that is ``secured`` (or ``archive``) sees a few
    authorised staff instead of the entrance crowd; a contact that is a ``window`` is opened
    for hours and sometimes left open overnight. Tasmota plugs read ``rated_w`` and
    ``tele_period`` from ``variables`` too.
    """

    id: str
    kind: DeviceKind
    variables: dict[str, str] = field(default_factory=dict)
    zone: str = ""
    role: str = ""


@dataclass(frozen=True, slots=True)
class EventRates:
    """How often the random things happen, per device, at the busiest time of day; and the
    limits that keep a fast clock's traffic sane."""

    entrance_passes_per_hour: float = 60.0  # card swipes at a building entrance, 08:00-09:00
    secured_passes_per_hour: float = 3.0  # the archive room's few authorised visitors
    invalid_cards_per_day: float = 2.0  # per door, spread like the traffic
    invalid_burst_probability: float = 0.3  # an invalid card is followed by 1-4 more
    held_open_probability: float = 0.02  # per legal pass
    door_open_alarm_s: float = 60.0  # the controller's "door open timeout" setting
    forced_doors_per_night: float = 0.02  # per door, between 22:00 and 06:00
    office_door_opens_per_hour: float = 6.0
    window_opens_per_day: float = 1.5
    window_left_open_probability: float = 0.15  # a window still open when everyone has left
    motions_per_hour: float = 40.0  # PIR detections in an occupied office
    persons_per_hour: float = 12.0  # people a camera sees at the busiest hour
    video_losses_per_day: float = 0.3  # per camera
    max_events_per_second: float = 2.0  # real time, per device and process (fast clocks)
    min_report_interval_s: float = 1.0  # real time, for periodic reports (fast clocks)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: str
    qos: int = 0
    retain: bool = False

    def json(self) -> Any:
        return json.loads(self.payload)


def _dumps(doc: object) -> str:
    # Devices send UTF-8 JSON with raw Chinese names, not \u escapes.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _crc(text: str) -> int:
    # Stable across runs and Python versions, unlike hash().
    return zlib.crc32(text.encode())


# --- time-of-day shapes: 0..1, how busy a process is at local time --------------------------


def _hours(local: datetime) -> float:
    return local.hour + local.minute / 60.0 + local.second / 3600.0


def entrance_traffic(local: datetime) -> float:
    """People through a building entrance: arrivals, the lunch break, departures, overtime."""
    h = _hours(local)
    if local.weekday() >= 5:
        return 0.04 * _window(8.0, 18.0, h) + 0.005
    day = 0.25 * smoothstep(8.5, 9.25, h) * (1.0 - smoothstep(17.0, 17.75, h))
    arrivals = _window(7.5, 9.5, h)
    lunch = 0.45 * (_window(11.5, 12.5, h) + _window(13.0, 14.25, h))
    departures = 0.8 * _window(17.0, 19.0, h)
    overtime = 0.06 * _window(19.0, 22.5, h)
    return min(1.0, 0.005 + day + arrivals + lunch + departures + overtime)


def office_presence(local: datetime) -> float:
    """People at their desks (government office hours 08:30-17:30, the long lunch break)."""
    h = _hours(local)
    if local.weekday() >= 5:
        return 0.03 * _window(9.0, 17.0, h)
    day = smoothstep(8.0, 8.75, h) * (1.0 - smoothstep(17.25, 18.25, h))
    lunch = 0.7 * _window(11.75, 13.75, h)
    return day * (1.0 - lunch) + 0.06 * _window(18.0, 22.0, h)


def secured_traffic(local: datetime) -> float:
    """Visits to a secured room: working hours only, no crowds."""
    h = _hours(local)
    if local.weekday() >= 5:
        return 0.0
    return smoothstep(8.5, 9.0, h) * (1.0 - smoothstep(17.0, 17.5, h))


def night(local: datetime) -> float:
    """1 between 22:00 and 06:00, when nobody should open a door without a card."""
    h = _hours(local)
    return 1.0 if h >= 22.0 or h < 6.0 else 0.0


def always(local: datetime) -> float:
    return 1.0


def camera_activity(local: datetime) -> float:
    """People in a camera's view: office presence, and a guard's round or a cleaner at night."""
    return max(0.02, office_presence(local))


Shape = Callable[[datetime], float]
_REFERENCE_WEEKDAY = date(2025, 1, 15)  # a Wednesday


def _hours_per_day(shape: Shape, tz: Any) -> float:
    """The shape integrated over a weekday, in hours: turns "per day" into a peak rate."""
    start = datetime.combine(_REFERENCE_WEEKDAY, time(0), tzinfo=tz)
    steps = 24 * 12
    return sum(shape(start + timedelta(minutes=5 * i)) for i in range(steps)) / 12.0


# --- random and periodic processes in simulated time -----------------------------------------


@dataclass
class _Context:
    clock: SimClock
    rates: EventRates
    seed: int


class _Arrivals:
    """A Poisson process whose rate follows a shape, drawn by thinning in simulated time.

    Candidates come at the peak rate and are kept with probability shape(t) × thin, where thin
    keeps a fast clock from producing more than ``max_events_per_second`` real events. Both
    draws are made for every candidate, so the stream depends on the seed alone.
    """

    def __init__(
        self, ctx: _Context, rng: random.Random, peak_per_s: float, shape: Shape, start: float
    ) -> None:
        self.ctx = ctx
        self.rng = rng
        self.peak = peak_per_s
        self.shape = shape
        self.next = math.inf
        self.reset(start)

    def reset(self, now: float) -> None:
        self.next = now + self.rng.expovariate(self.peak) if self.peak > 0 else math.inf

    def due(self, now: float) -> list[float]:
        out: list[float] = []
        tz = self.ctx.clock.tz
        while self.next <= now:
            t = self.next
            self.next = t + self.rng.expovariate(self.peak)
            speed = self.ctx.clock.speed
            real_rate = self.peak * speed
            thin = min(1.0, self.ctx.rates.max_events_per_second / real_rate) if real_rate else 1
            keep = self.shape(datetime.fromtimestamp(t, tz)) * thin
            if self.rng.random() < keep:
                out.append(t)
        return out


class _Every:
    """A periodic report: every ``period`` simulated seconds, but never more often than
    ``min_report_interval_s`` real seconds. After a pause or a jump it fires once, not once
    per missed period."""

    def __init__(self, ctx: _Context, period: float, first: float) -> None:
        self.ctx = ctx
        self.period = period
        self.next = first

    def _effective(self) -> float:
        return max(self.period, self.ctx.rates.min_report_interval_s * self.ctx.clock.speed)

    def due(self, now: float) -> float | None:
        if now < self.next:
            return None
        fired = self.next
        self.next = fired + self._effective()
        if self.next <= now:  # periods were missed: go on from now
            self.next = now + self._effective()
        return fired


# --- the devices ------------------------------------------------------------------------------

_Action = Callable[[float], list[Message]]


class _SimDevice:
    """A simulated device: processes that produce timed actions, and a queue of them."""

    link: ClassVar[str]  # the MQTT client it publishes through (see MqttBuilding)

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        self.desc = desc
        self.ctx = ctx
        self.seed = ctx.seed * 1_000_003 + _crc(desc.id)
        self.rng = self.stream("main")
        self._queue: list[tuple[float, int, _Action]] = []
        self._order = 0
        self._arrivals: list[tuple[_Arrivals, _Action]] = []
        self._periodic: list[tuple[_Every, _Action]] = []
        self.t = start

    def var(self, name: str) -> str:
        return self.desc.variables.get(name) or self.desc.id

    def stream(self, name: str) -> random.Random:
        """A generator of its own per process, so adding one process leaves the others alone."""
        return random.Random(f"{self.ctx.seed}:{self.desc.id}:{name}")

    def arrivals(self, name: str, peak_per_s: float, shape: Shape, action: _Action) -> None:
        rng = self.stream(name)
        self._arrivals.append((_Arrivals(self.ctx, rng, peak_per_s, shape, self.t), action))

    def per_day(self, name: str, per_day: float, shape: Shape, action: _Action) -> None:
        hours = _hours_per_day(shape, self.ctx.clock.tz)
        peak = per_day / (hours * 3600.0) if hours > 0 else 0.0
        self.arrivals(name, peak, shape, action)

    def every(self, period: float, action: _Action) -> None:
        # A per-device phase, so the devices of a building don't all report in the same tick.
        phase = self.stream("phase").uniform(0.0, min(period, 60.0))
        self._periodic.append((_Every(self.ctx, period, self.t + phase), action))

    def at(self, t: float, action: _Action) -> None:
        self._order += 1
        heapq.heappush(self._queue, (t, self._order, action))

    def advance(self, now: float, *, catch_up: bool = True) -> list[Message]:
        """Messages of everything due up to simulated epoch ``now``, in time order.

        Without ``catch_up`` (the clock jumped ahead) the random processes restart at ``now``:
        a day skipped is a day without its swipes, not a burst of thousands of them.
        """
        if now < self.t:
            return []
        for process, action in self._arrivals:
            if not catch_up:
                process.reset(now)
            for t in process.due(now):
                self.at(t, action)
        for every, action in self._periodic:
            fired = every.due(now)
            if fired is not None:
                # After a jump the report goes out now, not at a time long skipped.
                self.at(fired if catch_up else now, action)
        out: list[Message] = []
        while self._queue and self._queue[0][0] <= now:
            t, _, action = heapq.heappop(self._queue)
            out.extend(action(t))
        self.t = now
        return out

    def birth(self, now: float) -> list[Message]:
        """What the device (re)publishes when its client connects."""
        return []

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        raise ValueError(f"{self.desc.id} ({self.desc.kind}) cannot simulate {kind!r}")

    def local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.ctx.clock.tz)

    def iso(self, t: float) -> str:
        """ISO 8601 with the site's UTC offset, e.g. 2025-07-15T08:45:12+08:00."""
        return self.local(t).isoformat(timespec="seconds")


def _range(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(max(0, math.ceil((stop - start) / step)))]


def _fake_ip(name: str) -> str:
    # Only a payload field, never dialled: what an ISAPI device reports as its own address.
    h = _crc(name)
    return f"192.168.{10 + h % 5}.{20 + (h >> 8) % 200}"


def _fake_mac(name: str) -> str:
    h = _crc(name + ":mac")
    return f"{_HIK_OUI}:{h >> 16 & 0xFF:02x}:{h >> 8 & 0xFF:02x}:{h & 0xFF:02x}"


@dataclass(frozen=True, slots=True)
class Person:
    employee_no: str
    card_no: str
    name: str


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹"
_GIVEN = (*"伟芳娜敏静丽强磊军洋勇艳杰娟涛明超华平刚丹玲文斌红霞鹏宇婷浩", "秀英", "桂英", "建华")
_GIVEN += ("志强", "海燕", "建国", "晓东", "欣怡", "子涵", "国庆")


def staff_of(seed: int, count: int = 80) -> list[Person]:
    """The building's staff with their access cards, the same for every door of one seed."""
    rng = random.Random(f"{seed}:staff")
    people: list[Person] = []
    cards: set[str] = set()
    for i in range(count):
        card = str(rng.randrange(1_000_000_000, 4_000_000_000))
        while card in cards:
            card = str(rng.randrange(1_000_000_000, 4_000_000_000))
        cards.add(card)
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        people.append(Person(str(10001 + i), card, name))
    return people


class _Door(_SimDevice):
    """A Hikvision access controller on one door: card swipes, the door contact, alarms."""

    link = "hikvision"

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.device = self.var("device")
        self.door_no = int(desc.variables.get("door", "1"))
        self.secured = desc.role in ("secured", "archive", "restricted")
        staff = staff_of(ctx.seed)
        self.people = staff[:6] if self.secured else staff
        self.cards = {p.card_no for p in staff}
        self.serial = 1000 + self.rng.randrange(50_000)
        self.is_open = False
        self._gen = 0  # bumps on every opening; a scheduled close of an older one is void
        self.ip = _fake_ip(self.device)
        self.mac = _fake_mac(self.device)
        self.chance = self.stream("chance")
        rates = ctx.rates
        if self.secured:
            self.arrivals(
                "pass", rates.secured_passes_per_hour / 3600.0, secured_traffic, self._pass
            )
        else:
            self.arrivals(
                "pass", rates.entrance_passes_per_hour / 3600.0, entrance_traffic, self._pass
            )
        shape = secured_traffic if self.secured else entrance_traffic
        self.per_day("invalid", rates.invalid_cards_per_day, shape, self._invalid)
        self.per_day("forced", rates.forced_doors_per_night, night, self._forced)

    @property
    def topic(self) -> str:
        return f"hikvision/{self.device}/event"

    def event(
        self, t: float, minor: int, person: Person | None = None, card: str | None = None
    ) -> Message:
        """One alertStream JSON envelope with an AccessControllerEvent, as the bridge sends it."""
        self.serial += 1
        acs: dict[str, Any] = {
            "deviceName": self.desc.variables.get("name", self.device),
            "majorEventType": MAJOR_EVENT,
            "subEventType": minor,
        }
        if person is not None or card is not None:
            acs |= {
                "cardNo": person.card_no if person else card,
                "cardType": 1,
                "cardReaderKind": 1,
                "cardReaderNo": 1,
            }
        if person is not None:
            acs |= {"name": person.name, "employeeNoString": person.employee_no}
            acs["userType"] = "normal"
        acs |= {
            "doorNo": self.door_no,
            "verifyNo": 0,
            "serialNo": self.serial,
            "currentVerifyMode": "cardOrFaceOrFp",
            "frontSerialNo": self.serial - 1,
            "attendanceStatus": "undefined",
            "statusValue": 0,
            "mask": "unknown",
            "picturesNumber": 0,
        }
        doc = {
            "ipAddress": self.ip,
            "portNo": 80,
            "protocol": "HTTP",
            "macAddress": self.mac,
            "channelID": 1,
            "dateTime": self.iso(t),
            "activePostCount": 1,
            "eventType": "AccessControllerEvent",
            "eventState": "active",
            "eventDescription": "Access Controller Event",
            "AccessControllerEvent": acs,
        }
        return Message(self.topic, _dumps(doc), qos=1)

    def _open(self, t: float, minor: int, close_after: float) -> list[Message]:
        self._gen += 1
        gen = self._gen
        out = []
        if not self.is_open:
            self.is_open = True
            out.append(self.event(t, minor))

        def close(tc: float) -> list[Message]:
            if gen != self._gen or not self.is_open:
                return []  # someone else opened it again meanwhile; their close counts
            self.is_open = False
            return [self.event(tc, MINOR_DOOR_CLOSE_NORMAL)]

        self.at(t + close_after, close)
        return out

    def _pass(self, t: float, *, held: bool | None = None) -> list[Message]:
        person = self.chance.choice(self.people)
        if held is None:
            held = self.chance.random() < self.ctx.rates.held_open_probability
        out = [self.event(t, MINOR_LEGAL_CARD_PASS, person)]
        t_open = t + 1.5  # the lock releases, the person pushes the door
        if held:
            alarm = self.ctx.rates.door_open_alarm_s
            close_after = alarm + self.chance.uniform(20.0, 240.0)

            def open_and_wait(to: float) -> list[Message]:
                opened = self._open(to, MINOR_DOOR_OPEN_NORMAL, close_after)
                gen = self._gen

                def timeout(tt: float) -> list[Message]:
                    # Still open from this very opening: nobody closed (or reopened) it.
                    if self._gen != gen or not self.is_open:
                        return []
                    return [self.event(tt, MINOR_DOOR_OPEN_TIMEOUT)]

                self.at(to + alarm, timeout)
                return opened

            self.at(t_open, open_and_wait)
        else:
            close_after = self.chance.uniform(3.0, 12.0)
            self.at(t_open, lambda to: self._open(to, MINOR_DOOR_OPEN_NORMAL, close_after))
        return out

    def _invalid(self, t: float, *, count: int | None = None) -> list[Message]:
        if count is None:
            burst = self.chance.random() < self.ctx.rates.invalid_burst_probability
            count = 1 + (self.chance.randint(1, 4) if burst else 0)
        # One unknown card, tried again and again (or a few cards from one wallet).
        card = str(self.chance.randrange(1_000_000_000, 4_000_000_000))
        while card in self.cards:
            card = str(self.chance.randrange(1_000_000_000, 4_000_000_000))

        def retry(ti: float) -> list[Message]:
            return [self.event(ti, MINOR_INVALID_CARD, card=card)]

        tn = t
        for _ in range(count - 1):
            tn += self.chance.uniform(2.0, 8.0)
            self.at(tn, retry)
        return [self.event(t, MINOR_INVALID_CARD, card=card)]

    def _forced(self, t: float) -> list[Message]:
        if self.is_open:
            return []
        return self._open(t, MINOR_DOOR_OPEN_ABNORMAL, self.chance.uniform(20.0, 90.0))

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "card_pass":
            self.at(now, lambda t: self._pass(t, held=False))
        elif kind == "held_open":
            self.at(now, lambda t: self._pass(t, held=True))
        elif kind == "invalid_cards":
            self.at(now, lambda t: self._invalid(t, count=max(1, count)))
        elif kind == "forced_door":
            self.at(now, self._forced_now)
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)

    def _forced_now(self, t: float) -> list[Message]:
        # An injected forced door happens even if the door was open: close it first.
        out: list[Message] = []
        if self.is_open:
            self._gen += 1
            self.is_open = False
            out.append(self.event(t - 1.0, MINOR_DOOR_CLOSE_NORMAL))
        return out + self._forced(t)


class _Zigbee(_SimDevice):
    """A battery-powered Aqara end device behind Zigbee2MQTT."""

    link = "zigbee2mqtt"

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.friendly_name = self.var("id")
        self.battery = self.rng.randint(55, 100)
        self.lqi_base = self.rng.randint(50, 190)
        self.every(_ZIGBEE_CHECKIN_S, lambda t: [self.report(t)])

    @property
    def topic(self) -> str:
        return f"{_Z2M_BASE}/{self.friendly_name}"

    def common(self, t: float) -> dict[str, Any]:
        lqi = self.lqi_base + 25.0 * noise(self.seed, "lqi", t, 900.0)
        # CR2032 / CR1632: ~3.0 V fresh; Z2M's Xiaomi converter maps volts to percent.
        return {
            "battery": self.battery,
            "voltage": 2823 + 2 * self.battery,
            "linkquality": max(0, min(255, round(lqi))),
        }

    def state(self, t: float) -> dict[str, Any]:
        return {}

    def report(self, t: float) -> Message:
        # Z2M's cache_state (the default): every message carries all known attributes.
        doc = self.common(t) | self.state(t)
        return Message(self.topic, _dumps(dict(sorted(doc.items()))))

    def birth(self, now: float) -> list[Message]:
        availability = Message(
            f"{self.topic}/availability", _dumps({"state": "online"}), qos=1, retain=True
        )
        # A first report right away, as after a device's join or check-in, so the gateway
        # knows the state without waiting up to an hour.
        return [availability, self.report(now)]


class _Contact(_Zigbee):
    """An MCCGQ11LM on an office door or a window: contact true = closed."""

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.window = desc.role == "window" or "window" in desc.id
        self.contact = True
        self._gen = 0
        self.chance = self.stream("chance")
        rates = ctx.rates
        if self.window:
            self.per_day("open", rates.window_opens_per_day, office_presence, self._open_window)
        else:
            self.arrivals(
                "open", rates.office_door_opens_per_hour / 3600.0, office_presence, self._open_door
            )

    def state(self, t: float) -> dict[str, Any]:
        device_temp = indoor_free_temperature(self.local(t), self.seed)
        return {"contact": self.contact, "temperature": round(device_temp)}

    def _set(self, t: float, contact: bool) -> list[Message]:
        if contact == self.contact:
            return []
        self.contact = contact
        return [self.report(t)]

    def _open_for(self, t: float, seconds: float) -> list[Message]:
        self._gen += 1
        gen = self._gen

        def close(tc: float) -> list[Message]:
            return self._set(tc, True) if gen == self._gen else []

        self.at(t + seconds, close)
        return self._set(t, False)

    def _open_door(self, t: float) -> list[Message]:
        return self._open_for(t, self.chance.uniform(3.0, 40.0))

    def _open_window(self, t: float) -> list[Message]:
        if not self.contact:
            return []
        local = self.local(t)
        seconds = self.chance.expovariate(1.0 / 7200.0)  # about two hours
        evening = local.replace(hour=18, minute=0, second=0, microsecond=0)
        if local + timedelta(seconds=seconds) > evening:
            if self.chance.random() < self.ctx.rates.window_left_open_probability:
                # Forgotten: closed by the first one in the next morning.
                morning = (local + timedelta(days=1)).replace(hour=8, minute=30, second=0)
                target = morning + timedelta(seconds=self.chance.uniform(0, 1800))
            else:
                target = evening + timedelta(seconds=self.chance.uniform(-3600, 3600))
            seconds = max(60.0, (target - local).total_seconds())
        return self._open_for(t, seconds)

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "open":
            self.at(now, lambda t: self._open_for(t, duration_s or 60.0))
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)


class _Climate(_Zigbee):
    """A WSDCGQ11LM: air temperature of its zone (the A/C unit's room if there is one)."""

    def __init__(
        self, desc: DeviceDescription, ctx: _Context, start: float, ac: AcUnit | None
    ) -> None:
        super().__init__(desc, ctx, start)
        self.ac = ac
        self.offset = self.rng.uniform(-0.3, 0.3)  # sensor calibration error
        self.every(_CLIMATE_REPORT_S, lambda t: [self.report(t)])

    def state(self, t: float) -> dict[str, Any]:
        local = self.local(t)
        if self.ac is not None:
            self.ac.advance(t)
            temp = self.ac.room_temperature
            drying = self.ac.on and self.ac.mode in (MODE_COOL, MODE_DRY)
        else:
            temp = indoor_free_temperature(local, self.seed)
            drying = False
        temp += self.offset + 0.08 * noise(self.seed, "t", t, 120.0)
        # Shanghai's air is humid, most in the plum rains and summer; cooling dries the room.
        # Air pressure is lower in summer (the monsoon low) than under the winter high.
        summer = math.sin(2.0 * math.pi * (local.timetuple().tm_yday - 80) / 365.25)
        humid = 58.0 + 12.0 * max(0.0, summer)
        if drying:
            humid = min(humid, 52.0)
        humid += 4.0 * noise(self.seed, "rh", t, 3 * 3600.0)
        pressure = 1015.0 - 9.0 * summer + 4.0 * noise(self.seed, "p", t, 2 * 86400.0)
        return {
            "temperature": round(temp, 2),
            "humidity": round(max(10.0, min(99.0, humid)), 2),
            "pressure": round(pressure, 1),
        }


class _Occupancy(_Zigbee):
    """An RTCGQ11LM PIR: occupancy true on motion, false after Z2M's occupancy timeout."""

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.occupancy = False
        self._last_detection = -math.inf
        self._gen = 0
        self.arrivals("motion", ctx.rates.motions_per_hour / 3600.0, office_presence, self._motion)

    def state(self, t: float) -> dict[str, Any]:
        local = self.local(t)
        daylight = 350.0 * clear_sky_fraction(local)
        lights = 300.0 * load_fraction(local, "lighting")
        lux = max(0.0, daylight + lights + 15.0 * noise(self.seed, "lux", t, 600.0))
        return {
            "occupancy": self.occupancy,
            "illuminance": round(lux),
            "device_temperature": round(indoor_free_temperature(local, self.seed)),
            "power_outage_count": 3,
        }

    def _motion(self, t: float) -> list[Message]:
        if t - self._last_detection < _PIR_BLIND_S:
            return []  # the PIR is blind after a detection
        self._last_detection = t
        self.occupancy = True
        self._gen += 1
        gen = self._gen

        def clear(tc: float) -> list[Message]:
            if gen != self._gen:
                return []
            self.occupancy = False
            return [self.report(tc)]

        self.at(t + _OCCUPANCY_TIMEOUT_S, clear)
        return [self.report(t)]

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "person":
            self._last_detection = -math.inf
            self.at(now, self._motion)
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)


class _Plug(_SimDevice):
    """A Tasmota energy-monitoring plug: its own MQTT client, its own last will."""

    link = "tasmota"

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.topic = self.var("topic")
        self.rated_w = float(desc.variables.get("rated_w", "150"))
        self.tele_period = float(desc.variables.get("tele_period", str(_TASMOTA_TELE_PERIOD_S)))
        self.relay = True
        self.powered = True
        self.restore_at: float | None = None
        # Power cuts as (from, to): the energy integral, which may run behind, must see them.
        self._outages: list[list[float]] = []
        self.boot = start
        self.mqtt_count = 0
        start_kwh = self.rng.uniform(40.0, 400.0)
        self.total_start = self.local(start - self.rng.uniform(200, 700) * 86400.0)
        self._energy = _Integrator(
            lambda ts: [self.power_w(ts)], start, [start_kwh * 3.6e6], step=30.0
        )
        # Today and Yesterday at start, from the same load curve (one-minute sums).
        midnight = datetime.combine(self.local(start).date(), time(0), tzinfo=ctx.clock.tz)
        m0 = midnight.timestamp()
        today_ws = sum(self.power_w(ts) * 60.0 for ts in _range(m0, start, 60.0))
        yesterday_ws = sum(self.power_w(ts) * 60.0 for ts in _range(m0 - 86400.0, m0, 60.0))
        self._day = midnight.date()
        self._day_start_ws = start_kwh * 3.6e6 - today_ws
        self._yesterday_kwh = yesterday_ws / 3.6e6
        self._last_period_ws = start_kwh * 3.6e6
        self.every(self.tele_period, self._tele)

    def power_w(self, ts: float) -> float:
        if not self.relay or any(a <= ts < b for a, b in self._outages):
            return 0.0
        local = self.local(ts)
        # A desk's PC and screen: standby at night, busy in office hours.
        busy = load_fraction(local, "lighting")
        jitter = (
            1.0 + 0.06 * noise(self.seed, "p", ts, 300.0) + 0.02 * noise(self.seed, "pj", ts, 7)
        )
        return 2.5 + self.rated_w * busy * jitter

    def _total_ws(self, t: float) -> float:
        total = self._energy.at(t)[0]
        day = self.local(t).date()
        if day != self._day:
            # Tasmota rolls Today into Yesterday at local midnight.
            self._yesterday_kwh = (total - self._day_start_ws) / 3.6e6
            self._day, self._day_start_ws = day, total
        return total

    def sensor(self, t: float, *, periodic: bool) -> Message:
        total = self._total_ws(t)
        p = self.power_w(t)
        volts = 228.0 + 3.0 * noise(self.seed, "v", t, 1800.0)
        # Switch-mode supplies: a poor power factor at light load.
        pf = 0.55 + 0.4 * min(1.0, p / max(self.rated_w, 1.0)) if p > 0 else 0.0
        amps = p / (volts * pf) if pf > 0 else 0.0
        apparent = volts * amps
        energy: dict[str, Any] = {
            "TotalStartTime": self.total_start.replace(tzinfo=None).isoformat(timespec="seconds"),
            "Total": round(total / 3.6e6, 3),
            "Yesterday": round(self._yesterday_kwh, 3),
            "Today": round((total - self._day_start_ws) / 3.6e6, 3),
        }
        if periodic:
            energy["Period"] = round((total - self._last_period_ws) / 3600.0)
            self._last_period_ws = total
        energy |= {
            "Power": round(p),
            "ApparentPower": round(apparent),
            "ReactivePower": round(math.sqrt(max(apparent**2 - p**2, 0.0))),
            "Factor": round(pf, 2),
            "Voltage": round(volts),
            "Current": round(amps, 3),
        }
        doc = {"Time": self._time(t), "ENERGY": energy}
        return Message(f"tele/{self.topic}/SENSOR", _dumps(doc))

    def _time(self, t: float) -> str:
        # Tasmota's default Time: local, no zone.
        return self.local(t).replace(tzinfo=None).isoformat(timespec="seconds")

    def state(self, t: float) -> Message:
        up = max(0, int(t - self.boot))
        days, rest = divmod(up, 86400)
        rssi = round(72 + 12 * noise(self.seed, "rssi", t, 1200.0))
        doc = {
            "Time": self._time(t),
            "Uptime": f"{days}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}",
            "UptimeSec": up,
            "Heap": 25,
            "SleepMode": "Dynamic",
            "Sleep": 50,
            "LoadAvg": 19,
            "MqttCount": self.mqtt_count,
            "POWER": "ON" if self.relay else "OFF",
            "Wifi": {
                "AP": 1,
                "SSId": "gov-office-iot",
                "BSSId": "30:B5:C2:5D:70:72",
                "Channel": 6,
                "Mode": "11n",
                "RSSI": rssi,
                "Signal": rssi // 2 - 100,
                "LinkCount": 1,
                "Downtime": "0T00:00:03",
            },
        }
        return Message(f"tele/{self.topic}/STATE", _dumps(doc))

    def _tele(self, t: float) -> list[Message]:
        if not self.powered:
            return []
        return [self.state(t), self.sensor(t, periodic=True)]

    @property
    def will(self) -> Message:
        return Message(f"tele/{self.topic}/LWT", "Offline", qos=1, retain=True)

    def birth(self, now: float) -> list[Message]:
        self.mqtt_count += 1
        power = "ON" if self.relay else "OFF"
        return [
            Message(f"tele/{self.topic}/LWT", "Online", qos=1, retain=True),
            Message(f"stat/{self.topic}/RESULT", _dumps({"POWER": power})),
            Message(f"stat/{self.topic}/POWER", power),
            self.state(now),
            self.sensor(now, periodic=False),
        ]

    def power_off(self, now: float, duration_s: float | None) -> None:
        self.powered = False
        self.restore_at = now + duration_s if duration_s is not None else None
        self._outages.append([now, math.inf])

    def power_on(self, now: float) -> None:
        if self._outages and self._outages[-1][1] == math.inf:
            self._outages[-1][1] = now
        self.powered = True
        self.restore_at = None
        self.boot = now
        self.mqtt_count = 0


class _FrigateCamera(_SimDevice):
    """A camera of the Frigate NVR: detect status, motion, review status, person events."""

    link = "frigate"

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.camera = self.var("camera")
        self.video_ok = True
        self.motion = False
        self._activity = 0  # bumps with every person; motion goes OFF after the last one
        self._active_events = 0
        self.chance = self.stream("chance")
        rates = ctx.rates
        self.arrivals("person", rates.persons_per_hour / 3600.0, camera_activity, self._person)
        self.per_day("videoloss", rates.video_losses_per_day, always, self._video_loss)

    def _topic(self, leaf: str) -> str:
        return f"{_FRIGATE_BASE}/{self.camera}/{leaf}"

    def birth(self, now: float) -> list[Message]:
        return [
            Message(self._topic("status/detect"), self._detect_status(), qos=1, retain=True),
            Message(self._topic("motion"), "ON" if self.motion else "OFF"),
            Message(self._topic("review_status"), "ALERT" if self._active_events else "NONE"),
        ]

    def _detect_status(self) -> str:
        return "online" if self.video_ok else "offline"

    def _event(self, kind: str, before: dict[str, Any], after: dict[str, Any]) -> Message:
        doc = {"type": kind, "before": before, "after": after}
        return Message(f"{_FRIGATE_BASE}/events", _dumps(doc))

    def _object(self, start: float, frame: float, score: float, top: float) -> dict[str, Any]:
        x1 = self.chance.randint(100, 1500)
        y1 = self.chance.randint(150, 500)
        w, h = self.chance.randint(90, 180), self.chance.randint(220, 420)
        box = [x1, y1, x1 + w, y1 + h]
        region = [max(0, x1 - 150), max(0, y1 - 60), x1 + w + 150, y1 + h + 60]
        return {
            "camera": self.camera,
            "frame_time": round(frame, 6),
            "snapshot": {
                "frame_time": round(frame, 6),
                "box": box,
                "area": w * h,
                "region": region,
                "score": round(top, 5),
                "attributes": [],
            },
            "label": "person",
            "sub_label": None,
            "top_score": round(top, 6),
            "false_positive": False,
            "start_time": round(start, 6),
            "end_time": None,
            "score": round(score, 6),
            "box": box,
            "area": w * h,
            "ratio": round(w / h, 6),
            "region": region,
            "current_zones": [],
            "entered_zones": [],
            "thumbnail": None,
            "has_snapshot": True,
            "has_clip": True,
            "active": True,
            "stationary": False,
            "motionless_count": 0,
            "position_changes": 1,
            "attributes": {},
            "current_attributes": [],
        }

    def _person(self, t: float) -> list[Message]:
        if not self.video_ok:
            return []  # no stream, no detections
        out: list[Message] = []
        self._activity += 1
        activity = self._activity
        if not self.motion:
            self.motion = True
            out.append(Message(self._topic("motion"), "ON"))
        start = t + 1.0
        suffix = "".join(self.chance.choice(_ID_CHARS) for _ in range(6))
        event_id = f"{start:.6f}-{suffix}"
        score = self.chance.uniform(0.66, 0.8)
        first = {"id": event_id} | self._object(start, start + 0.4, score, score)
        top = min(0.97, score + self.chance.uniform(0.05, 0.2))
        better = (
            first
            | {
                k: v
                for k, v in self._object(start, start + 3.0, top, top).items()
                if k not in ("start_time", "camera")
            }
            | {"position_changes": 2}
        )
        duration = self.chance.uniform(8.0, 60.0)

        def new(tn: float) -> list[Message]:
            self._active_events += 1
            msgs = [self._event("new", first, first)]
            if self._active_events == 1:
                msgs.append(Message(self._topic("review_status"), "ALERT"))
            return msgs

        def update(tu: float) -> list[Message]:
            return [self._event("update", first, better)]

        def end(te: float) -> list[Message]:
            self._active_events -= 1
            final = better | {"end_time": round(te, 6), "active": False}
            msgs = [self._event("end", better, final)]
            if self._active_events == 0:
                msgs.append(Message(self._topic("review_status"), "NONE"))
            return msgs

        def motion_off(to: float) -> list[Message]:
            if activity != self._activity or not self.motion:
                return []
            self.motion = False
            return [Message(self._topic("motion"), "OFF")]

        self.at(start, new)
        self.at(start + 3.0, update)
        self.at(start + duration, end)
        self.at(start + duration + _MOTION_OFF_DELAY_S, motion_off)
        return out

    def _video_loss(self, t: float, *, duration: float | None = None) -> list[Message]:
        if not self.video_ok:
            return []
        self.video_ok = False
        out = [Message(self._topic("status/detect"), "offline", qos=1, retain=True)]
        if self.motion:
            self.motion = False
            out.append(Message(self._topic("motion"), "OFF"))
        lost = duration if duration is not None else self.chance.uniform(120.0, 1800.0)

        def recover(tr: float) -> list[Message]:
            if self.video_ok:
                return []
            self.video_ok = True
            return [Message(self._topic("status/detect"), "online", qos=1, retain=True)]

        self.at(t + lost, recover)
        return out

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "person":
            for i in range(max(1, count)):
                self.at(now + 2.0 * i, self._person)
        elif kind == "video_loss":
            self.at(now, lambda t: self._video_loss(t, duration=duration_s))
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)


class _HikCamera(_SimDevice):
    """A Hikvision camera's alertStream through the bridge: heartbeats, VMD, video loss."""

    link = "hikvision"

    def __init__(self, desc: DeviceDescription, ctx: _Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.device = self.var("device")
        self.channel = int(desc.variables.get("channel", "1"))
        self.ip = _fake_ip(self.device)
        self.mac = _fake_mac(self.device)
        self.chance = self.stream("chance")
        # eventType -> activePostCount while active; absent when inactive.
        self.active: dict[str, int] = {}
        self._gens: Counter[str] = Counter()
        rates = ctx.rates
        self.every(_HIK_HEARTBEAT_S, self._heartbeat)
        self.arrivals("vmd", rates.persons_per_hour / 3600.0 / 2.0, office_presence, self._vmd)
        self.per_day("videoloss", rates.video_losses_per_day, always, self._videoloss)

    @property
    def topic(self) -> str:
        return f"hikvision/{self.device}/event"

    _DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "videoloss": "videoloss alarm",
        "VMD": "Motion alarm",
        "tamperdetection": "Tamper Detection",
    }

    def alert(self, t: float, event_type: str, state: str, count: int) -> Message:
        doc = {
            "ipAddress": self.ip,
            "portNo": 80,
            "protocol": "HTTP",
            "macAddress": self.mac,
            "channelID": self.channel,
            "dateTime": self.iso(t),
            "activePostCount": count,
            "eventType": event_type,
            "eventState": state,
            "eventDescription": self._DESCRIPTIONS.get(event_type, event_type),
            "channelName": self.desc.variables.get("name", self.device),
        }
        return Message(self.topic, _dumps(doc), qos=1)

    def _heartbeat(self, t: float) -> list[Message]:
        if "videoloss" in self.active:
            return []  # the repeating active alarm is the sign of life meanwhile
        # A keep-alive, not an alarm: videoloss inactive with activePostCount 0.
        return [self.alert(t, "videoloss", "inactive", 0)]

    def _alarm(self, t: float, event_type: str, duration: float, repeat: bool) -> list[Message]:
        if event_type in self.active:
            return []
        self._gens[event_type] += 1
        gen = self._gens[event_type]
        self.active[event_type] = 1

        def again(ta: float) -> list[Message]:
            if self._gens[event_type] != gen or event_type not in self.active:
                return []
            self.active[event_type] += 1
            step = max(
                _HIK_ACTIVE_REPEAT_S, self.ctx.rates.min_report_interval_s * self.ctx.clock.speed
            )
            self.at(ta + step, again)
            return [self.alert(ta, event_type, "active", self.active[event_type])]

        def stop(ts: float) -> list[Message]:
            if self._gens[event_type] != gen or event_type not in self.active:
                return []
            del self.active[event_type]
            return [self.alert(ts, event_type, "inactive", 1)]

        if repeat:
            self.at(t + _HIK_ACTIVE_REPEAT_S, again)
        self.at(t + duration, stop)
        return [self.alert(t, event_type, "active", 1)]

    def _vmd(self, t: float) -> list[Message]:
        return self._alarm(t, "VMD", self.chance.uniform(5.0, 30.0), repeat=False)

    def _videoloss(self, t: float, duration: float | None = None) -> list[Message]:
        lost = duration if duration is not None else self.chance.uniform(60.0, 900.0)
        return self._alarm(t, "videoloss", lost, repeat=True)

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "video_loss":
            self.at(now, lambda t: self._videoloss(t, duration_s))
        elif kind == "person":
            self.at(now, self._vmd)
        elif kind == "tamper":
            self.at(now, lambda t: self._alarm(t, "tamperdetection", duration_s or 60.0, False))
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)


# --- MQTT connections -------------------------------------------------------------------------


class _Link:
    """One MQTT client (paho, on its own network thread) for one real-world publisher."""

    def __init__(
        self,
        name: str,
        client_id: str,
        loop: asyncio.AbstractEventLoop,
        on_up: Callable[[_Link], None],
        will: Message | None = None,
        final: Sequence[Message] = (),
    ) -> None:
        self.name = name
        self.final = list(final)
        self.connected = threading.Event()
        self.killed = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,  # devices publish only; there is nothing to keep
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        client.reconnect_delay_set(1, 10)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

        def connected(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                log.warning("simulated %s: broker refused the connection: %s", name, reason)
                return
            # The birth messages are built on the event loop, which owns the device state;
            # scheduled before `connected` is set so they go out before any tick's messages.
            with contextlib.suppress(RuntimeError):  # loop closed: shutting down
                loop.call_soon_threadsafe(on_up, self)
            self.connected.set()

        def disconnected(_c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
            self.connected.clear()

        client.on_connect = connected
        client.on_disconnect = disconnected
        self.client = client

    def start(self, host: str, port: int) -> None:
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def publish(self, message: Message) -> None:
        if self.killed:
            return
        self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)

    async def stop(self) -> None:
        """A clean goodbye: the final messages (Frigate's `stopped`), then DISCONNECT."""
        if self.killed:
            return
        if self.connected.is_set():
            infos = [
                self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                for m in self.final
            ]
            for info in infos:
                with contextlib.suppress(RuntimeError, ValueError):
                    await asyncio.to_thread(info.wait_for_publish, 2.0)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    async def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a power cut does: the broker then
        publishes the last will."""
        self.killed = True
        # Stop the network thread first, or paho would reconnect at once.
        await asyncio.to_thread(self.client.loop_stop)
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self.connected.clear()


# --- the building -----------------------------------------------------------------------------


class MqttBuilding:
    """The building's MQTT devices, publishing to one broker.

    ``ac_units`` maps a zone to the A/C model serving it (see ac_units_by_zone): a climate
    sensor in that zone reports the A/C's room temperature, so the gateway's A/C policy and the
    Zigbee sensors tell the same story. Everything runs on the event loop that called start();
    inject() and step() must be called from that loop.
    """

    TICK_S = 0.2

    def __init__(
        self,
        devices: Sequence[DeviceDescription],
        clock: SimClock,
        *,
        seed: int = 0,
        rates: EventRates | None = None,
        ac_units: Mapping[str, AcUnit] | None = None,
    ) -> None:
        ids = [d.id for d in devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate device ids: {', '.join(dupes)}")
        self.clock = clock
        self.ctx = _Context(clock, rates or EventRates(), seed)
        start = clock.now().timestamp()
        self.devices: dict[str, _SimDevice] = {}
        for desc in devices:
            self.devices[desc.id] = self._make(desc, start, ac_units or {})
        # Messages published per device id (births included): for tests and the demo's status.
        self.sent: Counter[str] = Counter()
        self._links: dict[str, _Link] = {}
        self._host = ""
        self._port = 0
        self._token = secrets.token_hex(3)  # two buildings on one broker: distinct client ids
        self._last = start
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _make(self, desc: DeviceDescription, start: float, ac: Mapping[str, AcUnit]) -> _SimDevice:
        ctx = self.ctx
        match desc.kind:
            case "door":
                return _Door(desc, ctx, start)
            case "contact":
                return _Contact(desc, ctx, start)
            case "climate":
                return _Climate(desc, ctx, start, ac.get(desc.zone) if desc.zone else None)
            case "occupancy":
                return _Occupancy(desc, ctx, start)
            case "plug":
                return _Plug(desc, ctx, start)
            case "frigate_camera":
                return _FrigateCamera(desc, ctx, start)
            case "hik_camera":
                return _HikCamera(desc, ctx, start)
        raise ValueError(f"{desc.id}: unknown kind {desc.kind!r}; one of {DEVICE_KINDS}")

    # -- connections -------------------------------------------------------------------------

    def _link_of(self, dev: _SimDevice) -> str:
        return f"tasmota:{dev.desc.id}" if isinstance(dev, _Plug) else dev.link

    def _new_link(self, name: str) -> _Link:
        loop = asyncio.get_running_loop()
        client_id = f"sim-{self._token}-{name.replace(':', '-')}"
        will: Message | None = None
        final: list[Message] = []
        if name == "zigbee2mqtt":
            offline = _dumps({"state": "offline"})
            will = Message(f"{_Z2M_BASE}/bridge/state", offline, qos=1, retain=True)
            final = [will]
        elif name == "frigate":
            will = Message(f"{_FRIGATE_BASE}/available", "offline", qos=1, retain=True)
            final = [Message(f"{_FRIGATE_BASE}/available", "stopped", qos=1, retain=True)]
        elif name.startswith("tasmota:"):
            plug = self.devices[name.split(":", 1)[1]]
            assert isinstance(plug, _Plug)
            will = plug.will
            # Tasmota says Offline itself before a restart; a power cut leaves it to the will.
            final = [plug.will]
        return _Link(name, client_id, loop, self._link_up, will=will, final=final)

    def _link_up(self, link: _Link) -> None:
        """A client (re)connected: its bridge-level birth, then every device's."""
        now = self.clock.now().timestamp()
        if link.name == "zigbee2mqtt":
            online = _dumps({"state": "online"})
            self._send(link, "", Message(f"{_Z2M_BASE}/bridge/state", online, qos=1, retain=True))
        elif link.name == "frigate":
            self._send(
                link, "", Message(f"{_FRIGATE_BASE}/available", "online", qos=1, retain=True)
            )
        for dev in self.devices.values():
            if self._link_of(dev) == link.name:
                for message in dev.birth(now):
                    self._send(link, dev.desc.id, message)

    def _send(self, link: _Link, device: str, message: Message) -> None:
        link.publish(message)
        if device:
            self.sent[device] += 1

    async def start(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        """Connect every device's client and start the simulation; raises if the broker
        does not accept them within ``timeout`` seconds."""
        if self._task is not None:
            raise RuntimeError("MqttBuilding is already running")
        self._host, self._port = host, port
        names = sorted({self._link_of(d) for d in self.devices.values()})
        for name in names:
            link = self._new_link(name)
            self._links[name] = link
            link.start(host, port)
        try:
            waits = [
                asyncio.to_thread(link.connected.wait, timeout) for link in self._links.values()
            ]
            results = await asyncio.gather(*waits)
            missing = [n for n, ok in zip(self._links, results, strict=True) if not ok]
            if missing:
                raise RuntimeError(
                    f"simulated MQTT devices could not connect to {host}:{port} "
                    f"within {timeout:g} s: {', '.join(missing)}"
                )
        except BaseException:
            await self.stop()
            raise
        self._last = self.clock.now().timestamp()
        for dev in self.devices.values():
            dev.t = max(dev.t, self._last)
        self._task = asyncio.create_task(self._run(), name="mqtt-building")
        log.info(
            "%d simulated MQTT devices on %s:%d (%d clients)",
            len(self.devices),
            host,
            port,
            len(self._links),
        )

    async def stop(self) -> None:
        """Stop the simulation; every client says goodbye (final messages, DISCONNECT)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for background in list(self._background):
            background.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        links, self._links = self._links, {}
        await asyncio.gather(*(link.stop() for link in links.values()), return_exceptions=True)

    async def __aenter__(self) -> MqttBuilding:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- simulation --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # one device's bug must not stop the whole building
                log.exception("simulated MQTT devices: step failed")
            await asyncio.sleep(self.TICK_S)

    def step(self) -> list[tuple[str, Message]]:
        """Advance every device to the clock's now; publish (when started) and return what is
        due, as (device id, message). Tests drive a paused clock with this."""
        now = self.clock.now().timestamp()
        # A jump (clock.advance, a laptop resumed) is not replayed event by event.
        catch_up = now - self._last <= max(3600.0, 20.0 * self.TICK_S * self.clock.speed)
        self._last = now
        out: list[tuple[str, Message]] = []
        for dev in self.devices.values():
            if isinstance(dev, _Plug):
                self._plug_power(dev, now)
                if not dev.powered:
                    dev.t = now
                    continue
            for message in dev.advance(now, catch_up=catch_up):
                out.append((dev.desc.id, message))
                link = self._links.get(self._link_of(dev))
                if link is not None:
                    self._send(link, dev.desc.id, message)
        return out

    def _plug_power(self, plug: _Plug, now: float) -> None:
        if plug.powered or plug.restore_at is None or now < plug.restore_at:
            return
        if self._task is None:
            plug.power_on(now)  # not connected (a test driving step()): only the state
        else:
            plug.restore_at = None  # once: the reconnect takes a moment
            self._spawn(self._power_on(plug))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _power_on(self, plug: _Plug) -> None:
        name = self._link_of(plug)
        plug.power_on(self.clock.now().timestamp())
        if self._task is None:
            return  # not started: the state changes, nothing connects
        link = self._new_link(name)
        self._links[name] = link
        link.start(self._host, self._port)
        await asyncio.to_thread(link.connected.wait, 10.0)

    async def inject(
        self,
        kind: Injection,
        device: str,
        *,
        count: int = 3,
        duration_s: float | None = None,
    ) -> list[tuple[str, Message]]:
        """Make something happen now, whatever the rates say (tests, the scripted demo).

        ``count``: how many invalid cards or persons; ``duration_s`` (simulated seconds): how
        long a video loss, tamper alarm or power cut lasts (default: the device's own draw; a
        power cut lasts until ``power_restore``). What is due at once is published before this
        returns, and returned as step() does; later parts (a door closing) follow in time.
        """
        if kind not in get_args(Injection):
            raise ValueError(f"unknown injection {kind!r}; one of {get_args(Injection)}")
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f"no simulated MQTT device {device!r}")
        now = self.clock.now().timestamp()
        if kind in ("power_loss", "power_restore"):
            if not isinstance(dev, _Plug):
                raise ValueError(f"{device} ({dev.desc.kind}) has no power to cut")
            if kind == "power_loss" and dev.powered:
                dev.power_off(now, duration_s)
                link = self._links.get(self._link_of(dev))
                if link is not None:
                    await link.kill()
            elif kind == "power_restore" and not dev.powered:
                await self._power_on(dev)
            return []
        dev.inject(kind, now, count=count, duration_s=duration_s)
        return self.step()


# --- from a site file -------------------------------------------------------------------------


def from_site(site: BuildingSite) -> list[DeviceDescription]:
    """Descriptions of a site's enabled devices whose profile is one of PROFILE_KINDS.

    Variables come from the device's `mqtt: {vars: ...}` block, the zone and the role from its
    `zone` and `use` tags.
    """
    out: list[DeviceDescription] = []
    for dev in site.devices:
        kind = PROFILE_KINDS.get(dev.profile)
        if kind is None or not dev.enabled:
            continue
        variables = dict(dev.mqtt.vars) if dev.mqtt is not None else {}
        zone, role = dev.tags.get("zone", ""), dev.tags.get("use", "")
        out.append(DeviceDescription(dev.id, kind, variables, zone=zone, role=role))
    return out


def ac_units_by_zone(site: BuildingSite, building: Building) -> dict[str, AcUnit]:
    """The A/C models of a running Modbus building by their devices' `zone` tag."""
    out: dict[str, AcUnit] = {}
    for dev in site.devices:
        model = building.models.get(dev.id)
        zone = dev.tags.get("zone")
        if isinstance(model, AcUnit) and zone:
            out.setdefault(zone, model)
    return out
