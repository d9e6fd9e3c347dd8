"""Zigbee sensors behind one Zigbee2MQTT bridge: Aqara door/window contacts, temperature and
humidity sensors and PIR occupancy sensors.

One client for the bridge: ``zigbee2mqtt/{id}`` with every known attribute (cache_state), and a
retained ``zigbee2mqtt/{id}/availability``; the bridge's own ``zigbee2mqtt/bridge/state`` is its
last will. Payload shapes: shared/facts/devices/zigbee2mqtt.yaml.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from simulator.models.base import indoor_free_temperature, noise
from simulator.models.hvac import MODE_COOL, MODE_DRY, AcUnit
from simulator.models.meters import load_fraction
from simulator.models.pv import clear_sky_fraction
from simulator.mqtt.device import Context, DeviceDescription, Injection, Message, SimDevice, dumps
from simulator.mqtt.shapes import office_presence

Z2M_BASE = "zigbee2mqtt"
_OCCUPANCY_TIMEOUT_S = 90.0  # Zigbee2MQTT's occupancy_timeout default for RTCGQ11LM
_PIR_BLIND_S = 60.0  # RTCGQ11LM hardware: no new detection for 60 s after one
_ZIGBEE_CHECKIN_S = 3000.0  # Aqara end devices check in about every 50 minutes
_CLIMATE_REPORT_S = 300.0


def bridge_state(state: str) -> Message:
    """The bridge's availability: online when it connects, offline as its last will and when
    it stops."""
    return Message(f"{Z2M_BASE}/bridge/state", dumps({"state": state}), qos=1, retain=True)


class Zigbee(SimDevice):
    """A battery-powered Aqara end device behind Zigbee2MQTT."""

    link = "zigbee2mqtt"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.friendly_name = self.var("id")
        self.battery = self.rng.randint(55, 100)
        self.lqi_base = self.rng.randint(50, 190)
        self.every(_ZIGBEE_CHECKIN_S, lambda t: [self.report(t)])

    @property
    def topic(self) -> str:
        return f"{Z2M_BASE}/{self.friendly_name}"

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
        return Message(self.topic, dumps(dict(sorted(doc.items()))))

    def birth(self, now: float) -> list[Message]:
        availability = Message(
            f"{self.topic}/availability", dumps({"state": "online"}), qos=1, retain=True
        )
        # A first report right away, as after a device's join or check-in, so the gateway
        # knows the state without waiting up to an hour.
        return [availability, self.report(now)]


class Contact(Zigbee):
    """An MCCGQ11LM on an office door or a window: contact true = closed."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
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


class Climate(Zigbee):
    """A WSDCGQ11LM: air temperature of its zone (the A/C unit's room if there is one)."""

    def __init__(
        self, desc: DeviceDescription, ctx: Context, start: float, ac: AcUnit | None
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


class Occupancy(Zigbee):
    """An RTCGQ11LM PIR: occupancy true on motion, false after Z2M's occupancy timeout."""

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
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
