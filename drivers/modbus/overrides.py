"""A site's correction of the table its device's registers are read from.

Sources disagree between models and firmware versions: one meter series answers its
measurements as input registers (FC 04), a later one as holding registers (FC 03), with the
same addresses. The site file says so per device (`function_overrides` in its `modbus:`
block): by table (`{input: holding}` moves every input register point) or by point
(`{voltage_l1_v: holding}`), a point's own entry winning. Applied when the device's plan is
built; checked with the site, before anything connects.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.modbus.profile import Function, Loc, Profile

Overrides = Mapping[str, Function]


def override_problems(profile: Profile, overrides: Overrides) -> list[tuple[Loc, str]]:
    """Each wrong entry at its key (relative to `function_overrides`), with the fix."""
    problems: list[tuple[Loc, str]] = []
    tables = {f.value for f in Function}
    names = {p.name for p in profile.points}
    for key, target in overrides.items():
        if key not in tables and key not in names:
            problems.append(
                (
                    (key,),
                    f"'{key}' is neither a table ({', '.join(sorted(tables))}) nor a point of "
                    f"profile {profile.name}",
                )
            )
        elif key in tables and Function(key).is_bit != target.is_bit:
            problems.append(
                (
                    (key,),
                    f"{key} and {target.value} hold different things (bits and registers); "
                    "override registers with registers, bits with bits",
                )
            )
    if problems:
        return problems
    moved = apply_overrides(profile, overrides)
    for p in moved.points:
        written = profile.point(p.name).function or profile.defaults.function
        func = p.function or profile.defaults.function
        if func is written:
            continue
        key = p.name if p.name in overrides else written.value
        if func.is_bit != written.is_bit:
            problems.append(
                (
                    (key,),
                    f"point {p.name!r} is a {written.value}; it cannot be read as {func.value}",
                )
            )
        elif p.writable is not None and func in (Function.INPUT, Function.DISCRETE):
            problems.append(
                (
                    (key,),
                    f"point {p.name!r} is writable, and {func.value} registers are read-only; "
                    f"override the read-only points one by one ({{point: {func.value}}}) instead",
                )
            )
    return problems + _overlaps(profile, moved, overrides)


def _overlaps(profile: Profile, moved: Profile, overrides: Overrides) -> list[tuple[Loc, str]]:
    """A point moved onto registers that a point of another table already uses there; the
    first one found is enough to show the override cannot stand as it is."""
    default_type = profile.defaults.type
    tables: dict[Function, list[tuple[int, int, str, Function]]] = {}
    for p in moved.points:
        written = profile.point(p.name).function or profile.defaults.function
        end = p.address + p.registers(default_type) - 1
        tables.setdefault(p.function or written, []).append((p.address, end, p.name, written))
    for func, spans in tables.items():
        spans.sort()
        for i, first in enumerate(spans):
            for second in spans[i + 1 :]:
                if second[0] > first[1]:
                    break
                if first[3] is second[3]:
                    continue  # as the profile has them (bits of one register)
                mover, other = (first, second) if first[3] is not func else (second, first)
                key = mover[2] if mover[2] in overrides else mover[3].value
                message = (
                    f"point {mover[2]!r} read from {func.value} registers {mover[0]}..{mover[1]} "
                    f"would share them with {other[2]!r}; override single points instead"
                )
                return [((key,), message)]
    return []


def apply_overrides(profile: Profile, overrides: Overrides) -> Profile:
    """The profile with the site's tables: points, and the holes of a table moved whole."""
    if not overrides:
        return profile
    points = []
    for p in profile.points:
        written = p.function or profile.defaults.function
        target = overrides.get(p.name) or overrides.get(written.value)
        points.append(p if target is None else p.model_copy(update={"function": target}))
    holes = [
        h
        if h.function.value not in overrides
        else h.model_copy(update={"function": overrides[h.function.value]})
        for h in profile.holes
    ]
    return profile.model_copy(update={"points": points, "holes": holes})
