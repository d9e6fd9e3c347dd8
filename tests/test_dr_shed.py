"""The load shed of a demand-response event (gateway/dr/shed.py) against a real InfluxDB 1.x:
readings of an AC meter with a known shape are written for the fortnight around the 2025
National Day holiday, and the figure must be the one figured here from that shape."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config_load import load_site
from gateway.dr.baseline import similar_days
from gateway.dr.shed import InfluxReadings, MeasuredShed, ShedAccounts, VictoriaReadings
from gateway.lineproto import record_line
from gateway.report.query import InfluxQL
from rules.calendar import WorkCalendar
from tests.servers import InfluxDB1Server, VictoriaMetricsServer
from tests.sites import meter_site

DB = "building"
TZ = ZoneInfo("Asia/Shanghai")
SITE = "city-hall"
STEP = 300  # s between readings
FIRST = date(2025, 9, 26)
EVENT_DAY = date(2025, 10, 14)  # a Tuesday after the National Day holiday
EVENT_START = datetime.combine(EVENT_DAY, time(14), TZ).timestamp()
EVENT_END = EVENT_START + 2 * 3600
CALENDAR = WorkCalendar("Asia/Shanghai")
# 10-10 has no readings in the afternoon: the day is skipped.
GAP = (datetime.combine(date(2025, 10, 10), time(13), TZ).timestamp(), 4 * 3600.0)
# The last five working days before 10-14 with readings: 10-11 is the make-up Saturday (调休),
# 10-01..10-08 the holiday, 10-10 has the gap.
EXPECTED_DAYS = ("2025-10-13", "2025-10-11", "2025-10-09", "2025-09-30", "2025-09-29")


def power_kw(t: float) -> float:
    """The AC meter's load over the 5 minutes from `t`: office hours on working days, a
    different level each day, 40 % less in the event's window."""
    local = datetime.fromtimestamp(t, TZ)
    if CALENDAR.is_workday(local.date()):
        kw = 6.0 + local.day * 0.3 + (30.0 + local.hour if 8 <= local.hour < 18 else 0.0)
    else:
        kw = 3.0 + local.day * 0.1
    return kw * 0.6 if EVENT_START <= t < EVENT_END else kw


def steps(until: date = EVENT_DAY + timedelta(days=1)) -> Iterator[float]:
    t = datetime.combine(FIRST, time(0), TZ).timestamp()
    end = datetime.combine(until, time(0), TZ).timestamp()
    while t <= end:
        yield t
        t += STEP


def truth(lo: float, hi: float) -> float:
    """kWh in [lo, hi) (on reading steps) from the shape itself."""
    return sum(power_kw(t) * STEP / 3600 for t in steps() if lo <= t < hi)


def counter_lines(
    meter: str, *, keep: Callable[[float], bool] = lambda t: True, reset_at: float | None = None
) -> list[str]:
    """The meter's `energy_import_kwh` readings; the counter restarts from 0 in the 5 minutes
    before the reading at `reset_at` (which shows what it counted since)."""
    out = []
    value = previous = 1000.0
    for t in steps():
        if reset_at is not None and t == reset_at:
            value -= previous
        previous = value
        if keep(t):
            out.append(
                f"meter,device={meter},kind=meter,site={SITE} energy_import_kwh={value!r} {int(t)}"
            )
        value += power_kw(t) * STEP / 3600
    return out


def expected(until: float) -> tuple[float, float]:
    """(baseline, actual) of [EVENT_START, until) from the shape."""
    span = until - EVENT_START
    days = [date.fromisoformat(d) for d in EXPECTED_DAYS]
    lows = [datetime.combine(d, time(14), TZ).timestamp() for d in days]
    baseline = sum(truth(lo, lo + span) for lo in lows) / len(lows)
    return baseline, truth(EVENT_START, until)


def outside_gap(t: float) -> bool:
    return not GAP[0] <= t < GAP[0] + GAP[1]


@pytest.fixture
def influx(influx1: InfluxDB1Server) -> InfluxDB1Server:
    # The same meter three ways: a clean counter, one reset in a baseline day's window and
    # one reset in the event, and one with only two days of history.
    lines = counter_lines("ac-meter", keep=outside_gap)
    lines += counter_lines(
        "ac-meter-reset",
        keep=outside_gap,
        reset_at=datetime.combine(date(2025, 10, 13), time(14, 35), TZ).timestamp(),
    )
    lines += counter_lines(
        "ac-meter-reset-event", keep=outside_gap, reset_at=EVENT_START + 3600 + STEP
    )
    lines += counter_lines(
        "ac-meter-new",
        keep=lambda t: t >= datetime.combine(date(2025, 10, 11), time(0), TZ).timestamp(),
    )
    influx1.write(lines, DB, precision="s")
    return influx1


def accounts(influx: InfluxDB1Server, meter: str = "ac-meter") -> ShedAccounts:
    shed = ShedAccounts(InfluxQL(influx.url, DB).query, SITE, meter, CALENDAR)
    shed.event_started("dr-2025-10-14", EVENT_START, EVENT_END, zones=("3F", "4F"))
    return shed


def figure(shed: ShedAccounts, now: float) -> MeasuredShed | None:
    return asyncio.run(shed.figure("dr-2025-10-14", now))


# --- similar days ---------------------------------------------------------------------------


def test_similar_days_follow_the_working_calendar() -> None:
    days = list(similar_days(CALENDAR, EVENT_DAY, look_back=16))
    # 10-11 is a make-up working Saturday, 09-28 a make-up Sunday; 10-01..10-08 are off.
    assert days[:6] == [
        date(2025, 10, 13),
        date(2025, 10, 11),
        date(2025, 10, 10),
        date(2025, 10, 9),
        date(2025, 9, 30),
        date(2025, 9, 29),
    ]
    assert date(2025, 9, 28) in days
    assert date(2025, 10, 6) not in days
    assert all(day >= EVENT_DAY - timedelta(days=16) for day in days)
    # A Sunday event looks at weekends: not the National Day holiday (10-01..10-08, its
    # weekend included), not the make-up days 10-11 and 09-28.
    sunday = list(similar_days(CALENDAR, date(2025, 10, 12), look_back=22))
    assert sunday == [date(2025, 9, 27), date(2025, 9, 21), date(2025, 9, 20)]
    # A holiday looks at the holiday's days before it.
    holiday = list(similar_days(CALENDAR, date(2025, 10, 7), look_back=8))
    assert holiday == [date(2025, 10, d) for d in (6, 5, 4, 3, 2, 1)]
    # Days of other demand-response events are left out.
    skipped = list(similar_days(CALENDAR, EVENT_DAY, look_back=4, exclude={date(2025, 10, 13)}))
    assert skipped == [date(2025, 10, 11), date(2025, 10, 10)]


# --- against the database ----------------------------------------------------------------------


@pytest.mark.servers
def test_baseline_and_shed_of_a_finished_event(influx: InfluxDB1Server) -> None:
    shed = accounts(influx)
    got = figure(shed, EVENT_END + 3600)
    assert got is not None
    assert got.known
    assert got.complete
    baseline, actual = expected(EVENT_END)
    assert got.baseline_days == EXPECTED_DAYS
    assert got.baseline_kwh == pytest.approx(baseline, rel=1e-9)
    assert got.actual_kwh == pytest.approx(actual, rel=1e-9)
    assert got.reduction_kwh == pytest.approx(baseline - actual, rel=1e-9)
    assert got.reduction_kw == pytest.approx((baseline - actual) / 2, rel=1e-9)
    assert got.until == EVENT_END
    assert got.source == "counter"
    assert got.reduction_kwh > 0
    # Complete figures are kept: no more queries.
    queries = shed.health()["dr_shed_queries"]
    assert figure(shed, EVENT_END + 7200) is got
    assert shed.health()["dr_shed_queries"] == queries
    assert shed.cached("dr-2025-10-14") is got
    # Announced again, or ended on time: what was figured holds.
    shed.event_started("dr-2025-10-14", EVENT_START, EVENT_END, zones=("3F", "4F"))
    shed.event_ended("dr-2025-10-14", EVENT_END)
    assert shed.cached("dr-2025-10-14") is got

    # The point, written as the gateway's sink writes Records, and read back.
    record = shed.record("dr-2025-10-14")
    assert record is not None
    line = record_line(SITE, record)
    assert line is not None
    influx.write([line], DB)
    rows = InfluxQL(influx.url, DB).query(
        "SELECT * FROM dr_shed WHERE event = 'dr-2025-10-14' AND meter = 'ac-meter'"
    )
    row = rows[0].rows()[0]
    assert row["time"] == EVENT_START
    assert row["site"] == SITE
    assert row["reduction_kwh"] == pytest.approx(baseline - actual)
    assert row["baseline_days"] == 5
    assert row["complete"] is True

    zh, en = shed.summary("dr-2025-10-14") or ("", "")
    assert f"削减 {baseline - actual:.1f} kWh" in zh
    assert "3F、4F" in zh
    assert f"reduction {baseline - actual:.1f} kWh" in en
    assert "last 5 similar days" in en


@pytest.mark.servers
def test_counter_resets_are_counted(influx: InfluxDB1Server) -> None:
    clean = figure(accounts(influx), EVENT_END + 3600)
    assert clean is not None
    for meter in ("ac-meter-reset", "ac-meter-reset-event"):
        got = figure(accounts(influx, meter), EVENT_END + 3600)
        assert got is not None, meter
        assert got.known, meter
        assert got.baseline_days == clean.baseline_days
        # What the reading after the reset shows is what the meter counted since it.
        assert got.baseline_kwh == pytest.approx(clean.baseline_kwh, rel=1e-9), meter
        assert got.actual_kwh == pytest.approx(clean.actual_kwh, rel=1e-9), meter


@pytest.mark.servers
def test_too_few_days_leave_the_baseline_unknown(influx: InfluxDB1Server) -> None:
    shed = accounts(influx, "ac-meter-new")
    got = figure(shed, EVENT_END + 3600)
    assert got is not None
    assert not got.known
    assert got.baseline_days == ("2025-10-13", "2025-10-11")
    assert math.isnan(got.baseline_kwh)
    assert math.isnan(got.reduction_kwh)
    assert got.actual_kwh == pytest.approx(expected(EVENT_END)[1], rel=1e-9)
    assert "only 2 similar days" in got.reason
    assert "2 天" in got.reason_zh
    record = shed.record("dr-2025-10-14")
    assert record is not None
    assert "baseline_kwh" not in record.fields
    assert "reduction_kw" not in record.fields
    assert record.fields["baseline_days"] == 2
    assert "only 2" in str(record.fields["reason"])
    zh, en = shed.summary("dr-2025-10-14") or ("", "")
    assert "无法计算" in zh
    assert "cannot be figured: only 2 similar days" in en
    assert shed.health()["dr_shed_unknown_baselines"] == 1
    # Missing readings may still come: asked again later, it looks again, until final_after_s.
    queries = shed.health()["dr_shed_queries"]
    figure(shed, EVENT_END + 2 * 3600)
    assert shed.health()["dr_shed_queries"] > queries
    figure(shed, EVENT_END + 7 * 3600)
    queries = shed.health()["dr_shed_queries"]
    assert figure(shed, EVENT_END + 8 * 3600) is shed.cached("dr-2025-10-14")
    assert shed.health()["dr_shed_queries"] == queries


@pytest.mark.servers
def test_the_figure_while_the_event_runs(influx: InfluxDB1Server) -> None:
    shed = accounts(influx)
    assert figure(shed, EVENT_START - 60) is None  # not begun: nothing to say
    now = EVENT_START + 3600
    got = figure(shed, now)
    assert got is not None
    assert got.known
    assert not got.complete
    assert got.until == now
    assert got.end == EVENT_END
    baseline, actual = expected(now)
    assert got.baseline_kwh == pytest.approx(baseline, rel=1e-9)
    assert got.actual_kwh == pytest.approx(actual, rel=1e-9)
    assert got.reduction_kw == pytest.approx(baseline - actual, rel=1e-9)  # over one hour
    assert shed.summary("dr-2025-10-14") is None  # not finished
    # Within refresh_s the running figure is the cached one; later it moves on.
    assert figure(shed, now + 30) is got
    later = figure(shed, now + 1800)
    assert later is not None
    assert later.until == now + 1800
    # Restored early: the window ends there, and the figure completes after settle_s.
    shed.event_ended("dr-2025-10-14", now + 1800)
    done = figure(shed, now + 1800 + 600)
    assert done is not None
    assert done.complete
    assert done.until == now + 1800
    assert done.actual_kwh == pytest.approx(expected(now + 1800)[1], rel=1e-9)
    assert figure(accounts(influx), EVENT_START + 10) is not None


@pytest.mark.servers
def test_power_is_integrated_where_there_is_no_counter(influx1: InfluxDB1Server) -> None:
    lines = []
    for t in steps():
        local = datetime.fromtimestamp(t, TZ)
        kw = 10.0 if 13 <= local.hour < 17 else 4.0
        if EVENT_START <= t <= EVENT_END:
            kw = 6.0
        w = kw * 1000
        lines.append(f"meter,device=ac-power,site={SITE} active_power_total_w={w!r} {int(t)}")
    influx1.write(lines, DB, precision="s")
    got = figure(accounts(influx1, "ac-power"), EVENT_END + 3600)
    assert got is not None
    assert got.known
    assert got.source == "power"
    assert got.baseline_kwh == pytest.approx(20.0)
    assert got.actual_kwh == pytest.approx(12.0)
    assert got.reduction_kw == pytest.approx(4.0)


def test_an_unreachable_database_is_counted_not_raised() -> None:
    shed = ShedAccounts(InfluxQL("http://127.0.0.1:9", DB).query, SITE, "ac-meter", CALENDAR)
    shed.event_started("e1", EVENT_START, EVENT_END)
    assert asyncio.run(shed.figure("e1", EVENT_END + 3600)) is None
    assert shed.health()["dr_shed_query_failures"] == 1
    assert asyncio.run(shed.figure("unknown", EVENT_END)) is None


@pytest.mark.servers
def test_the_same_figure_from_victoriametrics(vm: VictoriaMetricsServer) -> None:
    lines = counter_lines("ac-meter", keep=outside_gap)
    vm.write_line_protocol(lines, precision="s")
    vm.wait_for_samples('{__name__="meter_energy_import_kwh"}', len(lines))
    source = VictoriaReadings(vm.url, SITE, "ac-meter")
    shed = ShedAccounts(source, SITE, "ac-meter", CALENDAR)
    shed.event_started("dr-2025-10-14", EVENT_START, EVENT_END)
    got = figure(shed, EVENT_END + 3600)
    assert got is not None
    assert got.known
    baseline, actual = expected(EVENT_END)
    assert got.baseline_days == EXPECTED_DAYS
    assert got.baseline_kwh == pytest.approx(baseline, rel=1e-9)
    assert got.actual_kwh == pytest.approx(actual, rel=1e-9)


@pytest.mark.servers
def test_for_site_reads_the_sites_database(influx: InfluxDB1Server, tmp_path: Path) -> None:
    path = meter_site(tmp_path, [1502], f"influxdb: {{api: v1, url: {influx.url}, database: {DB}}}")
    lines = [
        line.replace("device=ac-meter,", "device=m0,").replace(f"site={SITE}", "site=test-site")
        for line in counter_lines("ac-meter", keep=outside_gap)
    ]
    influx.write(lines, DB, precision="s")
    loaded = load_site(path)
    shed = ShedAccounts.for_site(loaded, "m0")
    assert isinstance(shed.source, InfluxReadings)
    shed.event_started("dr-2025-10-14", EVENT_START, EVENT_END)
    got = figure(shed, EVENT_END + 3600)
    assert got is not None
    assert got.baseline_kwh == pytest.approx(expected(EVENT_END)[0], rel=1e-9)
    with pytest.raises(ValueError, match="no device 'ac-9'"):
        ShedAccounts.for_site(loaded, "ac-9")
    on_vm = meter_site(
        tmp_path,
        [1502],
        "influxdb: {api: v2, url: http://127.0.0.1:8428, org: o, bucket: b, "
        "server: victoriametrics}",
    )
    assert isinstance(ShedAccounts.for_site(load_site(on_vm), "m0").source, VictoriaReadings)
