"""Hikvision access controllers (one per door) and Hikvision cameras.

The devices speak ISAPI over HTTP, not MQTT, so one "bridge" client republishes their
alertStream JSON on ``hikvision/{device}/event``: card swipes, the door contact and door alarms;
camera heartbeats, motion (VMD), video loss and tampering. Payload shapes:
shared/facts/devices/hikvision_isapi.yaml.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from simulator.mqtt.device import (
    Context,
    DeviceDescription,
    Injection,
    Message,
    SimDevice,
    crc,
    dumps,
)
from simulator.mqtt.shapes import always, entrance_traffic, night, office_presence, secured_traffic

# Hikvision access-control event codes (majorEventType 5 = MAJOR_EVENT, subEventType = minor).
MAJOR_EVENT = 5
MINOR_LEGAL_CARD_PASS = 1
MINOR_INVALID_CARD = 9
MINOR_DOOR_OPEN_NORMAL = 25
MINOR_DOOR_CLOSE_NORMAL = 26
MINOR_DOOR_OPEN_ABNORMAL = 27
MINOR_DOOR_OPEN_TIMEOUT = 28
_HIK_OUI = "44:19:b6"  # a Hikvision MAC prefix: payloads look like the real thing
_HIK_HEARTBEAT_S = 30.0
_HIK_ACTIVE_REPEAT_S = 5.0  # cameras repeat an active alarm while it lasts


def _fake_ip(name: str) -> str:
    # Only a payload field, never dialled: what an ISAPI device reports as its own address.
    h = crc(name)
    return f"192.168.{10 + h % 5}.{20 + (h >> 8) % 200}"


def _fake_mac(name: str) -> str:
    h = crc(name + ":mac")
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


class Door(SimDevice):
    """A Hikvision access controller on one door: card swipes, the door contact, alarms."""

    link = "hikvision"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
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
        return Message(self.topic, dumps(doc), qos=1)

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


class HikCamera(SimDevice):
    """A Hikvision camera's alertStream through the bridge: heartbeats, VMD, video loss."""

    link = "hikvision"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
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
        return Message(self.topic, dumps(doc), qos=1)

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
