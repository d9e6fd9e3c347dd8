"""Factor sets and standards are data: the shipped files load, answer the lookups with the
published values, and a faulty copy is refused in one line naming file, line, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from accounts.factors import FACTORS_DIR, FactorError, FactorSet, available, load_factors
from accounts.standards import (
    EnergyStandard,
    FiveYearTargets,
    load_energy_standard,
    load_targets,
)
from gateway.config_errors import ConfigError

CN_2023 = (FACTORS_DIR / "cn-2023.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cn() -> FactorSet:
    return load_factors("cn-2023")


def _problems(name: str, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_factors(name, base_dir)
    return [str(p) for p in info.value.problems]


def test_grid_factor_of_the_year_and_region(cn: FactorSet) -> None:
    assert cn.co2_kg_per("electricity", "kWh", 2023, "national") == 0.5306
    assert cn.co2_kg_per("electricity", "kWh", 2022, "national") == 0.5366
    assert cn.co2_kg_per("electricity", "kWh", 2021, "national") == 0.5568
    regional = {"north": 0.6361, "northeast": 0.5122, "east": 0.5500, "central": 0.5271}
    regional |= {"northwest": 0.5543, "south": 0.4042, "southwest": 0.2472}
    for region, value in regional.items():
        assert cn.co2_kg_per("electricity", "kWh", 2023, region) == value, region
    # t/MWh and kg/kWh are the same number; a MWh is a thousand kWh
    assert cn.co2_kg_per("electricity", "MWh", 2023, "east") == pytest.approx(550.0)


def test_a_later_year_takes_the_latest_before_it(cn: FactorSet) -> None:
    assert cn.co2_kg_per("electricity", "kWh", 2026, "east") == 0.5500
    assert cn.grid_factor(2026, "east").year == 2023


def test_a_region_without_a_factor_yet_takes_the_national_one(cn: FactorSet) -> None:
    factor = cn.grid_factor(2022, "south")
    assert (factor.region, factor.year, factor.value) == ("national", 2022, 0.5366)


def test_a_year_before_the_set_is_refused(cn: FactorSet) -> None:
    with pytest.raises(FactorError, match=r"no grid factor for 2020 or before.*first year is 2021"):
        cn.co2_kg_per("electricity", "kWh", 2020, "national")


def test_fuels_heat_and_water(cn: FactorSet) -> None:
    assert cn.co2_kg_per("gas", "m3", 2023, "east") == 2.162
    assert cn.co2_kg_per("gasoline", "t", 2023, "east") == pytest.approx(2925.0)
    assert cn.co2_kg_per("diesel", "kg", 2023, "east") == 3.096
    assert cn.co2_kg_per("lpg", "kg", 2023, "east") == 3.101
    assert cn.co2_kg_per("heat", "MJ", 2023, "east") == pytest.approx(0.11)
    assert cn.co2_kg_per("water", "m3", 2023, "east") == 0.0


def test_standard_coal(cn: FactorSet) -> None:
    assert cn.kgce_per("electricity", "kWh") == 0.1229
    assert cn.kgce_per("electricity", "MWh") == pytest.approx(122.9)
    assert cn.kgce_per("gas", "m3") == 1.2143
    assert cn.kgce_per("heat", "GJ") == 34.12
    assert cn.kgce_per("water", "m3") == 0.0  # water is no energy


def test_unknown_carrier_or_unit_is_told(cn: FactorSet) -> None:
    with pytest.raises(FactorError, match=r"no carrier 'electricty'.*did you mean 'electricity'"):
        cn.kgce_per("electricty", "kWh")
    with pytest.raises(FactorError, match="gas is not counted in 'kWh'; use m3, L"):
        cn.kgce_per("gas", "kWh")


def test_label_and_the_unverified_values(cn: FactorSet) -> None:
    assert cn.label("east") == "cn-2023/east"
    assert "heat.co2_kg" in cn.unverified()
    assert "electricity.kgce" not in cn.unverified()


def test_every_value_cites_a_listed_source(cn: FactorSet) -> None:
    for name, c in cn.carriers.items():
        for f in [c.kgce, c.co2_kg, *c.grid_co2_kg]:
            if f is not None:
                assert f.source in cn.sources, (name, f.source)
    assert cn.carriers["heat"].co2_kg is not None
    assert not cn.carriers["heat"].co2_kg.verified


def test_every_shipped_file_loads() -> None:
    assert available() == ["cn-2023"]
    for path in sorted(FACTORS_DIR.glob("*.yaml")):
        if path.stem in available():
            assert isinstance(load_factors(path.stem), FactorSet)
        elif path.stem.startswith("gbt"):
            assert isinstance(load_energy_standard(path.stem), EnergyStandard)
        else:
            assert isinstance(load_targets(path.stem), FiveYearTargets)


def test_a_copy_of_its_own_name_loads_by_path(tmp_path: Path) -> None:
    own = CN_2023.replace("name: cn-2023", "name: city-2024").replace(
        "{year: 2023, region: east, value: 0.5500",
        "{year: 2024, region: east, value: 0.5000",
    )
    (tmp_path / "city-2024.yaml").write_text(own, encoding="utf-8")
    factors = load_factors("city-2024.yaml", tmp_path)
    assert factors.label("east") == "city-2024/east"
    assert factors.co2_kg_per("electricity", "kWh", 2024, "east") == 0.5


def test_a_copy_under_the_old_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(CN_2023, encoding="utf-8")
    [problem] = _problems("mine.yaml", tmp_path)
    assert problem.startswith(f"{tmp_path / 'mine.yaml'}:")
    assert ": name: 'cn-2023' differs from the file name; rename one to match" in problem


def test_faults_in_a_factor_file_are_one_line_each(tmp_path: Path) -> None:
    bad = (
        CN_2023.replace("name: cn-2023", "name: bad")
        .replace("co2_kg: {value: 2.162", "co2_kg: {value: -2.162")
        .replace("source: mee-grid-2021}", "source: mee-grid-2O21}")
    )
    (tmp_path / "bad.yaml").write_text(bad, encoding="utf-8")
    lines = bad.splitlines()
    gas_line = 1 + next(i for i, t in enumerate(lines) if "value: -2.162" in t)
    assert _problems("bad.yaml", tmp_path) == [
        f"{tmp_path / 'bad.yaml'}:{gas_line}: carriers.gas.co2_kg.value: "
        "Input should be greater than or equal to 0"
    ]
    fixed = bad.replace("value: -2.162", "value: 2.162")
    (tmp_path / "bad.yaml").write_text(fixed, encoding="utf-8")
    grid_line = 1 + next(i for i, t in enumerate(lines) if "mee-grid-2O21" in t)
    [problem] = _problems("bad.yaml", tmp_path)
    assert problem.startswith(
        f"{tmp_path / 'bad.yaml'}:{grid_line}: carriers.electricity.grid_co2_kg.0.source: "
        "no source 'mee-grid-2O21'; add it under sources: or cite one of"
    )
    assert problem.endswith("did you mean 'mee-grid-2021'?")


def test_a_missing_set_names_the_sets(tmp_path: Path) -> None:
    [problem] = _problems("cn-2032", tmp_path)
    assert problem.endswith(
        f"no factor set 'cn-2032'; sets in {FACTORS_DIR}: cn-2023; did you mean 'cn-2023'?"
    )
    [problem] = _problems("factors/mine.yaml", tmp_path)
    assert problem == (
        f"{tmp_path / 'factors/mine.yaml'}: no such file; check the path "
        "(relative to the site file's folder)"
    )


# --- GB/T 51161 and the five-year targets ---------------------------------------------------


def test_office_table_covers_every_class_owner_and_zone() -> None:
    standard = load_energy_standard()
    zones = ["severe_cold", "cold", "hot_summer_cold_winter", "hot_summer_warm_winter", "mild"]
    for building_class in ("A", "B"):
        for owner in ("government", "commercial"):
            for zone in zones:
                row = standard.office_limit(building_class, owner, zone)
                assert 0 < row.guide <= row.constraint
    # the numbers were not confirmed in the standard: the file must say so until they are
    assert standard.verified is False
    assert standard.correction is not None
    assert standard.correction.verified is False


def test_office_table_rows_must_be_unique_and_ordered(tmp_path: Path) -> None:
    text = (FACTORS_DIR / "gbt51161-2016.yaml").read_text(encoding="utf-8")
    swapped = text.replace("name: gbt51161-2016", "name: mine").replace(
        "zones: [mild], constraint: 50, guide: 40", "zones: [mild], constraint: 40, guide: 50"
    )
    (tmp_path / "mine.yaml").write_text(swapped, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_energy_standard("mine.yaml", tmp_path)
    [problem] = info.value.problems
    assert "office_non_heating[3]: guide 50.0 is above constraint 40.0" in str(problem)


def test_five_year_targets() -> None:
    targets = load_targets()
    assert (targets.baseline_year, targets.target_year) == (2020, 2025)
    assert targets.targets == {
        "energy_per_m2": -0.05,
        "energy_per_person": -0.06,
        "water_per_person": -0.06,
        "co2_per_m2": -0.07,
    }
