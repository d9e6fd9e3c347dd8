"""Checks of the points a profile's points name: `scale_by` ratios and derived points' inputs.

Both are read in the same poll as the points that use them, so they must exist, be numbers,
and (for scale_by) hold a plain reading: a ratio scaled by another ratio, or a written value
scaled by a register the device may change, is refused rather than guessed at.
"""

from __future__ import annotations

from core.text import suggest
from drivers.modbus.profile import Loc, Profile

# Types whose value is no number to multiply or add (a datetime is A1's packed date).
_NOT_NUMBERS = frozenset({"bool", "string", "datetime"})


def reference_problems(profile: Profile) -> list[tuple[Loc, str]]:
    """Each problem at the key that names the wrong point, with the fix."""
    problems: list[tuple[Loc, str]] = []
    default_type = profile.defaults.type
    types = {p.name: (p.type or default_type).value for p in profile.points}
    ratios = {p.name for p in profile.points if p.scale_by}
    for i, p in enumerate(profile.points):
        if not p.scale_by:
            continue
        at: Loc = (*profile.origin(i), "scale_by")
        if types[p.name] in _NOT_NUMBERS:
            problems.append((at, f"point {p.name!r} is {types[p.name]}; remove `scale_by`"))
        if p.scale_factor is not None:
            problems.append((at, f"point {p.name!r} has a scale_factor too; keep one of them"))
        if p.writable is not None:
            problems.append(
                (
                    at,
                    f"point {p.name!r} is scaled by other registers and cannot be writable; "
                    "remove `writable` or `scale_by`",
                )
            )
        for j, name in enumerate(p.scale_by):
            if name == p.name:
                problems.append(((*at, j), f"point {p.name!r} cannot scale itself"))
            elif name not in types:
                problems.append(
                    (
                        (*at, j),
                        f"point {p.name!r}: scale_by names no point {name!r}"
                        + suggest(name, types),
                    )
                )
            elif types[name] in _NOT_NUMBERS:
                problems.append(
                    ((*at, j), f"point {p.name!r}: {name!r} is {types[name]}, not a number")
                )
            elif name in ratios:
                problems.append(
                    (
                        (*at, j),
                        f"point {p.name!r}: {name!r} has a `scale_by` of its own; name the "
                        "ratios themselves",
                    )
                )
    known: set[str] = set()
    later = {d.name for d in profile.derived}
    for k, derived in enumerate(profile.derived):
        at = ("derived", k)
        if derived.name in types:
            problems.append(
                ((*at, "name"), f"{derived.name!r} is already a point's name; rename one")
            )
        elif derived.name in known:
            problems.append(((*at, "name"), f"derived point {derived.name!r} appears twice"))
        for j, name in enumerate(derived.inputs):
            where: Loc = (*at, derived.operation.value, j)
            if name == derived.name:
                problems.append((where, f"{derived.name!r} cannot be computed from itself"))
            elif name in types and types[name] in _NOT_NUMBERS:
                problems.append((where, f"{name!r} is {types[name]}, not a number"))
            elif name in later and name not in known:
                problems.append(
                    (where, f"{name!r} is derived further down; list it before {derived.name!r}")
                )
            elif name not in types and name not in known:
                problems.append(
                    (where, f"no point {name!r} to compute from" + suggest(name, [*types, *known]))
                )
        known.add(derived.name)
    return problems
