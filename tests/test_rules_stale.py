"""Values of unknown age: the rule engine forgets a device's values once they are older than its
allowance (3 polls, an MQTT heartbeat, or an availability "offline"), marks them STALE, and the
rules that hold state on a value drop it. Driven through the real Engine with a fake clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.types import Quality, Sample
from gateway.alarm_service import device_infos
from gateway.config_load import BUILTIN_PROFILES, load_site
from rules.alarms import AlarmBook, Transition
from rules.catalog import Catalog
from rules.engine import STALE_POLLS, Engine
from rules.kinds.energy import ThresholdRule
from rules.kinds.hvac import AcAfterHoursRule, AcWindowOpenRule
from rules.kinds.security import SafetyInputRule
from rules.model import Clear, DeviceInfo, Effect, PointInfo, Raise, Rule
from tests.rules_fakes import FakeCalendar, at

POLL = 10.0
AC = DeviceInfo(
    "ac-301",
    "hvac",
    "coolmaster_indoor",
    {"floor": "3", "zone": "301"},
    {"on_off": PointInfo(), "mode": PointInfo(), "setpoint_degc": PointInfo("degC")},
    stale_after=STALE_POLLS * POLL,
)
WINDOW = DeviceInfo(
    "window-301",
    "sensor",
    "z2m_door_contact",
    {"floor": "3", "zone": "301", "use": "window"},
    {"door_open": PointInfo()},
    stale_after=7200.0,
)
FIRE = DeviceInfo(
    "fire-panel", "sensor", "io", {"zone": "b1"}, {"fire": PointInfo()}, stale_after=30.0
)
DOOR = DeviceInfo("door-1", "access", "hikvision_access_controller", {"zone": "lobby"})
OFFLINE = {"on_off": "offline", "mode": "offline", "setpoint_degc": "offline"}


class Site:
    """An engine on a fake clock, its effects applied to an alarm book."""

    def __init__(self, rules: Sequence[Rule], devices: Sequence[DeviceInfo], now: datetime):
        self.now = now
        clock = self.clock
        self.engine = Engine(
            rules, devices, FakeCalendar(), clock=clock, wall=lambda: clock().timestamp()
        )
        self.book = AlarmBook()
        self.catalog = Catalog.load()
        self.transitions: list[Transition] = []

    def clock(self) -> datetime:
        return self.now

    def _apply(self, effects: list[Effect]) -> list[Effect]:
        for e in effects:
            if isinstance(e, Raise | Clear):
                self.transitions += self.book.apply(e, self.now.timestamp(), self.catalog.grade_of)
        return effects

    def sample(self, device: str, bad: dict[str, str] | None = None, **values: Any) -> list[Effect]:
        ts = round(self.now.timestamp() * 1e9)
        return self._apply(self.engine.on_sample(Sample(device, ts, values, bad or {})))

    def tick(self, after: float = 0.0) -> list[Effect]:
        self.now += timedelta(seconds=after)
        return self._apply(self.engine.on_tick())

    def advance(self, seconds: float, step: float, **sample: Any) -> None:
        """Time passes in steps; each step a poll (values or all bad) and a tick."""
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.now += timedelta(seconds=step)
            if sample:
                self.sample(**sample)
            self.tick()

    def open_kinds(self) -> list[str]:
        return sorted(a.kind for a in self.book.active())


def test_an_ac_unit_that_goes_offline_while_on_does_not_keep_its_alarm_all_night() -> None:
    rule = AcAfterHoursRule("ac-night", AcAfterHoursRule.Params.model_validate({"delay": "30m"}))
    site = Site([rule], [AC], at(2026, 7, 14, 19, 0))  # a Tuesday evening
    site.sample("ac-301", on_off=1, mode=0, setpoint_degc=26.0)
    site.advance(1810, POLL, device="ac-301", on_off=1, mode=0)
    assert site.open_kinds() == ["ac_after_hours"]
    reading = site.engine.ctx.reading("ac-301", "on_off")
    assert reading is not None
    assert reading.quality is Quality.GOOD
    last_good = site.now

    # The unit stops answering: every poll is bad. Two failed polls are no verdict yet...
    site.advance(2 * POLL, POLL, device="ac-301", bad=OFFLINE)
    assert site.engine.ctx.latest("ac-301", "on_off") is None  # a bad poll is no value
    assert site.engine.ctx.reading("ac-301", "on_off").quality is Quality.BAD  # type: ignore[union-attr]
    assert site.open_kinds() == ["ac_after_hours"]
    # ... past its allowance (3 polls) the unit's values are stale and the alarm clears,
    # saying why.
    site.advance(2 * POLL, POLL, device="ac-301", bad=OFFLINE)
    assert site.open_kinds() == []
    [cleared] = [t for t in site.transitions if t.what == "cleared"]
    assert cleared.note.startswith(f"ac-301: no data since {last_good.isoformat()[:19]}")
    reading = site.engine.ctx.reading("ac-301", "on_off")
    assert reading is not None
    assert (reading.value, reading.quality) == (1, Quality.STALE)
    assert site.engine.ctx.latest("ac-301", "on_off") is None

    # All night offline: nothing is raised again from the old "on".
    site.advance(6 * 3600, 60.0, device="ac-301", bad=OFFLINE)
    assert site.open_kinds() == []
    assert [t.what for t in site.transitions] == ["raised", "cleared"]

    # Back at 02:00, still on: its values count again, and it must stay on for the full
    # delay before the alarm is raised anew.
    site.sample("ac-301", on_off=1, mode=0)
    assert site.engine.ctx.reading("ac-301", "on_off").quality is Quality.GOOD  # type: ignore[union-attr]
    site.advance(1700, POLL, device="ac-301", on_off=1, mode=0)
    assert site.open_kinds() == []
    site.advance(120, POLL, device="ac-301", on_off=1, mode=0)
    assert site.open_kinds() == ["ac_after_hours"]


def test_an_offline_window_contact_stops_the_window_alarm_at_once() -> None:
    rule = AcWindowOpenRule("window", AcWindowOpenRule.Params.model_validate({"delay": "5m"}))
    site = Site([rule], [AC, WINDOW], at(2026, 7, 14, 10, 0))
    site.sample("ac-301", on_off=1, mode=0)
    site.sample("window-301", door_open=True)
    site.advance(310, POLL, device="ac-301", on_off=1, mode=0)
    assert site.open_kinds() == ["ac_window_open"]
    # Zigbee2MQTT says the contact is gone: whether the window is open is not known.
    site.sample("window-301", available=False)
    assert site.open_kinds() == []
    site.advance(600, POLL, device="ac-301", on_off=1, mode=0)
    assert site.open_kinds() == []
    # Told once, not on every further "offline".
    site.sample("window-301", available=False)
    assert [t.what for t in site.transitions] == ["raised", "cleared"]


def test_a_threshold_held_on_an_old_value_clears_and_needs_a_new_one() -> None:
    params = {"point": "setpoint_degc", "below": 18, "on_delay": "1m"}
    rule = ThresholdRule("cold", ThresholdRule.Params.model_validate(params))
    site = Site([rule], [AC], at(2026, 7, 14, 10, 0))
    site.advance(70, POLL, device="ac-301", setpoint_degc=16.0)
    assert site.open_kinds() == ["threshold"]
    site.tick(STALE_POLLS * POLL + 1)  # silence: not even a failed poll
    assert site.open_kinds() == []
    # One old-style reading does not re-raise at once: the on-delay runs again.
    site.sample("ac-301", setpoint_degc=16.0)
    assert site.open_kinds() == []
    site.advance(70, POLL, device="ac-301", setpoint_degc=16.0)
    assert site.open_kinds() == ["threshold"]


def test_a_fire_input_stays_raised_when_its_device_falls_silent() -> None:
    params = {"point": "fire", "alarm_kind": "fire_alarm"}
    rule = SafetyInputRule("fire", SafetyInputRule.Params.model_validate(params))
    site = Site([rule], [FIRE], at(2026, 7, 14, 10, 0))
    site.sample("fire-panel", fire=True)
    site.tick(3600)  # silence is no all-clear
    assert site.engine.ctx.reading("fire-panel", "fire").quality is Quality.STALE  # type: ignore[union-attr]
    assert site.open_kinds() == ["fire_alarm"]


def test_devices_that_report_only_events_never_go_stale_by_age() -> None:
    site = Site([], [DOOR, AC], at(2026, 7, 14, 10, 0))
    site.sample("door-1", door_open=False)
    site.sample("ac-301", on_off=1)
    site.tick(86400)
    assert site.engine.ctx.latest("door-1", "door_open") == (
        False,
        site.engine.ctx.stamps["door-1"],
    )
    assert site.engine.ctx.latest("ac-301", "on_off") is None


def test_a_device_silent_since_the_start_expires_its_restored_alarms() -> None:
    rule = AcAfterHoursRule("ac-night", AcAfterHoursRule.Params.model_validate({}))
    rule.bind([AC])
    rule.restore({"raised": {"ac-301": "ac_after_hours"}, "delays": {}})
    site = Site([rule], [AC], at(2026, 7, 14, 23, 0))
    assert site.tick() == []  # just started: nothing known, nothing decided
    [clear] = site.tick(STALE_POLLS * POLL + 1)
    assert isinstance(clear, Clear)
    assert clear.note == "ac-301: no data since the gateway started; the condition is not known"


def test_allowances_come_from_the_site_file() -> None:
    loaded = load_site(BUILTIN_PROFILES.parent / "demo-site.yaml", need_broker=False)
    infos = {d.id: d for d in device_infos(loaded)}
    assert infos["ac-301"].stale_after == STALE_POLLS * 5.0  # poll: 5s
    assert infos["ac-srv-1"].stale_after == STALE_POLLS * 3.0
    assert infos["window-301"].stale_after == 7200.0  # the z2m profile's 2 h heartbeat
    assert infos["door-archive"].stale_after is None  # a controller only reports events
