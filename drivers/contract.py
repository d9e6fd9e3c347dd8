"""The contract between the gateway and its drivers.

At load time a driver describes its devices' points (name, unit, storage type, writable range,
labels) from their profile, so the gateway needs no driver's internals. At run time a driver is
a `DriverRuntime`: built from a `RuntimeContext` (its devices, where Samples go, the shared
brokers), started and stopped by the gateway, asked to write a checked command, and asked for
its devices' status and its counters. One driver is one folder with its config model, profile
model, checks, description and runtime; drivers/registry.py lists them, one entry each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from core.field_types import FieldType
from core.types import Command, CommandResult, Sample, Value

if TYPE_CHECKING:
    from drivers.lines import Lines
    from drivers.mqtt.hub import BrokerHub


class ProfileLike(Protocol):
    """What the gateway reads of any driver's profile model (a pydantic model)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PointMeta:
    """One point as the storage, the rules, the commands and the views see it."""

    name: str
    field_type: FieldType
    unit: str = ""
    float_format: str = "%r"  # the digits worth storing (a float32 holds nine)
    writable: tuple[float, float] | None = None  # allowed range of a write, if writable
    labels: Mapping[int, str] = field(default_factory=dict)  # enum labels of coded values
    description: str = ""
    bits: Mapping[int, str] = field(default_factory=dict)  # labels of set bits, by bit number

    def label(self, value: Value) -> str:
        """A coded value in words ("cool", "alarm, door open"); "" for a plain value."""
        return coded_label(self.labels or None, self.bits or None, value)


def coded_label(
    enum: Mapping[int, str] | None, bits: Mapping[int, str] | None, value: Value
) -> str:
    """The enum name of a value, or the names of its set bits; "" when it has neither.

    Enum labels name the value as stored, so a float point (float32, or a scaled integer) is
    labelled when its value is a whole number: devices that send every value as a float send
    their codes that way too."""
    if enum is not None and not isinstance(value, str):
        if isinstance(value, float):
            if not value.is_integer():
                return f"unknown ({value:g})"
            value = int(value)
        return enum.get(int(value), f"unknown ({value})")
    if bits is not None and isinstance(value, int) and not isinstance(value, bool):
        names = [name for bit, name in sorted(bits.items()) if value >> bit & 1]
        return ", ".join(names) if names else "none"
    return ""


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A device of one driver as the site file gives it, its profile loaded."""

    id: str
    profile: Any  # the driver's profile model
    connection: Any  # the driver's connection model (the device's `<driver>:` block)
    poll: float  # seconds; what a polled device is polled at, a hint for the others
    points: Sequence[str] | None = None  # the site's subset of the profile's points


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One device's health as the view, health and the console show it."""

    device: str
    driver: str
    online: bool | None  # None: not known yet (or never judged)
    up: bool  # counts as online in health: online, or a device that is never judged
    timing: str  # "12.3" ms per poll, or how the device reports ("mqtt")
    count: int  # polls or messages
    errors: int
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeContext:
    """What a driver's runtime is built from."""

    devices: Sequence[DeviceEntry]  # this driver's enabled devices
    emit: Callable[[Sample], None]  # the bus; called on the event loop
    timezone: str  # the site's IANA zone, for device times without an offset
    brokers: BrokerHub | None = None  # the site's MQTT connections, when it has any
    max_payload: int = 256 * 1024  # the largest message a device may send
    heartbeat_check: float = 10.0  # seconds between checks of devices that went silent
    # The devices' secrets, resolved by the gateway when it loaded the site file (the
    # registry's `secret_fields` names them): secret_key(device, field) -> the secret.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # The site's serial lines, one owner per path, shared by every driver with devices on it
    # (drivers/lines.py); None: the driver owns the lines it uses (`guanjia read`, tests).
    lines: Lines | None = None

    def secret(self, device: str, name: str) -> str | None:
        """A device's secret (`password`), or None when the site was loaded without them."""
        return self.secrets.get(secret_key(device, name))


def secret_key(device: str, name: str) -> str:
    """Where a device's secret is kept among the site's resolved secrets."""
    return f"devices.{device}.{name}"


class DriverRuntime(Protocol):
    """A driver at run time: owns its devices' connections and tasks."""

    name: str

    def start(self) -> None:
        """Start acquiring (on the running event loop); never blocks."""

    async def stop(self) -> None:
        """Stop acquiring; everything already acquired has been emitted when this returns."""

    def can_write(self, device: str) -> bool:
        """Whether this driver owns `device` and can write to it."""

    async def write(self, command: Command) -> CommandResult:
        """Write a command the gateway has already allowed; read back where the device can."""

    def statuses(self) -> list[DeviceStatus]: ...

    def health(self) -> dict[str, int]:
        """Counters, prefixed by the driver's name (`modbus_errors`, `mqtt_rejected`)."""

    def problems(self) -> list[str]:
        """What needs a person now, one line each (a broker refusing the gateway)."""
