"""The MQTT driver's checks of a site's devices, before anything connects: the profile's
topic and path variables given (and no others), values that keep a path a path, a broker to
reach them on."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.text import suggest
from drivers.mqtt.config import MqttDeviceConfig
from drivers.mqtt.profile import MqttProfile, topic_vars

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


class MqttChecks:
    def __init__(self, *, need_broker: bool = True) -> None:
        # False for commands that talk to no broker (read, replay, alarms, ack) on a site
        # whose broker comes later (the demo brings its own).
        self.need_broker = need_broker

    def check(
        self,
        _device_id: str,
        conn: MqttDeviceConfig,
        profile: MqttProfile,
        points: Sequence[str] | None,
        _poll: float,
        loc: Loc,
        report: Report,
        site: Any,
    ) -> None:
        given = set(conn.vars)
        missing = [v for v in profile.variables if v not in given]
        if missing:
            report(
                (*loc, "mqtt", "vars"),
                f"profile {profile.name} needs {', '.join(missing)}; "
                f"e.g. vars: {{{missing[0]}: ...}}",
            )
        # A value filled into a JSON path must stay one key: `.` and `[` would split it.
        in_paths = {v for path in profile.paths() for v in topic_vars(path)}
        for name in sorted(in_paths & given):
            value = conn.vars[name]
            if any(c in value for c in ".[]{}") or not value:
                report(
                    (*loc, "mqtt", "vars", name),
                    f"'{value}' is filled into JSON paths of profile {profile.name} and must be "
                    "one key: no '.', '[', ']', '{', '}', not empty (e.g. 0 for switch:0)",
                )
        for extra in sorted(given - set(profile.variables)):
            report(
                (*loc, "mqtt", "vars", extra),
                f"profile {profile.name} has no variable '{extra}'"
                + suggest(extra, profile.variables),
            )
        if points:
            report(
                (*loc, "points"),
                "`points` does not apply to MQTT devices: their profile's messages say what "
                "they send",
            )
        mqtt = getattr(site, "mqtt", None)
        if mqtt is None:
            if self.need_broker:
                report(
                    (*loc, "mqtt"),
                    "no MQTT broker: add `mqtt: {brokers: [{name: site, host: ...}]}` to the "
                    "site file",
                )
            return
        names = [b.name for b in mqtt.brokers]
        if conn.broker is not None and conn.broker not in names:
            report(
                (*loc, "mqtt", "broker"),
                f"no broker '{conn.broker}'" + suggest(conn.broker, names),
            )
