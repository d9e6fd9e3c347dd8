"""Derived points: values computed from a device's other points after each poll.

A datasheet often gives import and export power in two registers, or the three phases without
their total; the profile names the arithmetic (`sum`, `difference`, `product`, `ratio` of
named points) and the poller computes it from the decoded values, as data: nothing is
evaluated as code. A derived value is a float, and only as good as its inputs: one bad input
makes it bad (`input_bad`); an input not read in this poll leaves it out.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.types import Value


class Operation(enum.StrEnum):
    SUM = "sum"  # a + b + ...
    DIFFERENCE = "difference"  # a - b
    PRODUCT = "product"  # a × b × ...
    RATIO = "ratio"  # a / b


class Derived(BaseModel):
    """A value computed from other points of the device (or earlier derived ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Field name in InfluxDB, as for points; unit in the name where it helps.",
    )
    unit: str = Field(default="", description="Unit of the computed value.")
    description: str = Field(default="", description="What the value means, for people.")
    sum: list[str] | None = Field(
        default=None, min_length=2, description="Points added up, e.g. the three phases."
    )
    difference: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[a, b]: a - b, e.g. [import_power_w, export_power_w] for the grid power.",
    )
    product: list[str] | None = Field(
        default=None, min_length=2, description="Points multiplied together."
    )
    ratio: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[a, b]: a / b; bad (`division_by_zero`) when b is 0.",
    )

    @model_validator(mode="after")
    def _one_operation(self) -> Derived:
        given = [op.value for op in Operation if getattr(self, op.value) is not None]
        if len(given) != 1:
            ops = ", ".join(op.value for op in Operation)
            what = "none" if not given else " and ".join(given)
            raise ValueError(f"give exactly one operation of {ops} (given: {what})")
        return self

    @property
    def operation(self) -> Operation:
        return next(op for op in Operation if getattr(self, op.value) is not None)

    @property
    def inputs(self) -> list[str]:
        inputs: list[str] = getattr(self, self.operation.value)
        return inputs


@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """A derived point as the poller computes it."""

    name: str
    operation: Operation
    inputs: tuple[str, ...]
    unit: str = ""

    @classmethod
    def of(cls, derived: Derived) -> DerivedSpec:
        return cls(derived.name, derived.operation, tuple(derived.inputs), derived.unit)


def needed(derived: Sequence[Derived], wanted: set[str]) -> set[str]:
    """``wanted`` and every point the derived ones among them read, through derived inputs."""
    by_name = {d.name: d for d in derived}
    out = set(wanted)
    todo = [name for name in wanted if name in by_name]
    while todo:
        for name in by_name[todo.pop()].inputs:
            if name not in out:
                out.add(name)
                if name in by_name:
                    todo.append(name)
    return out


def compute(
    specs: Sequence[DerivedSpec],
    values: MutableMapping[str, Value],
    bad: MutableMapping[str, str],
) -> None:
    """Add the derived values of one poll to its decoded ``values`` and ``bad`` points, in the
    profile's order (a derived point may read an earlier one)."""
    for spec in specs:
        numbers: list[float] = []
        reason = ""
        for name in spec.inputs:
            value = values.get(name)
            if value is None:
                reason = "input_bad" if name in bad else "missing"
                break
            numbers.append(float(value))
        if reason == "missing":
            continue  # not read in this poll: not reported, as a point that was not read
        if reason:
            bad[spec.name] = reason
            continue
        result = _apply(spec.operation, numbers)
        if result is None:
            bad[spec.name] = "division_by_zero"
        elif not math.isfinite(result):
            bad[spec.name] = "nan"
        else:
            values[spec.name] = result


def _apply(operation: Operation, numbers: Sequence[float]) -> float | None:
    if operation is Operation.SUM:
        return math.fsum(numbers)
    if operation is Operation.DIFFERENCE:
        return numbers[0] - numbers[1]
    if operation is Operation.PRODUCT:
        return math.prod(numbers)
    return None if numbers[1] == 0 else numbers[0] / numbers[1]


def explain(reason: str) -> str | None:
    """A derived point's bad reason in words, or None when it is not one of ours."""
    return _REASONS.get(reason)


_REASONS: Mapping[str, str] = {
    "input_bad": "one of the points it is computed from is bad",
    "division_by_zero": "the ratio's divisor is 0",
}
