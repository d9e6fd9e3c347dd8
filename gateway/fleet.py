"""A site too large for one box, split across gateways by line: what `guanjia check a.yaml
b.yaml` checks across the site files of one site.

Each gateway of a split site names itself (`site.gateway`) and owns its devices: a device id,
a serial line (a local port, or the serial server in front of one) and a Modbus TCP device
(host, port, unit) belong to one gateway, and so does a rule id (an alarm's id is its rule's
and subject's: two gateways with one rule would share its retained topic). Two owners of one
line would talk over each other on the RS-485 bus; two pollers of one Modbus TCP device double
its readings and its load. A local port is compared by its path: two gateways on two boxes
that both name /dev/ttyUSB0 are told apart by naming each port by its /dev/serial/by-id/ path,
which is also what keeps a port's name across reboots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.registry import DRIVERS
from gateway.config_errors import Loc, format_loc, load_yaml
from gateway.config_load import LoadedSite


@dataclass(frozen=True, slots=True)
class _Owner:
    file: str
    line: int | None
    path: str  # key path in the file
    gateway: str

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def _owned(site: LoadedSite) -> list[tuple[Loc, str, str]]:
    """(key path, what, how it is named) of everything one gateway must own alone: each
    driver says what of a connection that is (drivers/registry.py, `ownership`)."""
    out: list[tuple[Loc, str, str]] = []
    for i, dev in enumerate(site.site.devices):
        out.append((("devices", i, "id"), "device", f"device '{dev.id}'"))
        if not dev.enabled:
            continue
        for driver, conn in dev.connections().items():
            for what, name in DRIVERS[driver].ownership(conn):
                out.append((("devices", i, driver), what, name))
    for i, rule in enumerate(site.site.rules):
        out.append((("rules", i, "id"), "rule", f"rule '{rule.get('id', '')}'"))
    return out


def split_site_problems(sites: Sequence[LoadedSite]) -> list[str]:
    """One line per conflict among site files of one site (files of other sites are checked
    only against the files of theirs)."""
    problems: list[str] = []
    by_site: dict[str, list[LoadedSite]] = {}
    for site in sites:
        by_site.setdefault(site.site.site.id, []).append(site)
    for site_id, files in by_site.items():
        if len(files) < 2:
            continue
        gateways: dict[str, LoadedSite] = {}
        for site in files:
            name = site.site.site.gateway
            if name is None:
                problems.append(
                    f"{site.path}: site.gateway: {len(files)} files are of site '{site_id}': "
                    "give each gateway its own id (e.g. `gateway: gw-a`), or each would "
                    "take the other's MQTT session and status topic"
                )
                continue
            if name in gateways:
                problems.append(
                    f"{site.path}: site.gateway: '{name}' is also {gateways[name].path}'s; "
                    "give each gateway of the site its own id"
                )
                continue
            gateways[name] = site
        owners: dict[str, _Owner] = {}
        told: set[tuple[str, str]] = set()  # (name, file): one line each
        for site in files:
            _data, lines = load_yaml(site.path)
            gateway = site.site.site.gateway or "(none)"
            for loc, what, name in _owned(site):
                here = _Owner(str(site.path), lines.line(loc), format_loc(loc), gateway)
                first = owners.setdefault(name, here)
                if first.file == here.file or (name, here.file) in told:
                    continue  # within one file, load_site's own checks speak
                told.add((name, here.file))
                problems.append(
                    f"{here.where()}: {here.path}: {name} is also gateway {first.gateway}'s "
                    f"({first.where()}: {first.path}); {_fix(what)}"
                )
    return problems


def _fix(what: str) -> str:
    if what == "rule":
        return "a rule runs on one gateway: rename it or remove it from one file"
    if what == "serial line":
        return (
            "a line has one owner: give all its devices to one gateway (or, on two boxes, "
            "name each local port by its /dev/serial/by-id/ path)"
        )
    return f"a {what} belongs to one gateway: remove it from one file"
