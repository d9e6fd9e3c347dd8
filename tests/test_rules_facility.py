"""Facility rules with a fake clock: a water leak over several nights (a holiday between, a
restart in the middle, a meter with a volume counter only) and a data room's PUE."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.types import Sample
from gateway.alarm_service import device_infos
from gateway.config_errors import ConfigError
from gateway.config_load import load_site
from rules.engine import Engine
from rules.kinds.facility import PueParams, PueRule, WaterLeakRule, night_window, parse_window
from rules.model import Clear, Effect, PointNeed, Raise, Rule
from rules.registry import build_rule, build_rules
from tests.rules_fakes import TZ, FakeCalendar, FakeContext, at, device, kinds, make, restart

# The National Day week of 2024: 1-7 October off, Sunday 29 September a make-up workday.
NATIONAL_DAY = FakeCalendar(
    workdays={date(2024, 9, 29), date(2024, 10, 12)},
    holidays={date(2024, 10, d) for d in range(1, 8)},
)


def site(now: datetime) -> FakeContext:
    return FakeContext(
        now,
        [
            device("water-main", "water_meter", building="main", floor="B1", zone="pump-room"),
            device("water-annex", "water_meter", building="annex"),
            device("room-total", "meter", building="main", floor="4", zone="srv-1"),
            device("room-ac", "meter", building="main", floor="4", zone="srv-1"),
            device("ups-out", "meter", building="main", floor="4", zone="srv-1"),
            device("meter-main", "meter", building="main"),
        ],
        NATIONAL_DAY,
    )


# --- water_leak: the night's window ---------------------------------------------------------


def test_windows() -> None:
    start, end = parse_window("01:00-04:00")
    key, s, e = night_window(at(2024, 10, 1, 2, 30).timestamp(), TZ, start, end)
    assert (key, s, e) == (
        "2024-10-01",
        at(2024, 10, 1, 1).timestamp(),
        at(2024, 10, 1, 4).timestamp(),
    )
    # Before today's window: yesterday's, already over.
    key, _, e = night_window(at(2024, 10, 1, 0, 30).timestamp(), TZ, start, end)
    assert key == "2024-09-30"
    assert e < at(2024, 10, 1).timestamp()
    # A window past midnight belongs to the evening it starts on.
    start, end = parse_window("23:00-05:00")
    key, s, e = night_window(at(2024, 10, 2, 3).timestamp(), TZ, start, end)
    assert (key, s, e) == (
        "2024-10-01",
        at(2024, 10, 1, 23).timestamp(),
        at(2024, 10, 2, 5).timestamp(),
    )
    for bad in ("1:00-4:00", "01:00-24:00", "01:00-01:00", "01:00"):
        with pytest.raises(ValueError, match="01:00"):
            parse_window(bad)


def test_water_leak_parameters_are_checked() -> None:
    with pytest.raises(ValidationError, match="HH:MM-HH:MM"):
        WaterLeakRule.Params.model_validate({"threshold_m3h": 0.2, "window": "1-4"})
    with pytest.raises(ValidationError, match="at least an hour"):
        WaterLeakRule.Params.model_validate(
            {"threshold_m3h": 0.2, "source": "volume", "window": "02:00-02:30"}
        )
    with pytest.raises(ValidationError, match="threshold_m3h"):
        WaterLeakRule.Params.model_validate({})
    for name, info in WaterLeakRule.Params.model_fields.items():
        assert info.description, name
    flow = WaterLeakRule.Params.model_validate({"threshold_m3h": 0.2})
    assert flow.reads() == [PointNeed("flow_point", ("flow_m3h",))]
    volume = WaterLeakRule.Params.model_validate({"threshold_m3h": 0.2, "source": "volume"})
    assert volume.reads() == [PointNeed("volume_point", ("volume_total_m3",))]
    rule = build_rule({"id": "leak", "kind": "water_leak", "threshold_m3h": 0.2})
    assert isinstance(rule, WaterLeakRule)
    assert (
        rule.describe()
        == "flow_m3h minimum in 01:00-04:00 above 0.2 m³/h for 3 nights -> water_leak_suspected"
    )


# --- water_leak: from the flow ----------------------------------------------------------------


def night(
    ctx: FakeContext,
    rule: Rule,
    day: date,
    flow: Callable[[datetime], float],
    *,
    meter: str = "water-main",
    until: int = 5,
    every: int = 600,
) -> list[Effect]:
    """Readings from `day` 00:00 to `until` o'clock every `every` seconds, a tick after each."""
    ctx.now = datetime(day.year, day.month, day.day, tzinfo=TZ)
    end = ctx.now + timedelta(hours=until)
    out: list[Effect] = []
    while ctx.now < end:
        out += ctx.sample(rule, meter, {"flow_m3h": flow(ctx.now)})
        out += ctx.tick(rule)
        ctx.advance(every)
    return out


def leaking(low: float) -> Callable[[datetime], float]:
    """Cisterns at night, with one quiet moment at 02:50 whose flow is `low`; busy otherwise."""

    def flow(moment: datetime) -> float:
        if (moment.hour, moment.minute) == (2, 50):
            return low
        return 0.6 if 1 <= moment.hour < 4 else 3.0

    return flow


def test_a_leak_over_three_nights_with_a_holiday_between() -> None:
    ctx = site(at(2024, 9, 30))
    rule = make(WaterLeakRule, ctx, "leak", threshold_m3h=0.2)
    # Monday 30 September, then 1 October (National Day: nobody in), then Wednesday 2 October:
    # the holiday night counts like any other.
    assert night(ctx, rule, date(2024, 9, 30), leaking(0.35)) == []
    assert NATIONAL_DAY.is_workday(at(2024, 10, 1)) is False
    assert night(ctx, rule, date(2024, 10, 1), leaking(0.3)) == []
    effects = night(ctx, rule, date(2024, 10, 2), leaking(0.25))
    [r] = effects
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value, r.limit) == (
        "water-main",
        "water_leak_suspected",
        0.25,
        0.2,
    )
    assert r.details["nights"] == 3
    assert r.details["night"] == "2024-10-02"
    assert r.details["place"] == "main / B1 / pump-room"
    assert r.grade is None  # orange: the catalog's default
    # Raised at the window's end (the first tick at or after 04:00), not before.
    assert ctx.now >= at(2024, 10, 2, 4)
    # Still leaking: one raise is enough.
    assert night(ctx, rule, date(2024, 10, 3), leaking(0.4)) == []
    # A night that drops to 0.1 m³/h once is no leak: the alarm clears.
    assert kinds(night(ctx, rule, date(2024, 10, 4), leaking(0.1))) == ["clear:water-main"]


def test_the_daytime_and_the_evening_do_not_count() -> None:
    ctx = site(at(2024, 10, 8))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.2, nights=1)

    def flow(moment: datetime) -> float:  # low all day long except within the window
        return 0.5 if 1 <= moment.hour < 4 else 0.0

    effects = night(ctx, rule, date(2024, 10, 8), flow, until=24)
    assert kinds(effects) == ["water_leak_suspected"]
    # And the other way round: a night of 0.1 m³/h between days of 5 m³/h is fine.
    quiet = make(WaterLeakRule, ctx, threshold_m3h=0.2, nights=1)
    effects = night(ctx, quiet, date(2024, 10, 9), lambda m: 0.1 if 1 <= m.hour < 4 else 5.0)
    assert effects == []


def test_a_break_in_the_run_starts_the_count_again() -> None:
    ctx = site(at(2024, 10, 14))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.2, nights=2)
    assert night(ctx, rule, date(2024, 10, 14), leaking(0.3)) == []
    assert night(ctx, rule, date(2024, 10, 15), leaking(0.15)) == []  # below: the run ends
    assert night(ctx, rule, date(2024, 10, 16), leaking(0.3)) == []  # one night again
    assert kinds(night(ctx, rule, date(2024, 10, 17), leaking(0.3))) == ["water_leak_suspected"]


def test_a_night_without_readings_neither_counts_nor_breaks_the_run() -> None:
    ctx = site(at(2024, 10, 14))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.2, nights=2)
    assert night(ctx, rule, date(2024, 10, 14), leaking(0.3)) == []
    # 15 October: the meter is read only from 03:30 (a fieldbus fault fixed in the night):
    # too little of the window to judge, though every reading is far below the threshold.
    ctx.now = at(2024, 10, 15, 3, 30)
    for _ in range(7):
        assert ctx.sample(rule, "water-main", {"flow_m3h": 0.01}) == []
        assert ctx.tick(rule) == []
        ctx.advance(300)
    assert kinds(night(ctx, rule, date(2024, 10, 16), leaking(0.3))) == ["water_leak_suspected"]
    # Nothing at all on the 17th, and no tick judges a night it has not seen: still raised.
    ctx.now = at(2024, 10, 17, 12)
    assert ctx.tick(rule) == []
    assert rule.on_stale("water-main", at(2024, 10, 17).timestamp(), ctx) == ()
    assert kinds(night(ctx, rule, date(2024, 10, 18), leaking(0.05))) == ["clear:water-main"]


def test_a_meter_that_goes_silent_in_the_window_is_judged_on_what_it_gave() -> None:
    ctx = site(at(2024, 10, 21))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.2, nights=1)
    # Read from 00:00 to 03:00 (two thirds of the window), silent after.
    assert night(ctx, rule, date(2024, 10, 21), leaking(0.3), until=3) == []
    ctx.now = at(2024, 10, 21, 3, 59, 59)
    assert ctx.tick(rule) == []
    ctx.now = at(2024, 10, 21, 4)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert r.value == 0.3


def test_meters_are_counted_apart() -> None:
    ctx = site(at(2024, 10, 21))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.2, nights=1)
    ctx.now = at(2024, 10, 21, 0, 55)
    out: list[Effect] = []
    while ctx.now < at(2024, 10, 21, 4, 10):
        out += ctx.sample(rule, "water-main", {"flow_m3h": 0.5})
        out += ctx.sample(rule, "water-annex", {"flow_m3h": 0.05})
        out += ctx.tick(rule)
        ctx.advance(300)
    assert [(e.subject, e.kind) for e in out if isinstance(e, Raise)] == [
        ("water-main", "water_leak_suspected")
    ]


def test_a_restart_in_the_night_keeps_the_night_and_the_run() -> None:
    ctx = site(at(2024, 9, 30))
    rule = make(WaterLeakRule, ctx, "leak", threshold_m3h=0.2)
    assert night(ctx, rule, date(2024, 9, 30), leaking(0.3)) == []
    assert night(ctx, rule, date(2024, 10, 1), leaking(0.3)) == []
    # The third night: the gateway restarts at 02:00, after the quiet moment of 01:30.
    ctx.now = at(2024, 10, 2, 0, 50)
    while ctx.now < at(2024, 10, 2, 2):
        low = (ctx.now.hour, ctx.now.minute) == (1, 30)
        assert ctx.sample(rule, "water-main", {"flow_m3h": 0.21 if low else 0.6}) == []
        ctx.advance(600)
    rule = restart(rule, ctx)
    ctx.advance(300)  # down for five minutes
    out: list[Effect] = []
    while ctx.now < at(2024, 10, 2, 4, 10):
        out += ctx.sample(rule, "water-main", {"flow_m3h": 0.6})
        out += ctx.tick(rule)
        ctx.advance(600)
    [r] = out
    assert isinstance(r, Raise)
    assert (r.value, r.details["nights"]) == (0.21, 3)  # the low from before the restart
    # Raised before a restart, cleared after one.
    rule = restart(rule, ctx)
    assert kinds(night(ctx, rule, date(2024, 10, 3), leaking(0.0))) == ["clear:water-main"]


# --- water_leak: from the volume counter -------------------------------------------------------


def counter_night(
    ctx: FakeContext,
    rule: Rule,
    day: date,
    use_m3h: Callable[[float], float],
    *,
    every: int = 420,
    skip: tuple[float, float] | None = None,
) -> list[Effect]:
    """A counter read every 7 minutes (never on the hour) from 00:00 to 05:00 of `day`;
    use_m3h(hour of day) is the flow it integrates; no reading within `skip` (hours)."""
    ctx.now = datetime(day.year, day.month, day.day, tzinfo=TZ) + timedelta(seconds=13)
    volume = 1000.0 + day.toordinal() % 100  # any level; only the differences count
    out: list[Effect] = []
    end = ctx.now + timedelta(hours=5)
    while ctx.now < end:
        h = ctx.now.hour + ctx.now.minute / 60 + ctx.now.second / 3600
        if skip is None or not skip[0] <= h < skip[1]:
            out += ctx.sample(rule, "water-main", {"volume_total_m3": volume})
        out += ctx.tick(rule)
        volume += use_m3h(h) * every / 3600
        ctx.advance(every)
    return out


def test_a_leak_from_the_volume_counter() -> None:
    ctx = site(at(2024, 10, 7))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.3, nights=2, source="volume")
    steady = lambda h: 0.5  # noqa: E731
    assert counter_night(ctx, rule, date(2024, 10, 7), steady) == []
    [r] = counter_night(ctx, rule, date(2024, 10, 8), lambda h: 0.4 if 2 <= h < 3 else 0.9)
    assert isinstance(r, Raise)
    # The lowest hour, 02:00-03:00, from counter values interpolated at the marks. The
    # readings at 01:59:13 and 02:06:13 straddle 02:00; the counter ran at 0.9 m³/h between
    # them, so 373 s of the hour were at 0.9, the rest at 0.4.
    assert r.value == pytest.approx(0.4 + 0.5 * 373 / 3600, abs=0.001)
    assert r.details["source"] == "volume"
    # One quiet hour in the night: no leak.
    effects = counter_night(ctx, rule, date(2024, 10, 9), lambda h: 0.1 if 3 <= h < 4 else 0.9)
    assert kinds(effects) == ["clear:water-main"]


def test_an_hour_without_counter_readings_is_not_known() -> None:
    ctx = site(at(2024, 10, 7))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.3, nights=1, source="volume")
    assert kinds(counter_night(ctx, rule, date(2024, 10, 7), lambda h: 0.9)) == [
        "water_leak_suspected"
    ]
    # Little use from 02:00 to 03:00 but no reading from 01:40 to 03:20: the marks at 02:00
    # and 03:00 are not known, so no hour of the night is; the alarm stays.
    quiet = lambda h: 0.1 if 2 <= h < 3 else 0.9  # noqa: E731
    assert counter_night(ctx, rule, date(2024, 10, 8), quiet, skip=(1.67, 3.33)) == []
    # The same night read throughout shows the quiet hour.
    assert kinds(counter_night(ctx, rule, date(2024, 10, 9), quiet)) == ["clear:water-main"]
    # A counter that goes back (a new meter) gives no consumption for that hour.
    back = make(WaterLeakRule, ctx, threshold_m3h=0.3, nights=1, source="volume")
    ctx.now = at(2024, 10, 9, 0, 50)
    volume = 500.0
    out: list[Effect] = []
    while ctx.now < at(2024, 10, 9, 4, 20):
        if ctx.now == at(2024, 10, 9, 2, 30):
            volume = 0.0  # swapped
        out += ctx.sample(back, "water-main", {"volume_total_m3": volume})
        out += ctx.tick(back)
        volume += 0.5 / 6
        ctx.advance(600)
    [r] = out
    assert isinstance(r, Raise)
    assert r.value == pytest.approx(0.5)


def test_snapshots_are_json() -> None:
    ctx = site(at(2024, 10, 7, 2))
    for params in ({"threshold_m3h": 0.2}, {"threshold_m3h": 0.2, "source": "volume"}):
        rule = make(WaterLeakRule, ctx, **params)
        ctx.sample(rule, "water-main", {"flow_m3h": 1.0, "volume_total_m3": 10.0})
        ctx.advance(60)
        ctx.sample(rule, "water-main", {"flow_m3h": 1.0, "volume_total_m3": 10.1})
        again = restart(rule, ctx)
        assert again.snapshot() == rule.snapshot()


def test_samples_without_the_point_cost_nothing() -> None:
    ctx = site(at(2024, 10, 7, 2))
    rule = make(WaterLeakRule, ctx, threshold_m3h=0.2)
    sample = Sample("water-main", int(ctx.t * 1e9), {"volume_total_m3": 1.0}, {})
    assert rule.on_sample(sample, ctx) == ()
    assert ctx.tick(rule) == []


# --- pue ----------------------------------------------------------------------------------


def pue_rule(ctx: FakeContext, **params: Any) -> Rule:
    return make(
        PueRule,
        ctx,
        "pue-srv",
        **{"facility": ["room-total", "room-ac"], "it": ["ups-out"], "limit": 1.6, **params},
    )


def read(ctx: FakeContext, rule: Rule, **watts: float) -> list[Effect]:
    """New power readings of the named meters, each a Sample as the engine would pass it."""
    out: list[Effect] = []
    for meter, w in watts.items():
        meter = meter.replace("_", "-")
        ctx.set_latest(meter, "active_power_total_w", w)
        out += ctx.sample(rule, meter, {"active_power_total_w": w})
    return out


def test_pue_over_the_limit_for_the_duration() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration="10m")
    assert sorted(rule.bind(list(ctx.devices.values()))) == ["room-ac", "room-total", "ups-out"]
    # 12 kW + 6 kW for 10 kW of IT: PUE 1.8 from now on.
    assert read(ctx, rule, room_total=12000, room_ac=6000, ups_out=10000) == []
    ctx.advance(300)
    assert ctx.tick(rule) == []
    assert read(ctx, rule, room_ac=6100) == []
    ctx.advance(300)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert (r.subject, r.kind, r.value, r.limit) == ("pue-srv", "pue_high", 1.81, 1.6)
    assert r.details == {
        "device": "pue-srv",
        "place": "main / 4 / srv-1",
        "facility_w": 18100,
        "it_w": 10000,
    }
    # 1.58 is below the limit but within the release band: still raised; 1.54 clears.
    assert read(ctx, rule, room_ac=3800) == []
    assert kinds(read(ctx, rule, room_ac=3400)) == ["clear:pue-srv"]


def test_pue_that_dips_under_the_limit_starts_its_duration_again() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration="10m", room="数据机房 A")
    read(ctx, rule, room_total=12000, room_ac=6000, ups_out=10000)
    ctx.advance(540)
    assert read(ctx, rule, ups_out=12000) == []  # 1.5
    assert read(ctx, rule, ups_out=10000) == []  # 1.8 again, from now
    ctx.advance(540)
    assert ctx.tick(rule) == []
    ctx.advance(60)
    [r] = ctx.tick(rule)
    assert isinstance(r, Raise)
    assert r.subject == "数据机房 A"


def test_a_stale_meter_stops_the_judgement() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration="5m")
    read(ctx, rule, room_total=12000, room_ac=6000, ups_out=10000)
    ctx.advance(301)
    assert kinds(ctx.tick(rule)) == ["pue_high"]
    # The UPS meter goes silent: its values expire and the engine says so.
    del ctx.values[("ups-out", "active_power_total_w")]
    [c] = rule.on_stale("ups-out", ctx.t - 60, ctx)
    assert isinstance(c, Clear)
    assert c.subject == "pue-srv"
    assert "ups-out: no data since" in c.note
    # The room's meters still report, but without the IT load nothing is judged: no raise,
    # however long.
    for _ in range(10):
        assert read(ctx, rule, room_ac=9000) == []
        ctx.advance(120)
        assert ctx.tick(rule) == []
    # Back: the full duration again.
    assert read(ctx, rule, ups_out=10000) == []
    ctx.advance(299)
    assert ctx.tick(rule) == []
    ctx.advance(1)
    assert kinds(ctx.tick(rule)) == ["pue_high"]


def test_a_meter_read_as_bad_clears_and_says_which() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration=0)
    assert kinds(read(ctx, rule, room_total=12000, room_ac=6000, ups_out=10000)) == ["pue_high"]
    del ctx.values[("room-ac", "active_power_total_w")]  # a failed poll: not known
    [c] = ctx.sample(rule, "room-total", {"active_power_total_w": 12000})
    assert isinstance(c, Clear)
    assert c.note == "room-ac: no current active_power_total_w"


def test_old_values_are_not_used_with_max_age() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration=0, max_age="2m")
    read(ctx, rule, ups_out=10000)
    ctx.advance(180)
    assert read(ctx, rule, room_total=12000, room_ac=6000) == []  # the UPS value is 3 min old
    assert kinds(read(ctx, rule, ups_out=10000)) == ["pue_high"]


def test_no_judgement_below_the_it_floor() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration=0, min_it_power_w=2000)
    assert kinds(read(ctx, rule, room_total=5000, room_ac=1000, ups_out=3000)) == ["pue_high"]
    # The racks are moved out: 1.5 kW of IT under 6 kW of cooling is PUE 4, and no alarm.
    [c] = read(ctx, rule, ups_out=1500)
    assert isinstance(c, Clear)
    assert "below 2000 W" in c.note
    assert read(ctx, rule, ups_out=400) == []


def test_pue_survives_a_restart() -> None:
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, duration="10m")
    read(ctx, rule, room_total=12000, room_ac=6000, ups_out=10000)
    ctx.advance(400)
    rule = restart(rule, ctx)
    ctx.advance(200)
    assert kinds(ctx.tick(rule)) == ["pue_high"]
    rule = restart(rule, ctx)
    assert kinds(read(ctx, rule, ups_out=20000)) == ["clear:pue-srv"]


def test_pue_parameters_are_checked() -> None:
    base = {"facility": ["a"], "it": ["b"]}
    assert PueParams.model_validate(base).limit == 1.8
    with pytest.raises(ValidationError, match="remove `scope`"):
        PueRule.Params.model_validate({**base, "scope": {"kinds": ["meter"]}})
    with pytest.raises(ValidationError, match="a in both"):
        PueRule.Params.model_validate({"facility": ["a"], "it": ["a"]})
    with pytest.raises(ValidationError, match="greater than 1"):
        PueRule.Params.model_validate({**base, "limit": 0.9})
    with pytest.raises(ValidationError, match="at least 1 item"):
        PueRule.Params.model_validate({"facility": ["a"], "it": []})
    for name, info in PueRule.Params.model_fields.items():
        assert info.description, name
    ctx = site(at(2024, 10, 15, 10))
    rule = pue_rule(ctx, it=["ups-out", "ups-2"])
    assert rule.describe().endswith("; meters not in the site: ups-2")
    # A meter the site does not have is never current: the room is not judged.
    assert read(ctx, rule, room_total=50000, room_ac=50000, ups_out=10000) == []


# --- the demo site's rules, through the real engine ------------------------------------------

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo-site.yaml"


class Demo:
    """The demo site's water_leak and pue rules in a rules Engine on a fake clock."""

    def __init__(self, now: datetime) -> None:
        loaded = load_site(DEMO, need_broker=False, resolve_secrets=False)
        entries = [e for e in loaded.site.rules if e["kind"] in ("water_leak", "pue")]
        self.now = now
        self.engine = Engine(
            build_rules(entries),
            device_infos(loaded),
            FakeCalendar(),
            tz=loaded.site.site.timezone,
            clock=lambda: self.now,
            wall=lambda: self.now.timestamp(),
        )
        self.effects: list[Effect] = []

    def poll(self, seconds: float, every: float, **readings: dict[str, float]) -> None:
        """Each `every` seconds a poll of each named device (ids with _ for -) and a tick."""
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            for name, values in readings.items():
                ts = round(self.now.timestamp() * 1e9)
                self.effects += self.engine.on_sample(Sample(name.replace("_", "-"), ts, values))
            self.effects += self.engine.on_tick()
            self.now += timedelta(seconds=every)


def test_the_demo_sites_data_room_through_the_engine() -> None:
    demo = Demo(at(2026, 7, 14, 20))
    room, ups = {"active_power_total_w": 2500.0}, {"active_power_total_w": 1500.0}
    # PUE 1.67 against the demo's 1.4: raised after its 30 minutes.
    demo.poll(1795, 5, meter_4f_srv_room=room, meter_4f_srv_ups=ups)
    assert demo.effects == []
    demo.poll(10, 5, meter_4f_srv_room=room, meter_4f_srv_ups=ups)
    [r] = demo.effects
    assert isinstance(r, Raise)
    assert (r.rule, r.subject, r.kind, r.value) == ("pue-srv-1", "srv-1", "pue_high", 1.67)
    assert r.details["place"] == "main / 4 / srv-1"
    # The UPS meter stops answering: three polls later its values are stale, the alarm clears.
    demo.poll(30, 5, meter_4f_srv_room=room)
    [c] = demo.effects[1:]
    assert isinstance(c, Clear)
    assert c.note.startswith("meter-4f-srv-ups: no data since 2026-07-14T20:30")


def test_the_demo_sites_water_leak_through_the_engine() -> None:
    demo = Demo(at(2026, 7, 14, 0, 30))
    for day in (14, 15, 16):
        demo.now = at(2026, 7, day, 0, 30)
        demo.poll(4 * 3600, 10, water_b1_main={"flow_m3h": 0.15})
    [r] = demo.effects
    assert isinstance(r, Raise)
    assert (r.rule, r.subject, r.kind, r.value) == (
        "water-leak",
        "water-b1-main",
        "water_leak_suspected",
        0.15,
    )
    demo.now = at(2026, 7, 17, 0, 30)
    demo.poll(4 * 3600, 10, water_b1_main={"flow_m3h": 0.05})
    assert kinds(demo.effects[1:]) == ["clear:water-b1-main"]


def test_a_pue_meter_the_site_does_not_have_is_one_line_before_anything_connects(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        """\
site: {name: 机房, id: room, timezone: Asia/Shanghai}
devices:
  - {id: room-total, profile: eastron_sdm630, poll: 5s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1}}
  - {id: ups-out, profile: eastron_sdm120, poll: 5s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 2}}
rules:
  - id: pue-room
    kind: pue
    facility: [room-total]
    it: [ups-out, usp-2]
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_site(site, need_broker=False, resolve_secrets=False)
    assert str(refused.value).splitlines() == [
        f"{site}:11: rules[0].it[1]: no device 'usp-2' in devices:; name one of the site's ids"
        "; did you mean 'ups-out'?"
    ]
