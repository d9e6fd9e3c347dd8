"""What every simulated MQTT device shares: its description, the messages it sends, and the
random and periodic processes in simulated time that decide when it sends them.

Every random choice comes from a generator seeded by (seed, device, process), and events are
drawn in simulated time, so a run is repeatable for a given seed and clock speed, whatever the
tick timing. Fast clocks are tamed so the broker and the gateway never drown: random events are
thinned when a process would send more than ``EventRates.max_events_per_second`` per real
second, and periodic reports come at most every ``EventRates.min_report_interval_s`` real
seconds. Counters (energy) still integrate over the full simulated time.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, get_args

from simulator.clock import SimClock
from simulator.mqtt.shapes import Shape, hours_per_day

DeviceKind = Literal[
    "door",
    "contact",
    "climate",
    "occupancy",
    "plug",
    "frigate_camera",
    "hik_camera",
    "shelly_channel",
    "shelly_em_channel",
    "dahua_bridge_camera",
    # HTTP event-stream devices (simulator/streams)
    "anpr_camera",
    "dahua_camera",
    "dahua_vto",
    "traffic_camera",
]
DEVICE_KINDS: tuple[DeviceKind, ...] = get_args(DeviceKind)


Injection = Literal[
    "card_pass",  # door: a legal card, the door opens and closes
    "invalid_cards",  # door: `count` unknown cards in a row (5/9)
    "held_open",  # door: a legal pass, then the door stays open past the alarm time (5/28)
    "forced_door",  # door: opened without a card (5/27)
    "open",  # contact: the door or window opens for `duration_s` (default 60 s)
    "person",  # frigate_camera: persons walk through; hik_camera: VMD; occupancy: motion;
    # dahua_bridge_camera: VideoMotion Start, then Stop
    "video_loss",  # frigate_camera: detect stream offline; hik_camera: videoloss active;
    # dahua_bridge_camera: VideoLoss Start, Stop after `duration_s`
    "tamper",  # hik_camera: tamperdetection active, then inactive; dahua: VideoBlind
    "power_loss",  # plug: the plug loses power; its connection drops without DISCONNECT
    "power_restore",  # plug: power is back, it reconnects (LWT Online)
]


@dataclass(frozen=True, slots=True)
class DeviceDescription:
    """One simulated MQTT device.

    ``variables`` are the device's profile variables as the site file gives them (`id` for
    Zigbee2MQTT, `topic` for Tasmota, `camera` for Frigate, `device` for Hikvision, `prefix` and
    `channel` for a Shelly, `topic` for the dahua2mqtt bridge); a missing one defaults to the
    device id. ``zone`` ties a climate sensor to the A/C unit of the same
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


def dumps(doc: object) -> str:
    # Devices send UTF-8 JSON with raw Chinese names, not \u escapes.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def crc(text: str) -> int:
    # Stable across runs and Python versions, unlike hash().
    return zlib.crc32(text.encode())


# --- random and periodic processes in simulated time -----------------------------------------


def _same(t: float) -> float:
    return t


@dataclass
class Context:
    clock: SimClock
    rates: EventRates
    seed: int
    # The devices' own clocks, for the times they write into their messages: by default the
    # building's (simulated) time; the demo gives the wall clock, as a building's devices
    # would have, so the gateway can trust them.
    device_time: Callable[[float], float] = _same


class Arrivals:
    """A Poisson process whose rate follows a shape, drawn by thinning in simulated time.

    Candidates come at the peak rate and are kept with probability shape(t) × thin, where thin
    keeps a fast clock from producing more than ``max_events_per_second`` real events. Both
    draws are made for every candidate, so the stream depends on the seed alone.
    """

    def __init__(
        self, ctx: Context, rng: random.Random, peak_per_s: float, shape: Shape, start: float
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


class Every:
    """A periodic report: every ``period`` simulated seconds, but never more often than
    ``min_report_interval_s`` real seconds. After a pause or a jump it fires once, not once
    per missed period."""

    def __init__(self, ctx: Context, period: float, first: float) -> None:
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


# --- the base of every simulated MQTT device ----------------------------------------------------

Action = Callable[[float], list[Message]]


class SimDevice:
    """A simulated device: processes that produce timed actions, and a queue of them."""

    link: ClassVar[str]  # the MQTT client it publishes through (see MqttBuilding)

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        self.desc = desc
        self.ctx = ctx
        self.seed = ctx.seed * 1_000_003 + crc(desc.id)
        self.rng = self.stream("main")
        self._queue: list[tuple[float, int, Action]] = []
        self._order = 0
        self._arrivals: list[tuple[Arrivals, Action]] = []
        self._periodic: list[tuple[Every, Action]] = []
        self.t = start

    def var(self, name: str) -> str:
        return self.desc.variables.get(name) or self.desc.id

    def stream(self, name: str) -> random.Random:
        """A generator of its own per process, so adding one process leaves the others alone."""
        return random.Random(f"{self.ctx.seed}:{self.desc.id}:{name}")

    def arrivals(self, name: str, peak_per_s: float, shape: Shape, action: Action) -> None:
        rng = self.stream(name)
        self._arrivals.append((Arrivals(self.ctx, rng, peak_per_s, shape, self.t), action))

    def per_day(self, name: str, per_day: float, shape: Shape, action: Action) -> None:
        hours = hours_per_day(shape, self.ctx.clock.tz)
        peak = per_day / (hours * 3600.0) if hours > 0 else 0.0
        self.arrivals(name, peak, shape, action)

    def every(self, period: float, action: Action) -> None:
        # A per-device phase, so the devices of a building don't all report in the same tick.
        phase = self.stream("phase").uniform(0.0, min(period, 60.0))
        self._periodic.append((Every(self.ctx, period, self.t + phase), action))

    def at(self, t: float, action: Action) -> None:
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

    def device_clock(self, t: float) -> float:
        """What the device's own clock says at simulated time t."""
        return self.ctx.device_time(t)

    def iso(self, t: float) -> str:
        """The device's clock at t in ISO 8601 with the site's UTC offset, e.g.
        2025-07-15T08:45:12+08:00."""
        return self.local(self.device_clock(t)).isoformat(timespec="seconds")
