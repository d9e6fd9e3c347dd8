"""The indicators an energy manager reports: intensity against GB/T 51161, per-person energy
and water, standard coal by carrier, carbon, the year against last year and against the 2020
baseline's five-year targets, PV and data-room PUE.

Pure functions on plain numbers (period totals from the `energy` measurement) and the config,
factor and standard models; no I/O. Every number about standards and factors comes from those
models, none from here. A figure that cannot be formed (no area, no headcount, nothing
generated) is None, never a made-up zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from accounts.config import Baseline, BuildingInfo
from accounts.factors import FactorSet
from accounts.standards import (
    EnergyStandard,
    FiveYearTargets,
    Indicator,
    Owner,
    UseCorrection,
)


@dataclass(frozen=True, slots=True)
class Amount:
    """A quantity of a carrier, in a unit its factors know (kWh, MWh, m3, GJ, kg, ...)."""

    carrier: str
    quantity: float
    unit: str


def ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator, or None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


def per_m2(amount: float, area_m2: float | None) -> float | None:
    return ratio(amount, area_m2)


def per_person(amount: float, headcount: int | None) -> float | None:
    """Energy (kgce, kWh) or water (m³) per person; None without a headcount."""
    return ratio(amount, headcount)


# --- GB/T 51161 -----------------------------------------------------------------------------


def corrected_intensity(
    kwh_per_m2: float, correction: UseCorrection, owner: Owner, hours_per_year: float
) -> float:
    """A measured kWh/(m²·a) brought to the standard's reference operating hours: a building
    used longer than the reference gets a lower corrected value."""
    h = correction.hours_fixed_share
    return kwh_per_m2 * (h + (1 - h) * correction.reference_hours[owner] / hours_per_year)


Verdict = Literal["guide", "constraint", "over"]


@dataclass(frozen=True, slots=True)
class LimitComparison:
    """A building's year against its row of the office table."""

    measured: float  # kWh/(m²·a)
    corrected: float  # at the reference hours (= measured without hours or a correction)
    constraint: float
    guide: float
    verdict: Verdict  # guide: at or below the guide value; constraint: at or below it; over
    share_of_constraint: float  # corrected / constraint
    standard: str  # the standard file's name and version
    verified: bool  # false: the table (or its correction) is not confirmed


def against_office_limits(
    non_heating_kwh: float,
    building: BuildingInfo,
    standard: EnergyStandard,
    hours_per_year: float | None = None,
) -> LimitComparison:
    """A year's non-heating energy use (all carriers as kWh, heating excluded) against the
    constraint and guide values of the building's class, owner and climate zone; corrected
    to the standard's reference hours when the building's hours a year are given. The
    standard counts other carriers (gas) as electricity by a conversion not recorded in this
    project's data: give electricity, or convert the others first and say how."""
    row = standard.office_limit(building.building_class, building.owner, building.climate_zone)
    measured = non_heating_kwh / building.area_m2
    corrected, verified = measured, standard.verified
    if standard.correction is not None and hours_per_year:
        corrected = corrected_intensity(
            measured, standard.correction, building.owner, hours_per_year
        )
        verified = verified and standard.correction.verified
    verdict: Verdict = (
        "guide"
        if corrected <= row.guide
        else "constraint"
        if corrected <= row.constraint
        else "over"
    )
    return LimitComparison(
        measured=measured,
        corrected=corrected,
        constraint=row.constraint,
        guide=row.guide,
        verdict=verdict,
        share_of_constraint=corrected / row.constraint,
        standard=f"{standard.name} {standard.version}",
        verified=verified,
    )


# --- standard coal and carbon ---------------------------------------------------------------


def kgce_by_carrier(amounts: Iterable[Amount], factors: FactorSet) -> dict[str, float]:
    """Standard coal by carrier (water, having none, is 0); the amounts of a carrier add up."""
    out: dict[str, float] = {}
    for a in amounts:
        out[a.carrier] = out.get(a.carrier, 0.0) + a.quantity * factors.kgce_per(a.carrier, a.unit)
    return out


@dataclass(frozen=True, slots=True)
class CarbonAccount:
    """tCO₂ of a building and period by carrier, with the factor set that produced it."""

    by_carrier: Mapping[str, float]  # tCO₂; electricity is the grid import only
    total_t: float
    factor_set: str  # e.g. "cn-2023/east"
    unverified: tuple[str, ...]  # factors used that are not confirmed in a primary source


def carbon(
    grid_import_kwh: float,
    other: Iterable[Amount],
    factors: FactorSet,
    year: int,
    region: str,
) -> CarbonAccount:
    """Carbon of a period: electricity drawn from the grid (consumption net of PV
    self-consumption, which emits nothing here; export is not subtracted but reported as
    carbon avoided), gas, purchased heat and fuels."""
    by: dict[str, float] = {
        "electricity": grid_import_kwh * factors.co2_kg_per("electricity", "kWh", year, region)
    }
    used = {"electricity"}
    for a in other:
        if a.carrier == "electricity":
            raise ValueError("give electricity as grid_import_kwh, not among the other amounts")
        by[a.carrier] = by.get(a.carrier, 0.0) + a.quantity * factors.co2_kg_per(
            a.carrier, a.unit, year, region
        )
        used.add(a.carrier)
    tonnes = {k: v / 1000.0 for k, v in by.items()}
    unverified = _unverified_co2(factors, used, year, region)
    return CarbonAccount(tonnes, sum(tonnes.values()), factors.label(region), unverified)


def _unverified_co2(
    factors: FactorSet, carriers: set[str], year: int, region: str
) -> tuple[str, ...]:
    out = []
    for name in sorted(carriers):
        c = factors.carrier(name)
        f = factors.grid_factor(year, region) if c.grid_co2_kg else c.co2_kg
        if f is not None and not f.verified:
            out.append(f"{name}.co2_kg")
    return tuple(out)


# --- PV and data rooms ----------------------------------------------------------------------


def pv_yield(generation_kwh: float, kwp: float | None) -> float | None:
    """kWh per kWp installed, over the period."""
    return ratio(generation_kwh, kwp)


def self_consumption(generation_kwh: float, export_kwh: float) -> float:
    """PV energy used on site: what was made and not sent to the grid."""
    return max(generation_kwh - export_kwh, 0.0)


def self_consumption_share(generation_kwh: float, export_kwh: float) -> float | None:
    """The share of the PV energy used on site (0..1); None when nothing was made."""
    return ratio(self_consumption(generation_kwh, export_kwh), generation_kwh)


def consumption_kwh(import_kwh: float, generation_kwh: float, export_kwh: float) -> float:
    """Electricity the building used: from the grid plus its own PV, less what it sent out."""
    return import_kwh + generation_kwh - export_kwh


def carbon_avoided_t(generation_kwh: float, factors: FactorSet, year: int, region: str) -> float:
    """tCO₂ the grid would have emitted for the PV energy (used on site or exported)."""
    return generation_kwh * factors.co2_kg_per("electricity", "kWh", year, region) / 1000.0


def pue(facility_kwh: float, it_kwh: float) -> float | None:
    """Power usage effectiveness of a data room: its total over its IT load."""
    return ratio(facility_kwh, it_kwh)


# --- against last year and the baseline -----------------------------------------------------


def change(now: float, before: float | None) -> float | None:
    """The change as a fraction of the earlier value (-0.05: five per cent lower)."""
    return None if before is None else ratio(now - before, before)


@dataclass(frozen=True, slots=True)
class TargetPace:
    """An indicator's year against the baseline year and the target's straight-line pace."""

    indicator: Indicator
    baseline: float
    now: float
    change: float  # since the baseline year, fraction
    allowed: float  # the change the pace asks for by now (the target once its year is past)
    target: float  # the change asked for by the target year
    on_track: bool  # change at or below the pace


def target_pace(
    indicator: Indicator, now: float, baseline: float, year: int, targets: FiveYearTargets
) -> TargetPace:
    """Where `now` (the indicator's value in `year`) stands against `baseline` (its value in
    the baseline year) and the straight line from there to the target."""
    target = targets.targets[indicator]
    span = targets.target_year - targets.baseline_year
    elapsed = min(max(year - targets.baseline_year, 0), span)
    allowed = target * elapsed / span
    moved = (now - baseline) / baseline
    return TargetPace(indicator, baseline, now, moved, allowed, target, moved <= allowed)


def baseline_value(
    indicator: Indicator,
    baseline: Baseline,
    building: BuildingInfo,
    factors: FactorSet,
    region: str,
) -> float | None:
    """A baseline year's indicator: kgce per m² or per person, m³ water per person, kg CO₂
    per m². Area and headcount are the baseline's own, else the building's today. Total
    energy is the baseline's energy_kgce, else its carriers' standard coal; carbon its co2_t,
    else computed with the factor set for the baseline year (which must cover that year)."""
    area = baseline.area_m2 or building.area_m2
    heads = baseline.headcount if baseline.headcount is not None else building.headcount
    if indicator == "water_per_person":
        return None if baseline.water_m3 is None else per_person(baseline.water_m3, heads)
    amounts = [
        Amount(carrier, quantity, unit)
        for carrier, quantity, unit in (
            ("electricity", baseline.electricity_kwh, "kWh"),
            ("gas", baseline.gas_m3, "m3"),
            ("heat", baseline.heat_gj, "GJ"),
        )
        if quantity is not None
    ]
    if indicator == "co2_per_m2":
        if baseline.co2_t is not None:
            return per_m2(baseline.co2_t * 1000.0, area)
        if baseline.electricity_kwh is None:
            return None
        account = carbon(
            baseline.electricity_kwh,
            [a for a in amounts if a.carrier != "electricity"],
            factors,
            baseline.year,
            region,
        )
        return per_m2(account.total_t * 1000.0, area)
    kgce = baseline.energy_kgce
    if kgce is None:
        if not amounts:
            return None
        kgce = sum(kgce_by_carrier(amounts, factors).values())
    return per_m2(kgce, area) if indicator == "energy_per_m2" else per_person(kgce, heads)
