"""The report's tables as text in one language: what the HTML and the PDF both lay out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from gateway.report.model import MonthReport
from gateway.report.texts import Lang, change, kwh, number, percent, word

_FIGURE = re.compile(r"^[-+—\d]")


def is_figure(cell: str) -> bool:
    """Whether a cell is a figure (aligned right) rather than words (aligned left)."""
    return bool(_FIGURE.match(cell))


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    chart: str = ""  # the chart shown under it (charts.Chart.key)
    extra: list[str] = field(default_factory=list)


def title(report: MonthReport, lang: Lang) -> str:
    building = f" {report.building}" if report.building else ""
    month = (
        f"{report.month.year}年{report.month.month}月"
        if lang == "zh"
        else report.month.strftime("%B %Y")
    )
    return word("title", lang).format(site=report.site_name, building=building, month=month)


def summary(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    rows = [
        [w("total"), kwh(r.total_kwh)],
        [
            w("last_month"),
            f"{kwh(r.total_last_month_kwh)} ({change(r.total_kwh, r.total_last_month_kwh)})",
        ],
        [
            w("last_year"),
            f"{kwh(r.total_last_year_kwh)} ({change(r.total_kwh, r.total_last_year_kwh)})",
        ],
        [w("per_m2"), number(r.kwh_per_m2, 2, "kWh/m²")],
        [w("after_hours"), f"{kwh(r.after_hours_kwh)} ({percent(r.after_hours_share)})"],
        [w("standard_coal"), number(r.kgce_total, 0, "kgce")],
        [w("carbon"), number(r.co2_total_kg / 1000, 2, "tCO₂")],
        [w("coverage"), percent(r.coverage)],
    ]
    for carrier in ("electricity", "gas", "heat"):
        if carrier in r.co2_kg:
            rows.append(
                [f"{w('carbon')} · {w(carrier)}", number(r.co2_kg[carrier] / 1000, 2, "tCO₂")]
            )
    note = f"{w('factor_set')}: {', '.join(r.factor_sets)}" if r.factor_sets else ""
    return Section("summary", w("summary"), [], rows, note)


def categories(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    rows = [
        [
            w(c.use),
            kwh(c.kwh),
            percent(c.kwh / r.total_kwh if r.total_kwh else None),
            kwh(c.last_month_kwh),
            change(c.kwh, c.last_month_kwh),
            kwh(c.last_year_kwh),
            change(c.kwh, c.last_year_kwh),
        ]
        for c in r.categories
    ]
    rows.append(
        [
            w("sum"),
            kwh(r.total_kwh),
            percent(1.0 if r.total_kwh else None),
            kwh(r.total_last_month_kwh),
            change(r.total_kwh, r.total_last_month_kwh),
            kwh(r.total_last_year_kwh),
            change(r.total_kwh, r.total_last_year_kwh),
        ]
    )
    header = [w(k) for k in ("category", "this_month", "share", "last_month", "change")]
    header += [w("last_year"), w("change")]
    return Section("categories", w("by_category"), header, rows, chart="compare")


def daily(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    uses = [u for u, values in r.daily_kwh.items() if any(values)]
    rows = []
    for i, day in enumerate(r.days):
        values = [r.daily_kwh[u][i] for u in uses]
        rows.append([day.isoformat(), *(number(v) for v in values), number(sum(values))])
    header = [w("day"), *(w(u) for u in uses), w("sum")]
    return Section("daily", w("daily"), header, rows, chart="daily")


def quotas(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    rows = [
        [
            q.rule,
            kwh(q.month_kwh),
            kwh(q.month_limit_kwh),
            kwh(q.year_to_date_kwh),
            kwh(q.year_limit_kwh),
            kwh(q.projected_year_kwh),
            percent(q.projected_year_kwh / q.year_limit_kwh if q.year_limit_kwh else None),
        ]
        for q in r.quotas
    ]
    header = [w(k) for k in ("rule", "this_month", "month_limit", "ytd", "year_limit")]
    header += [w("projected"), w("pace")]
    return Section("quota", w("quota"), header, rows, note="" if rows else w("no_quota"))


def consumers(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    rows = [
        [
            c.device,
            w(c.use) if c.use else "—",
            c.building or "—",
            kwh(c.kwh),
            percent(c.kwh / r.total_kwh if r.total_kwh else None),
        ]
        for c in r.consumers
    ]
    header = [w(k) for k in ("device", "use", "building", "this_month", "share")]
    return Section("consumers", w("consumers"), header, rows, chart="share")


def ac(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    a = r.ac
    rows = [
        [w("units"), str(a.units)],
        [w("unit_hours"), str(a.unit_hours)],
        [w("compliant_hours"), str(a.compliant_hours)],
        [w("ac_share"), percent(a.share)],
        [w("enforced"), str(a.enforcement_writes)],
        [w("refused"), str(a.refused_writes)],
    ]
    return Section("ac", w("ac"), [], rows)


def pv_water_pue(r: MonthReport, lang: Lang) -> list[Section]:
    w = partial(word, lang=lang)
    out = []
    if r.pv is not None:
        p = r.pv
        rows = [
            [w("generation"), kwh(p.generation_kwh)],
            [w("export"), kwh(p.export_kwh) if p.export_kwh is not None else w("not_metered")],
            [w("self_share"), percent(p.self_share)],
            [w("yield"), number(p.yield_kwh_per_kwp, 1)],
            [w("avoided"), number(p.avoided_co2_kg / 1000, 2, "tCO₂")],
        ]
        out.append(Section("pv", w("pv"), [], rows))
    if r.water is not None:
        wa = r.water
        rows = [
            [w("water_use"), number(wa.m3, 1, "m³")],
            [
                w("last_month"),
                f"{number(wa.last_month_m3, 1, 'm³')} ({change(wa.m3, wa.last_month_m3)})",
            ],
            [
                w("last_year"),
                f"{number(wa.last_year_m3, 1, 'm³')} ({change(wa.m3, wa.last_year_m3)})",
            ],
            [w("per_person"), number(wa.per_person_m3, 2, "m³")],
        ]
        out.append(Section("water", w("water"), [], rows))
    if r.pue:
        rows = [
            [p.room, kwh(p.facility_kwh), kwh(p.it_kwh), number(p.pue, 2), number(p.limit, 2)]
            for p in r.pue
        ]
        header = [w(k) for k in ("room", "facility", "it", "pue_value", "limit")]
        out.append(Section("pue", w("pue"), header, rows))
    return out


def chargers(r: MonthReport, lang: Lang) -> list[Section]:
    """Each EV charger's energy in the month against the month before; none without chargers."""
    if not r.chargers:
        return []
    w = partial(word, lang=lang)
    rows = [
        [
            c.device,
            c.building or "—",
            kwh(c.kwh),
            kwh(c.last_month_kwh),
            change(c.kwh, c.last_month_kwh) if c.kwh is not None else "—",
        ]
        for c in r.chargers
    ]
    this, before = r.charging_kwh, r.charging_last_month_kwh
    rows.append(
        [w("sum"), "", kwh(this), kwh(before), change(this, before) if this is not None else "—"]
    )
    header = [w(k) for k in ("charger", "building", "this_month", "last_month", "change")]
    return [Section("chargers", w("chargers"), header, rows)]


def alarms(r: MonthReport, lang: Lang) -> Section:
    w = partial(word, lang=lang)
    rows = [
        [
            a.raised.strftime("%m-%d %H:%M") if a.raised else w("before_month"),
            w(a.grade),
            w(a.state),
            a.text_zh if lang == "zh" else a.text_en,
        ]
        for a in r.alarms
    ]
    opened = sum(1 for a in r.alarms if a.open)
    note = f"{w('alarm_open')}: {opened} · {w('alarm_closed')}: {len(r.alarms) - opened}"
    header = [w(k) for k in ("raised", "grade", "state", "text")]
    return Section("alarms", w("alarms"), header, rows, note=note)


def sections(r: MonthReport, lang: Lang) -> list[Section]:
    """Every section, in the order a reader wants them."""
    return [
        summary(r, lang),
        categories(r, lang),
        quotas(r, lang),
        consumers(r, lang),
        ac(r, lang),
        *pv_water_pue(r, lang),
        *chargers(r, lang),
        alarms(r, lang),
        daily(r, lang),
    ]
