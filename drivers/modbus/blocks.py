"""A profile's repeated blocks and register numbering, unrolled into plain 0-based points.

Datasheets number registers three ways: from 0 as on the wire (PDU addresses), from 1
("register 1" is address 0), and in Modicon notation, where the first digit names the table
(40001 is holding register 0, 30001 input register 0, 400001 the six-digit form). They also
describe one layout repeated for every PV string, phase or indoor unit, at a fixed stride. Both
are input conveniences: the profile model unrolls them at load time (`unroll`), so the planner,
the codec and the simulator only ever see plain points with 0-based PDU addresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from drivers.modbus.profile import (
    Addressing,
    Block,
    BlockPoint,
    Function,
    Hole,
    Loc,
    Point,
    Profile,
)

# Modicon's first digit: the table. 2 was never assigned.
MODICON_TABLES: Mapping[int, Function] = {
    0: Function.COIL,
    1: Function.DISCRETE,
    3: Function.INPUT,
    4: Function.HOLDING,
}
HIGHEST_ADDRESS = 65535


def pdu_address(address: int, addressing: Addressing) -> tuple[Function | None, int]:
    """The table a written register number implies (Modicon only) and its 0-based address.

    Raises ValueError saying why the number is no register of that numbering and what to write.
    """
    if addressing is Addressing.PDU:
        if address > HIGHEST_ADDRESS:
            raise ValueError(
                f"{address} is past 65535; Modicon numbers (40001, 300001) need "
                "`addressing: modicon` at the top of the profile"
            )
        return None, address
    if addressing is Addressing.ONE_BASED:
        if not 1 <= address <= HIGHEST_ADDRESS + 1:
            raise ValueError(
                f"{address} is no register number with `addressing: one_based` (1 .. 65536: "
                "register 1 is address 0)"
            )
        return None, address - 1
    six_digits = address >= 100_000
    table, number = divmod(address, 100_000 if six_digits else 10_000)
    last = HIGHEST_ADDRESS + 1 if six_digits else 9999
    if table not in MODICON_TABLES or not 1 <= number <= last:
        raise ValueError(
            f"{address} is no Modicon register number: 1-9999 are coils, 10001-19999 discrete "
            "inputs, 30001-39999 input and 40001-49999 holding registers (six digits: "
            "100001-165536, 300001-365536, 400001-465536)"
        )
    return MODICON_TABLES[table], number - 1


@dataclass(frozen=True, slots=True)
class Unrolled:
    """A profile's points and holes as plain 0-based points, and where each is written."""

    points: list[Point]
    origins: list[Loc]  # per point: its key path in the file (a block's template for copies)
    holes: list[Hole]
    problems: list[tuple[Loc, str]]


def _placed(
    name: str,
    address: int,
    function: Function | None,
    addressing: Addressing,
    at: Loc,
    problems: list[tuple[Loc, str]],
) -> tuple[Function | None, int] | None:
    """A written address as (explicit or implied table, 0-based address); None if wrong."""
    try:
        implied, pdu = pdu_address(address, addressing)
    except ValueError as exc:
        problems.append(((*at, "address"), f"point {name!r}: {exc}"))
        return None
    if implied is not None and function is not None and implied is not function:
        problems.append(
            (
                (*at, "function"),
                f"point {name!r}: address {address} is a {implied.value} register in Modicon "
                f"notation but `function: {function.value}` says otherwise; correct the "
                "address or remove `function`",
            )
        )
        return None
    return implied or function, pdu


def _per_table(value: int | Mapping[Function, int], function: Function) -> int | None:
    if isinstance(value, int):
        return value
    return value.get(function)


def _unroll_block(
    profile: Profile, b: int, block: Block, problems: list[tuple[Loc, str]]
) -> tuple[list[Point], list[Loc]]:
    at: Loc = ("blocks", b)
    default_type = profile.defaults.type
    firsts: list[tuple[int, BlockPoint, Function, int]] = []  # index, template, table, address
    for j, template in enumerate(block.points):
        placed = _placed(
            template.name,
            template.address,
            template.function,
            profile.addressing,
            (*at, "points", j),
            problems,
        )
        if placed is None:
            continue
        function = placed[0] or profile.defaults.function
        stride = _per_table(block.stride, function)
        if stride is None:  # a stride per table, none for this one
            tables = (
                ", ".join(f.value for f in block.stride) if isinstance(block.stride, dict) else ""
            )
            problems.append(
                (
                    (*at, "stride"),
                    f"the block's point {template.name!r} is in {function.value} registers and "
                    f"`stride` gives only {tables}; add `{function.value}: <registers>`",
                )
            )
            continue
        base = _per_table(block.base, function) or 0
        firsts.append((j, template, function, base + placed[1]))
    # Copies must not overlap: each table's stride covers the block's span in that table.
    spans: dict[Function, tuple[int, int]] = {}
    for _, template, function, address in firsts:
        end = address + template.registers(default_type) - 1
        low, high = spans.get(function, (address, end))
        spans[function] = (min(low, address), max(high, end))
    for function, (low, high) in spans.items():
        stride = _per_table(block.stride, function) or 0
        if block.count > 1 and stride < high - low + 1:
            problems.append(
                (
                    (*at, "stride"),
                    f"the block's {function.value} registers span {high - low + 1} "
                    f"({low}..{high} for the first copy) but the stride is {stride}: the "
                    "copies would overlap; check `stride` against the datasheet",
                )
            )
    points: list[Point] = []
    origins: list[Loc] = []
    last = block.count - 1
    fits = True
    for _, template, function, address in firsts:
        stride = _per_table(block.stride, function) or 0
        end = address + last * stride + template.registers(default_type) - 1
        if end > HIGHEST_ADDRESS:
            fits = False
            problems.append(
                (
                    (*at, "count"),
                    f"copy {block.first + last} of point {template.name!r} would end at "
                    f"register {end}, past 65535; check `count`, `stride` and `base`",
                )
            )
    if not fits:
        return points, origins
    for k in range(block.count):
        n = str(block.first + k)
        for j, template, function, address in firsts:
            stride = _per_table(block.stride, function) or 0
            # Validated as a template: only the name, address and table change, and a name
            # matching the template's pattern stays a valid point name with any number in it.
            copy = template.model_copy(
                update={
                    "name": template.name.replace("{n}", n),
                    "description": template.description.replace("{n}", n),
                    "address": address + k * stride,
                    "function": function,
                }
            )
            points.append(copy)
            origins.append((*at, "points", j))
    return points, origins


def unroll(profile: Profile) -> Unrolled:
    """The profile's points and every block's copies, with 0-based PDU addresses (tables made
    explicit where Modicon numbers imply them), and its holes likewise."""
    problems: list[tuple[Loc, str]] = []
    points: list[Point] = []
    origins: list[Loc] = []
    plain = profile.addressing is Addressing.PDU
    for i, p in enumerate(profile.points):
        at: Loc = ("points", i)
        placed = _placed(p.name, p.address, p.function, profile.addressing, at, problems)
        if placed is None:
            continue
        function, address = placed
        if not plain:
            p = p.model_copy(update={"function": function, "address": address})
        points.append(p)
        origins.append(at)
    for b, block in enumerate(profile.blocks):
        copies, where = _unroll_block(profile, b, block, problems)
        points += copies
        origins += where
    holes: list[Hole] = []
    for h, hole in enumerate(profile.holes):
        at = ("holes", h)
        ends = []
        for key in ("start", "end"):
            written = getattr(hole, key)
            try:
                implied, pdu = pdu_address(written, profile.addressing)
            except ValueError as exc:
                problems.append(((*at, key), f"hole: {exc}"))
                continue
            if implied is not None and implied is not hole.function:
                problems.append(
                    (
                        (*at, key),
                        f"hole: {written} is a {implied.value} register in Modicon notation, "
                        f"the hole is in {hole.function.value} registers; correct one of them",
                    )
                )
                continue
            ends.append(pdu)
        if len(ends) == 2:
            start, end = ends
            holes.append(hole if plain else hole.model_copy(update={"start": start, "end": end}))
    if not points and not problems:
        problems.append((("points",), "the profile has no points; add `points:` or `blocks:`"))
    return Unrolled(points, origins, holes, problems)


def located_error(title: str, problems: Sequence[tuple[Loc, str]]) -> ValidationError:
    """Problems as one ValidationError in which each keeps its own key path (and so its line
    in the file), where a ValueError raised by a model validator would point at the top."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": text}),
                loc=loc,
                input=None,
            )
            for loc, text in problems
        ],
    )
