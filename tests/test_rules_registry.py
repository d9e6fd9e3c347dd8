"""Every rule kind names its parameters once, as the type argument of its base: the registry
validates a site entry with that model and the rule holds it, typed, as self.params."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from rules.model import Rule, RuleParams
from rules.registry import KINDS, build_rule


def declared_params(cls: type[Rule]) -> list[type[RuleParams]]:
    return [
        arg
        for base in getattr(cls, "__orig_bases__", ())
        for arg in get_args(base)
        if isinstance(arg, type) and issubclass(arg, RuleParams)
    ]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_params_come_from_the_type_argument(kind: str) -> None:
    cls = KINDS[kind]
    assert declared_params(cls) == [cls.Params]
    assert cls.Params is not RuleParams
    assert cls.kind == kind
    with pytest.raises(ValidationError) as refused:
        build_rule({"id": "r", "kind": kind, "no_such_parameter": 1})
    assert {e["type"] for e in refused.value.errors() if e["loc"] == ("no_such_parameter",)} == {
        "extra_forbidden"
    }


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("ac_policy", {}),
        ("threshold", {"point": "active_power_w", "above": 1000}),
        ("door_forced", {}),
        ("inverter_fault", {}),
    ],
)
def test_a_built_rule_holds_its_kinds_params(kind: str, params: dict[str, object]) -> None:
    rule = build_rule({"id": "r", "kind": kind, **params})
    assert type(rule.params) is KINDS[kind].Params


def test_a_kind_without_a_type_argument_keeps_the_shared_params() -> None:
    class Bare(Rule):
        kind = "bare"

        def describe(self) -> str:
            return "bare"

    assert Bare.Params is RuleParams
    assert Bare("b", RuleParams()).params == RuleParams()
