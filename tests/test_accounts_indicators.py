"""The indicators on figures worked out by hand here, from the published factors (cn-2023) and
a small office table written in the test, so the arithmetic is checked and not the table."""

from __future__ import annotations

import pytest

from accounts.config import Baseline, BuildingInfo
from accounts.factors import FactorError, FactorSet, load_factors
from accounts.indicators import (
    Amount,
    against_office_limits,
    baseline_value,
    carbon,
    carbon_avoided_t,
    change,
    consumption_kwh,
    corrected_intensity,
    kgce_by_carrier,
    per_m2,
    per_person,
    pue,
    pv_yield,
    self_consumption,
    self_consumption_share,
    target_pace,
)
from accounts.standards import EnergyStandard, FiveYearTargets, OfficeLimit, UseCorrection

# The demo building: 42 000 m², 1 200 staff, class B government office in Shanghai.
MAIN = BuildingInfo(
    area_m2=42000,
    headcount=1200,
    building_class="B",
    owner="government",
    climate_zone="hot_summer_cold_winter",
    pv_kwp=200,
)
CORRECTION = UseCorrection(
    verified=True, hours_fixed_share=0.3, reference_hours={"government": 2500}
)
TABLE = EnergyStandard(
    name="test-table",
    version="1",
    source="written in the test",
    verified=True,
    unit="kWh/(m2·a)",
    office_non_heating=[
        OfficeLimit(
            building_class="B",
            owner="government",
            zones=["hot_summer_cold_winter"],
            constraint=90,
            guide=65,
        )
    ],
    correction=CORRECTION,
)
TARGETS = FiveYearTargets(
    name="test-plan",
    version="1",
    source="written in the test",
    verified=True,
    baseline_year=2020,
    target_year=2025,
    targets={"energy_per_m2": -0.05, "energy_per_person": -0.06, "co2_per_m2": -0.07},
)


@pytest.fixture(scope="module")
def cn() -> FactorSet:
    return load_factors("cn-2023")


# --- GB/T 51161 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwh", "intensity", "verdict"),
    [
        (2_520_000, 60.0, "guide"),  # 2 520 000 / 42 000 = 60 <= 65
        (2_730_000, 65.0, "guide"),  # exactly the guide value
        (3_150_000, 75.0, "constraint"),  # 65 < 75 <= 90
        (4_200_000, 100.0, "over"),  # 100 > 90
    ],
)
def test_intensity_against_the_office_table(kwh: float, intensity: float, verdict: str) -> None:
    result = against_office_limits(kwh, MAIN, TABLE)
    assert result.measured == pytest.approx(intensity)
    assert result.corrected == pytest.approx(intensity)  # no hours given: no correction
    assert (result.guide, result.constraint, result.verdict) == (65, 90, verdict)
    assert result.share_of_constraint == pytest.approx(intensity / 90)
    assert result.standard == "test-table 1"


def test_longer_hours_lower_the_corrected_value() -> None:
    # 75 kWh/(m²·a) in 3 000 h against the reference 2 500 h:
    # 75 x (0.3 + 0.7 x 2500 / 3000) = 75 x 0.883333... = 66.25
    result = against_office_limits(3_150_000, MAIN, TABLE, hours_per_year=3000)
    assert result.corrected == pytest.approx(66.25)
    assert result.verdict == "constraint"
    assert result.share_of_constraint == pytest.approx(66.25 / 90)
    # shorter hours raise it: 60 x (0.3 + 0.7 x 2500 / 2000) = 60 x 1.175 = 70.5
    assert corrected_intensity(60.0, CORRECTION, "government", 2000) == pytest.approx(70.5)


def test_an_unverified_table_says_so() -> None:
    unverified = TABLE.model_copy(update={"verified": False})
    assert against_office_limits(3_150_000, MAIN, unverified).verified is False
    assert against_office_limits(3_150_000, MAIN, TABLE).verified is True


def test_a_building_outside_the_table_is_told() -> None:
    mild = MAIN.model_copy(update={"climate_zone": "mild"})
    with pytest.raises(FactorError, match="no row for class B, government, mild"):
        against_office_limits(3_150_000, mild, TABLE)


# --- per person, standard coal, carbon ------------------------------------------------------


def test_per_person_and_per_m2() -> None:
    assert per_person(30_000, 1200) == 25.0  # m³ water a person
    assert per_person(30_000, None) is None
    assert per_person(30_000, 0) is None
    assert per_m2(840_000, 42000) == 20.0


def test_standard_coal_by_carrier(cn: FactorSet) -> None:
    kgce = kgce_by_carrier(
        [
            Amount("electricity", 100_000, "kWh"),  # 100 000 x 0.1229 = 12 290
            Amount("electricity", 2, "MWh"),  # 2 000 x 0.1229 = 245.8
            Amount("gas", 1_000, "m3"),  # 1 000 x 1.2143 = 1 214.3
            Amount("heat", 10, "GJ"),  # 10 x 34.12 = 341.2
            Amount("water", 500, "m3"),  # no standard coal
        ],
        cn,
    )
    assert kgce == pytest.approx(
        {"electricity": 12_535.8, "gas": 1_214.3, "heat": 341.2, "water": 0.0}
    )


def test_carbon_of_a_month(cn: FactorSet) -> None:
    account = carbon(
        100_000,  # from the grid: 100 000 kWh x 0.5500 kg/kWh (east, 2023) = 55 t
        [
            Amount("gas", 1_000, "m3"),  # 1 000 x 2.162 kg = 2.162 t
            Amount("heat", 10, "GJ"),  # 10 x 110 kg = 1.1 t
            Amount("diesel", 200, "kg"),  # 200 x 3.096 kg = 0.6192 t
        ],
        cn,
        2023,
        "east",
    )
    assert account.by_carrier == pytest.approx(
        {"electricity": 55.0, "gas": 2.162, "heat": 1.1, "diesel": 0.6192}
    )
    assert account.total_t == pytest.approx(58.8812)
    assert account.factor_set == "cn-2023/east"
    assert account.unverified == ("heat.co2_kg",)


def test_carbon_of_a_later_year_uses_the_latest_factor(cn: FactorSet) -> None:
    # 2026 has no factor yet: 2023's, 0.5306 nationally -> 10 000 kWh = 5.306 t
    assert carbon(10_000, [], cn, 2026, "national").total_t == pytest.approx(5.306)


def test_electricity_is_given_as_the_grid_import(cn: FactorSet) -> None:
    with pytest.raises(ValueError, match="grid_import_kwh"):
        carbon(0, [Amount("electricity", 5, "kWh")], cn, 2023, "east")


# --- PV and data rooms ----------------------------------------------------------------------


def test_pv(cn: FactorSet) -> None:
    generation, export, grid = 20_000.0, 5_000.0, 100_000.0
    assert pv_yield(generation, MAIN.pv_kwp) == 100.0  # 20 000 kWh / 200 kWp
    assert pv_yield(generation, None) is None
    assert self_consumption(generation, export) == 15_000.0
    assert self_consumption_share(generation, export) == 0.75
    assert self_consumption_share(0.0, 0.0) is None  # a night, or no PV
    assert consumption_kwh(grid, generation, export) == 115_000.0
    # 20 000 kWh x 0.5500 kg/kWh = 11 t the grid did not emit
    assert carbon_avoided_t(generation, cn, 2023, "east") == pytest.approx(11.0)


def test_pue() -> None:
    assert pue(150_000, 100_000) == 1.5
    assert pue(150_000, 0) is None


# --- against last year and the baseline -----------------------------------------------------


def test_year_on_year() -> None:
    assert change(95.0, 100.0) == pytest.approx(-0.05)
    assert change(110.0, 100.0) == pytest.approx(0.10)
    assert change(95.0, None) is None
    assert change(95.0, 0.0) is None


@pytest.mark.parametrize(
    ("year", "now", "allowed", "on_track"),
    [
        # 2023 is three fifths of the way: -5 % x 3/5 = -3 % allowed
        (2023, 9.6, -0.03, True),  # -4 %
        (2023, 9.8, -0.03, False),  # -2 %
        (2020, 10.0, 0.0, True),  # the baseline year itself
        (2027, 9.6, -0.05, False),  # past the target year the target itself: -4 % misses
        (2027, 9.4, -0.05, True),
    ],
)
def test_pace_toward_the_five_year_target(
    year: int, now: float, allowed: float, on_track: bool
) -> None:
    pace = target_pace("energy_per_m2", now, 10.0, year, TARGETS)
    assert pace.allowed == pytest.approx(allowed)
    assert pace.change == pytest.approx((now - 10.0) / 10.0)
    assert pace.target == -0.05
    assert pace.on_track is on_track


def test_baseline_values(cn: FactorSet) -> None:
    baseline = Baseline(electricity_kwh=3_000_000, water_m3=36_000, co2_t=1_800, headcount=1000)
    # 3 000 000 kWh x 0.1229 = 368 700 kgce over today's 42 000 m² (the baseline gives none)
    assert baseline_value("energy_per_m2", baseline, MAIN, cn, "east") == pytest.approx(
        368_700 / 42_000
    )
    # per person with the baseline's own headcount of 1 000, not today's 1 200
    assert baseline_value("energy_per_person", baseline, MAIN, cn, "east") == pytest.approx(368.7)
    assert baseline_value("water_per_person", baseline, MAIN, cn, "east") == 36.0
    # 1 800 t = 1 800 000 kg over 42 000 m²
    assert baseline_value("co2_per_m2", baseline, MAIN, cn, "east") == pytest.approx(
        1_800_000 / 42_000
    )
    given = baseline.model_copy(update={"energy_kgce": 400_000.0, "area_m2": 40_000.0})
    assert baseline_value("energy_per_m2", given, MAIN, cn, "east") == 10.0


def test_baseline_carbon_needs_a_factor_of_its_year(cn: FactorSet) -> None:
    # cn-2023 starts in 2021: a 2020 baseline must give its co2_t
    baseline = Baseline(electricity_kwh=3_000_000)
    with pytest.raises(FactorError, match="2020"):
        baseline_value("co2_per_m2", baseline, MAIN, cn, "east")
    assert baseline_value("water_per_person", baseline, MAIN, cn, "east") is None
