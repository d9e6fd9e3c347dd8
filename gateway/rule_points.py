"""Points the site's rules read that their devices' profiles do not have, and points they
write that the site's command allowlist refuses, for `guanjia check`.

A rule that reads `setpoint_degc` from a unit whose profile calls it `set_temp` never judges
that unit, and nothing fails: the device simply never breaks the rule. The names rules read by
default are the convention of drivers/POINT_NAMES.md; a profile that follows it needs no rule
parameters, one that doesn't is named here with the parameter that would fix it.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict

from gateway.alarm_service import device_infos
from gateway.config_load import LoadedSite
from rules.registry import build_rule


def missing_rule_points(loaded: LoadedSite) -> list[str]:
    """One warning per rule, parameter and profile whose devices lack what the rule reads."""
    devices = device_infos(loaded)
    warnings: list[str] = []
    for index, entry in enumerate(loaded.site.rules):
        rule = build_rule(entry)  # the site was validated: its rules build
        rule.bind(devices)
        # (parameter, names) -> profile -> devices of that profile lacking all the names
        lacking: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for device in rule.watched:
            for need in rule.reads(device):
                if not any(name in device.points for name in need.names):
                    lacking[(need.param, need.names)][device.profile].append(device.id)
        for (param, names), by_profile in lacking.items():
            for profile, ids in by_profile.items():
                shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
                wanted = " or ".join(f"'{n}'" for n in names)
                warnings.append(
                    f"rules[{index}] ({rule.id}, {rule.kind}) reads {wanted}, which profile "
                    f"'{profile}' of {shown} does not have: the rule cannot judge "
                    f"{'it' if len(ids) == 1 else 'them'}; name the point so in the profile "
                    f"(drivers/POINT_NAMES.md) or set `{param}` in the rule"
                )
    return warnings


def unwritable_rule_points(loaded: LoadedSite) -> list[str]:
    """One warning per rule and point it may write (an enforced limit, demand response) that
    `commands.allow` refuses: the write would be refused and audited, and the rule would act
    on nothing."""
    devices = device_infos(loaded)
    allow = loaded.site.commands.allow
    warnings: list[str] = []
    for index, entry in enumerate(loaded.site.rules):
        rule = build_rule(entry)
        rule.bind(devices)
        refused: dict[str, list[str]] = defaultdict(list)  # point -> devices
        for device in rule.watched:
            for point in rule.writes(device):
                target = f"{device.id}:{point}"
                if not any(fnmatch.fnmatchcase(target, pattern) for pattern in allow):
                    refused[point].append(device.id)
        for point, ids in refused.items():
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            warnings.append(
                f"rules[{index}] ({rule.id}, {rule.kind}) writes '{point}' of {shown}, which "
                f"commands.allow does not let anyone write: add '{ids[0]}:{point}' (or a "
                "pattern that covers them all) to commands.allow"
            )
    return warnings
