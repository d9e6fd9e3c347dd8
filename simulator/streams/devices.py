"""The building's devices that speak HTTP event streams, as the virtual building serves them.

The same people walk through the same doors as in the MQTT simulation: a Hikvision access
controller here is simulator.mqtt's `Door` (its alertStream JSON goes out as stream parts rather
than through a bridge), a Hikvision camera is its `HikCamera` (its alerts rendered as the XML a
camera streams). Dahua door stations reuse the door's people and timing with Dahua's
AccessControl / DoorStatus / BreakIn entries; Dahua cameras, ANPR and traffic cameras are their
own small devices. Bodies come from simulator.streams.payloads.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from simulator.mqtt.dahua import DahuaBridgeCamera
from simulator.mqtt.device import (
    Context,
    DeviceDescription,
    Injection,
    Message,
    SimDevice,
    dumps,
)
from simulator.mqtt.hikvision import (
    MINOR_DOOR_CLOSE_NORMAL,
    MINOR_DOOR_OPEN_ABNORMAL,
    MINOR_DOOR_OPEN_NORMAL,
    MINOR_DOOR_OPEN_TIMEOUT,
    MINOR_INVALID_CARD,
    MINOR_LEGAL_CARD_PASS,
    Door,
    HikCamera,
    Person,
)
from simulator.mqtt.shapes import entrance_traffic
from simulator.streams.payloads import (
    ANPR_MAC,
    anpr_alert,
    camera_alert,
    camera_heartbeat,
    dahua_event,
    traffic_event,
)

XML = 'application/xml; charset="UTF-8"'
JSON = "application/json"
TEXT = "text/plain"
_MOTION_S = 12.0
_VIDEO_LOSS_S = (30.0, 600.0)
_HEARTBEAT_S = 30.0  # a Hikvision camera's idle keep-alive
# Plates of the staff's cars (the compound's allow list) and of visitors.
_PROVINCE = "苏"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


def body_of(message: Message) -> tuple[str, str]:
    """A simulated device's message as a stream part: (body, content type)."""
    payload = message.payload
    if payload.startswith("<"):
        return payload, XML
    if payload.startswith("{"):
        return payload, JSON
    return payload, TEXT


class HikStreamCamera(HikCamera):
    """A Hikvision camera on its alertStream: the XML a camera sends, not the bridge's JSON
    (its MAC address the site's `push.device_id`, when it posts and the site names one)."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.mac = desc.variables.get("mac", self.mac)

    def alert(self, t: float, event_type: str, state: str, count: int) -> Message:
        doc: dict[str, Any] = json.loads(super().alert(t, event_type, state, count).payload)
        if event_type == "videoloss" and state == "inactive" and count == 0:
            return Message("", camera_heartbeat(doc["dateTime"]))
        body = camera_alert(
            event_type,
            state,
            channel=self.channel,
            when=doc["dateTime"],
            post_count=count,
            description=doc["eventDescription"],
            mac=self.mac,
        )
        return Message("", body)


class HikPushDoor(Door):
    """A Hikvision face terminal set to an HTTP host: the door's people and timing, its MAC
    address the site's `push.device_id`, and a capture with every verified person (posted
    as the alert's picture)."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.mac = desc.variables.get("mac", self.mac)

    def event(
        self, t: float, minor: int, person: Person | None = None, card: str | None = None
    ) -> Message:
        message = super().event(t, minor, person, card)
        if person is None:
            return message
        doc: dict[str, Any] = json.loads(message.payload)
        doc["AccessControllerEvent"]["picturesNumber"] = 1
        return Message(message.topic, dumps(doc), qos=message.qos)


class DahuaVto(Door):
    """A Dahua door station: the door's people and timing, in Dahua's attach entries."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.record = self.serial

    def event(
        self, t: float, minor: int, person: Person | None = None, card: str | None = None
    ) -> Message:
        utc = int(self.device_clock(t))
        self.record += 1
        data: dict[str, Any]
        if minor in (MINOR_LEGAL_CARD_PASS, MINOR_INVALID_CARD):
            data = {
                "CardNo": person.card_no if person else card or "",
                "Method": 1,  # card
                "Name": "OpenDoor",
                "RecNo": self.record,
                "Status": 1 if minor == MINOR_LEGAL_CARD_PASS else 0,
                "Type": "Entry",
                "UTC": utc,
                "UserID": person.employee_no if person else "",
            }
            return Message("", dahua_event("AccessControl", "Pulse", 0, data))
        if minor in (MINOR_DOOR_OPEN_NORMAL, MINOR_DOOR_CLOSE_NORMAL):
            status = "Open" if minor == MINOR_DOOR_OPEN_NORMAL else "Close"
            data = {"Status": status, "UTC": utc}
            return Message("", dahua_event("DoorStatus", "Pulse", 0, data))
        if minor == MINOR_DOOR_OPEN_ABNORMAL:
            return Message("", dahua_event("BreakIn", "Pulse", 0, {"UTC": utc}))
        if minor == MINOR_DOOR_OPEN_TIMEOUT:
            return Message("", dahua_event("DoorNotClosed", "Start", 0, {"UTC": utc}))
        raise ValueError(f"{self.desc.id}: no Dahua entry for minor event {minor}")


class DahuaCamera(DahuaBridgeCamera):
    """A Dahua camera channel on its own attach stream (not through the bridge): the same
    motion, video loss and tampering, as `Code=...;action=Start|Stop;index=...` entries with
    the camera's time."""

    link = "dahua"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.index = int(desc.variables.get("channel", "1")) - 1

    def entry(self, t: float, code: str, start: bool) -> Message:
        data = {"UTC": int(self.device_clock(t))}
        return Message("", dahua_event(code, "Start" if start else "Stop", self.index, data))


class _Vehicles(SimDevice):
    """Cars through a gate: mostly the staff's (an allow list a site would keep), now and then
    a visitor; speed from the camera's radar."""

    link = "vehicles"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.channel = int(desc.variables.get("channel", "1"))
        self.radar = True  # the demo's gate cameras have one; 0 km/h would mean none
        self.chance = self.stream("chance")
        self.staff = staff_plates(ctx.seed)
        rates = ctx.rates
        cars_per_s = rates.entrance_passes_per_hour / 3600.0 / 3.0  # a car for three people
        self.arrivals("car", cars_per_s, entrance_traffic, self._car)

    def plate(self) -> str:
        if self.chance.random() < 0.85:
            return self.chance.choice(self.staff)
        return _PROVINCE + self.chance.choice("ABEF") + f"{self.chance.randrange(10**5):05d}"

    def speed(self) -> int:
        if not self.radar:
            return 0
        # a compound's lanes: walking pace to 40 km/h, now and then somebody in a hurry
        return self.chance.randint(8, 40) if self.chance.random() < 0.97 else 55

    def _car(self, t: float) -> list[Message]:
        return [self.vehicle(t, self.plate(), self.speed(), self.chance.choice((1, 2)))]

    def vehicle(self, t: float, plate: str, speed: int, lane: int) -> Message:
        raise NotImplementedError

    def inject(self, kind: Injection, now: float, *, count: int, duration_s: float | None) -> None:
        if kind == "card_pass":  # a vehicle at the gate: the nearest thing to a card
            self.at(now, self._car)
        else:
            super().inject(kind, now, count=count, duration_s=duration_s)


def staff_plates(seed: int, count: int = 40) -> list[str]:
    """The staff's cars, the same for every camera of one seed."""
    rng = random.Random(f"{seed}:plates")
    return [
        _PROVINCE + "A" + rng.choice(_LETTERS) + f"{rng.randrange(10**4):04d}" for _ in range(count)
    ]


class HikAnprCamera(_Vehicles):
    """A Hikvision ANPR camera on its alertStream: a plate alert per car, and the idle
    keep-alive."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.mac = desc.variables.get("mac", ANPR_MAC)
        self.every(_HEARTBEAT_S, self._heartbeat)

    def _heartbeat(self, t: float) -> list[Message]:
        return [Message("", camera_heartbeat(self.iso(t)))]

    def vehicle(self, t: float, plate: str, speed: int, lane: int) -> Message:
        when = self.iso(t)
        uid = str(uuid.UUID(int=self.chance.getrandbits(128)))
        body = anpr_alert(
            plate, speed=speed, lane=lane, when=when, uuid=uid, channel=self.channel, mac=self.mac
        )
        return Message("", body)


class DahuaTrafficCamera(_Vehicles):
    """A Dahua ITC (traffic) camera on its attach stream: TrafficJunction per car."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.event_id = 500

    def vehicle(self, t: float, plate: str, speed: int, lane: int) -> Message:
        self.event_id += 1
        real = int(self.device_clock(t))
        body = traffic_event(
            "TrafficJunction",
            plate,
            speed=speed,
            lane=lane,
            event_id=self.event_id,
            real_utc=real,
            index=self.channel - 1,
        )
        return Message("", body)


Factory = Callable[[DeviceDescription, Context, float], SimDevice]

# HTTP event-stream profile (config/profiles/<name>.yaml) -> the simulated device.
STREAM_DEVICES: dict[str, Factory] = {
    "hikvision_isapi_camera": HikStreamCamera,
    "hikvision_isapi_access_controller": Door,
    "hikvision_isapi_anpr_camera": HikAnprCamera,
    "dahua_camera": DahuaCamera,
    "dahua_vto": DahuaVto,
    "dahua_traffic_camera": DahuaTrafficCamera,
}

# The same, for a device set to post its events to an HTTP host (Hikvision only).
PUSH_DEVICES: dict[str, Factory] = {
    "hikvision_isapi_camera": HikStreamCamera,
    "hikvision_isapi_access_controller": HikPushDoor,
    "hikvision_isapi_anpr_camera": HikAnprCamera,
}
