"""Loading a site file and every profile it uses, and checking them together, before any I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from accounts.checks import check_accounts, device_kinds
from core.data_dir import data_dir
from core.secret_refs import resolve_secret
from drivers.contract import DeviceEntry, ProfileLike, secret_key
from drivers.registry import DRIVERS, driver_of, profile_model
from gateway.config_errors import (
    ConfigError,
    LineMap,
    Problem,
    format_loc,
    load_yaml,
    problems_from_validation,
    suggest,
)
from gateway.field_catalog import DeviceFields, type_conflicts
from gateway.notify.checks import check_notify, resolve_refs, roster_config
from gateway.notify.roster import RosterConfig
from gateway.site import DeviceConfig, MqttConfig, Site

AnyProfile = ProfileLike  # a driver's profile model (drivers/registry.py)

BUILTIN_PROFILES = data_dir() / "profiles"


@dataclass
class LoadedSite:
    """A validated site with its profiles and secrets resolved."""

    path: Path
    site: Site
    profiles: dict[str, AnyProfile]
    secrets: dict[str, str] = field(default_factory=dict)
    roster: RosterConfig | None = None  # the duty roster, inline or from its own file
    warnings: list[str] = field(default_factory=list)  # for `guanjia check`: not errors

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def spool_dir(self) -> Path:
        return site_relative(self.base_dir, self.site.spool.path)

    def alarm_store_path(self) -> Path:
        return site_relative(self.base_dir, self.site.alarms.store)

    def driver_devices(self, driver: str) -> list[DeviceEntry]:
        """The enabled devices of one driver (`modbus`, `mqtt`), as its runtime takes them."""
        out = []
        for d in self.site.devices:
            conn = d.connection(driver)
            if d.enabled and conn is not None:
                out.append(DeviceEntry(d.id, self.profiles[d.profile], conn, d.poll, d.points))
        return out

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


def site_relative(base_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def _who() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def writable_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be used, or created, as a directory this process writes; None if it can.

    Only looks: the directory is created when the gateway runs, not when the file is checked.
    """
    nearest = path
    while not os.path.lexists(nearest) and nearest.parent != nearest:
        nearest = nearest.parent
    if not nearest.exists():
        return f"{nearest} is a broken symbolic link; remove it or point it at a directory"
    if not nearest.is_dir():
        if nearest == path:
            return f"{path} is a file, not a directory"
        return f"{path} goes through {nearest}, which is a file, not a directory"
    if nearest != path:
        if not os.access(nearest, os.W_OK | os.X_OK):
            return f"{path} cannot be created: {nearest} is not writable by {_who()}"
        return None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return f"{path} is not writable by {_who()}"
    return None


def writable_file_problem(path: Path) -> str | None:
    """Why `path` cannot be opened (or created) for reading and writing; None if it can."""
    if not os.path.lexists(path):
        return writable_dir_problem(path)  # the same walk up to the nearest existing directory
    if path.is_dir():
        return f"{path} is a directory, not a file"
    if not path.exists():
        return f"{path} is a broken symbolic link; remove it or point it at a file"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not writable by {_who()}"
    return writable_dir_problem(path.parent)  # SQLite writes its journal beside the file


def check_storage(site: Site, data: dict[str, Any], base_dir: Path, report: Report) -> None:
    """The spool directory and the alarm store can be created and written, before `run`."""
    spool = site_relative(base_dir, site.spool.path)
    problem = writable_dir_problem(spool)
    if problem is None and spool.is_dir():
        for entry in sorted(spool.iterdir()):
            if entry.is_file() and not os.access(entry, os.R_OK | os.W_OK):
                problem = f"{entry} is not writable by {_who()} (left by another user?)"
                break
    if problem is not None:
        report(
            ("spool", "path"),
            f"spool directory: {problem}; fix the permissions or set spool.path "
            "to a directory this user can write",
        )
    alarms = data.get("alarms")
    if not site.rules and not (isinstance(alarms, dict) and "store" in alarms):
        return  # without rules, `run` opens no alarm store
    store = site_relative(base_dir, site.alarms.store)
    problem = writable_file_problem(store)
    for suffix in ("-wal", "-shm"):
        beside = store.with_name(store.name + suffix)
        if problem is None and os.path.lexists(beside) and not os.access(beside, os.W_OK):
            problem = f"{beside} is not writable by {_who()} (left by another user?)"
    if problem is not None:
        report(
            ("alarms", "store"),
            f"alarm store: {problem}; fix the permissions or set alarms.store "
            "to a file path this user can write, e.g. var/alarms.sqlite",
        )


def profile_search_path(site_path: Path, extra: list[str]) -> list[Path]:
    dirs = [Path(d) if Path(d).is_absolute() else site_path.parent / d for d in extra]
    return [*dirs, BUILTIN_PROFILES]


def available_profiles(dirs: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(dirs):  # earlier directories win
        if d.is_dir():
            found.update({p.stem: p for p in sorted(d.glob("*.yaml"))})
    return found


def load_profile(path: Path) -> AnyProfile:
    """A driver's profile: the model of the driver its `protocol:` names (a Modbus register
    map by default, an MQTT mapping for `protocol: mqtt`)."""
    data, lines = load_yaml(path)
    model = profile_model(data.get("protocol") if isinstance(data, dict) else None)
    try:
        profile: AnyProfile = model.model_validate(data)  # type: ignore[assignment]
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, model, data, str(path), lines)) from None
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


Report = Callable[[tuple[str | int, ...], str], None]


def check_connection(
    dev: DeviceConfig, profile: AnyProfile, loc: tuple[str | int, ...], report: Report
) -> bool:
    """The device gives exactly the connection its profile's driver needs; say which."""
    driver = driver_of(profile)
    what = f"{profile.name} is {driver.a_title} profile"
    given = list(dev.connections())
    if len(given) > 1:
        keys = " and ".join(f"{name}:" for name in given)
        report(
            loc,
            f"device {dev.id} has both {keys}; keep the one that matches its profile ({what})"
            if len(given) == 2
            else f"device {dev.id} has {keys}; keep only {driver.name}: ({what})",
        )
        return False
    if not given:
        keys = ", ".join(f"{name}:" for name in DRIVERS)
        report(
            loc,
            f"device {dev.id} has no connection ({keys}); add `{driver.example}` ({what})",
        )
        return False
    if given[0] != driver.name:
        report(
            (*loc, given[0]),
            f"device {dev.id} has {given[0]}: but {what}; replace {given[0]}: with "
            f"{driver.name}: or choose {DRIVERS[given[0]].a_title} profile",
        )
        return False
    return True


def check_demand_response(site: Site, report: Report) -> None:
    """The sources hand events to the rules, and the load shed needs its meter."""
    dr = site.demand_response
    if dr is None:
        return
    kinds = {str(e.get("kind")) for e in site.rules}
    if "demand_response" not in kinds and "ac_policy" not in kinds:
        report(
            ("demand_response",),
            "no demand_response rule takes the events: add one to rules "
            "(- {id: dr, kind: demand_response})",
        )
    ids = {d.id for d in site.devices}
    if dr.shed is not None and dr.shed.meter not in ids:
        report(
            ("demand_response", "shed", "meter"),
            f"no device {dr.shed.meter!r}; name the AC meter's device id"
            + suggest(dr.shed.meter, ids),
        )
    if dr.shed is not None and site.influxdb is None:
        report(
            ("demand_response", "shed"),
            "the load shed is read from the database: configure influxdb, or remove shed",
        )


def check_rules(
    site: Site, data: dict[str, Any], file: str, lines: LineMap, problems: list[Problem]
) -> None:
    """Each rule: a known kind, a unique id, parameters its kind accepts."""
    from rules.registry import KINDS

    seen: dict[str, int] = {}
    raw = data.get("rules") or []
    for i, entry in enumerate(site.rules):
        loc: tuple[str | int, ...] = ("rules", i)
        rule_id, kind = entry.get("id"), entry.get("kind")
        if not isinstance(rule_id, str) or not re.match(r"^[a-z0-9][a-z0-9_-]*$", rule_id):
            problems.append(
                Problem(
                    file,
                    lines.line((*loc, "id")),
                    format_loc((*loc, "id")),
                    "every rule needs an `id` of lower case letters, digits, - or _",
                )
            )
        elif rule_id in seen:
            problems.append(
                Problem(
                    file,
                    lines.line((*loc, "id")),
                    format_loc((*loc, "id")),
                    f"'{rule_id}' is already used by rules[{seen[rule_id]}]",
                )
            )
        else:
            seen[rule_id] = i
        if kind not in KINDS:
            problems.append(
                Problem(
                    file,
                    lines.line((*loc, "kind")),
                    format_loc((*loc, "kind")),
                    f"unknown rule kind '{kind}'; kinds: {', '.join(sorted(KINDS))}"
                    + suggest(str(kind), KINDS),
                )
            )
            continue
        params = {k: v for k, v in entry.items() if k not in ("id", "kind")}
        cls = KINDS[kind]
        try:
            validated = cls.Params.model_validate(params)
        except ValidationError as exc:
            problems.extend(
                problems_from_validation(
                    exc, cls.Params, raw[i] if i < len(raw) else params, file, lines, prefix=loc
                )
            )
            continue
        known = [d.id for d in site.devices]
        for param, ids in validated.device_refs().items():
            for j, device_id in enumerate(ids):
                if device_id not in known:
                    where = (*loc, param, j)
                    message = f"no device '{device_id}' in devices:; name one of the site's ids"
                    problems.append(
                        Problem(
                            file,
                            lines.line(where),
                            format_loc(where),
                            message + suggest(device_id, known),
                        )
                    )


def check_calendar(site: Site, base_dir: Path, report: Report, problems: list[Problem]) -> None:
    """The site's working-calendar year files: readable, valid, one per year."""
    from rules.calendar import CalendarYear

    seen: dict[int, str] = {}
    for i, path in enumerate(site.calendar.year_paths(base_dir)):
        loc: tuple[str | int, ...] = ("calendar", "year_files", i)
        try:
            data, lines = load_yaml(path)
        except ConfigError as exc:
            for problem in exc.problems:
                report(loc, f"{path}: {problem.message}")
            continue
        try:
            year = CalendarYear.model_validate(data)
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, CalendarYear, data, str(path), lines))
            continue
        if year.year in seen:
            report(loc, f"{path} is a second file for {year.year} (after {seen[year.year]})")
        seen.setdefault(year.year, str(path))


_GATEWAY_TAG = (
    "tag 'gateway' is set by the gateway when the site names one (site.gateway); rename it"
)


def needs_embedded_broker(path: Path) -> bool:
    """A site with MQTT devices and no brokers: the demo starts one of its own."""
    data, _ = load_yaml(path)
    if not isinstance(data, dict) or data.get("mqtt"):
        return False
    return any(isinstance(d, dict) and "mqtt" in d for d in data.get("devices") or [])


def load_site(
    path: Path,
    *,
    resolve_secrets: bool = True,
    mqtt: MqttConfig | None = None,
    need_broker: bool = True,
) -> LoadedSite:
    """Validate the site file, every profile it names and their consistency; raise ConfigError.

    `need_broker=False`: MQTT devices without a broker are no problem, for commands that talk
    to no broker (read, replay, alarms, ack) on a site whose broker comes later (the demo's);
    such a LoadedSite must not be run (its mqtt_devices() would fail)."""
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
    if mqtt is not None and site.mqtt is None:  # the demo's embedded broker
        site = site.model_copy(update={"mqtt": mqtt})
    mqtt = site.mqtt

    problems: list[Problem] = []
    warnings: list[str] = []
    secrets: dict[str, str] = {}

    def report(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(file, lines.line(loc), format_loc(loc), message))

    dirs = profile_search_path(path, site.profile_dirs)
    available = available_profiles(dirs)
    profiles: dict[str, AnyProfile] = {}
    seen_ids: dict[str, int] = {}
    checks = {name: driver.checks(need_broker) for name, driver in DRIVERS.items()}
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
            if len(dev.connections()) > 1:
                keys = " and ".join(f"{name}:" for name in dev.connections())
                report(loc, f"device {dev.id} has {keys}; keep one")
            continue
        if dev.profile not in profiles:
            try:
                profiles[dev.profile] = load_profile(available[dev.profile])
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
        profile = profiles[dev.profile]
        if not check_connection(dev, profile, loc, report):
            continue
        driver = driver_of(profile)
        conn = dev.connection(driver.name)
        checks[driver.name].check(dev.id, conn, profile, dev.points, dev.poll, loc, report, site)
        if resolve_secrets and dev.enabled:
            for key, secret_ref in driver.secret_fields(conn).items():
                try:
                    secrets[secret_key(dev.id, key)] = resolve_secret(secret_ref, path.parent)
                except ValueError as exc:
                    report((*loc, driver.name, key), str(exc))

    problems.extend(
        type_conflicts(
            file,
            lines,
            (
                DeviceFields(
                    i,
                    dev.kind or profiles[dev.profile].kind,
                    profiles[dev.profile],
                    available[dev.profile],
                    dev.points,
                )
                for i, dev in enumerate(site.devices)
                if dev.enabled and dev.profile in profiles
            ),
        )
    )
    if site.site.gateway is not None:  # one gateway of a split site tags its lines with it
        if "gateway" in site.site.tags:
            report(("site", "tags", "gateway"), _GATEWAY_TAG)
        for i, dev in enumerate(site.devices):
            if "gateway" in dev.tags:
                report(("devices", i, "tags", "gateway"), _GATEWAY_TAG)
    check_rules(site, data, file, lines, problems)
    check_demand_response(site, report)
    check_calendar(site, path.parent, report, problems)
    check_storage(site, data, path.parent, report)
    check_accounts(site, device_kinds(site.devices, profiles), path.parent, report, problems)
    roster = roster_config(site, path.parent, file, lines, problems)
    check_notify(site, roster, report, warnings.append)

    db = site.influxdb
    if resolve_secrets and db is not None:
        for name in ("token", "password"):
            ref = getattr(db, name, None)
            if ref:
                try:
                    secrets[name] = resolve_secret(ref, path.parent)
                except ValueError as exc:
                    report(("influxdb", name), str(exc))
    if resolve_secrets and mqtt is not None:
        for b, broker in enumerate(mqtt.brokers):
            if broker.password:
                try:
                    secrets[f"mqtt.{broker.name}"] = resolve_secret(broker.password, path.parent)
                except ValueError as exc:
                    report(("mqtt", "brokers", b, "password"), str(exc))
        if mqtt.publish_to is not None and mqtt.publish_to not in [b.name for b in mqtt.brokers]:
            report(("mqtt", "publish_to"), f"no broker '{mqtt.publish_to}'")
    if resolve_secrets:
        resolve_refs(site, lambda ref: resolve_secret(ref, path.parent), report, secrets)
    if problems:
        raise ConfigError(problems)
    return LoadedSite(path, site, profiles, secrets, roster=roster, warnings=warnings)
