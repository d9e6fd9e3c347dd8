"""Numbers in rules, written once: a reading's Value as a number, and the comparisons and
ranges rules judge numbers by.

A Value is float | int | bool | str. A bool is a state, never the number 1 (True == 1 in
Python); text is not parsed here (profiles decode numbers, so "12" is text on purpose).
"""

from __future__ import annotations

import math
from typing import Any


def as_float(value: object) -> float | None:
    """The value as a float if it is a number, NaN and infinities included; None for
    booleans, text and None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer past float's range (JSON integers have no bound)
        return math.inf if value > 0 else -math.inf


def finite(value: object) -> float | None:
    """The value as a finite float, the only kind a rule compares with a limit; None for
    booleans, text, None, NaN and infinities."""
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else None


def integer(value: object) -> int | None:
    """The value if it is an integer (a fault code, a bitfield); None for booleans, floats
    and text."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def optional_float(value: Any) -> float | None:
    """A time or value read back from a snapshot or a stored row: None stays None."""
    return None if value is None else float(value)


def close(a: float, b: float, tolerance: float) -> bool:
    """a and b differ by at most `tolerance` (0: equal; an infinity is close to itself)."""
    return a == b or abs(a - b) <= tolerance


def within(value: float, bounds: tuple[float, float] | None) -> bool:
    """low <= value <= high; False without bounds (a point that cannot be written)."""
    return bounds is not None and bounds[0] <= value <= bounds[1]
