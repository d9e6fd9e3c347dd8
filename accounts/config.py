"""The site file's `accounts:` section: the buildings' sizes and kinds, which counters count,
the factor set, baselines and quotas. Factors and standard values are versioned data
(config/factors/), never code."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Carrier = Literal["electricity", "water", "gas", "heat"]
# What a counter measures: energy drawn from the grid (import), sent to it (export), made on
# site (generation: PV), handed to vehicles (charging), or simply used (consumption: water, gas).
Flow = Literal["import", "export", "generation", "charging", "consumption"]
GridRegion = Literal[
    "national", "north", "northeast", "east", "central", "northwest", "south", "southwest"
]
ClimateZone = Literal[
    "severe_cold", "cold", "hot_summer_cold_winter", "hot_summer_warm_winter", "mild"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CounterSpec(_Strict):
    """One counter point: what it measures and in which unit it counts."""

    carrier: Carrier = Field(description="electricity, water, gas or heat.")
    flow: Flow = Field(description="import, export, generation, charging or consumption.")
    unit: Literal["kWh", "m3", "GJ"] = Field(description="The counter's unit (kWh, m3, GJ).")
    max_per_hour: float | None = Field(
        default=None,
        gt=0,
        description="The most the meter can count in an hour; a rise beyond it is an "
        "implausible jump, flagged and not counted (default by unit: 20000 kWh, 1000 m3, 100 GJ).",
    )
    rollover: float | None = Field(
        default=None,
        gt=0,
        description="The value at which the counter reads 0 again (e.g. 100000000 for eight "
        "digits); none: a drop is a restart from 0 or a new meter.",
    )


# The counters the accounts take by default, by point name (drivers/POINT_NAMES.md) and the
# device's kind: a site names others under `accounts.counters`.
DEFAULT_COUNTERS: dict[str, dict[str, CounterSpec]] = {
    "meter": {
        "energy_import_kwh": CounterSpec(carrier="electricity", flow="import", unit="kWh"),
        "energy_export_kwh": CounterSpec(carrier="electricity", flow="export", unit="kWh"),
    },
    "pv_inverter": {
        "energy_total_kwh": CounterSpec(carrier="electricity", flow="generation", unit="kWh"),
    },
    "ev_charger": {
        "energy_total_kwh": CounterSpec(carrier="electricity", flow="charging", unit="kWh"),
    },
    "water_meter": {
        "volume_total_m3": CounterSpec(carrier="water", flow="consumption", unit="m3"),
    },
}


class BuildingInfo(_Strict):
    """A building of the site, by its `building` tag."""

    name: str = Field(default="", description="As people call it, e.g. 主楼.")
    area_m2: float = Field(gt=0, description="Gross floor area, m².")
    headcount: int | None = Field(default=None, ge=0, description="People who work there.")
    building_class: Literal["A", "B"] = Field(
        default="B",
        description="GB/T 51161 office class: A natural ventilation or split units, B central AC.",
    )
    owner: Literal["government", "commercial"] = Field(
        default="government", description="GB/T 51161 owner column: 党政机关 or commercial."
    )
    climate_zone: ClimateZone = Field(
        default="hot_summer_cold_winter", description="The building's climate zone."
    )
    pv_kwp: float | None = Field(
        default=None, gt=0, description="Installed PV peak power, kWp (for yield kWh/kWp)."
    )


class Baseline(_Strict):
    """A building's figures in the baseline year of the five-year targets (2020)."""

    year: int = Field(default=2020, description="Baseline year.")
    electricity_kwh: float | None = Field(default=None, ge=0, description="Electricity, kWh.")
    water_m3: float | None = Field(default=None, ge=0, description="Water, m³.")
    gas_m3: float | None = Field(default=None, ge=0, description="Natural gas, m³.")
    heat_gj: float | None = Field(default=None, ge=0, description="Purchased heat, GJ.")
    energy_kgce: float | None = Field(default=None, ge=0, description="Total energy, kgce.")
    co2_t: float | None = Field(default=None, ge=0, description="Carbon, tCO₂.")
    area_m2: float | None = Field(default=None, gt=0, description="Floor area then, m².")
    headcount: int | None = Field(default=None, ge=0, description="Headcount then.")


class DataRoom(_Strict):
    """A data room's meters, for its PUE: the facility total and the IT load."""

    facility: list[str] = Field(min_length=1, description="Meter ids whose sum is the room total.")
    it: list[str] = Field(min_length=1, description="Meter ids of the IT load (UPS output).")
    pue_limit: float = Field(default=1.8, gt=1, description="PUE above this alarms.")


class MeterSwap(_Strict):
    """A meter replaced on site: the new meter's counter starts elsewhere."""

    device: str = Field(description="The device id whose meter was replaced.")
    point: str = Field(description="The counter point, e.g. energy_import_kwh.")
    at: AwareDatetime = Field(description="When, with its zone: 2026-07-14T10:30:00+08:00.")
    new_start: float = Field(ge=0, description="The new meter's counter when it was fitted.")
    old_final: float | None = Field(
        default=None, ge=0, description="The old meter's last value, if noted."
    )


class AccountsConfig(_Strict):
    """Energy, water and carbon accounts of the site."""

    factors: str = Field(
        default="cn-2023",
        description="Factor set: a name in config/factors/ (cn-2023) or a file path.",
    )
    grid_region: GridRegion = Field(
        default="national", description="Regional grid whose emission factor applies."
    )
    buildings: dict[str, BuildingInfo] = Field(
        default_factory=dict, description="Buildings by their `building` tag."
    )
    baselines: dict[str, Baseline] = Field(
        default_factory=dict, description="Baseline-year figures by building."
    )
    counters: dict[str, CounterSpec] = Field(
        default_factory=dict,
        description="Further counter points by name (the defaults: energy_import_kwh, "
        "energy_export_kwh, PV and charger energy_total_kwh, volume_total_m3).",
    )
    data_rooms: dict[str, DataRoom] = Field(
        default_factory=dict, description="Data rooms by name, for PUE."
    )
    store: str = Field(
        default="var/accounts.sqlite",
        description="SQLite file of the counters' history (relative to the site file).",
    )
    swaps: list[MeterSwap] = Field(
        default_factory=list,
        description="Meter swaps: what both meters counted around one is kept (undeclared, "
        "a drop is taken as a new meter and nothing is counted across it).",
    )
    keep_days: int = Field(
        default=40,
        ge=2,
        le=400,
        description="Days of counter history kept to recompute a period when late data "
        "arrives (a spool replayed, a meter read after an outage).",
    )
