"""The figures of one month's report, from the site's database and its site file."""

from __future__ import annotations

import time as clock
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarm_service import device_infos
from gateway.config_load import LoadedSite
from gateway.report import energy
from gateway.report.energy import Row
from gateway.report.model import (
    CATEGORIES,
    OTHER,
    TOTAL_USE,
    UNMETERED,
    AcCompliance,
    Alarm,
    Category,
    Charger,
    Consumer,
    MonthReport,
    Pue,
    Pv,
    Quota,
    Water,
)
from gateway.report.query import InfluxQL, between, ident, literal
from rules.calendar import WorkCalendar
from rules.kinds.ac_policy import AcPolicyParams, AcPolicyRule
from rules.kinds.energy import QuotaParams
from rules.kinds.hvac import SAME
from rules.model import DeviceInfo

TOP_CONSUMERS = 10
ALARM_LOOKBACK = timedelta(days=92)  # an alarm raised this long before the month still shows
CARRIER_FLOWS = {
    "electricity": ("import",),
    "gas": ("consumption", "import"),
    "heat": ("consumption", "import"),
    "water": ("consumption", "import"),
}


def month_bounds(month: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=tz)
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return start, datetime(following.year, following.month, 1, tzinfo=tz)


def shift_month(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def area_and_headcount(loaded: LoadedSite, building: str | None) -> tuple[float | None, int | None]:
    """Floor area and headcount of the building (or all of them) from `accounts.buildings`;
    the site's area_m2 when no building is described."""
    accounts = loaded.site.accounts
    buildings = accounts.buildings if accounts else {}
    chosen = [b for name, b in buildings.items() if building is None or name == building]
    if not chosen:
        return (loaded.site.site.area_m2 if building is None else None), None
    heads = [b.headcount for b in chosen]
    headcount = (
        sum(h for h in heads if h is not None) if any(h is not None for h in heads) else None
    )
    return sum(b.area_m2 for b in chosen), headcount


def _by_category(rows: Iterable[Row]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in rows:
        out[energy.category(r.use)] += r.amount
    return out


def _electricity(rows: Sequence[Row]) -> tuple[float, dict[str, float]]:
    """The month's electricity total and its split by category (the main meters' excess over
    the sub-meters as UNMETERED)."""
    drawn = energy.of(rows, "electricity", "import")
    main = energy.pick_main(drawn)
    total = energy.total(main)
    split = _by_category(energy.sub_meters(drawn))
    if any(r.use == TOTAL_USE for r in main):
        rest = total - sum(split.values())
        if rest > 1e-6 * max(total, 1.0):
            split[UNMETERED] = rest
    return total, dict(split)


def office_fraction(calendar: WorkCalendar, hour: datetime) -> float:
    """The share of the hour from `hour` (local) inside office hours."""
    if not calendar.is_workday(hour.date()):
        return 0.0
    start = hour.hour * 60 + hour.minute
    inside = 0
    for begin, end in calendar.periods:
        lo, hi = begin.hour * 60 + begin.minute, end.hour * 60 + end.minute
        inside += max(0, min(hi, start + 60) - max(lo, start))
    return inside / 60.0


def _hour_offset(start: datetime) -> str:
    """GROUP BY time(1h, offset): hours start at the site's local hours (UTC+5:30 ...)."""
    offset = start.utcoffset() or timedelta(0)
    return f"{int(offset.total_seconds()) % 3600}s"


def after_hours(
    ql: InfluxQL, calendar: WorkCalendar, start: datetime, end: datetime, building: str | None
) -> float:
    """Electricity drawn outside office hours, from the hourly accounts."""
    where = (
        f"{ident('period')} = 'hour' AND carrier = 'electricity' AND flow = 'import' AND "
        f"{between(start.timestamp(), end.timestamp())}"
    )
    if building is not None:
        where += f" AND building = {literal(building)}"
    q = (
        f"SELECT sum(amount) FROM energy WHERE {where} "
        f"GROUP BY time(1h, {_hour_offset(start)}), {ident('use')} fill(none)"
    )
    series = ql.query(q)
    main = [s for s in series if s.tags.get("use") == TOTAL_USE] or series
    out = 0.0
    for s in main:
        for t, kwh in s.values:
            if kwh is None:
                continue
            local = datetime.fromtimestamp(t, calendar.tz)
            out += float(kwh) * (1.0 - office_fraction(calendar, local))
    return out


def _ac_rules(loaded: LoadedSite) -> list[AcPolicyRule]:
    return [
        AcPolicyRule(str(e["id"]), AcPolicyParams.model_validate(_params(e)))
        for e in loaded.site.rules
        if e.get("kind") == "ac_policy"
    ]


def _params(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("id", "kind")}


def ac_compliance(
    ql: InfluxQL,
    loaded: LoadedSite,
    devices: Sequence[DeviceInfo],
    start: datetime,
    end: datetime,
) -> AcCompliance:
    """Unit-hours within the limits (cooling not below 26 °C, heating not above 20 °C, or the
    site's ac_policy rules' own, judged by mode or season as the rules judge), and the rules'
    write-backs. A unit the site's rules leave out (exempt zones) is not counted; without any
    ac_policy rule the national limits apply to every hvac device."""
    rules = _ac_rules(loaded) or [AcPolicyRule("national", AcPolicyParams())]
    bound: dict[str, AcPolicyRule] = {}
    for info in devices:
        if info.kind != "hvac":
            continue
        for rule in rules:
            if rule.params.scope.matches(info) and not rule.params.exempt(info):
                bound[info.id] = rule
                break
    infos = {d.id: d for d in devices}
    tz = start.tzinfo
    unit_hours = compliant = 0
    groups: dict[int, list[str]] = defaultdict(list)
    for device, rule in bound.items():
        groups[id(rule)].append(device)
    by_id = {id(r): r for r in rules}
    for key, ids in groups.items():
        p = by_id[key].params
        match = " OR ".join(f"device = {literal(d)}" for d in sorted(ids))
        q = (
            f"SELECT last({ident(p.mode_point)}) AS mode, min({ident(p.setpoint_point)}) AS lo, "
            f"max({ident(p.setpoint_point)}) AS hi, last({ident(p.power_point)}) AS power "
            f"FROM hvac WHERE {between(start.timestamp(), end.timestamp())} AND ({match}) "
            f"GROUP BY time(1h, {_hour_offset(start)}), device fill(none)"
        )
        for s in ql.query(q):
            device = s.tags.get("device", "")
            if device not in bound:
                continue
            cooling, heating = by_id[key].limits(infos[device])
            for row in s.rows():
                mode, lo, hi, power = row["mode"], row["lo"], row["hi"], row["power"]
                if mode is None or lo is None or hi is None:
                    continue
                if power is not None and not power:
                    continue  # off all the last reading of the hour
                moment = datetime.fromtimestamp(row["time"], tz)
                # As the rule judges: by the mode all year, or only in its season.
                summer, winter = p.summer.contains(moment), p.winter.contains(moment)
                by_mode = p.judge == "mode"
                kind = p.codes(infos[device]).kind(mode)
                auto = kind == "auto"
                if (kind in ("cool", "dry") and (by_mode or summer)) or (auto and summer):
                    unit_hours += 1
                    compliant += lo > cooling - SAME
                elif (kind == "heat" and (by_mode or winter)) or (auto and winter):
                    unit_hours += 1
                    compliant += hi < heating + SAME
    origins = {f"rule:{r.id}" for r in rules}
    writes = refused = 0
    q = (
        "SELECT origin FROM audit WHERE "
        f"{between(start.timestamp(), end.timestamp())} GROUP BY device, outcome"
    )
    for s in ql.query(q):
        if s.tags.get("device") not in bound:
            continue
        n = sum(1 for row in s.rows() if row["origin"] in origins)
        if s.tags.get("outcome") == "accepted":
            writes += n
        else:
            refused += n
    return AcCompliance(unit_hours, compliant, writes, refused, len(bound))


def alarms(ql: InfluxQL, start: datetime, end: datetime, building: str | None) -> list[Alarm]:
    """The alarms of the month: raised in it, or raised before and not closed at its start;
    each as it stood at the month's end."""
    where = between((start - ALARM_LOOKBACK).timestamp(), end.timestamp())
    if building is not None:
        where += f" AND building = {literal(building)}"
    q = (
        "SELECT alarm_id, transition, state, text_zh, text_en FROM alarm "
        f"WHERE {where} GROUP BY kind, grade, subject"
    )
    history: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = defaultdict(list)
    for s in ql.query(q):
        for row in s.rows():
            history[str(row["alarm_id"])].append((int(row["time"]), row, dict(s.tags)))
    out: list[Alarm] = []
    tz = start.tzinfo
    begin = start.timestamp()
    for alarm_id, steps in history.items():
        steps.sort(key=lambda step: step[0])
        raised = next((t for t, row, _ in steps if row["transition"] == "raised"), None)
        before = [row for t, row, _ in steps if t < begin]
        open_at_start = bool(before) and before[-1]["state"] != "closed"
        if steps[-1][0] < begin and not open_at_start:
            continue  # over before the month began
        t_last, last, tags = steps[-1]
        first_text = next((row for _, row, _ in steps if row.get("text_zh")), last)
        out.append(
            Alarm(
                alarm_id,
                tags.get("kind", ""),
                tags.get("grade", ""),
                tags.get("subject", ""),
                datetime.fromtimestamp(raised, tz)
                if raised is not None and raised >= begin
                else None,
                datetime.fromtimestamp(t_last, tz),
                str(last["state"]),
                str(first_text.get("text_zh") or ""),
                str(first_text.get("text_en") or ""),
            )
        )
    out.sort(key=lambda a: (a.raised or start, a.alarm_id))
    return out


def quotas(
    ql: InfluxQL,
    loaded: LoadedSite,
    month_rows: Sequence[Row],
    start: datetime,
    end: datetime,
    building: str | None,
    now: float,
) -> list[Quota]:
    """Each `quota` rule of the site: the month against its share of the quota, the year to
    date extended at its pace to the year's end."""
    entries = [e for e in loaded.site.rules if e.get("kind") == "quota"]
    if not entries:
        return []
    tz = start.tzinfo
    year_start = datetime(start.year, 1, 1, tzinfo=tz)
    year_end = datetime(start.year + 1, 1, 1, tzinfo=tz)
    ytd_rows = energy.sums(ql, "day", year_start, end, building)
    out = []
    for entry in entries:
        p = QuotaParams.model_validate(_params(entry))

        def scoped(rows: Iterable[Row], p: QuotaParams = p) -> list[Row]:
            return [
                r
                for r in energy.of(rows, "electricity", "import")
                if p.scope.matches(_as_device(r))
            ]

        month_kwh = energy.total(scoped(month_rows))
        ytd = energy.total(scoped(ytd_rows))
        year_s = year_end.timestamp() - year_start.timestamp()
        month_s = end.timestamp() - start.timestamp()
        if p.period == "month":
            month_limit, year_limit = p.limit_kwh, p.limit_kwh * 12
        else:
            month_limit, year_limit = p.limit_kwh * month_s / year_s, p.limit_kwh
        elapsed = min(end.timestamp(), max(now, start.timestamp())) - year_start.timestamp()
        projected = ytd * year_s / elapsed if elapsed > 0 else 0.0
        out.append(
            Quota(str(entry["id"]), p.period, month_kwh, month_limit, ytd, year_limit, projected)
        )
    return out


def _as_device(r: Row) -> DeviceInfo:
    """A counter of the accounts as a rule's scope sees a device."""
    tags = {
        k: v
        for k, v in (("building", r.building), ("floor", r.floor), ("zone", r.zone), ("use", r.use))
        if v
    }
    return DeviceInfo(r.device, r.kind, "", tags)


def build_month(
    loaded: LoadedSite,
    ql: InfluxQL,
    month: date,
    building: str | None = None,
    *,
    now: float | None = None,
) -> MonthReport:
    site = loaded.site
    tz = ZoneInfo(site.site.timezone)
    start, end = month_bounds(month, tz)
    rows = energy.rows(ql, "day", start, end, building)
    total, split = _electricity(rows)
    earlier = []
    for months in (-1, -12):
        s, e = month_bounds(shift_month(month, months), tz)
        earlier.append(energy.rows(ql, "day", s, e, building))
    (last_total, last_split), (ly_total, ly_split) = (_electricity(r) for r in earlier)
    order = [*CATEGORIES, OTHER, UNMETERED]
    categories = [
        Category(
            use,
            split.get(use, 0.0),
            last_split.get(use, 0.0) if earlier[0] else None,
            ly_split.get(use, 0.0) if earlier[1] else None,
        )
        for use in order
        if use in split or use in CATEGORIES
    ]
    days = [start.date() + timedelta(days=i) for i in range((end - start).days)]
    index = {d: i for i, d in enumerate(days)}
    drawn = energy.of(rows, "electricity", "import")
    subs = energy.sub_meters(drawn) or drawn
    daily: dict[str, list[float]] = {c.use: [0.0] * len(days) for c in categories}
    for r in subs:
        i = index.get(datetime.fromtimestamp(r.t, tz).date())
        if i is not None:
            daily.setdefault(energy.category(r.use), [0.0] * len(days))[i] += r.amount
    if UNMETERED in daily:  # each day's main meters beyond its sub-meters
        main_daily = [0.0] * len(days)
        for r in energy.pick_main(drawn):
            i = index.get(datetime.fromtimestamp(r.t, tz).date())
            if i is not None:
                main_daily[i] += r.amount
        metered = [sum(v[i] for u, v in daily.items() if u != UNMETERED) for i in range(len(days))]
        daily[UNMETERED] = [max(m - s, 0.0) for m, s in zip(main_daily, metered, strict=True)]
    per_device: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in subs:
        per_device[(r.device, r.use, r.building)] += r.amount
    consumers = sorted(
        (Consumer(d, u, b, kwh) for (d, u, b), kwh in per_device.items()),
        key=lambda c: -c.kwh,
    )[:TOP_CONSUMERS]
    calendar = WorkCalendar.from_config(site.calendar, tz, loaded.base_dir)
    area, headcount = area_and_headcount(loaded, building)
    devices = [
        d for d in device_infos(loaded) if building is None or d.tags.get("building") == building
    ]
    co2: dict[str, float] = {}
    kgce: dict[str, float] = {}
    for carrier, flows in CARRIER_FLOWS.items():
        main = energy.pick_main(energy.of(rows, carrier, *flows))
        if main:
            co2[carrier] = sum(r.co2_kg for r in main)
            kgce[carrier] = sum(r.kgce for r in main)
    counted = [
        r for c, f in CARRIER_FLOWS.items() for r in energy.pick_main(energy.of(rows, c, *f))
    ]
    covered = [r.coverage for r in counted if r.coverage is not None]
    return MonthReport(
        site_name=site.site.name,
        site_id=site.site.id,
        building=building,
        month=start.date(),
        timezone=site.site.timezone,
        days=days,
        daily_kwh=daily,
        categories=categories,
        total_kwh=total,
        total_last_month_kwh=last_total if earlier[0] else None,
        total_last_year_kwh=ly_total if earlier[1] else None,
        consumers=consumers,
        after_hours_kwh=after_hours(ql, calendar, start, end, building),
        ac=ac_compliance(ql, loaded, devices, start, end),
        pv=_pv(loaded, rows, building),
        water=_water(rows, earlier, headcount),
        pue=_pue(loaded, rows),
        co2_kg=co2,
        kgce=kgce,
        area_m2=area,
        headcount=headcount,
        quotas=quotas(ql, loaded, rows, start, end, building, clock.time() if now is None else now),
        alarms=alarms(ql, start, end, building),
        coverage=sum(covered) / len(covered) if covered else None,
        factor_sets=sorted({r.factor_set for r in counted if r.factor_set}),
        chargers=_chargers(rows, earlier[0], devices),
    )


def _pv(loaded: LoadedSite, rows: Sequence[Row], building: str | None) -> Pv | None:
    generated = energy.of(rows, "electricity", "generation")
    exported = energy.of(rows, "electricity", "export")
    accounts = loaded.site.accounts
    kwps = [
        b.pv_kwp
        for name, b in (accounts.buildings.items() if accounts else ())
        if b.pv_kwp and (building is None or name == building)
    ]
    if not generated and not kwps:
        return None
    return Pv(
        energy.total(generated),
        energy.total(exported) if exported else None,
        sum(kwps) if kwps else None,
        sum(r.co2_kg for r in generated),
    )


def _chargers(
    rows: Sequence[Row], last_month: Sequence[Row], devices: Sequence[DeviceInfo]
) -> list[Charger]:
    """Each EV charger's `charging` energy in the month and the month before: the site's
    chargers (of the building) and any the accounts have figures for (one since removed)."""

    def per_device(rs: Sequence[Row]) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for r in energy.of(rs, "electricity", "charging"):
            out[r.device] += r.amount
        return out

    this, before = per_device(rows), per_device(last_month)
    buildings = {d.id: d.tags.get("building", "") for d in devices if d.kind == "ev_charger"}
    for r in energy.of([*rows, *last_month], "electricity", "charging"):
        buildings.setdefault(r.device, r.building)
    return [
        Charger(device, buildings[device], this.get(device), before.get(device))
        for device in sorted(buildings)
    ]


def _water(
    rows: Sequence[Row], earlier: Sequence[Sequence[Row]], headcount: int | None
) -> Water | None:
    def m3(rs: Sequence[Row]) -> float | None:
        main = energy.pick_main(energy.of(rs, "water", *CARRIER_FLOWS["water"]))
        return energy.total(main) if main else None

    this = m3(rows)
    if this is None:
        return None
    return Water(this, m3(earlier[0]), m3(earlier[1]), headcount)


def _pue(loaded: LoadedSite, rows: Sequence[Row]) -> list[Pue]:
    accounts = loaded.site.accounts
    if accounts is None:
        return []
    per_device: dict[str, float] = defaultdict(float)
    seen = set()
    for r in energy.of(rows, "electricity", "import"):
        per_device[r.device] += r.amount
        seen.add(r.device)
    out = []
    for name, room in accounts.data_rooms.items():
        if not seen & {*room.facility, *room.it}:
            continue  # not in this building, or not metered yet
        out.append(
            Pue(
                name,
                sum(per_device[d] for d in room.facility),
                sum(per_device[d] for d in room.it),
                room.pue_limit,
            )
        )
    return out
