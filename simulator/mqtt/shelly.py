"""Shelly Gen2 power-metering relays (Pro 4PM, Plus 1PM ...) and the Pro EM energy meter: one
channel per site device.

The channels of one Shelly share its MQTT client (one per `prefix`), with the last will
``<prefix>/online`` = ``false``. Each channel publishes its whole status on
``<prefix>/status/switch:<n>`` (status_ntf) and what changed as a NotifyStatus on
``<prefix>/events/rpc`` (rpc_ntf), with ``params.ts`` in epoch seconds. Payload shapes: Shelly's
Gen2 API docs (Switch status, Notifications), as in config/profiles/shelly_pro_4pm.yaml. A Pro
EM clamp is two components, ``em1:<n>`` and ``em1data:<n>`` (EM1, EM1Data), as in
config/profiles/shelly_pro_em.yaml.
"""

from __future__ import annotations

from typing import Any

from simulator.models.base import Integrator, noise
from simulator.models.meters import load_fraction
from simulator.mqtt.device import Context, DeviceDescription, Message, SimDevice, dumps

_REPORT_S = 60.0  # a Shelly notifies its energy counter once a minute (aenergy.minute_ts)


def online(prefix: str, up: bool) -> Message:
    """The device's connection state, retained; ``false`` is its last will."""
    return Message(f"{prefix}/online", "true" if up else "false", qos=1, retain=True)


class ShellyChannel(SimDevice):
    """One relay channel of a Shelly with power metering, feeding an office circuit."""

    link = "shelly"
    rated_default = "800"  # W at the busiest hour, unless the description says `rated_w`

    def __init__(self, desc: DeviceDescription, ctx: Context, start: float) -> None:
        super().__init__(desc, ctx, start)
        self.prefix = self.var("prefix")
        self.channel = int(desc.variables.get("channel", "0"))
        self.rated_w = float(desc.variables.get("rated_w", self.rated_default))
        self.output = True
        start_wh = self.rng.uniform(5_000.0, 90_000.0)
        self._energy = Integrator(lambda ts: [self.power_w(ts)], start, [start_wh * 3600.0])
        self.every(_REPORT_S, self._notify)

    @property
    def client(self) -> str:
        """The MQTT client this channel publishes through: its Shelly's."""
        return f"shelly:{self.prefix}"

    def power_w(self, ts: float) -> float:
        if not self.output:
            return 0.0
        busy = load_fraction(self.local(ts), "lighting")
        return 15.0 + self.rated_w * busy * (1.0 + 0.05 * noise(self.seed, "p", ts, 120.0))

    def status(self, t: float) -> dict[str, Any]:
        """The switch component's status (Switch.GetStatus)."""
        power = self.power_w(t)
        volts = 229.0 + 2.5 * noise(self.seed, "v", t, 900.0)
        pf = 0.92 if power > 0 else 0.0
        total_wh = self._energy.at(t)[0] / 3600.0
        minute = int(self.device_clock(t)) // 60 * 60
        return {
            "id": self.channel,
            "source": "init",
            "output": self.output,
            "apower": round(power, 1),
            "voltage": round(volts, 1),
            "freq": 50.0,
            "current": round(power / (volts * pf), 3) if pf else 0.0,
            "pf": pf,
            "aenergy": {
                "total": round(total_wh, 3),
                "by_minute": [round(power / 60.0 * 1000.0, 3)] * 3,  # mWh in each minute
                "minute_ts": minute,
            },
            "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": minute},
            "temperature": {"tC": round(38.0 + power / 100.0, 1), "tF": None},
        }

    def _status_message(self, t: float) -> Message:
        return Message(f"{self.prefix}/status/switch:{self.channel}", dumps(self.status(t)))

    def _notify(self, t: float) -> list[Message]:
        full = self.status(t)
        changed = {k: full[k] for k in ("id", "apower", "voltage", "current", "aenergy")}
        doc = {
            "src": self.prefix,
            "dst": f"{self.prefix}/events",
            "method": "NotifyStatus",
            "params": {"ts": round(self.device_clock(t), 2), f"switch:{self.channel}": changed},
        }
        return [
            Message(f"{self.prefix}/events/rpc", dumps(doc)),
            self._status_message(t),
        ]

    def birth(self, now: float) -> list[Message]:
        return [self._status_message(now)]


class ShellyEmChannel(ShellyChannel):
    """One CT clamp of a Shelly Pro EM on a feeder: a kitchen's or a lift's, busy by day."""

    rated_default = "4000"

    def components(self, t: float) -> dict[str, dict[str, Any]]:
        """em1:<n> and em1data:<n> as EM1.GetStatus and EM1Data.GetStatus give them."""
        power = self.power_w(t)
        volts = 229.0 + 2.5 * noise(self.seed, "v", t, 900.0)
        pf = 0.88
        n = self.channel
        return {
            f"em1:{n}": {
                "id": n,
                "current": round(power / (volts * pf), 3),
                "voltage": round(volts, 1),
                "act_power": round(power, 1),
                "aprt_power": round(power / pf, 1),
                "pf": pf,
                "freq": 50.0,
                "calibration": "factory",
            },
            f"em1data:{n}": {
                "id": n,
                "total_act_energy": round(self._energy.at(t)[0] / 3600.0, 2),
                "total_act_ret_energy": 0.0,
            },
        }

    def _notify(self, t: float) -> list[Message]:
        parts = self.components(t)
        doc = {
            "src": self.prefix,
            "dst": f"{self.prefix}/events",
            "method": "NotifyStatus",
            "params": {"ts": round(self.device_clock(t), 2), **parts},
        }
        return [Message(f"{self.prefix}/events/rpc", dumps(doc)), *self._statuses(parts)]

    def _statuses(self, parts: dict[str, dict[str, Any]]) -> list[Message]:
        return [Message(f"{self.prefix}/status/{key}", dumps(doc)) for key, doc in parts.items()]

    def birth(self, now: float) -> list[Message]:
        return self._statuses(self.components(now))
