"""`guanjia check` for the `accounts:` section: the factor set exists and loads, the buildings
it names are buildings of the devices, the data rooms' meters are meters of the site, and each
baseline belongs to a building it describes. Each problem is one line: file, line, key path and
the fix, before anything connects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from accounts.factors import FACTORS_DIR, available, data_file, load_factors
from core.text import suggest
from gateway.config_errors import ConfigError, Problem

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


def device_kinds(devices: Iterable[Any], profiles: Mapping[str, Any]) -> dict[str, str | None]:
    """Each device's kind: its own `kind:`, else its profile's (None: the profile did not load)."""
    return {
        d.id: d.kind or (profiles[d.profile].kind if d.profile in profiles else None)
        for d in devices
    }


def check_accounts(
    site: Any,
    kinds: Mapping[str, str | None],
    base_dir: Path,
    report: Report,
    problems: list[Problem],
) -> None:
    """`kinds`: each device id's kind (None when its profile did not load, already reported).
    Problems in the factor file itself are added with that file's own lines."""
    accounts = site.accounts
    if accounts is None:
        return
    _check_factors(accounts.factors, base_dir, report, problems)

    tagged = {
        building
        for d in site.devices
        if (building := {**site.site.tags, **d.tags}.get("building")) is not None
    }
    for name in accounts.buildings:
        if name not in tagged:
            report(
                ("accounts", "buildings", name),
                f"no device has the tag building: {name}"
                + (f" (the devices' buildings: {', '.join(sorted(tagged))})" if tagged else "")
                + f"; tag its devices building: {name} (or site.tags) or use their building's name"
                + suggest(name, tagged),
            )

    for name in accounts.baselines:
        if name not in accounts.buildings:
            report(
                ("accounts", "baselines", name),
                f"'{name}' is not under accounts.buildings; add accounts.buildings.{name} "
                "(its area and headcount are needed) or fix the name"
                + suggest(name, accounts.buildings),
            )

    for room, spec in accounts.data_rooms.items():
        for side in ("facility", "it"):
            for i, device_id in enumerate(getattr(spec, side)):
                loc: Loc = ("accounts", "data_rooms", room, side, i)
                if device_id not in kinds:
                    report(
                        loc,
                        f"no device '{device_id}' in devices:; name the id of the room's meter"
                        + suggest(device_id, kinds),
                    )
                elif kinds[device_id] not in (None, "meter"):
                    report(
                        loc,
                        f"'{device_id}' is a {kinds[device_id]}, not a meter; "
                        "name the meter that measures the room's "
                        + ("total" if side == "facility" else "IT load (UPS output)"),
                    )


def _check_factors(name: str, base_dir: Path, report: Report, problems: list[Problem]) -> None:
    path = data_file(name, base_dir)
    if not path.is_file():
        names = available()
        is_path = path.parent != FACTORS_DIR
        report(
            ("accounts", "factors"),
            f"no factor file {path}; check the path (relative to the site file)"
            if is_path
            else f"no factor set '{name}' in {FACTORS_DIR}; name one of its sets "
            f"({', '.join(names) or 'none'}) or give the path of your own file"
            + suggest(name, names),
        )
        return
    try:
        load_factors(name, base_dir)
    except ConfigError as exc:
        problems.extend(exc.problems)
