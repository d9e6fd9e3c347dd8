"""The built-in drivers, one entry each: the site-file key of a device's connection, its
connection and profile models, how it checks a site's devices and how it describes their
points, and how its runtime is built. Adding a driver is a folder under drivers/ and one entry
here: the site file's device model, its JSON Schema, `guanjia check`, the device catalogue and
the running gateway (start, stop, writes, status, health) learn of it from this list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from drivers.contract import DriverRuntime, PointMeta, RuntimeContext
from drivers.dlt645 import describe as dlt645_describe
from drivers.dlt645 import line as dlt645_line
from drivers.dlt645.checks import Dlt645Checks
from drivers.dlt645.config import Dlt645Connection
from drivers.dlt645.profile import Dlt645Profile
from drivers.dlt645.runtime import Dlt645Driver
from drivers.http_events import describe as http_events_describe
from drivers.http_events.checks import HttpEventsChecks
from drivers.http_events.config import HttpEventsConnection
from drivers.http_events.profile import PROTOCOLS, HttpEventsProfile
from drivers.modbus import describe as modbus_describe
from drivers.modbus import link as modbus_link
from drivers.modbus.checks import ModbusChecks
from drivers.modbus.config import ModbusConnection
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.profile import Profile
from drivers.mqtt import describe as mqtt_describe
from drivers.mqtt.checks import MqttChecks
from drivers.mqtt.config import MqttDeviceConfig
from drivers.mqtt.profile import MqttProfile
from drivers.mqtt.runtime import MqttDriver

Loc = tuple[str | int, ...]


def _http_events_runtime(ctx: RuntimeContext) -> DriverRuntime:
    """Imported when a site has event streams: it brings aiohttp, which a gateway without
    cameras does not need to carry (about 10 MiB resident; bench/bench_fleet.py)."""
    from drivers.http_events.runtime import HttpEventsDriver

    return HttpEventsDriver(ctx)


class DeviceChecks(Protocol):
    """A driver's checks over one site file's devices (it may remember earlier devices)."""

    def check(
        self,
        device_id: str,
        conn: Any,
        profile: Any,
        points: Sequence[str] | None,
        poll: float,
        loc: Loc,
        report: Callable[[Loc, str], None],
        site: Any,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Driver:
    name: str  # the device's key in the site file
    title: str  # for people: "Modbus", "MQTT"
    a_title: str  # with its article, for a sentence: "a Modbus", "an MQTT"
    example: str  # the smallest connection block, for an error that asks for one
    connection_model: Any  # a pydantic model, or an annotated union of them
    profile_model: type[BaseModel]
    # The `protocol:` values of its profile files; none: the default driver (no `protocol:`).
    profile_protocols: tuple[str, ...]
    describe: Callable[[Any, Sequence[str] | None], dict[str, PointMeta]]
    # Every definition of a field, repeated where a profile defines one name twice (an MQTT
    # point on two topics), for the one-type-per-field check.
    definitions: Callable[[Any, Sequence[str] | None], Iterable[PointMeta]]
    # How long a device may be silent before its values are stale (profile, poll interval).
    stale_after: Callable[[Any, float], float | None]
    checks: Callable[[bool], DeviceChecks]  # need_broker -> a checker for one site file
    runtime: Callable[[RuntimeContext], DriverRuntime]  # built when the site has its devices
    # The secret references of a device's connection block, field -> `${ENV}` / `file:...`:
    # the gateway resolves them with the site's other secrets (a missing one fails the check).
    secret_fields: Callable[[Any], Mapping[str, str]] = lambda _connection: {}
    # What one gateway must own alone, (kind, name), of a device's connection: a serial line,
    # a Modbus TCP device. `guanjia check` on the files of a split site refuses two owners.
    ownership: Callable[[Any], Sequence[tuple[str, str]]] = lambda _connection: ()


DRIVERS: Mapping[str, Driver] = {
    d.name: d
    for d in (
        Driver(
            name="modbus",
            title="Modbus",
            a_title="a Modbus",
            example="modbus: {transport: tcp, host: ...}",
            connection_model=ModbusConnection,
            profile_model=Profile,
            profile_protocols=(),
            describe=modbus_describe.describe,
            definitions=lambda p, points: modbus_describe.describe(p, points).values(),
            stale_after=modbus_describe.stale_after,
            checks=lambda _need_broker: ModbusChecks(),
            runtime=ModbusDriver.from_context,
            ownership=modbus_link.ownership,
        ),
        Driver(
            name="mqtt",
            title="MQTT",
            a_title="an MQTT",
            example="mqtt: {vars: {...}}",
            connection_model=MqttDeviceConfig,
            profile_model=MqttProfile,
            profile_protocols=("mqtt",),
            describe=mqtt_describe.describe,
            definitions=lambda p, _points: mqtt_describe.definitions(p),
            stale_after=mqtt_describe.stale_after,
            checks=lambda need_broker: MqttChecks(need_broker=need_broker),
            runtime=MqttDriver,
        ),
        Driver(
            name="dlt645",
            title="DL/T 645",
            a_title="a DL/T 645",
            example='dlt645: {transport: rtu, port: /dev/ttyUSB0, address: "000000000001"}',
            connection_model=Dlt645Connection,
            profile_model=Dlt645Profile,
            profile_protocols=("dlt645",),
            describe=dlt645_describe.describe,
            definitions=lambda p, points: dlt645_describe.describe(p, points).values(),
            stale_after=dlt645_describe.stale_after,
            checks=lambda _need_broker: Dlt645Checks(),
            runtime=Dlt645Driver,
            ownership=dlt645_line.ownership,
        ),
        Driver(
            name="http_events",
            title="HTTP event stream",
            a_title="an HTTP event stream",
            example='http_events: {host: 10.0.8.30, username: guanjia, password: "${CAM_PW}"}',
            connection_model=HttpEventsConnection,
            profile_model=HttpEventsProfile,
            profile_protocols=PROTOCOLS,  # hikvision_isapi, dahua_events
            describe=http_events_describe.describe,
            definitions=lambda p, _points: http_events_describe.definitions(p),
            stale_after=http_events_describe.stale_after,
            checks=lambda _need_broker: HttpEventsChecks(),
            runtime=_http_events_runtime,
            secret_fields=lambda conn: {} if conn.password is None else {"password": conn.password},
        ),
    )
}


def profile_model(protocol: object) -> type[BaseModel]:
    """The profile model of a profile file's `protocol:` (none: the default driver's)."""
    default: type[BaseModel] | None = None
    for driver in DRIVERS.values():
        if protocol in driver.profile_protocols:
            return driver.profile_model
        if not driver.profile_protocols:
            default = driver.profile_model
    assert default is not None
    return default


def driver_of(profile: object) -> Driver:
    for driver in DRIVERS.values():
        if isinstance(profile, driver.profile_model):
            return driver
    raise KeyError(type(profile).__name__)
