"""The built-in drivers, one line each: the site-file key of a device's connection, its
connection and profile models, and how it describes its points. Adding a driver is a folder
under drivers/ and one line here; the gateway learns of it from this list alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from drivers.contract import PointMeta
from drivers.modbus import describe as modbus_describe
from drivers.modbus.config import ModbusConnection
from drivers.modbus.profile import Profile
from drivers.mqtt import describe as mqtt_describe
from drivers.mqtt.config import MqttDeviceConfig
from drivers.mqtt.profile import MqttProfile


@dataclass(frozen=True, slots=True)
class Driver:
    name: str  # the device's key in the site file
    connection_model: Any  # a pydantic model, or an annotated union of them
    profile_model: type[BaseModel]
    profile_protocol: str | None  # a profile file's `protocol:`; None for the default driver
    describe: Callable[[Any, Sequence[str] | None], dict[str, PointMeta]]
    # How long a device may be silent before its values are stale (profile, poll interval).
    stale_after: Callable[[Any, float], float | None]


DRIVERS: Mapping[str, Driver] = {
    d.name: d
    for d in (
        Driver(
            "modbus",
            ModbusConnection,
            Profile,
            None,
            modbus_describe.describe,
            modbus_describe.stale_after,
        ),
        Driver(
            "mqtt",
            MqttDeviceConfig,
            MqttProfile,
            "mqtt",
            mqtt_describe.describe,
            mqtt_describe.stale_after,
        ),
    )
}


def driver_of_profile(data: object) -> Driver:
    """The driver whose profile a parsed profile file is (by its `protocol:`)."""
    protocol = data.get("protocol") if isinstance(data, dict) else None
    for driver in DRIVERS.values():
        if driver.profile_protocol is not None and driver.profile_protocol == protocol:
            return driver
    return next(d for d in DRIVERS.values() if d.profile_protocol is None)


def driver_of(profile: BaseModel) -> Driver:
    for driver in DRIVERS.values():
        if isinstance(profile, driver.profile_model):
            return driver
    raise KeyError(type(profile).__name__)
