"""What the monthly report says, as plain figures: the renderers (html, pdf, charts) only lay
them out, so every number is checked once, here, by the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from accounts import indicators

CATEGORIES = ("lighting_sockets", "hvac", "power", "special")
"""The sub-metering categories of public buildings (the `use` tag), in report order."""
OTHER = "other"  # a device whose `use` is none of them
UNMETERED = "unmetered"  # what the main meters count beyond the sub-meters
TOTAL_USE = "total"  # the `use` of a main meter: the whole, not a category


@dataclass(frozen=True, slots=True)
class Category:
    use: str  # one of CATEGORIES, OTHER or UNMETERED
    kwh: float
    last_month_kwh: float | None
    last_year_kwh: float | None


@dataclass(frozen=True, slots=True)
class Consumer:
    device: str
    use: str
    building: str
    kwh: float


@dataclass(frozen=True, slots=True)
class Quota:
    """A `quota` rule of the site against the electricity its scope drew."""

    rule: str
    period: str  # month | year: the rule's own period
    month_kwh: float
    month_limit_kwh: float
    year_to_date_kwh: float
    year_limit_kwh: float
    projected_year_kwh: float  # year to date, extended at its pace to the year's end


@dataclass(frozen=True, slots=True)
class AcCompliance:
    unit_hours: int  # hours a unit ran in a mode the season limits (cooling in summer ...)
    compliant_hours: int  # of them, with the setpoint within the limit all hour
    enforcement_writes: int  # setpoints the ac_policy rules wrote back (accepted)
    refused_writes: int  # write-backs refused or failed
    units: int

    @property
    def share(self) -> float | None:
        return self.compliant_hours / self.unit_hours if self.unit_hours else None


@dataclass(frozen=True, slots=True)
class Pv:
    generation_kwh: float
    export_kwh: float | None  # None: no export counter
    kwp: float | None
    # What the grid would have emitted for it: the accounts price generation at the grid factor.
    avoided_co2_kg: float = 0.0

    @property
    def self_consumed_kwh(self) -> float | None:
        if self.export_kwh is None:
            return None
        return indicators.self_consumption(self.generation_kwh, self.export_kwh)

    @property
    def self_share(self) -> float | None:
        if self.export_kwh is None:
            return None
        return indicators.self_consumption_share(self.generation_kwh, self.export_kwh)

    @property
    def yield_kwh_per_kwp(self) -> float | None:
        return indicators.pv_yield(self.generation_kwh, self.kwp)


@dataclass(frozen=True, slots=True)
class Water:
    m3: float
    last_month_m3: float | None
    last_year_m3: float | None
    headcount: int | None

    @property
    def per_person_m3(self) -> float | None:
        return indicators.per_person(self.m3, self.headcount)


@dataclass(frozen=True, slots=True)
class Pue:
    room: str
    facility_kwh: float
    it_kwh: float
    limit: float

    @property
    def pue(self) -> float | None:
        return indicators.pue(self.facility_kwh, self.it_kwh)


@dataclass(frozen=True, slots=True)
class Charger:
    """An EV charger's energy handed to vehicles (its `charging` counter)."""

    device: str
    building: str
    kwh: float | None  # None: no figures for the month
    last_month_kwh: float | None


@dataclass(frozen=True, slots=True)
class Alarm:
    alarm_id: str
    kind: str
    grade: str
    subject: str
    raised: datetime | None  # None: raised before the month
    last: datetime  # its last transition up to the month's end
    state: str  # as of the month's end: active, acknowledged, cleared, closed
    text_zh: str
    text_en: str

    @property
    def open(self) -> bool:
        return self.state != "closed"


@dataclass(frozen=True, slots=True)
class MonthReport:
    site_name: str
    site_id: str
    building: str | None  # None: the whole site
    month: date  # its first day
    timezone: str
    days: list[date]
    daily_kwh: dict[str, list[float]]  # category -> kWh per day of `days`
    categories: list[Category]
    total_kwh: float
    total_last_month_kwh: float | None
    total_last_year_kwh: float | None
    consumers: list[Consumer]  # the largest, largest first
    after_hours_kwh: float
    ac: AcCompliance
    pv: Pv | None
    water: Water | None
    pue: list[Pue]
    co2_kg: dict[str, float]  # by carrier
    kgce: dict[str, float]  # by carrier
    area_m2: float | None
    headcount: int | None
    quotas: list[Quota]
    alarms: list[Alarm]
    coverage: float | None  # mean share of the month's periods the readings cover
    factor_sets: list[str] = field(default_factory=list)
    chargers: list[Charger] = field(default_factory=list)  # by device id; none: no chargers

    @property
    def after_hours_share(self) -> float | None:
        return self.after_hours_kwh / self.total_kwh if self.total_kwh else None

    @property
    def co2_total_kg(self) -> float:
        return sum(self.co2_kg.values())

    @property
    def kgce_total(self) -> float:
        return sum(self.kgce.values())

    @property
    def kwh_per_m2(self) -> float | None:
        return indicators.per_m2(self.total_kwh, self.area_m2)

    @property
    def charging_kwh(self) -> float | None:
        figures = [c.kwh for c in self.chargers if c.kwh is not None]
        return sum(figures) if figures else None

    @property
    def charging_last_month_kwh(self) -> float | None:
        figures = [c.last_month_kwh for c in self.chargers if c.last_month_kwh is not None]
        return sum(figures) if figures else None
