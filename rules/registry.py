"""Every rule kind, registered in one place: `kind` name -> class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rules.kinds.ac_policy import AcPolicyRule
from rules.kinds.ac_room import AcRoomTemperatureRule
from rules.kinds.demand_response import DemandResponseRule
from rules.kinds.energy import (
    AfterHoursConsumptionRule,
    CounterRule,
    InverterFaultRule,
    MeterOfflineRule,
    MeterStuckRule,
    PvUnderperformanceRule,
    QuotaPaceRule,
    ThresholdRule,
)
from rules.kinds.facility import PueRule, WaterLeakRule
from rules.kinds.hvac import AcAfterHoursRule, AcWindowOpenRule
from rules.kinds.patrol import PatrolRule
from rules.kinds.security import (
    AfterHoursAccessRule,
    CameraRule,
    DoorForcedRule,
    DoorHeldOpenRule,
    InvalidCardsRule,
    SafetyInputRule,
)
from rules.kinds.vehicles import SpeedingRule, UnknownPlateRule
from rules.model import Rule

KINDS: dict[str, type[Rule]] = {
    cls.kind: cls
    for cls in (
        AcPolicyRule,
        AcAfterHoursRule,
        AcWindowOpenRule,
        AcRoomTemperatureRule,
        DemandResponseRule,
        ThresholdRule,
        MeterOfflineRule,
        MeterStuckRule,
        CounterRule,
        AfterHoursConsumptionRule,
        QuotaPaceRule,
        PvUnderperformanceRule,
        InverterFaultRule,
        WaterLeakRule,
        PueRule,
        DoorForcedRule,
        DoorHeldOpenRule,
        InvalidCardsRule,
        AfterHoursAccessRule,
        CameraRule,
        SafetyInputRule,
        SpeedingRule,
        UnknownPlateRule,
        PatrolRule,
    )
}


def build_rule(entry: Mapping[str, Any]) -> Rule:
    """A rule from its site-file entry {id, kind, ...params}; raises KeyError or
    pydantic.ValidationError (the loader turns both into one-line config errors)."""
    params = {k: v for k, v in entry.items() if k not in ("id", "kind")}
    cls = KINDS[str(entry["kind"])]
    return cls(str(entry["id"]), cls.Params.model_validate(params))


def build_rules(entries: Sequence[Mapping[str, Any]]) -> list[Rule]:
    return [build_rule(e) for e in entries]
