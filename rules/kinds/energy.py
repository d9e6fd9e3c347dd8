"""Energy rules: limits on any point, meters gone silent or stuck, implausible energy counters,
consumption after hours, quota pace, and PV output and inverter faults.

Point names are those of the meter and inverter profiles (active_power_total_w, power_w,
energy_import_kwh, energy_total_kwh, active_power_w, fault_code, device_status, ...). Time for
durations comes from sample.ts (or ctx.now on a tick); office hours and period boundaries are
taken in the site's zone (ctx.now's tzinfo).

Subjects are device ids, or `<device>:<alarm kind>` where one rule keeps several independent
alarms per device (a Clear names no kind). Every Raise carries `device` and `place` in its
details.

Stale values (rules.engine): threshold, meter_stuck, after_hours_consumption and
pv_performance judge a device's current values, so when its values expire they stop their
delays and clear its alarm (the cleared transition says since when it has sent nothing); the
device must hold the condition again once it is back. meter_offline is the staleness alarm
itself; energy_counter and quota judge counter readings at their own times, and a gap between
two readings does not make either wrong; inverter_fault keeps a fault raised: losing contact with
an inverter in fault is no sign that the fault is gone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from core.config_types import Duration
from core.types import Sample, Value
from rules.blocks import Hysteresis, OffDelay, OfficeHours, OnDelay
from rules.kinds.base import DeviceRule, stale_note
from rules.model import Context, Effect, Grade, RuleParams, Scope
from rules.numbers import finite, integer, optional_float

AVAILABLE = "available"  # the point MQTT ingest uses for a device's availability


_INFINITE = (math.inf, -math.inf)


def _meter_scope() -> Scope:
    return Scope(kinds=["meter"])


def _inverter_scope() -> Scope:
    return Scope(kinds=["pv_inverter"])


# --- threshold ---------------------------------------------------------------------------


class ThresholdParams(RuleParams):
    point: str = Field(description="Point to watch, e.g. active_power_total_w or voltage_l1_v.")
    above: float | None = Field(default=None, description="Alarm when the value rises above.")
    below: float | None = Field(default=None, description="Alarm when the value falls below.")
    hysteresis: float = Field(
        default=0.0,
        ge=0,
        description="Dead band in the point's unit: an alarm above `above` ends only below "
        "above - hysteresis (below + hysteresis for `below`), so a value at the limit "
        "does not chatter.",
    )
    on_delay: Duration = Field(default=0.0, description="The limit must be crossed this long.")
    off_delay: Duration = Field(default=0.0, description="Back within limits this long clears.")

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if self.above is None and self.below is None:
            raise ValueError("give `above`, `below` or both")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError(f"`below` ({self.below}) must be less than `above` ({self.above})")
        return self


class _Level:
    __slots__ = ("high", "low", "off", "on", "quiet", "value")

    def __init__(self, p: ThresholdParams) -> None:
        h = p.hysteresis
        self.high = None if p.above is None else Hysteresis(p.above, p.above - h)
        self.low = None if p.below is None else Hysteresis.below(p.below, p.below + h)
        self.on = OnDelay(p.on_delay)
        self.off = OffDelay(p.off_delay)  # holds while the limit is crossed, and off_delay after
        self.value: float | None = None
        # Nothing crossed, no delay running, no alarm held: set by on_sample only, cleared
        # whenever it cannot tell (a new or restored level, any other outcome).
        self.quiet = False


class ThresholdRule(DeviceRule[ThresholdParams]):
    """Any numeric point above or below a limit, with a dead band and on/off delays."""

    kind = "threshold"

    def __init__(self, rule_id: str, params: ThresholdParams) -> None:
        super().__init__(rule_id, params)
        self.point = params.point
        self.above = params.above
        self.below = params.below
        self.levels: dict[str, _Level] = {}

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        raw = sample.values.get(self.point)
        # rules.numbers.finite() inline: this runs for every reading of every watched device.
        if raw is None or raw.__class__ is bool or raw.__class__ is str:
            return ()
        value = float(raw)
        if value != value or value in _INFINITE:
            return ()
        level = self.levels.get(sample.device)
        if level is None:
            level = self.levels[sample.device] = _Level(self.params)
        level.value = value
        if (
            level.quiet
            and (self.above is None or value <= self.above)
            and (self.below is None or value >= self.below)
        ):
            # Nearly every reading: quiet and within both limits, so no block can change
            # (a comparator that is off stays off inside its limit). Their objects are not
            # touched: with thousands of rules they are out of the cache by the next reading.
            return ()
        if level.high is not None:
            level.high.update(value)
        if level.low is not None:
            level.low.update(value)
        crossed = (level.high is not None and level.high.state) or (
            level.low is not None and level.low.state
        )
        if not crossed and level.on.since is None and not level.off.on:
            # The common case: within limits with nothing pending. Raised alarms keep off.on.
            level.quiet = True
            return ()
        level.quiet = False
        return self._evaluate(sample.device, level, sample.ts / 1e9, ctx)

    def _evaluate(self, device_id: str, level: _Level, t: float, ctx: Context) -> Iterable[Effect]:
        high = level.high is not None and level.high.state
        crossed = high or (level.low is not None and level.low.state)
        on = level.on.update(crossed, t)
        held = level.off.update(crossed, t)
        if device_id in self.alarms:
            return () if held else self.alarms.clear(device_id)
        if not on:
            return ()
        direction = "above" if high else "below"
        limit = self.params.above if high else self.params.below
        return self.alarms.raise_alarm(
            device_id,
            "threshold",
            value=level.value,
            limit=limit,
            grade=self.params.grade,
            details=self.details(device_id, ctx, point=self.params.point, direction=direction),
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        self.levels.pop(device_id, None)
        return self.alarms.clear(device_id, stale_note(device_id, since, ctx))

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        # The delays run out between readings of a slowly reporting device. Every rule ticks
        # every second: the time is read, and a list made, only when a delay runs.
        effects: list[Effect] | None = None
        now = 0.0
        for device_id, level in self.levels.items():
            if level.quiet:
                continue  # no delay running
            if level.on.since is not None or level.off.since is not None:
                if effects is None:
                    effects, now = [], ctx.now.timestamp()
                effects.extend(self._evaluate(device_id, level, now, ctx))
        return effects or ()

    def snapshot(self) -> dict[str, Any]:
        levels = {
            d: {
                "high": lv.high.snapshot() if lv.high is not None else None,
                "low": lv.low.snapshot() if lv.low is not None else None,
                "on": lv.on.snapshot(),
                "off": lv.off.snapshot(),
                "value": lv.value,
            }
            for d, lv in self.levels.items()
        }
        return {**self.alarms.snapshot(), "levels": levels}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("levels", {}).items():
            level = self.levels[device_id] = _Level(self.params)
            if level.high is not None and s.get("high"):
                level.high.restore(s["high"])
            if level.low is not None and s.get("low"):
                level.low.restore(s["low"])
            level.on.restore(s.get("on", {}))
            level.off.restore(s.get("off", {}))
            level.value = s.get("value")

    def describe(self) -> str:
        p = self.params
        limits = []
        if p.above is not None:
            limits.append(f"> {p.above:g}")
        if p.below is not None:
            limits.append(f"< {p.below:g}")
        return (
            f"{p.point} {' or '.join(limits)} (±{p.hysteresis:g}), on-delay "
            f"{p.on_delay:g} s, off-delay {p.off_delay:g} s"
        )


# --- meters: silent, stuck, implausible counters -----------------------------------------


class MeterOfflineParams(RuleParams):
    scope: Scope = Field(default_factory=_meter_scope, description="Meters.")
    point: str | None = Field(
        default=None, description="Point whose good value counts; empty: any point."
    )
    max_silence: Duration = Field(
        default=300.0, gt=0, description="No good value for this long: meter_offline."
    )
    poll: Duration | None = Field(
        default=None,
        gt=0,
        description="The meters' poll interval from the site file; when given, the limit is "
        "intervals x poll instead of max_silence.",
    )
    intervals: int = Field(default=3, ge=1, description="Missed polls before alarming (with poll).")

    @property
    def limit(self) -> float:
        return self.intervals * self.poll if self.poll is not None else self.max_silence


class MeterOfflineRule(DeviceRule[MeterOfflineParams]):
    """A meter that has given no good value for a while: failed polls (every point bad,
    "offline") or MQTT silence. A Sample with only `available` is not a reading."""

    kind = "meter_offline"

    def __init__(self, rule_id: str, params: MeterOfflineParams) -> None:
        super().__init__(rule_id, params)
        self.limit = params.limit
        self.last_good: dict[str, float] = {}
        self.started = False

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        values = sample.values
        point = self.params.point
        if point is not None:
            if point not in values:
                return ()
        elif not values or (len(values) == 1 and AVAILABLE in values):
            return ()
        self.last_good[sample.device] = sample.ts / 1e9
        return self.alarms.clear(sample.device)

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        now = ctx.now.timestamp()
        if not self.started:
            # Silence is counted from the start: the gateway's own downtime is not the meter's
            # (which is why last_good is not in the snapshot).
            self.started = True
            for device in self.watched:
                self.last_good.setdefault(device.id, now)
        effects: list[Effect] = []
        for device_id, last in self.last_good.items():
            silent = now - last
            if silent >= self.limit and device_id not in self.alarms:
                effects.extend(
                    self.alarms.raise_alarm(
                        device_id,
                        "meter_offline",
                        value=round(silent),
                        limit=self.limit,
                        grade=self.params.grade,
                        details=self.details(device_id, ctx, point=self.params.point or "any"),
                    )
                )
        return effects

    def snapshot(self) -> dict[str, Any]:
        return self.alarms.snapshot()

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)

    def describe(self) -> str:
        return f"no good {self.params.point or 'value'} for {self.limit:g} s -> meter_offline"


class MeterStuckParams(RuleParams):
    scope: Scope = Field(default_factory=_meter_scope, description="Meters.")
    point: str = Field(
        default="active_power_total_w", description="Point that must move while there is load."
    )
    duration: Duration = Field(
        default=1800.0, gt=0, description="Exactly the same value this long: meter_stuck."
    )
    always: bool = Field(
        default=False, description="Load is expected at all hours, not only in office hours."
    )
    breaks_up_to: Duration = Field(
        default=7200.0, description="Gaps in office hours up to this long (lunch) count as in."
    )


class _Stuck:
    __slots__ = ("delay", "value")

    def __init__(self, duration: float) -> None:
        self.value: Value | None = None
        self.delay = OnDelay(duration)


class MeterStuckRule(DeviceRule[MeterStuckParams]):
    """A reading that does not move at all while there is load: a frozen register or a
    gateway repeating its last value. Only the time in office hours counts (unless always)."""

    kind = "meter_stuck"

    def __init__(self, rule_id: str, params: MeterStuckParams) -> None:
        super().__init__(rule_id, params)
        self.hours = OfficeHours(params.breaks_up_to, refresh=60.0)
        self.meters: dict[str, _Stuck] = {}

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = sample.values.get(self.params.point)
        if value is None:
            return ()
        meter = self.meters.get(sample.device)
        if meter is None:
            meter = self.meters[sample.device] = _Stuck(self.params.duration)
        same = value == meter.value
        if not same:
            # A new value starts its own stuck period now (not at its first repeat).
            meter.value = value
            meter.delay.reset()
        t = sample.ts / 1e9
        expected = self.params.always or not self.hours.after_hours(ctx.calendar, t, ctx.now.tzinfo)
        # Only the time when load is expected counts; out of office hours an unchanged value
        # proves nothing either way, so a raised alarm stays until the value moves.
        stuck = meter.delay.update(expected, t)
        if not same:
            return self.alarms.clear(sample.device)
        if not stuck or sample.device in self.alarms:
            return ()
        since = meter.delay.since
        assert since is not None
        return self.alarms.raise_alarm(
            sample.device,
            "meter_stuck",
            value=value,
            limit=self.params.duration,
            grade=self.params.grade,
            details=self.details(
                sample.device, ctx, point=self.params.point, stuck_s=round(t - since)
            ),
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        self.meters.pop(device_id, None)
        return self.alarms.clear(device_id, stale_note(device_id, since, ctx))

    def snapshot(self) -> dict[str, Any]:
        meters = {
            d: {"value": m.value, "delay": m.delay.snapshot()} for d, m in self.meters.items()
        }
        return {**self.alarms.snapshot(), "meters": meters}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("meters", {}).items():
            meter = self.meters[device_id] = _Stuck(self.params.duration)
            meter.value = s.get("value")
            meter.delay.restore(s.get("delay", {}))

    def describe(self) -> str:
        p = self.params
        when = "at any hour" if p.always else "in office hours"
        return f"{p.point} unchanged for {p.duration:g} s {when} -> meter_stuck"


COUNTER_BACKWARDS = "counter_backwards"
COUNTER_JUMP = "counter_jump"
COUNTER_RESET = "counter_reset"
_COUNTER_KINDS = (COUNTER_BACKWARDS, COUNTER_JUMP, COUNTER_RESET)


class CounterParams(RuleParams):
    scope: Scope = Field(default_factory=_meter_scope, description="Meters.")
    point: str = Field(default="energy_import_kwh", description="Energy counter point (kWh).")
    max_rate_kw: float | None = Field(
        default=None,
        gt=0,
        description="Most the meter can register, kW (above the CT's rating): a rise faster "
        "than this is counter_jump. Empty: no jump check. For a Wh counter give W.",
    )
    tolerance: float = Field(
        default=0.01, ge=0, description="Changes this small (counter units) are noise."
    )
    reset_fraction: float = Field(
        default=0.01,
        gt=0,
        lt=1,
        description="A drop to at most this fraction of the previous value is counter_reset "
        "(meter cleared or replaced); a smaller drop is counter_backwards.",
    )
    clear_after: Duration = Field(
        default=3600.0, gt=0, description="Clear this long after the last implausible reading."
    )


class _Counter:
    __slots__ = ("base", "base_t", "subjects", "suspect", "suspect_t")

    def __init__(self, device_id: str, value: float, t: float) -> None:
        self.base, self.base_t = value, t  # the last plausible reading
        self.suspect: float | None = None  # the last implausible one, until confirmed
        self.suspect_t = 0.0
        self.subjects = {kind: f"{device_id}:{kind}" for kind in _COUNTER_KINDS}


class CounterRule(DeviceRule[CounterParams]):
    """An energy counter going backwards, jumping faster than the meter can count, or reset.

    One odd reading is compared with the last plausible one; when the next reading agrees
    with the odd one rather than with the old level, the counter really moved (a swapped
    meter, a changed CT ratio) and the new level becomes the base, so the rule does not
    alarm on every reading from then on. A reset becomes the base at once.
    """

    kind = "energy_counter"

    def __init__(self, rule_id: str, params: CounterParams) -> None:
        super().__init__(rule_id, params)
        self.counters: dict[str, _Counter] = {}

    def _most(self, previous_t: float, t: float) -> float | None:
        """The largest plausible rise between two readings; None without max_rate_kw."""
        rate = self.params.max_rate_kw
        if rate is None:
            return None
        return rate * max(t - previous_t, 0.0) / 3600.0 + self.params.tolerance

    def _check(self, previous: float, previous_t: float, value: float, t: float) -> str | None:
        delta = value - previous
        if delta < -self.params.tolerance:
            return (
                COUNTER_RESET
                if value <= previous * self.params.reset_fraction
                else COUNTER_BACKWARDS
            )
        most = self._most(previous_t, t)
        if most is not None and delta > most:
            return COUNTER_JUMP
        return None

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = finite(sample.values.get(self.params.point))
        if value is None:
            return ()
        t = sample.ts / 1e9
        c = self.counters.get(sample.device)
        if c is None:
            self.counters[sample.device] = _Counter(sample.device, value, t)
            return ()
        previous, previous_t = c.base, c.base_t
        kind = self._check(previous, previous_t, value, t)
        if kind is None or kind == COUNTER_RESET:
            c.base, c.base_t, c.suspect = value, t, None
            if kind is None:
                return ()
        elif c.suspect is not None and self._check(c.suspect, c.suspect_t, value, t) is None:
            c.base, c.base_t, c.suspect = value, t, None
            return ()
        else:
            c.suspect, c.suspect_t = value, t
        subject = c.subjects[kind]
        self.last[subject] = t
        # A jump is judged against the largest plausible rise; a counter going back or reset
        # against the reading before.
        most = self._most(previous_t, t) if kind == COUNTER_JUMP else None
        return self.alarms.raise_alarm(
            subject,
            kind,
            value=value,
            limit=round(most, 3) if most is not None else previous,
            grade=self.params.grade,
            details=self.details(
                sample.device,
                ctx,
                point=self.params.point,
                previous=previous,
                delta=value - previous,
            ),
        )

    def on_tick(self, ctx: Context) -> Iterable[Effect]:
        return self.expire(ctx, self.params.clear_after)

    def snapshot(self) -> dict[str, Any]:
        counters = {d: [c.base, c.base_t, c.suspect, c.suspect_t] for d, c in self.counters.items()}
        return {**self.alarms.snapshot(), "counters": counters, "last": dict(self.last)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, (base, base_t, suspect, suspect_t) in state.get("counters", {}).items():
            c = self.counters[device_id] = _Counter(device_id, float(base), float(base_t))
            c.suspect = optional_float(suspect)
            c.suspect_t = float(suspect_t)
        self.last = {str(k): float(v) for k, v in state.get("last", {}).items()}

    def describe(self) -> str:
        p = self.params
        jump = f", faster than {p.max_rate_kw:g} kW" if p.max_rate_kw else ""
        return f"{p.point} backwards, reset{jump}"


# --- consumption after hours ---------------------------------------------------------------


class AfterHoursConsumptionParams(RuleParams):
    scope: Scope = Field(default_factory=_meter_scope, description="Meters.")
    point: str = Field(default="active_power_total_w", description="Power point, W.")
    baseline_w: float | None = Field(
        default=None,
        ge=0,
        description="Normal after-hours power (servers, security, fridges), W. Empty: learned "
        "from past nights.",
    )
    factor: float = Field(
        default=1.5, gt=0, description="Alarm when power exceeds the baseline times this."
    )
    min_excess_w: float = Field(
        default=0.0,
        ge=0,
        description="The power must also exceed the baseline by this much, W (a small "
        "baseline times the factor is one laptop).",
    )
    on_delay: Duration = Field(default=900.0, description="Above the limit this long alarms.")
    learn_weight: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Weight of the latest night in the learned baseline (exponential average).",
    )
    learn_nights: int = Field(
        default=3, ge=1, description="Nights to learn before a learned baseline is used."
    )
    breaks_up_to: Duration = Field(
        default=7200.0, description="Gaps in office hours up to this long (lunch) count as in."
    )


class _Night:
    __slots__ = ("baseline", "delay", "n", "nights", "total")

    def __init__(self, on_delay: float) -> None:
        self.total = 0.0  # sum of after-hours readings of the current night
        self.n = 0
        self.baseline: float | None = None  # exponential average of past nights' means
        self.nights = 0
        self.delay = OnDelay(on_delay)


class AfterHoursConsumptionRule(DeviceRule[AfterHoursConsumptionParams]):
    """Power outside office hours above the configured or learned night-time baseline: AC or
    lights left on. A "night" is a stretch out of office hours (a weekend is one)."""

    kind = "after_hours_consumption"

    def __init__(self, rule_id: str, params: AfterHoursConsumptionParams) -> None:
        super().__init__(rule_id, params)
        self.hours = OfficeHours(params.breaks_up_to, refresh=60.0)
        self.nights: dict[str, _Night] = {}

    def limit(self, night: _Night) -> float | None:
        baseline = self.params.baseline_w
        if baseline is None:
            if night.baseline is None or night.nights < self.params.learn_nights:
                return None
            baseline = night.baseline
        return max(baseline * self.params.factor, baseline + self.params.min_excess_w)

    def _learn(self, night: _Night) -> None:
        mean = night.total / night.n
        night.total, night.n = 0.0, 0
        if night.baseline is None:
            night.baseline = mean
        else:
            night.baseline += self.params.learn_weight * (mean - night.baseline)
        night.nights += 1

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        power = finite(sample.values.get(self.params.point))
        if power is None:
            return ()
        night = self.nights.get(sample.device)
        if night is None:
            night = self.nights[sample.device] = _Night(self.params.on_delay)
        t = sample.ts / 1e9
        after = self.hours.after_hours(ctx.calendar, t, ctx.now.tzinfo)
        if after and sample.device not in self.alarms:
            # Readings under an alarm stay out of the learning: a night with the AC left on
            # must not teach the rule that AC at night is normal.
            night.total += power
            night.n += 1
        elif night.n:
            self._learn(night)  # the first reading in office hours ends the night
        limit = self.limit(night)
        above = after and limit is not None and power > limit
        if not night.delay.update(above, t):
            return () if above else self.alarms.clear(sample.device)
        if sample.device in self.alarms:
            return ()
        assert limit is not None
        source = "configured" if self.params.baseline_w is not None else "learned"
        return self.alarms.raise_alarm(
            sample.device,
            "after_hours_consumption",
            value=round(power, 1),
            limit=round(limit, 1),
            grade=self.params.grade,
            details=self.details(sample.device, ctx, point=self.params.point, baseline=source),
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        night = self.nights.get(device_id)
        if night is not None:
            night.delay.reset()  # what it learned of past nights stays
        return self.alarms.clear(device_id, stale_note(device_id, since, ctx))

    def snapshot(self) -> dict[str, Any]:
        nights = {
            d: {
                "total": n.total,
                "n": n.n,
                "baseline": n.baseline,
                "nights": n.nights,
                "delay": n.delay.snapshot(),
            }
            for d, n in self.nights.items()
        }
        return {**self.alarms.snapshot(), "nights": nights}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("nights", {}).items():
            night = self.nights[device_id] = _Night(self.params.on_delay)
            night.total, night.n = float(s.get("total", 0.0)), int(s.get("n", 0))
            night.baseline = optional_float(s.get("baseline"))
            night.nights = int(s.get("nights", 0))
            night.delay.restore(s.get("delay", {}))

    def describe(self) -> str:
        p = self.params
        base = (
            f"{p.baseline_w:g} W"
            if p.baseline_w is not None
            else f"the learned night baseline (after {p.learn_nights} nights)"
        )
        return f"{p.point} after hours above {base} x {p.factor:g} for {p.on_delay:g} s"


# --- quota pace --------------------------------------------------------------------------

QUOTA_PACE = "quota_pace_warning"
QUOTA_EXCEEDED = "quota_exceeded"


def period_bounds(t: float, tz: tzinfo | None, period: str) -> tuple[str, float, float]:
    """(key, start, end) of the calendar month or year holding `t`, in the site's zone."""
    d = datetime.fromtimestamp(t, tz)
    if period == "month":
        start = datetime(d.year, d.month, 1, tzinfo=tz)
        end = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=tz)
        return f"{d.year:04d}-{d.month:02d}", start.timestamp(), end.timestamp()
    start = datetime(d.year, 1, 1, tzinfo=tz)
    end = datetime(d.year + 1, 1, 1, tzinfo=tz)
    return f"{d.year:04d}", start.timestamp(), end.timestamp()


class QuotaParams(RuleParams):
    scope: Scope = Field(default_factory=_meter_scope, description="Meters (usually the main one).")
    point: str = Field(default="energy_import_kwh", description="Energy counter point, kWh.")
    period: Literal["month", "year"] = Field(default="month", description="Quota period.")
    limit_kwh: float = Field(gt=0, description="Quota for one period, kWh.")
    min_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="No pace warning before this fraction of the period has passed: a "
        "projection from the first hours is noise.",
    )
    release: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="A pace warning clears only when the projection is this fraction below "
        "the limit, so the day/night swing of the projection does not chatter.",
    )
    tolerance: float = Field(
        default=0.01, ge=0, description="A counter drop larger than this is a reset, kWh."
    )
    pace_grade: Grade = Field(default="blue", description="Grade of quota_pace_warning.")
    exceeded_grade: Grade = Field(default="yellow", description="Grade of quota_exceeded.")


class _Quota:
    __slots__ = ("carry", "key", "last", "last_t", "over", "pace", "start_t", "start_value")

    def __init__(self, device_id: str) -> None:
        self.key: str | None = None  # the period being tracked
        self.start_value = 0.0  # counter at the period start (or when tracking began)
        self.start_t = 0.0
        self.carry = 0.0  # consumption before a counter reset within the period
        self.last: float | None = None
        self.last_t = 0.0
        self.pace = f"{device_id}:{QUOTA_PACE}"
        self.over = f"{device_id}:{QUOTA_EXCEEDED}"


class QuotaPaceRule(DeviceRule[QuotaParams]):
    """Consumption of a period against its quota: a warning when the pace projects an
    overrun, an alarm once it is exceeded. A period joined mid-way (a new gateway) is judged
    on the part it saw, against the prorated quota."""

    kind = "quota"

    def __init__(self, rule_id: str, params: QuotaParams) -> None:
        super().__init__(rule_id, params)
        self.quotas: dict[str, _Quota] = {}
        self.key = ""
        self.start = self.end = 0.0
        pace_grade, exceeded_grade = params.pace_grade, params.exceeded_grade
        self.grades = (params.grade or pace_grade, params.grade or exceeded_grade)

    def _begin(self, q: _Quota, value: float, t: float) -> tuple[Effect, ...]:
        last = q.last
        if last is not None and q.last_t < self.start <= t and value >= last:
            # The reading at the boundary, interpolated: consumption between the last reading
            # of the old period and the first of the new one is split between them.
            span = t - q.last_t
            at_start = last + (value - last) * (self.start - q.last_t) / span if span else value
            q.start_value, q.start_t = at_start, self.start
        else:
            q.start_value, q.start_t = value, t
        q.key, q.carry = self.key, 0.0
        return self.alarms.clear(q.pace) + self.alarms.clear(q.over)

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = finite(sample.values.get(self.params.point))
        if value is None:
            return ()
        t = sample.ts / 1e9
        if not self.start <= t < self.end:
            self.key, self.start, self.end = period_bounds(t, ctx.now.tzinfo, self.params.period)
        q = self.quotas.get(sample.device)
        if q is None:
            q = self.quotas[sample.device] = _Quota(sample.device)
        out: tuple[Effect, ...] = ()
        if q.key != self.key:
            out = self._begin(q, value, t)
        elif q.last is not None and value < q.last - self.params.tolerance:
            q.carry += q.last - q.start_value  # the counter was reset: keep what it had counted
            q.start_value = value
        q.last, q.last_t = value, t
        return out + self._judge(q, sample.device, value, t, ctx)

    def _judge(
        self, q: _Quota, device_id: str, value: float, t: float, ctx: Context
    ) -> tuple[Effect, ...]:
        so_far = q.carry + value - q.start_value
        span = self.end - q.start_t
        limit = self.params.limit_kwh * span / (self.end - self.start)
        if so_far > limit:
            if q.over in self.alarms:
                return ()
            details = self.details(device_id, ctx, period=q.key or "", so_far_kwh=round(so_far, 1))
            return self.alarms.clear(q.pace) + self.alarms.raise_alarm(
                q.over,
                QUOTA_EXCEEDED,
                value=round(so_far, 1),
                limit=round(limit, 1),
                grade=self.grades[1],
                details=details,
            )
        out = self.alarms.clear(q.over)  # a new period or a corrected counter
        elapsed = t - q.start_t
        if span <= 0 or elapsed <= 0 or elapsed < self.params.min_fraction * span:
            return out + self.alarms.clear(q.pace)
        projected = so_far * span / elapsed
        raised = q.pace in self.alarms
        bar = limit * (1.0 - self.params.release) if raised else limit
        if projected <= bar:
            return out + self.alarms.clear(q.pace)
        if raised:
            return out
        details = self.details(
            device_id,
            ctx,
            period=q.key or "",
            so_far_kwh=round(so_far, 1),
            elapsed_pct=round(100.0 * elapsed / span, 1),
        )
        return out + self.alarms.raise_alarm(
            q.pace,
            QUOTA_PACE,
            value=round(projected, 1),
            limit=round(limit, 1),
            grade=self.grades[0],
            details=details,
        )

    def snapshot(self) -> dict[str, Any]:
        quotas = {
            d: {
                "key": q.key,
                "start_value": q.start_value,
                "start_t": q.start_t,
                "carry": q.carry,
                "last": q.last,
                "last_t": q.last_t,
            }
            for d, q in self.quotas.items()
        }
        return {**self.alarms.snapshot(), "quotas": quotas}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("quotas", {}).items():
            q = self.quotas[device_id] = _Quota(device_id)
            q.key = s.get("key")
            q.start_value, q.start_t = float(s["start_value"]), float(s["start_t"])
            q.carry = float(s.get("carry", 0.0))
            q.last = optional_float(s.get("last"))
            q.last_t = float(s.get("last_t", 0.0))

    def describe(self) -> str:
        p = self.params
        return f"{p.point}: {p.limit_kwh:g} kWh per {p.period}, pace and overrun"


# --- PV ----------------------------------------------------------------------------------


def solar_elevation(t: float, latitude: float, longitude: float) -> float:
    """The sun's elevation in degrees at epoch time t (low-precision almanac, ~0.1°)."""
    d = t / 86400.0 - 10957.5  # days since J2000.0 (2000-01-01 12:00 UTC)
    g = math.radians(357.529 + 0.98560028 * d)  # mean anomaly
    q = 280.459 + 0.98564736 * d  # mean longitude
    ecl_lon = math.radians(q + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    obliquity = math.radians(23.439 - 0.00000036 * d)
    ra = math.atan2(math.cos(obliquity) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(obliquity) * math.sin(ecl_lon))
    gmst_h = 18.697374558 + 24.06570982441908 * d
    hour_angle = math.radians((gmst_h * 15.0 + longitude) % 360.0) - ra
    lat = math.radians(latitude)
    sin_el = math.sin(lat) * math.sin(dec) + math.cos(lat) * math.cos(dec) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_el))))


def clear_sky_factor(elevation_deg: float) -> float:
    """Clear-sky global horizontal irradiance / 1000 W/m² (Haurwitz model)."""
    if elevation_deg <= 0:
        return 0.0
    s = math.sin(math.radians(elevation_deg))
    return 1098.0 * s * math.exp(-0.057 / s) / 1000.0


class PvParams(RuleParams):
    scope: Scope = Field(default_factory=_inverter_scope, description="PV inverters.")
    point: str = Field(default="active_power_w", description="AC output power point, W.")
    rated_w: float = Field(gt=0, description="Rated (peak) power of the array behind it, W.")
    ratio: float = Field(
        default=0.3, gt=0, lt=1, description="Alarm below this fraction of the expected output."
    )
    performance_ratio: float = Field(
        default=0.8, gt=0, le=1, description="System losses: expected = rated x sun x this."
    )
    latitude: float = Field(default=39.9, ge=-90, le=90, description="Site latitude, degrees.")
    longitude: float = Field(
        default=116.4, ge=-180, le=180, description="Site longitude, degrees east."
    )
    min_elevation: float = Field(
        default=15.0,
        ge=0,
        lt=90,
        description="No judgement with the sun lower than this (shading, low light), degrees.",
    )
    irradiance_device: str | None = Field(
        default=None,
        description="Device with an irradiance sensor; without one the clear-sky model is "
        "used, which also alarms on heavily overcast days.",
    )
    irradiance_point: str | None = Field(default=None, description="Its point, W/m².")
    irradiance_max_age: Duration = Field(
        default=900.0, description="An older irradiance reading is not used."
    )
    min_irradiance: float = Field(
        default=100.0, ge=0, description="No judgement below this irradiance, W/m²."
    )
    on_delay: Duration = Field(default=1800.0, description="Below the expectation this long.")

    @model_validator(mode="after")
    def _sensor(self) -> Self:
        if (self.irradiance_device is None) != (self.irradiance_point is None):
            raise ValueError("give irradiance_device and irradiance_point together")
        return self


class PvUnderperformanceRule(DeviceRule[PvParams]):
    """PV output far below what the sun (or an irradiance sensor) says it should be."""

    kind = "pv_performance"

    def __init__(self, rule_id: str, params: PvParams) -> None:
        super().__init__(rule_id, params)
        self.delays: dict[str, OnDelay] = {}
        self._minute: float | None = None
        self._elevation = 0.0

    def elevation(self, t: float) -> float:
        minute = t // 60.0  # the sun moves a quarter of a degree a minute at most
        if minute != self._minute:
            self._minute = minute
            self._elevation = solar_elevation(t, self.params.latitude, self.params.longitude)
        return self._elevation

    def expected(self, t: float, ctx: Context) -> tuple[float, str] | None:
        """(expected W, source), or None when there is no fair judgement now."""
        if self.params.irradiance_device is not None and self.params.irradiance_point is not None:
            latest = ctx.latest(self.params.irradiance_device, self.params.irradiance_point)
            if latest is None or t - latest[1] / 1e9 > self.params.irradiance_max_age:
                return None
            irradiance = finite(latest[0])
            if irradiance is None or irradiance < self.params.min_irradiance:
                return None
            factor, source = irradiance / 1000.0, "irradiance"
        else:
            elevation = self.elevation(t)
            if elevation < self.params.min_elevation:
                return None
            factor, source = clear_sky_factor(elevation), "clear_sky"
        return self.params.rated_w * factor * self.params.performance_ratio, source

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        power = finite(sample.values.get(self.params.point))
        if power is None:
            return ()
        t = sample.ts / 1e9
        delay = self.delays.get(sample.device)
        if delay is None:
            delay = self.delays[sample.device] = OnDelay(self.params.on_delay)
        found = self.expected(t, ctx)
        if found is None:
            # Night or no sensor: no verdict. A raised alarm waits for output to recover.
            delay.reset()
            return ()
        expected, source = found
        floor = self.params.ratio * expected
        low = power < floor
        if not delay.update(low, t):
            return () if low else self.alarms.clear(sample.device)
        if sample.device in self.alarms:
            return ()
        return self.alarms.raise_alarm(
            sample.device,
            "pv_underperformance",
            value=round(power),
            limit=round(floor),
            grade=self.params.grade,
            details=self.details(
                sample.device,
                ctx,
                point=self.params.point,
                expected_w=round(expected),
                source=source,
            ),
        )

    def on_stale(self, device_id: str, since: float | None, ctx: Context) -> Iterable[Effect]:
        self.delays.pop(device_id, None)
        return self.alarms.clear(device_id, stale_note(device_id, since, ctx))

    def snapshot(self) -> dict[str, Any]:
        delays = {d: x.snapshot() for d, x in self.delays.items() if x.since is not None}
        return {**self.alarms.snapshot(), "delays": delays}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        for device_id, s in state.get("delays", {}).items():
            delay = self.delays[device_id] = OnDelay(self.params.on_delay)
            delay.restore(s)

    def describe(self) -> str:
        p = self.params
        source = (
            f"{p.irradiance_device}.{p.irradiance_point}"
            if p.irradiance_device
            else f"clear sky at {p.latitude:g}, {p.longitude:g}"
        )
        return (
            f"{p.point} below {p.ratio:g} x expected ({p.rated_w:g} W rated, "
            f"{source}) for {p.on_delay:g} s"
        )


class InverterFaultParams(RuleParams):
    scope: Scope = Field(default_factory=_inverter_scope, description="PV inverters.")
    point: str = Field(
        default="fault_code", description="Fault code, status code or alarm bitfield point."
    )
    fault_values: list[int | str] = Field(
        default_factory=list,
        description="Values that mean a fault, e.g. device_status 768 (Shutdown: fault).",
    )
    bits: list[int] = Field(
        default_factory=list,
        description="Bit numbers of a bitfield point that mean a fault, e.g. state_1 bit 6.",
    )

    @model_validator(mode="after")
    def _bits(self) -> Self:
        bad = [b for b in self.bits if not 0 <= b < 64]
        if bad:
            raise ValueError(f"bits are numbered 0-63, got {bad}")
        return self


class InverterFaultRule(DeviceRule[InverterFaultParams]):
    """An inverter reporting a fault. With neither fault_values nor bits, any non-zero value
    is a fault (fault_code: 0 = no fault)."""

    kind = "inverter_fault"

    def __init__(self, rule_id: str, params: InverterFaultParams) -> None:
        super().__init__(rule_id, params)
        self.values = frozenset(params.fault_values)
        self.mask = sum(1 << b for b in set(params.bits))
        self.codes: dict[str, Value] = {}  # device -> the value its alarm was raised for

    def is_fault(self, value: Value) -> bool:
        if self.values and value in self.values:
            return True
        if self.mask and (code := integer(value)) is not None:
            return bool(code & self.mask)
        if not self.values and not self.mask:
            return bool(finite(value))  # non-zero
        return False

    def on_sample(self, sample: Sample, ctx: Context) -> Iterable[Effect]:
        value = sample.values.get(self.params.point)
        if value is None:
            return ()
        device_id = sample.device
        if not self.is_fault(value):
            self.codes.pop(device_id, None)
            return self.alarms.clear(device_id)
        if self.codes.get(device_id) == value:
            return ()
        self.codes[device_id] = value
        details = self.details(device_id, ctx, point=self.params.point, code=value)
        fault = self.label(device_id, value, ctx)
        if fault:
            details["fault"] = fault
        # Again when the code changes: the text must name the fault the inverter has now.
        return self.alarms.raise_alarm(
            device_id,
            "inverter_fault",
            value=value,
            grade=self.params.grade,
            details=details,
            again=True,
        )

    def label(self, device_id: str, value: Value, ctx: Context) -> str:
        """The profile's words for the code (its enum label), or "" when it has none."""
        info = self.devices.get(device_id) or ctx.device(device_id)
        point = info.points.get(self.params.point)
        code = integer(value)
        if point is None or code is None:
            return ""
        return point.labels.get(code, "")

    def snapshot(self) -> dict[str, Any]:
        return {**self.alarms.snapshot(), "codes": dict(self.codes)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.alarms.restore(state)
        self.codes = dict(state.get("codes", {}))

    def describe(self) -> str:
        p = self.params
        what = []
        if p.fault_values:
            what.append(f"in {p.fault_values}")
        if p.bits:
            what.append(f"bits {sorted(set(p.bits))} set")
        return f"{p.point} {' or '.join(what) or 'non-zero'} -> inverter_fault"
