"""rules.numbers: what every rule kind makes of a reading's value, written once."""

from __future__ import annotations

import math

import pytest

from rules.model import DeviceInfo, PointInfo
from rules.numbers import as_float, close, finite, integer, optional_float, within

HUGE = 10**400  # a JSON integer may be this long; float() of it overflows


@pytest.mark.parametrize(
    ("value", "as_a_float", "as_finite"),
    [
        (21, 21.0, 21.0),
        (21.5, 21.5, 21.5),
        (-0.0, 0.0, 0.0),
        (True, None, None),  # a state, not the number 1
        (False, None, None),
        ("21", None, None),  # text stays text
        (None, None, None),
        (math.inf, math.inf, None),
        (-math.inf, -math.inf, None),
        (HUGE, math.inf, None),
        (-HUGE, -math.inf, None),
    ],
)
def test_a_value_as_a_number(
    value: object, as_a_float: float | None, as_finite: float | None
) -> None:
    assert as_float(value) == as_a_float
    assert finite(value) == as_finite


def test_nan_is_a_float_but_not_finite() -> None:
    nan = as_float(math.nan)
    assert nan is not None
    assert math.isnan(nan)
    assert finite(math.nan) is None


@pytest.mark.parametrize(
    ("value", "code"), [(768, 768), (0, 0), (True, None), (7.0, None), ("7", None), (None, None)]
)
def test_integer_codes(value: object, code: int | None) -> None:
    assert integer(value) == code


def test_optional_float() -> None:
    assert optional_float(None) is None
    assert optional_float(3) == 3.0
    assert optional_float("1.5") == 1.5  # a stored row may hold text


@pytest.mark.parametrize(
    ("a", "b", "tolerance", "expected"),
    [
        (26.0, 26.04, 0.05, True),
        (26.0, 26.1, 0.05, False),
        (1.0, 1.0, 0.0, True),
        (1.0, 1.0000001, 0.0, False),
        (math.inf, math.inf, 0.1, True),
        (math.inf, -math.inf, 0.1, False),
    ],
)
def test_close(a: float, b: float, tolerance: float, expected: bool) -> None:
    assert close(a, b, tolerance) is expected


def test_within_a_writable_range() -> None:
    unit = DeviceInfo(
        "ac-1",
        "hvac",
        "coolmaster_indoor",
        points={"setpoint_degc": PointInfo("degC", 16, 32), "room_degc": PointInfo("degC")},
    )
    bounds = unit.writable_range("setpoint_degc")
    assert bounds == (16, 32)
    assert within(16, bounds)
    assert within(32, bounds)
    assert not within(32.5, bounds)
    assert not within(15.9, bounds)
    assert unit.writable_range("room_degc") is None  # read-only
    assert unit.writable_range("no_such_point") is None
    assert not within(20, unit.writable_range("room_degc"))
