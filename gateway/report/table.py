"""The yearly public-institution statistics table (公共机构能源资源消费统计): energy and water by
type with quantities, standard coal and carbon, floor area, headcount and the per-m² and
per-person indicators, as CSV (UTF-8 with a BOM, so Excel opens the Chinese) and XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from accounts import indicators
from accounts.factors import load_factors
from accounts.indicators import LimitComparison, TargetPace
from accounts.standards import Indicator, load_energy_standard, load_targets
from gateway.config_load import LoadedSite
from gateway.report import energy
from gateway.report.month import CARRIER_FLOWS, area_and_headcount
from gateway.report.query import InfluxQL
from gateway.report.texts import Lang

# Every type the yearly form asks for; the accounts meter the first four (the others are
# listed so the form is whole, and marked as not metered).
TYPES: tuple[tuple[str, str, str, str], ...] = (
    # key, unit, zh, en
    ("electricity", "kWh", "电力", "Electricity"),
    ("water", "m³", "水", "Water"),
    ("gas", "m³", "天然气", "Natural gas"),
    ("heat", "GJ", "外购热力", "Purchased heat"),
    ("coal", "t", "煤炭", "Coal"),
    ("lpg", "kg", "液化石油气", "LPG"),
    ("gasoline", "kg", "汽油", "Gasoline"),
    ("diesel", "kg", "柴油", "Diesel"),
)
ENERGY_CARRIERS = ("electricity", "gas", "heat")  # water is counted, but is no energy


@dataclass(frozen=True, slots=True)
class Line:
    key: str
    unit: str
    quantity: float | None  # None: not metered
    kgce: float | None
    co2_kg: float | None


@dataclass(frozen=True, slots=True)
class YearTable:
    site_name: str
    building: str | None
    year: int
    lines: list[Line]
    pv_generation_kwh: float | None
    area_m2: float | None
    headcount: int | None
    months: int  # months of the year the accounts have figures for
    limits: list[tuple[str, LimitComparison]]  # by building: GB/T 51161, a whole year only
    targets: list[tuple[str, TargetPace]]  # by building: the five-year targets' pace
    ev_charging_kwh: float | None = None  # None: no charger counted

    def quantity(self, key: str) -> float | None:
        return next((line.quantity for line in self.lines if line.key == key), None)

    @property
    def kgce(self) -> float:
        return sum(line.kgce or 0.0 for line in self.lines if line.key in ENERGY_CARRIERS)

    @property
    def co2_kg(self) -> float:
        return sum(line.co2_kg or 0.0 for line in self.lines)

    def indicators(self) -> list[tuple[str, float | None, str]]:
        """(key, value, unit): the per-m² and per-person figures the form asks for."""
        area, people = self.area_m2, self.headcount
        electricity, water = self.quantity("electricity"), self.quantity("water")
        return [
            ("kgce_total", self.kgce, "kgce"),
            ("co2_total", self.co2_kg / 1000, "tCO₂"),
            ("kgce_per_m2", indicators.per_m2(self.kgce, area), "kgce/m²"),
            ("kgce_per_person", indicators.per_person(self.kgce, people), "kgce/人"),
            ("kwh_per_m2", electricity and indicators.per_m2(electricity, area), "kWh/m²"),
            ("water_per_person", water and indicators.per_person(water, people), "m³/人"),
            ("co2_per_m2", indicators.per_m2(self.co2_kg, area), "kgCO₂/m²"),
        ]


_INDICATORS = {
    "kgce_total": ("综合能耗", "Total energy"),
    "co2_total": ("二氧化碳排放", "CO₂ emissions"),
    "kgce_per_m2": ("单位建筑面积能耗", "Energy per m²"),
    "kgce_per_person": ("人均综合能耗", "Energy per person"),
    "kwh_per_m2": ("单位建筑面积电耗", "Electricity per m²"),
    "water_per_person": ("人均用水量", "Water per person"),
    "co2_per_m2": ("单位建筑面积碳排放", "CO₂ per m²"),
}


def build_year(
    loaded: LoadedSite, ql: InfluxQL, year: int, building: str | None = None
) -> YearTable:
    """The year's sums of the monthly accounts."""
    tz = ZoneInfo(loaded.site.site.timezone)
    start, end = datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)
    rows = energy.sums(ql, "month", start, end, building)
    lines = []
    for key, unit, _, _ in TYPES:
        main = energy.pick_main(energy.of(rows, key, *CARRIER_FLOWS.get(key, ("consumption",))))
        if not main:
            lines.append(Line(key, unit, None, None, None))
            continue
        lines.append(
            Line(
                key,
                unit,
                energy.total(main),
                sum(r.kgce for r in main) if key in ENERGY_CARRIERS else None,
                sum(r.co2_kg for r in main),
            )
        )
    generated = energy.of(rows, "electricity", "generation")
    charged = energy.of(rows, "electricity", "charging")
    area, headcount = area_and_headcount(loaded, building)
    months = len(
        {
            datetime.fromtimestamp(r.t, tz).month
            for r in energy.rows(ql, "month", start, end, building)
        }
    )
    limits, targets = _against_standards(loaded, rows, year, building) if months == 12 else ([], [])
    return YearTable(
        loaded.site.site.name,
        building,
        year,
        lines,
        energy.total(generated) if generated else None,
        area,
        headcount,
        months,
        limits,
        targets,
        energy.total(charged) if charged else None,
    )


def _carrier_sums(rows: Sequence[energy.Row]) -> dict[str, tuple[float, float, float]]:
    """carrier -> (quantity, kgce, kg CO₂) of its main meters."""
    out = {}
    for carrier, flows in CARRIER_FLOWS.items():
        main = energy.pick_main(energy.of(rows, carrier, *flows))
        out[carrier] = (
            energy.total(main),
            sum(r.kgce for r in main),
            sum(r.co2_kg for r in main),
        )
    return out


def _against_standards(
    loaded: LoadedSite, rows: Sequence[energy.Row], year: int, building: str | None
) -> tuple[list[tuple[str, LimitComparison]], list[tuple[str, TargetPace]]]:
    """Each described building's whole year against GB/T 51161 (electricity: the standard's
    conversion of other carriers is not in the data) and against its 2020 baseline's pace to
    the five-year targets."""
    accounts = loaded.site.accounts
    if accounts is None:
        return [], []
    standard = load_energy_standard(base_dir=loaded.base_dir)
    targets = load_targets(base_dir=loaded.base_dir)
    factors = load_factors(accounts.factors, loaded.base_dir)
    limits, paces = [], []
    for name, info in accounts.buildings.items():
        if building is not None and name != building:
            continue
        sums = _carrier_sums([r for r in rows if r.building == name])
        electricity = sums["electricity"][0]
        if electricity <= 0:
            continue
        limits.append((name, indicators.against_office_limits(electricity, info, standard)))
        baseline = accounts.baselines.get(name)
        if baseline is None:
            continue
        kgce = sum(sums[c][1] for c in ENERGY_CARRIERS)
        co2 = sum(q[2] for q in sums.values())
        now: dict[Indicator, float | None] = {
            "energy_per_m2": indicators.per_m2(kgce, info.area_m2),
            "energy_per_person": indicators.per_person(kgce, info.headcount),
            "water_per_person": indicators.per_person(sums["water"][0], info.headcount),
            "co2_per_m2": indicators.per_m2(co2, info.area_m2),
        }
        for indicator, value in now.items():
            base = indicators.baseline_value(
                indicator, baseline, info, factors, accounts.grid_region
            )
            if value is not None and base:
                paces.append((name, indicators.target_pace(indicator, value, base, year, targets)))
    return limits, paces


def _cell(value: float | None, digits: int = 2) -> float | str:
    return "" if value is None else round(value, digits)


def grid(table: YearTable, lang: Lang) -> list[list[float | str]]:
    """The table as rows of cells, the same in both formats."""
    zh = lang == "zh"
    place = f" {table.building}" if table.building else ""
    heading = (
        f"{table.site_name}{place} {table.year}年 公共机构能源资源消费统计"
        if zh
        else f"{table.site_name}{place}: energy and resource use, {table.year}"
    )
    out: list[list[float | str]] = [[heading]]
    out.append(
        ["能源品种", "计量单位", "实物量", "折标准煤（kgce）", "二氧化碳（kg）"]
        if zh
        else ["Type", "Unit", "Quantity", "Standard coal (kgce)", "CO₂ (kg)"]
    )
    names = {key: (z, e) for key, _, z, e in TYPES}
    for line in table.lines:
        name = names[line.key][0 if zh else 1]
        if line.quantity is None:
            out.append([name, line.unit, "未计量" if zh else "not metered", "", ""])
        else:
            out.append(
                [name, line.unit, _cell(line.quantity), _cell(line.kgce), _cell(line.co2_kg)]
            )
    if table.pv_generation_kwh is not None:
        name = "光伏发电量（自产）" if zh else "PV generation (on site)"
        out.append([name, "kWh", _cell(table.pv_generation_kwh), "", ""])
    if table.ev_charging_kwh is not None:  # drawn through the site's meters: no second count
        name = "电动汽车充电量（已计入电力）" if zh else "EV charging (within electricity)"
        out.append([name, "kWh", _cell(table.ev_charging_kwh), "", ""])
    out.append([])
    out.append(["指标", "数值", "单位"] if zh else ["Indicator", "Value", "Unit"])
    out.append(["建筑面积" if zh else "Floor area", _cell(table.area_m2), "m²"])
    out.append(
        ["用能人数" if zh else "Headcount", _cell(table.headcount, 0), "人" if zh else "people"]
    )
    for key, value, unit in table.indicators():
        label = _INDICATORS[key][0 if zh else 1]
        out.append([label, _cell(value, 3), unit if zh else unit.replace("人", "person")])
    out.append([])
    if table.months < 12:
        out.append(
            [
                f"全年数据不全（{table.months}/12 个月）：未与 GB/T 51161 和“十四五”目标比较"
                if zh
                else f"{table.months} of 12 months: not compared with GB/T 51161 and the "
                "five-year targets"
            ]
        )
        return out
    out.extend(_standard_rows(table, zh))
    return out


_VERDICTS = {
    "guide": ("不高于引导值", "at or below the guide value"),
    "constraint": ("不高于约束值", "at or below the constraint value"),
    "over": ("超过约束值", "over the constraint value"),
}


def _standard_rows(table: YearTable, zh: bool) -> list[list[float | str]]:
    out: list[list[float | str]] = []
    if table.limits:
        out.append(
            ["建筑", "用电强度（kWh/m²·a）", "引导值", "约束值", "结论", "标准"]
            if zh
            else [
                "Building",
                "Electricity (kWh/m²·a)",
                "Guide",
                "Constraint",
                "Verdict",
                "Standard",
            ]
        )
        for name, c in table.limits:
            note = c.standard + ("" if c.verified else (" 未核实" if zh else " not verified"))
            verdict = _VERDICTS[c.verdict][0 if zh else 1]
            out.append([name, _cell(c.corrected), c.guide, c.constraint, verdict, note])
    if table.targets:
        out.append([])
        out.append(
            ["建筑", "指标", "基准年", "本年", "变化", "进度要求", "目标", "达到进度"]
            if zh
            else [
                "Building",
                "Indicator",
                "Baseline",
                "This year",
                "Change",
                "Pace",
                "Target",
                "On track",
            ]
        )
        for name, p in table.targets:
            label = _TARGETS[p.indicator][0 if zh else 1]
            on_track = ("是" if p.on_track else "否") if zh else ("yes" if p.on_track else "no")
            out.append(
                [
                    name,
                    label,
                    _cell(p.baseline, 3),
                    _cell(p.now, 3),
                    _cell(p.change, 4),
                    _cell(p.allowed, 4),
                    _cell(p.target, 4),
                    on_track,
                ]
            )
    return out


_TARGETS: dict[str, tuple[str, str]] = {
    "energy_per_m2": ("单位建筑面积能耗（kgce/m²）", "Energy per m² (kgce/m²)"),
    "energy_per_person": ("人均综合能耗（kgce/人）", "Energy per person (kgce)"),
    "water_per_person": ("人均用水量（m³/人）", "Water per person (m³)"),
    "co2_per_m2": ("单位建筑面积碳排放（kgCO₂/m²）", "CO₂ per m² (kg/m²)"),
}


def to_csv(table: YearTable, lang: Lang) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(grid(table, lang))
    # The BOM tells Excel the file is UTF-8; without it Chinese opens as mojibake.
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(table: YearTable, lang: Lang) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook has its sheet
    sheet.title = str(table.year)
    for row in grid(table, lang):
        sheet.append(row)
    sheet["A1"].font = Font(bold=True, size=13)
    for column, width in zip("ABCDE", (22, 10, 16, 18, 16), strict=True):
        sheet.column_dimensions[column].width = width
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
