"""What the virtual building reads of a site file: its devices and where their profiles are.

The gateway validates a site file (`guanjia check`); the building trusts that and reads only
what it serves, with nothing of the gateway. Profiles are the vocabulary both share: they are
read with the drivers' own models. A file not even shaped like a site file raises ValueError
naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeAlias

from pydantic import ValidationError

from core.data_dir import data_dir
from core.yaml_load import load_yaml_file, load_yaml_text
from drivers.dlt645.profile import Dlt645Profile
from drivers.http_events.profile import PROTOCOLS, HttpEventsProfile
from drivers.modbus.profile import Function, Profile
from drivers.mqtt.profile import MqttProfile

AnyProfile: TypeAlias = Profile | MqttProfile | Dlt645Profile | HttpEventsProfile
Transport = Literal["tcp", "rtu_over_tcp", "rtu"]
Dlt645Transport = Literal["tcp", "rtu"]

BUILTIN_PROFILES = data_dir() / "profiles"
DEFAULT_TIMEZONE = "Asia/Shanghai"
_TRANSPORTS: tuple[Transport, ...] = ("tcp", "rtu_over_tcp", "rtu")
_DLT645_TRANSPORTS: tuple[Dlt645Transport, ...] = ("tcp", "rtu")


@dataclass(frozen=True, slots=True)
class ModbusEndpoint:
    """Where a Modbus device answers: a TCP port on ``host``, or (``rtu``) a serial device."""

    transport: Transport
    host: str = ""  # empty for rtu
    port: int | str = 502  # the serial device's path for rtu
    unit: int = 1
    base: int | None = None  # None: the profile's own
    baudrate: int = 9600
    # The site's `function_overrides` (drivers/modbus/overrides.py): served where it reads.
    function_overrides: Mapping[str, Function] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """The values of an MQTT device's profile variables (`id`, `topic`, `camera`, `device`)."""

    vars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dlt645Endpoint:
    """Where a DL/T 645 meter answers: a serial server's TCP port on ``host`` (meters sharing
    it share its line), or (``rtu``) a serial device; and its address (None: discovered)."""

    transport: Dlt645Transport
    host: str = ""  # empty for rtu
    port: int | str = 0  # the serial device's path for rtu
    address: str | None = None
    baudrate: int = 2400


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where a device set to an HTTP host posts its events: the gateway's listener."""

    host: str  # the listener's address (its bind address; 0.0.0.0 and :: are dialled on loopback)
    port: int
    device_id: str | None = None  # the MAC address (or deviceID) its alerts carry


@dataclass(frozen=True, slots=True)
class HttpEventsEndpoint:
    """Where a camera, recorder, access controller or door station serves its event stream,
    and the user and password (as the site's reference, `${ENV}` or `file:`) it demands; or,
    with ``push``, where it posts its events and the user and password it posts with (none:
    it posts without logging in)."""

    host: str
    port: int
    username: str | None
    password: str | None  # the reference, resolved against the site file's directory
    channels: tuple[int, ...] = ()  # the recorder channels the site's device takes
    push: PushTarget | None = None


@dataclass(frozen=True, slots=True)
class SiteDevice:
    id: str
    profile: str
    modbus: ModbusEndpoint | None = None
    mqtt: MqttEndpoint | None = None
    dlt645: Dlt645Endpoint | None = None
    http_events: HttpEventsEndpoint | None = None
    tags: dict[str, str] = field(default_factory=dict)
    kind: str | None = None  # overrides the profile's kind
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class BuildingSite:
    """A site's devices with the profiles of the enabled ones, by profile name."""

    devices: tuple[SiteDevice, ...]
    profiles: Mapping[str, AnyProfile] = field(default_factory=dict)
    timezone: str = DEFAULT_TIMEZONE
    profile_dirs: tuple[str, ...] = ()
    path: Path | None = None


def read_site(path: Path | str) -> BuildingSite:
    """Read a site file's devices, time zone and profile_dirs, and load the profiles its enabled
    devices name (profile_dirs first, relative to the site file, then config/profiles)."""
    path = Path(path)
    reader = _Reader(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the site file: {exc}") from None
    data = load_yaml_text(text, str(path))  # a key given twice is refused, naming its line
    root = reader.mapping(data, "")
    info = reader.mapping(root.get("site") or {}, "site")
    timezone = reader.text(info.get("timezone", DEFAULT_TIMEZONE), "site.timezone")
    dirs = tuple(
        reader.text(d, f"profile_dirs[{i}]")
        for i, d in enumerate(reader.sequence(root.get("profile_dirs") or [], "profile_dirs"))
    )
    devices = tuple(
        _device(reader, item, f"devices[{i}]")
        for i, item in enumerate(reader.sequence(root.get("devices") or [], "devices"))
    )
    search = [d if d.is_absolute() else path.parent / d for d in map(Path, dirs)]
    profiles = load_profiles(devices, [*search, BUILTIN_PROFILES], str(path))
    return BuildingSite(devices, profiles, timezone, dirs, path)


def load_profiles(
    devices: Iterable[SiteDevice], dirs: Iterable[Path], site: str = "site"
) -> dict[str, AnyProfile]:
    """The profiles the enabled devices name, each from the first directory that has it."""
    dirs = list(dirs)
    found: dict[str, Path] = {}
    for d in reversed(dirs):  # earlier directories win
        if d.is_dir():
            found.update({p.stem: p for p in sorted(d.glob("*.yaml"))})
    out: dict[str, AnyProfile] = {}
    for i, dev in enumerate(devices):
        if not dev.enabled or dev.profile in out:
            continue
        file = found.get(dev.profile)
        if file is None:
            where = ", ".join(str(d) for d in dirs)
            raise ValueError(f"{site}: devices[{i}].profile: no profile {dev.profile!r} in {where}")
        out[dev.profile] = read_profile(file)
    return out


def read_profile(path: Path) -> AnyProfile:
    """A Modbus register map, or an MQTT mapping when the file says `protocol: mqtt`, or a DL/T
    645 meter's identifiers when it says `protocol: dlt645`."""
    data = load_yaml_file(path)  # a key given twice (an enum code, say) is refused
    protocol = data.get("protocol") if isinstance(data, dict) else None
    model: type[Profile] | type[MqttProfile] | type[Dlt645Profile] | type[HttpEventsProfile]
    model = Profile
    if protocol == "mqtt":
        model = MqttProfile
    elif protocol == "dlt645":
        model = Dlt645Profile
    elif protocol in PROTOCOLS:
        model = HttpEventsProfile
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise ValueError(
            f"{path}: {key}: {first['msg']} ({exc.error_count()} problem(s); "
            f"`guanjia check` on a site using it says more)"
        ) from None


def _device(reader: _Reader, item: object, key: str) -> SiteDevice:
    dev = reader.mapping(item, key)
    modbus = dev.get("modbus")
    mqtt = dev.get("mqtt")
    dlt645 = dev.get("dlt645")
    streams = dev.get("http_events")
    kind = dev.get("kind")
    return SiteDevice(
        id=reader.text(reader.required(dev, "id", key), f"{key}.id"),
        profile=reader.text(reader.required(dev, "profile", key), f"{key}.profile"),
        modbus=None if modbus is None else _modbus(reader, modbus, f"{key}.modbus"),
        mqtt=None if mqtt is None else _mqtt(reader, mqtt, f"{key}.mqtt"),
        dlt645=None if dlt645 is None else _dlt645(reader, dlt645, f"{key}.dlt645"),
        http_events=None if streams is None else _streams(reader, streams, f"{key}.http_events"),
        tags=reader.strings(dev.get("tags") or {}, f"{key}.tags"),
        kind=None if kind is None else reader.text(kind, f"{key}.kind"),
        enabled=reader.flag(dev.get("enabled", True), f"{key}.enabled"),
    )


def _modbus(reader: _Reader, item: object, key: str) -> ModbusEndpoint:
    conn = reader.mapping(item, key)
    transport = reader.required(conn, "transport", key)
    if transport not in _TRANSPORTS:
        reader.fail(f"{key}.transport", f"{transport!r} is not one of {', '.join(_TRANSPORTS)}")
    unit = reader.integer(conn.get("unit", 1), f"{key}.unit")
    base = conn.get("base")
    baudrate = reader.integer(conn.get("baudrate", 9600), f"{key}.baudrate")
    overrides = reader.strings(conn.get("function_overrides") or {}, f"{key}.function_overrides")
    tables = [f.value for f in Function]
    for name, table in overrides.items():
        if table not in tables:
            reader.fail(f"{key}.function_overrides.{name}", f"{table!r} is not one of {tables}")
    common: dict[str, Any] = {
        "unit": unit,
        "base": None if base is None else reader.integer(base, f"{key}.base"),
        "baudrate": baudrate,
        "function_overrides": {name: Function(table) for name, table in overrides.items()},
    }
    if transport == "rtu":
        port = reader.text(reader.required(conn, "port", key), f"{key}.port")
        return ModbusEndpoint("rtu", "", port, **common)
    host = reader.text(reader.required(conn, "host", key), f"{key}.host")
    tcp_port = reader.integer(conn.get("port", 502), f"{key}.port")
    return ModbusEndpoint(transport, host, tcp_port, **common)


def _dlt645(reader: _Reader, item: object, key: str) -> Dlt645Endpoint:
    conn = reader.mapping(item, key)
    transport = reader.required(conn, "transport", key)
    if transport not in _DLT645_TRANSPORTS:
        reader.fail(
            f"{key}.transport", f"{transport!r} is not one of {', '.join(_DLT645_TRANSPORTS)}"
        )
    address = conn.get("address")
    common: dict[str, Any] = {
        "address": None if address is None else reader.text(address, f"{key}.address"),
        "baudrate": reader.integer(conn.get("baudrate", 2400), f"{key}.baudrate"),
    }
    if transport == "rtu":
        port = reader.text(reader.required(conn, "port", key), f"{key}.port")
        return Dlt645Endpoint("rtu", "", port, **common)
    host = reader.text(reader.required(conn, "host", key), f"{key}.host")
    tcp_port = reader.integer(reader.required(conn, "port", key), f"{key}.port")
    return Dlt645Endpoint("tcp", host, tcp_port, **common)


def _streams(reader: _Reader, item: object, key: str) -> HttpEventsEndpoint:
    """A device that streams its events, or (``push:``) one that posts them to the gateway."""
    conn = reader.mapping(item, key)
    channels = reader.sequence(conn.get("channels") or [], f"{key}.channels")
    host = reader.text(reader.required(conn, "host", key), f"{key}.host")
    channel_ids = tuple(reader.integer(c, f"{key}.channels[{i}]") for i, c in enumerate(channels))
    if conn.get("push") is not None:
        push = reader.mapping(conn["push"], f"{key}.push")
        bind = reader.text(push.get("bind", "0.0.0.0"), f"{key}.push.bind")
        device_id = push.get("device_id")
        user, password = conn.get("username"), conn.get("password")
        return HttpEventsEndpoint(
            host=host,
            port=0,
            username=None if user is None else reader.text(user, f"{key}.username"),
            password=None if password is None else reader.text(password, f"{key}.password"),
            channels=channel_ids,
            push=PushTarget(
                host="127.0.0.1" if bind == "0.0.0.0" else "::1" if bind == "::" else bind,
                port=reader.integer(
                    reader.required(push, "port", f"{key}.push"), f"{key}.push.port"
                ),
                device_id=None
                if device_id is None
                else reader.text(device_id, f"{key}.push.device_id"),
            ),
        )
    return HttpEventsEndpoint(
        host=host,
        port=reader.integer(conn.get("port", 80), f"{key}.port"),
        username=reader.text(reader.required(conn, "username", key), f"{key}.username"),
        password=reader.text(reader.required(conn, "password", key), f"{key}.password"),
        channels=channel_ids,
    )


def _mqtt(reader: _Reader, item: object, key: str) -> MqttEndpoint:
    block = reader.mapping(item, key)
    return MqttEndpoint(reader.strings(block.get("vars") or {}, f"{key}.vars"))


class _Reader:
    """Type checks that name the file and the key of what is wrong."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, message: str) -> NoReturn:
        where = f"{self.file}: {key}" if key else self.file
        raise ValueError(f"{where}: {message} (`guanjia check {self.file}` says more)")

    def _got(self, value: object) -> str:
        return f"got {type(value).__name__} {value!r}"

    def mapping(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, {self._got(value)}")
        return value

    def sequence(self, value: object, key: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(key, f"expected a list, {self._got(value)}")
        return value

    def required(self, mapping: Mapping[str, Any], name: str, key: str) -> object:
        if name not in mapping:
            self.fail(f"{key}.{name}", "missing")
        return mapping[name]

    def text(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected text, {self._got(value)}")
        return value

    def integer(self, value: object, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected an integer, {self._got(value)}")
        return value

    def flag(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, {self._got(value)}")
        return value

    def strings(self, value: object, key: str) -> dict[str, str]:
        mapping = self.mapping(value, key)
        for name, item in mapping.items():
            if not isinstance(item, str):
                self.fail(f"{key}.{name}", f"expected text (quote it), {self._got(item)}")
        return {str(name): item for name, item in mapping.items()}
