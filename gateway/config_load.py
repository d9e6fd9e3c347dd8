"""Loading a site file and every profile it uses, and checking them together, before any I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from drivers.modbus.config import RtuConnection
from drivers.modbus.driver import ModbusDevice, device_plan
from drivers.modbus.link import link_key
from drivers.modbus.profile import Profile
from gateway.config_errors import (
    ConfigError,
    Problem,
    format_loc,
    load_yaml,
    problems_from_validation,
    suggest,
)
from gateway.site import DeviceConfig, Site

BUILTIN_PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"


@dataclass
class LoadedSite:
    """A validated site with its profiles and secrets resolved."""

    path: Path
    site: Site
    profiles: dict[str, Profile]
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def spool_dir(self) -> Path:
        path = Path(self.site.spool.path)
        return path if path.is_absolute() else self.base_dir / path

    def modbus_devices(self) -> list[ModbusDevice]:
        return [
            ModbusDevice(d.id, self.profiles[d.profile], d.modbus, d.poll, d.points)
            for d in self.site.devices
            if d.enabled
        ]

    def device(self, device_id: str) -> DeviceConfig:
        for d in self.site.devices:
            if d.id == device_id:
                return d
        known = [d.id for d in self.site.devices]
        raise ConfigError(
            [
                Problem(
                    str(self.path),
                    None,
                    "devices",
                    f"no device '{device_id}'" + suggest(device_id, known),
                )
            ]
        )

    def kind_of(self, device: DeviceConfig) -> str:
        return device.kind or self.profiles[device.profile].kind


def profile_search_path(site_path: Path, extra: list[str]) -> list[Path]:
    dirs = [Path(d) if Path(d).is_absolute() else site_path.parent / d for d in extra]
    return [*dirs, BUILTIN_PROFILES]


def available_profiles(dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(dirs):  # earlier directories win
        if d.is_dir():
            found.update({p.stem: p for p in sorted(d.glob("*.yaml"))})
    return found


def load_profile(path: Path) -> Profile:
    data, lines = load_yaml(path)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, Profile, data, str(path), lines)) from None
    if profile.name != path.stem:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    lines.line(("name",)),
                    "name",
                    f"'{profile.name}' differs from the file name; rename one to match",
                )
            ]
        )
    return profile


def resolve_secret(ref: str, base_dir: Path) -> str:
    """`${VAR}` from the environment or `file:PATH`; raises ValueError naming the fix."""
    if ref.startswith("${"):
        var = ref[2:-1]
        value = os.environ.get(var)
        if value is None:
            raise ValueError(f"environment variable {var} is not set; export it before starting")
        return value
    path = Path(ref.removeprefix("file:"))
    path = path if path.is_absolute() else base_dir / path
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None


def load_site(path: Path, *, resolve_secrets: bool = True) -> LoadedSite:
    """Validate the site file, every profile it names and their consistency; raise ConfigError."""
    file = str(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(
            [Problem(file, 1, "", "a site file is a mapping with site: and devices:")]
        )
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, Site, data, file, lines)) from None

    problems: list[Problem] = []

    def report(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(file, lines.line(loc), format_loc(loc), message))

    dirs = profile_search_path(path, site.profile_dirs)
    available = available_profiles(dirs)
    profiles: dict[str, Profile] = {}
    seen_ids: dict[str, int] = {}
    # One unit id may front several devices at different bases (a CoolMasterNet's indoor
    # units); the same unit and base twice is the same registers polled twice.
    units_on_link: dict[tuple[tuple[str, str], int, int], int] = {}
    serial_settings: dict[str, tuple[int, int, str, int]] = {}
    for i, dev in enumerate(site.devices):
        loc: tuple[str | int, ...] = ("devices", i)
        if dev.id in seen_ids:
            report((*loc, "id"), f"'{dev.id}' is already used by devices[{seen_ids[dev.id]}]")
        seen_ids.setdefault(dev.id, i)
        if dev.profile not in available:
            report(
                (*loc, "profile"),
                f"no profile '{dev.profile}' in {', '.join(str(d) for d in dirs)}"
                + suggest(dev.profile, available),
            )
            continue
        if dev.profile not in profiles:
            try:
                profiles[dev.profile] = load_profile(available[dev.profile])
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
        profile = profiles[dev.profile]
        names = {p.name for p in profile.points}
        for j, point in enumerate(dev.points or []):
            if point not in names:
                report(
                    (*loc, "points", j),
                    f"profile {profile.name} has no point '{point}'" + suggest(point, names),
                )
        key = link_key(dev.modbus)
        base = dev.modbus.base if dev.modbus.base is not None else profile.base
        owner = units_on_link.setdefault((key, dev.modbus.unit, base), i)
        if owner != i:
            report(
                (*loc, "modbus", "unit"),
                f"unit {dev.modbus.unit} at base {base} on {key[1]} is already used by "
                f"devices[{owner}]; give a different unit or base",
            )
        if isinstance(dev.modbus, RtuConnection):
            settings = (
                dev.modbus.baudrate,
                dev.modbus.bytesize,
                dev.modbus.parity,
                dev.modbus.stopbits,
            )
            first = serial_settings.setdefault(dev.modbus.port, settings)
            if first != settings:
                report(
                    (*loc, "modbus"),
                    f"{dev.modbus.port} is already opened with baudrate/bytesize/parity/"
                    f"stopbits {first}; all devices on one line must match",
                )
        try:  # a point larger than the device's request size cannot be read at all
            device_plan(ModbusDevice(dev.id, profile, dev.modbus, dev.poll, dev.points))
        except ValueError as exc:
            report((*loc, "modbus"), str(exc))

    secrets: dict[str, str] = {}
    db = site.influxdb
    if resolve_secrets and db is not None:
        for name in ("token", "password"):
            ref = getattr(db, name, None)
            if ref:
                try:
                    secrets[name] = resolve_secret(ref, path.parent)
                except ValueError as exc:
                    report(("influxdb", name), str(exc))
    if problems:
        raise ConfigError(problems)
    return LoadedSite(path, site, profiles, secrets)
