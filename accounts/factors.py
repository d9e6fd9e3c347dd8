"""Factor sets: emission factors and standard-coal coefficients as versioned data
(config/factors/<name>.yaml), each value with its source, and the lookups the accounts make.

The numbers live in the YAML files, never here: a revised publication is a new file (cn-2024),
and every figure written names the set and region it used (`FactorSet.label`, e.g.
"cn-2023/east") so history can be recomputed with another one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from accounts.config import GridRegion
from core.data_dir import data_dir
from core.text import suggest
from gateway.config_errors import ConfigError, LineMap, Problem, load_yaml
from gateway.config_errors import problems_from_validation as _problems_from_validation

FACTORS_DIR = data_dir() / "factors"

BaseUnit = Literal["kWh", "m3", "GJ", "kg"]
# Units a counter may count in, by the base unit its carrier's factors are given per: how many
# base units one of them is. Unit arithmetic, not published data, so it lives in code.
UNIT_SCALES: dict[str, dict[str, float]] = {
    "kWh": {"kWh": 1.0, "MWh": 1000.0, "Wh": 0.001},
    "m3": {"m3": 1.0, "L": 0.001},
    "GJ": {"GJ": 1.0, "MJ": 0.001, "kWh": 0.0036},  # heat meters often count kWh
    "kg": {"kg": 1.0, "t": 1000.0},
}


class FactorError(ValueError):
    """A lookup the factor set cannot answer (unknown carrier or unit, a year before its data)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Where values come from."""

    title: str = Field(min_length=1, description="Publisher and title of the publication.")
    note: str = Field(default="", description="What was checked, and what was not.")


class Factor(_Strict):
    """One value, per the carrier's unit, with its source."""

    value: float = Field(ge=0, description="The factor, per the carrier's unit.")
    source: str = Field(description="A key of `sources`.")
    verified: bool = Field(
        default=True, description="false: not confirmed in a primary source; keep overridable."
    )
    note: str = Field(default="", description="Anything a reader of the figure should know.")


class GridFactor(Factor):
    """The grid's CO₂ factor of one region and year, kg per kWh (= t per MWh)."""

    year: int = Field(ge=2000, le=2100, description="The year the factor describes.")
    region: GridRegion = Field(description="national or one of the seven regional grids.")


class CarrierFactors(_Strict):
    """A carrier's standard-coal coefficient and emission factor (none: not counted)."""

    unit: BaseUnit = Field(description="The unit the factors are given per: kWh, m3, GJ, kg.")
    kgce: Factor | None = Field(default=None, description="kg standard coal per unit.")
    co2_kg: Factor | None = Field(default=None, description="kg CO₂ per unit.")
    grid_co2_kg: list[GridFactor] = Field(
        default_factory=list, description="kg CO₂ per unit by year and grid region."
    )

    @model_validator(mode="after")
    def _one_co2(self) -> CarrierFactors:
        if self.co2_kg is not None and self.grid_co2_kg:
            raise ValueError("give co2_kg or grid_co2_kg, not both")
        seen: set[tuple[int, str]] = set()
        for f in self.grid_co2_kg:
            if (f.year, f.region) in seen:
                raise ValueError(f"grid_co2_kg has {f.year} {f.region} twice; keep one")
            seen.add((f.year, f.region))
        return self


class FactorSet(_Strict):
    """A named, versioned set of factors (config/factors/<name>.yaml)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="The file name's stem.")
    version: str = Field(min_length=1, description="Revision of this file's values.")
    title: str = Field(default="", description="What the set is, as people call it.")
    sources: dict[str, Source] = Field(description="Publications, by the key values cite.")
    carriers: dict[str, CarrierFactors] = Field(description="Factors by carrier name.")

    def label(self, region: str) -> str:
        """The `factor_set` recorded with every figure: set and grid region."""
        return f"{self.name}/{region}"

    def carrier(self, carrier: str) -> CarrierFactors:
        try:
            return self.carriers[carrier]
        except KeyError:
            raise FactorError(
                f"factor set {self.name} has no carrier '{carrier}'; carriers: "
                f"{', '.join(self.carriers)}" + suggest(carrier, self.carriers)
            ) from None

    def units_per_base(self, carrier: str, unit: str) -> float:
        """How many of the carrier's base units one `unit` is (MWh -> 1000 kWh)."""
        base = self.carrier(carrier).unit
        scales = UNIT_SCALES[base]
        if unit not in scales:
            raise FactorError(
                f"{carrier} is not counted in '{unit}'; use {', '.join(scales)}"
                + suggest(unit, scales)
            )
        return scales[unit]

    def kgce_per(self, carrier: str, unit: str) -> float:
        """kg standard coal per `unit` of `carrier`; 0 for a carrier without one (water)."""
        factor = self.carrier(carrier).kgce
        scale = self.units_per_base(carrier, unit)
        return 0.0 if factor is None else factor.value * scale

    def grid_factor(self, year: int, region: str) -> GridFactor:
        """The region's factor of `year` or the latest before it; a region without one by
        then takes the national factor (the regional grids start later)."""
        grid = self.carrier("electricity").grid_co2_kg
        for where in (region, "national"):
            earlier = [f for f in grid if f.region == where and f.year <= year]
            if earlier:
                return max(earlier, key=lambda f: f.year)
        first = min((f.year for f in grid), default=None)
        raise FactorError(
            f"factor set {self.name} has no grid factor for {year} or before"
            + (f" (its first year is {first}); use a set that covers {year}" if first else "")
        )

    def co2_kg_per(self, carrier: str, unit: str, year: int, region: str) -> float:
        """kg CO₂ per `unit` of `carrier` used in `year` in grid `region` (electricity: the
        year's grid factor or the latest before it); 0 for a carrier without one (water)."""
        factors = self.carrier(carrier)
        scale = self.units_per_base(carrier, unit)
        if factors.grid_co2_kg:
            return self.grid_factor(year, region).value * scale
        return 0.0 if factors.co2_kg is None else factors.co2_kg.value * scale

    def unverified(self) -> list[str]:
        """The values not confirmed in a primary source, as `carrier.key` (for a report's notes)."""
        out = []
        for name, c in self.carriers.items():
            for key in ("kgce", "co2_kg"):
                f = getattr(c, key)
                if f is not None and not f.verified:
                    out.append(f"{name}.{key}")
            out += [
                f"{name}.grid_co2_kg {f.year} {f.region}" for f in c.grid_co2_kg if not f.verified
            ]
        return out


Model = TypeVar("Model", bound=BaseModel)


def data_file(name_or_path: str, base_dir: Path | None, directory: Path = FACTORS_DIR) -> Path:
    """A name (`cn-2023`) is a file of `directory`; a path (with / or .yaml) is taken
    relative to `base_dir` (the site file's folder)."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        return path if path.is_absolute() or base_dir is None else base_dir / path
    return directory / f"{name_or_path}.yaml"


def available(directory: Path = FACTORS_DIR) -> list[str]:
    """The names of the factor sets in `directory` (its other files hold standards)."""
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml") if _is_factor_set(p))


def _is_factor_set(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "carriers" in data


def load_data(path: Path, model: type[Model]) -> tuple[Model, LineMap]:
    """A versioned data file validated by `model`, with its line map; every fault one line
    (ConfigError) with the file, line, key path and fix. Its `name` must be the file's stem,
    so the name recorded with a figure always says which file produced it."""
    data, lines = load_yaml(path)
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems_from_validation(exc, model, data, str(path), lines)) from None
    name = getattr(loaded, "name", path.stem)
    if name != path.stem:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    lines.line(("name",)),
                    "name",
                    f"'{name}' differs from the file name; rename one to match (a changed copy "
                    "needs a name of its own, as its figures are recorded under it)",
                )
            ]
        )
    return loaded, lines


def _reference_problems(fs: FactorSet, file: str, lines: LineMap) -> list[Problem]:
    out = []
    for name, c in fs.carriers.items():
        cited: list[tuple[tuple[str | int, ...], str]] = [
            (("carriers", name, key, "source"), getattr(c, key).source)
            for key in ("kgce", "co2_kg")
            if getattr(c, key) is not None
        ]
        cited += [
            (("carriers", name, "grid_co2_kg", i, "source"), f.source)
            for i, f in enumerate(c.grid_co2_kg)
        ]
        for loc, key in cited:
            if key not in fs.sources:
                out.append(
                    Problem(
                        file,
                        lines.line(loc),
                        ".".join(str(p) for p in loc),
                        f"no source '{key}'; add it under sources: or cite one of "
                        f"{', '.join(fs.sources)}" + suggest(key, fs.sources),
                    )
                )
    grid = fs.carriers["electricity"].grid_co2_kg if "electricity" in fs.carriers else []
    if grid and not any(f.region == "national" for f in grid):
        loc = ("carriers", "electricity", "grid_co2_kg")
        out.append(
            Problem(
                file,
                lines.line(loc),
                ".".join(loc),
                "needs a national factor (the fallback of every region); add one",
            )
        )
    return out


def load_factors(name_or_path: str, base_dir: Path | None = None) -> FactorSet:
    """The factor set named (a file of config/factors/) or at a path relative to `base_dir`."""
    path = data_file(name_or_path, base_dir)
    if not path.is_file():
        names = available()
        message = (
            "no such file; check the path (relative to the site file's folder)"
            if path.parent != FACTORS_DIR
            else f"no factor set '{name_or_path}'; sets in {FACTORS_DIR}: "
            f"{', '.join(names) or 'none'}" + suggest(name_or_path, names)
        )
        raise ConfigError([Problem(str(path), None, "", message)])
    factors, lines = load_data(path, FactorSet)
    problems = _reference_problems(factors, str(path), lines)
    if problems:
        raise ConfigError(problems)
    return factors
