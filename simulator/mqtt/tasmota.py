"""Tasmota energy-monitoring plugs.

Each plug is its own client with the last will ``tele/{topic}/LWT`` = ``Offline``: a power cut
drops its connection without DISCONNECT, and the broker tells. Payload shapes:
shared/facts/devices/tasmota.yaml.
"""

from __future__ import annotations

import math
from datetime import datetime, time
from typing import Any

from simulator.models.base import Integrator, noise
from simulator.models.meters import load_fraction
from simulator.mqtt.device import Context, DeviceDescription, Message, SimDevice, dumps

_TASMOTA_TELE_PERIOD_S = 300.0


def _range(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(max(0, math.ceil((stop - start) / step)))]


class Plug(SimDevice):
    """A Tasmota energy-monitoring plug: its own MQTT client, its own last will."""

    link = "tasmota"

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
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
        self._energy = Integrator(
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
        return Message(f"tele/{self.topic}/SENSOR", dumps(doc))

    def _time(self, t: float) -> str:
        # Tasmota's default Time: local, no zone.
        return self.local(self.device_clock(t)).replace(tzinfo=None).isoformat(timespec="seconds")

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
        return Message(f"tele/{self.topic}/STATE", dumps(doc))

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
            Message(f"stat/{self.topic}/RESULT", dumps({"POWER": power})),
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
