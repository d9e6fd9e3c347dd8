"""Standards and targets as versioned data (config/factors/): GB/T 51161's office energy limits
with their use correction, and the five-year plan's per-unit targets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from accounts.config import ClimateZone
from accounts.factors import FactorError, data_file, load_data
from gateway.config_errors import ConfigError, Problem

Owner = Literal["government", "commercial"]
Indicator = Literal["energy_per_m2", "energy_per_person", "water_per_person", "co2_per_m2"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfficeLimit(_Strict):
    """One row of the office table: constraint and guide value, kWh/(m²·a)."""

    building_class: Literal["A", "B"] = Field(description="A: natural ventilation, B: central AC.")
    owner: Owner = Field(description="government (党政机关) or commercial.")
    zones: list[ClimateZone] = Field(min_length=1, description="Climate zones of the column.")
    constraint: float = Field(gt=0, description="约束值, kWh/(m²·a).")
    guide: float = Field(gt=0, description="引导值, kWh/(m²·a).")

    @model_validator(mode="after")
    def _guide_below(self) -> OfficeLimit:
        if self.guide > self.constraint:
            raise ValueError(f"guide {self.guide} is above constraint {self.constraint}")
        return self


class UseCorrection(_Strict):
    """corrected = measured × (h + (1−h)·T0/T): a measured value at the reference hours."""

    verified: bool = Field(default=True, description="false: not confirmed in the standard.")
    hours_fixed_share: float = Field(ge=0, le=1, description="h: the share hours don't change.")
    reference_hours: dict[Owner, float] = Field(description="T0, hours a year, by owner.")


class EnergyStandard(_Strict):
    """A standard's office energy-use table (config/factors/gbt51161-2016.yaml)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="The file name's stem.")
    version: str = Field(min_length=1, description="Revision of this file's values.")
    title: str = Field(default="", description="The standard's title.")
    source: str = Field(min_length=1, description="The standard and the part the table is in.")
    verified: bool = Field(description="false: the table's numbers are not confirmed.")
    unit: Literal["kWh/(m2·a)"] = Field(description="The table's unit.")
    office_non_heating: list[OfficeLimit] = Field(min_length=1, description="The table's rows.")
    correction: UseCorrection | None = Field(
        default=None, description="Correction of a measured value for operating hours."
    )

    @model_validator(mode="after")
    def _one_row_each(self) -> EnergyStandard:
        seen: set[tuple[str, str, str]] = set()
        for row in self.office_non_heating:
            for zone in row.zones:
                key = (row.building_class, row.owner, zone)
                if key in seen:
                    raise ValueError(f"two rows for class {key[0]}, {key[1]}, {zone}; keep one")
                seen.add(key)
        return self

    def office_limit(self, building_class: str, owner: str, zone: str) -> OfficeLimit:
        for row in self.office_non_heating:
            if row.building_class == building_class and row.owner == owner and zone in row.zones:
                return row
        raise FactorError(f"{self.name} has no row for class {building_class}, {owner}, {zone}")


class FiveYearTargets(_Strict):
    """Per-unit targets of a five-year plan, as fractions of the baseline year's value."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="The file name's stem.")
    version: str = Field(min_length=1, description="Revision of this file's values.")
    title: str = Field(default="", description="The plan's title.")
    source: str = Field(min_length=1, description="Publisher and title of the plan.")
    verified: bool = Field(description="false: the targets are not confirmed.")
    baseline_year: int = Field(ge=2000, le=2100, description="The year targets count from.")
    target_year: int = Field(ge=2000, le=2100, description="The year they must be met.")
    targets: dict[Indicator, float] = Field(
        description="Change by the target year, as a fraction (-0.05: five per cent lower)."
    )

    @model_validator(mode="after")
    def _years(self) -> FiveYearTargets:
        if self.target_year <= self.baseline_year:
            raise ValueError("target_year must come after baseline_year")
        return self


M = TypeVar("M", bound=BaseModel)
GBT51161 = "gbt51161-2016"
FYP14 = "fyp14-public-institutions"


def _load_named(name_or_path: str, base_dir: Path | None, model: type[M]) -> M:
    path = data_file(name_or_path, base_dir)
    if not path.is_file():
        raise ConfigError(
            [Problem(str(path), None, "", f"no file for '{name_or_path}'; check the name")]
        )
    return load_data(path, model)[0]


def load_energy_standard(
    name_or_path: str = GBT51161, base_dir: Path | None = None
) -> EnergyStandard:
    """The office energy-use table (GB/T 51161-2016 by default)."""
    return _load_named(name_or_path, base_dir, EnergyStandard)


def load_targets(name_or_path: str = FYP14, base_dir: Path | None = None) -> FiveYearTargets:
    """A five-year plan's targets (the 14th plan's for public institutions by default)."""
    return _load_named(name_or_path, base_dir, FiveYearTargets)
