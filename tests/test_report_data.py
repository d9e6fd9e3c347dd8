"""A simulated site's month for the report tests: the `energy` accounts (hour, day and month
periods, in the accounts' schema), AC units' readings, enforcement writes and alarms, as
InfluxDB lines, with the figures the report should find computed here on their own."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
SITE_ID = "city-hall"
FACTOR_SET = "cn-2023/east"
KGCE = {"electricity": 0.1229, "water": 0.0}
CO2 = {"electricity": 0.55, "water": 0.0}
PV_KWP = 50.0
AREA = 12000.0
HEADCOUNT = 300
QUOTA_KWH = 1_500_000.0
BASELINE = {"electricity_kwh": 400_000.0, "water_m3": 1500.0, "co2_t": 230.0}  # 2020

# device -> (use, kind, carrier, flow, kWh (or m³) an office hour, an hour otherwise)
COUNTERS = {
    "meter-light": ("lighting_sockets", "meter", "electricity", "import", 20.0, 3.0),
    "meter-ac": ("hvac", "meter", "electricity", "import", 40.0, 5.0),
    "meter-lift": ("power", "meter", "electricity", "import", 8.0, 1.0),
    "meter-srv": ("special", "meter", "electricity", "import", 6.0, 6.0),
    "meter-ups": ("special", "meter", "electricity", "import", 4.0, 4.0),
    "water-main": ("", "water_meter", "water", "consumption", 0.5, 0.05),
}
UNMETERED_KWH = 2.0  # an hour: what the main meter counts beyond its sub-meters

SITE_YAML = """\
site: {{name: 市行政中心, id: city-hall, timezone: Asia/Shanghai, tags: {{building: main}}}}
influxdb: {{api: v1, url: "{url}", database: building}}
calendar: {{office_hours: ["08:30-12:00", "13:30-17:30"]}}
accounts:
  grid_region: east
  buildings:
    main: {{name: 主楼, area_m2: 12000, headcount: 300, pv_kwp: 50}}
  baselines:
    main: {{year: 2020, electricity_kwh: 400000, water_m3: 1500, co2_t: 230}}
  data_rooms:
    srv: {{facility: [meter-srv], it: [meter-ups]}}
rules:
  - {{id: ac-policy, kind: ac_policy, enforce: true, exempt_zones: ["srv-*"]}}
  - id: quota-year
    kind: quota
    scope: {{devices: [meter-main]}}
    period: year
    limit_kwh: 1500000
devices:
{devices}
"""
AC_UNITS = {"ac-301": "301", "ac-302": "302", "ac-srv": "srv-1"}


def site_yaml(url: str) -> str:
    meters = ["meter-main", *(d for d, c in COUNTERS.items() if c[1] == "meter")]
    lines = [
        f"  - {{id: {d}, profile: chint_dtsu666, "
        f"modbus: {{transport: tcp, host: 127.0.0.1, port: 1, unit: {i + 1}}}}}"
        for i, d in enumerate(meters)
    ]
    lines += [
        f"  - {{id: {d}, profile: coolmaster_indoor, modbus: {{transport: tcp, host: 127.0.0.1, "
        f'port: 2, base: {16 + i}}}, tags: {{floor: "3", zone: "{z}"}}}}'
        for i, (d, z) in enumerate(AC_UNITS.items())
    ]
    return SITE_YAML.format(url=url, devices="\n".join(lines))


def office_minutes(moment: datetime) -> int:
    """Minutes of the hour from `moment` in 08:30-12:00 or 13:30-17:30 on a weekday (July
    2026 has no statutory holiday or make-up day in China)."""
    if moment.weekday() >= 5:
        return 0
    start = moment.hour * 60
    inside = 0
    for lo, hi in ((510, 720), (810, 1050)):
        inside += max(0, min(hi, start + 60) - max(lo, start))
    return inside


@dataclass
class Month:
    """What the test wrote, summed the test's own way."""

    lines: list[str] = field(default_factory=list)
    # (device, flow) -> local month start -> amount
    monthly: dict[tuple[str, str], dict[date, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    july_daily: dict[str, dict[date, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    july_after_hours_kwh: float = 0.0
    unit_hours: int = 0
    compliant_hours: int = 0


def _energy_line(
    device: str,
    use: str,
    kind: str,
    carrier: str,
    flow: str,
    period: str,
    t: datetime,
    amount: float,
) -> str:
    tags = {
        "building": "main",
        "carrier": carrier,
        "device": device,
        "flow": flow,
        "kind": kind,
        "period": period,
        "site": SITE_ID,
    }
    if use:
        tags["use"] = use
    head = ",".join(f"{k}={v}" for k, v in sorted(tags.items()))
    fields = (
        f"amount={amount!r},kgce={amount * KGCE[carrier]!r},co2_kg={amount * CO2[carrier]!r},"
        f'coverage=1.0,factor_set="{FACTOR_SET}"'
    )
    return f"energy,{head} {fields} {int(t.timestamp())}000000000"


def _hours(start: date, end: date) -> list[datetime]:
    t = datetime(start.year, start.month, start.day, tzinfo=TZ)
    stop = datetime(end.year, end.month, end.day, tzinfo=TZ)
    out = []
    while t < stop:
        out.append(t)
        t += timedelta(hours=1)
    return out


def build(seed: int = 11) -> Month:
    rng = random.Random(seed)
    m = Month()
    spans = ((date(2025, 1, 1), date(2026, 8, 1)),)  # 2025 whole, for the yearly table
    for span in spans:
        hours = _hours(*span)
        per_day: dict[tuple[str, str, str, str, str, date], float] = defaultdict(float)
        for t in hours:
            inside = office_minutes(t) / 60
            main = UNMETERED_KWH
            for device, (use, kind, carrier, flow, busy, idle) in COUNTERS.items():
                amount = round((idle + (busy - idle) * inside) * rng.uniform(0.9, 1.1), 3)
                m.lines.append(_energy_line(device, use, kind, carrier, flow, "hour", t, amount))
                per_day[(device, use, kind, carrier, flow, t.date())] += amount
                if carrier == "electricity":
                    main += amount
            main = round(main, 3)
            sun = max(0.0, 1 - abs(t.hour + 0.5 - 12.5) / 6.5)
            generation = round(PV_KWP * 0.8 * sun, 3)
            for device, use, kind, flow, amount in (
                ("meter-main", "total", "meter", "import", main),
                ("pv-roof", "", "pv_inverter", "generation", generation),
                ("meter-main", "total", "meter", "export", round(generation * 0.1, 3)),
            ):
                m.lines.append(
                    _energy_line(device, use, kind, "electricity", flow, "hour", t, amount)
                )
                per_day[(device, use, kind, "electricity", flow, t.date())] += amount
            if t.year == 2026 and t.month == 7:
                m.july_after_hours_kwh += main * (1 - inside)
        per_month: dict[tuple[str, str, str, str, str, date], float] = defaultdict(float)
        for (device, use, kind, carrier, flow, day), amount in per_day.items():
            t = datetime(day.year, day.month, day.day, tzinfo=TZ)
            m.lines.append(_energy_line(device, use, kind, carrier, flow, "day", t, amount))
            first = day.replace(day=1)
            per_month[(device, use, kind, carrier, flow, first)] += amount
            if day.year == 2026 and day.month == 7 and flow == "import":
                m.july_daily[device][day] += amount
        for (device, use, kind, carrier, flow, first), amount in per_month.items():
            t = datetime(first.year, first.month, 1, tzinfo=TZ)
            m.lines.append(_energy_line(device, use, kind, carrier, flow, "month", t, amount))
            m.monthly[(device, flow)][first] += amount
    _ac(m)
    _audit_and_alarms(m)
    return m


def _ac(m: Month) -> None:
    """Two readings an hour per unit; ac-302 cools at 24 °C the first ten days; ac-301 dips to
    25.5 °C for one reading on 15 July at 10:10; ac-srv (exempt) keeps 22 °C."""
    for t in _hours(date(2026, 7, 1), date(2026, 8, 1)):
        on = t.weekday() < 5 and 8 <= t.hour < 18
        for unit in AC_UNITS:
            setpoints = []
            for minute in (10, 40):
                if unit == "ac-302":
                    sp = 24.0 if t.day <= 10 else 26.0
                elif unit == "ac-srv":
                    sp = 22.0
                else:
                    sp = 25.5 if (t.day, t.hour, minute) == (15, 10, 10) else 26.0
                setpoints.append(sp)
                ts = int((t + timedelta(minutes=minute)).timestamp())
                m.lines.append(
                    f"hvac,building=main,device={unit},floor=3,kind=hvac,site={SITE_ID},"
                    f"zone={AC_UNITS[unit]} mode=0i,on_off={int(on)}i,setpoint_degc={sp!r},"
                    f"room_temp_degc=27.5 {ts}000000000"
                )
            if on and unit != "ac-srv":
                m.unit_hours += 1
                m.compliant_hours += min(setpoints) >= 26.0


ENFORCED = 10  # ac-302's write-backs (accepted), one a day of its ten days at 24 °C
REFUSED = 1


def _audit_and_alarms(m: Month) -> None:
    def audit(device: str, outcome: str, origin: str, t: datetime) -> str:
        return (
            f"audit,device={device},outcome={outcome},point=setpoint_degc,site={SITE_ID} "
            f'origin="{origin}",reason="setpoint 24 below the limit 26",requested=26.0,old=24.0 '
            f"{int(t.timestamp())}000000000"
        )

    for day in range(1, ENFORCED + 1):
        m.lines.append(
            audit("ac-302", "accepted", "rule:ac-policy", datetime(2026, 7, day, 9, 5, tzinfo=TZ))
        )
    m.lines.append(
        audit("ac-302", "refused", "rule:ac-policy", datetime(2026, 7, 2, 9, 6, tzinfo=TZ))
    )
    # Neither an ac_policy write nor a unit the policy watches: not counted.
    m.lines.append(
        audit("ac-301", "accepted", "mqtt:console", datetime(2026, 7, 3, 9, 0, tzinfo=TZ))
    )
    m.lines.append(
        audit("ac-srv", "accepted", "rule:ac-policy", datetime(2026, 7, 3, 9, 0, tzinfo=TZ))
    )
    m.lines.append(
        audit("ac-302", "accepted", "rule:ac-policy", datetime(2026, 6, 30, 9, 0, tzinfo=TZ))
    )

    def alarm(
        alarm_id: str, kind: str, grade: str, what: str, state: str, t: datetime, text: str
    ) -> str:
        return (
            f"alarm,building=main,grade={grade},kind={kind},rule=r,site={SITE_ID},"
            f'subject={alarm_id.split(".")[-1]} alarm_id="{alarm_id}",transition="{what}",'
            f'state="{state}",text_zh="{text}",text_en="{kind} alarm",by="guanjia" '
            f"{int(t.timestamp())}000000000"
        )

    d = lambda mo, day, h: datetime(2026, mo, day, h, tzinfo=TZ)  # noqa: E731
    m.lines += [
        # Raised in June, closed on 3 July: in the report, as raised before the month.
        alarm(
            "ac.ac-302",
            "ac_setpoint_violation",
            "yellow",
            "raised",
            "active",
            d(6, 28, 9),
            "空调设定温度低于制冷下限",
        ),
        alarm("ac.ac-302", "ac_setpoint_violation", "yellow", "cleared", "cleared", d(7, 3, 9), ""),
        alarm("ac.ac-302", "ac_setpoint_violation", "yellow", "closed", "closed", d(7, 3, 10), ""),
        # Raised and acknowledged in July, still open at its end.
        alarm(
            "doors.door-archive",
            "door_forced",
            "red",
            "raised",
            "active",
            d(7, 5, 22),
            "档案室门被强行打开 <b>",
        ),
        alarm("doors.door-archive", "door_forced", "red", "acked", "acknowledged", d(7, 5, 23), ""),
        # Raised and closed in July.
        alarm(
            "meters.meter-lift",
            "meter_offline",
            "blue",
            "raised",
            "active",
            d(7, 10, 3),
            "电梯电表离线",
        ),
        alarm("meters.meter-lift", "meter_offline", "blue", "closed", "closed", d(7, 10, 4), ""),
        # Over in June, and raised in August: not July's.
        alarm("meters.meter-ac", "meter_offline", "blue", "raised", "active", d(6, 10, 3), "x"),
        alarm("meters.meter-ac", "meter_offline", "blue", "closed", "closed", d(6, 11, 3), ""),
        alarm("meters.meter-ups", "meter_offline", "blue", "raised", "active", d(8, 2, 3), "y"),
    ]
