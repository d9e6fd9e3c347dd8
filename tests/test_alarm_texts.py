"""Alarm texts from real rule runs: every kind a rule raises, driven with a fake clock until it
raises, into the alarm book, rendered through rules.texts (what the gateway and `guanjia
alarms` both use) in Chinese and English: no "?", no unfilled {field}, no stale value."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from gateway.alarm_service import device_infos
from gateway.config_load import load_site
from rules.alarms import Alarm, AlarmBook
from rules.catalog import Catalog
from rules.kinds.ac_policy import AcPolicyRule
from rules.kinds.ac_room import AcRoomTemperatureRule
from rules.kinds.energy import (
    AfterHoursConsumptionRule,
    CounterRule,
    InverterFaultRule,
    MeterOfflineRule,
    MeterStuckRule,
    PvUnderperformanceRule,
    QuotaPaceRule,
    ThresholdRule,
)
from rules.kinds.facility import PueRule, WaterLeakRule
from rules.kinds.hvac import AcAfterHoursRule, AcWindowOpenRule
from rules.kinds.security import (
    AfterHoursAccessRule,
    CameraRule,
    DoorForcedRule,
    DoorHeldOpenRule,
    InvalidCardsRule,
    SafetyInputRule,
)
from rules.kinds.vehicles import SpeedingRule, UnknownPlateRule
from rules.model import AcWindowSwitch, Clear, Effect, Raise, Rule
from rules.texts import AlarmTexts
from tests.rules_fakes import FakeContext, at, make

# A small building with one device of each profile the rules read, as a site file: the
# texts take units, enum labels and places from the real profiles.
SITE = """\
site: {name: 测试楼, id: texts, timezone: Asia/Shanghai, tags: {building: main}}
devices:
  - {id: meter-1, profile: eastron_sdm630, poll: 10s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 1},
     tags: {floor: B1, zone: switch-room}}
  - {id: meter-ups, profile: eastron_sdm120, poll: 10s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 3},
     tags: {floor: "4", zone: srv-1}}
  - {id: water-1, profile: tuf2000m_water, poll: 10s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 4},
     tags: {floor: B1, zone: pump-room}}
  - {id: pv-1, profile: huawei_sun2000, poll: 10s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1502, unit: 2}, tags: {floor: roof}}
  - {id: ac-301, profile: coolmaster_indoor, poll: 10s,
     modbus: {transport: tcp, host: 127.0.0.1, port: 1503, unit: 1, base: 16},
     tags: {floor: "3", zone: "301"}}
  - {id: outdoor-1, profile: z2m_temperature_humidity, mqtt: {vars: {id: outdoor}},
     tags: {floor: roof, zone: roof}}
  - {id: window-301, profile: z2m_door_contact, mqtt: {vars: {id: w301}},
     tags: {floor: "3", zone: "301", use: window}}
  - {id: door-archive, profile: hikvision_access_controller, mqtt: {vars: {device: archive}},
     tags: {floor: B1, zone: archive, use: secured}}
  - {id: cam-1, profile: hikvision_camera, mqtt: {vars: {device: cam-1}},
     tags: {floor: "1", zone: lobby}}
  - {id: cam-gate, profile: hikvision_isapi_anpr_camera, tags: {zone: gate},
     http_events: {host: 127.0.0.1, username: u, password: "${CAM_PW}"}}
"""

GAP = re.compile(r"(?<![\w）)])\?")

# Kinds in the catalog that no rule raises (yet): a generic offline rule for controllers.
# Raised and rendered with a real calendar in tests/test_rules_patrol.py.
NOT_RAISED = {"device_offline", "patrol_missed", "patrol_late", "patrol_out_of_order"}


class Run:
    """Rules driven by one fake clock; their Raises and Clears go into one alarm book."""

    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "site.yaml").write_text(SITE, encoding="utf-8")
        loaded = load_site(tmp_path / "site.yaml", need_broker=False, resolve_secrets=False)
        self.devices = {d.id: d for d in device_infos(loaded)}
        # A Tuesday in July before office hours: summer limits, after-hours rules.
        self.ctx = FakeContext(at(2026, 7, 14, 7, 0), self.devices.values())
        self.book = AlarmBook()
        self.catalog = Catalog.load()
        self.texts = AlarmTexts(self.catalog, self.devices)
        self.n = 0

    def rule(self, cls: type[Rule], **params: Any) -> Rule:
        self.n += 1
        return make(cls, self.ctx, f"{cls.kind.replace('_', '-')}-{self.n}", **params)

    def apply(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Raise | Clear):
                self.book.apply(effect, self.ctx.t, self.catalog.grade_of)

    def sample(self, rule: Rule, device: str, **values: Any) -> None:
        for point, value in values.items():
            self.ctx.set_latest(device, point, value)
        self.apply(self.ctx.sample(rule, device, values))

    def tick(self, rule: Rule, after: float = 0.0) -> None:
        self.ctx.advance(after)
        self.apply(self.ctx.tick(rule))

    def alarm(self, rule: Rule) -> Alarm:
        [alarm] = [a for a in self.book.all() if a.rule == rule.id]
        return alarm


def run_every_kind(tmp_path: Path) -> Run:
    r = Run(tmp_path)
    ctx = r.ctx

    # AC 301 cools at 26 °C; someone sets 22 °C; after the grace the policy alarms and writes
    # 26 °C back; the unit reports 26 °C and the alarm clears. Its text names 22 °C.
    ac = r.rule(AcPolicyRule, grace="60s", enforce=True)
    r.sample(ac, "ac-301", on_off=1, mode=0, setpoint_degc=26.0)
    r.sample(ac, "ac-301", setpoint_degc=22.0)
    ctx.advance(61)
    r.sample(ac, "ac-301", setpoint_degc=22.0)
    ctx.advance(5)
    r.sample(ac, "ac-301", setpoint_degc=26.0)  # restored by the enforcement

    # Guangdong: no cooling with 24 °C outside; Jiangsu: the 09:00-11:00 window switched on
    # (07:00 now: the window's check is run at 09:30 and the clock put back).
    gd = r.rule(
        AcPolicyRule, variant="guangdong-public-2021", grace=0, outdoor={"device": "outdoor-1"}
    )
    r.sample(gd, "outdoor-1", temperature_degc=24.0)
    r.sample(gd, "ac-301", on_off=1, mode=0, setpoint_degc=26.0)
    js = r.rule(AcPolicyRule, variant="jiangsu-2023", grace=0)
    r.apply(js.on_input(AcWindowSwitch("tight-supply", True), ctx).effects)  # type: ignore[union-attr]
    before = ctx.now
    ctx.now = at(2026, 7, 14, 9, 30)
    r.sample(js, "ac-301", on_off=1, mode=0, setpoint_degc=26.0)
    # The room at 21 °C for three hours while its unit cools at 26 °C.
    room = r.rule(AcRoomTemperatureRule, delay="2h")
    r.sample(room, "ac-301", on_off=1, mode=0, setpoint_degc=26.0, room_temperature_degc=21.0)
    r.tick(room, 3 * 3600)
    ctx.now = before

    after = r.rule(AcAfterHoursRule, delay="30m")
    r.sample(after, "ac-301", on_off=1, mode=0)
    r.tick(after, 1801)

    window = r.rule(AcWindowOpenRule, delay="5m")
    r.sample(window, "window-301", door_open=True)
    r.tick(window, 301)

    r.sample(r.rule(ThresholdRule, point="voltage_l1_v", above=250), "meter-1", voltage_l1_v=262.5)

    offline = r.rule(MeterOfflineRule, max_silence="5m")
    r.tick(offline)
    r.tick(offline, 301)

    stuck = r.rule(MeterStuckRule, duration="30m", always=True)
    r.sample(stuck, "meter-1", active_power_total_w=1234.0)
    ctx.advance(1801)
    r.sample(stuck, "meter-1", active_power_total_w=1234.0)

    for later in (990.0, 0.0, 1500.0):  # backwards, reset, jump
        counter = r.rule(CounterRule, max_rate_kw=100)
        r.sample(counter, "meter-1", energy_import_kwh=1000.0)
        ctx.advance(60)
        r.sample(counter, "meter-1", energy_import_kwh=later)

    night = r.rule(AfterHoursConsumptionRule, baseline_w=1000, on_delay="1m")
    r.sample(night, "meter-1", active_power_total_w=5000.0)
    ctx.advance(61)
    r.sample(night, "meter-1", active_power_total_w=5000.0)

    for used in (10.0, 200.0):  # on pace to overrun, then over
        quota = r.rule(QuotaPaceRule, limit_kwh=100, min_fraction=0)
        r.sample(quota, "meter-1", energy_import_kwh=1000.0)
        ctx.advance(86400)
        r.sample(quota, "meter-1", energy_import_kwh=1000.0 + used)

    ctx.now = at(2026, 7, 15, 12, 0)  # noon: the sun is up
    pv = r.rule(PvUnderperformanceRule, rated_w=10000, on_delay="1m")
    r.sample(pv, "pv-1", active_power_w=100)
    ctx.advance(61)
    r.sample(pv, "pv-1", active_power_w=100)
    fault = r.rule(InverterFaultRule, point="device_status", fault_values=[768])
    r.sample(fault, "pv-1", device_status=768)
    code = r.rule(InverterFaultRule)  # fault_code has no labels: the text gives the code
    r.sample(code, "pv-1", fault_code=2011)

    ctx.now = at(2026, 7, 15, 22, 0)  # after hours
    r.sample(r.rule(DoorForcedRule), "door-archive", door_forced_open=True, door_no=1)
    held = r.rule(DoorHeldOpenRule)
    r.sample(held, "door-archive", door_open=True, door_no=1)
    ctx.advance(125)
    r.sample(held, "door-archive", door_held_open=True, door_no=1)  # the controller's event
    contact = r.rule(DoorHeldOpenRule, scope={"devices": ["window-301"]}, max_open="10m")
    r.sample(contact, "window-301", door_open=True)
    r.tick(contact, 601)
    cards = r.rule(InvalidCardsRule)
    for card in ("A1", "A2", "A3"):
        r.sample(cards, "door-archive", invalid_card=True, card_no=card, door_no=1)
    access = r.rule(AfterHoursAccessRule)
    r.sample(access, "door-archive", access_granted=True, employee_no="E1024", door_no=1)
    for kind, point in (
        ("fire_alarm", "fire_button"),
        ("duress", "duress"),
        ("device_tamper", "controller_tamper"),
        ("gas_leak", "zone_short_circuit"),
    ):
        safety = r.rule(SafetyInputRule, point=point, alarm_kind=kind, event=True)
        r.sample(safety, "door-archive", **{point: True})

    camera = r.rule(CameraRule)
    r.sample(camera, "cam-1", video_loss=True, channel_id=1)
    r.sample(camera, "cam-1", tamper=True)
    r.sample(camera, "cam-1", disk_error=True)
    r.sample(camera, "cam-1", disk_full=True)
    r.sample(camera, "cam-1", available=False)
    r.tick(camera, 121)

    speeding = r.rule(SpeedingRule, limit_kmh=30)
    r.sample(speeding, "cam-gate", vehicle=True, plate="京A12345", speed_kmh=52.5, lane=1)
    unknown = r.rule(UnknownPlateRule, allowed_plates=["京A12345"])
    r.sample(unknown, "cam-gate", vehicle=True, plate="沪C55555", lane=2)

    # Water running all night, three nights in a row; a data room at PUE 1.8 over 1.6.
    leak = r.rule(WaterLeakRule, threshold_m3h=0.2)
    for day in (16, 17, 18):
        ctx.now = at(2026, 7, day, 0, 30)
        while ctx.now < at(2026, 7, day, 4, 30):
            r.sample(leak, "water-1", flow_m3h=0.45)
            r.tick(leak, 600)
    pue = r.rule(PueRule, facility=["meter-1"], it=["meter-ups"], limit=1.6, room="srv-1")
    r.sample(pue, "meter-ups", active_power_total_w=10000.0)
    r.sample(pue, "meter-1", active_power_total_w=18000.0)
    r.tick(pue, 901)
    return r


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_every_kind(tmp_path_factory.mktemp("texts"))


def test_every_kind_a_rule_raises_was_raised(run: Run) -> None:
    raised = {a.kind for a in run.book.all()}
    assert raised == set(run.catalog.kinds) - NOT_RAISED


def test_every_text_is_complete_in_both_languages(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rules.catalog")
    for alarm in run.book.all():
        zh, en = run.texts.render(alarm)
        for text in (zh, en):
            # A gap is a "?" on its own (a question in a text, "cleared?", is not).
            assert not GAP.search(text), (alarm.kind, text)
            assert "{" not in text, (alarm.kind, text)
            assert "}" not in text, (alarm.kind, text)
            assert "None" not in text, (alarm.kind, text)
            assert "True" not in text, (alarm.kind, text)
        if not alarm.kind.startswith("quota_"):  # a quota's text names its scope
            assert alarm.subject.split(":")[0] in en, (alarm.kind, en)
    assert not caplog.records  # the catalog reports every field it had to leave empty


def texts_of(run: Run, kind: str) -> list[tuple[str, str]]:
    return [run.texts.render(a) for a in run.book.all() if a.kind == kind]


def test_values_are_the_ones_that_raised(run: Run) -> None:
    # The AC alarm names the setpoint that broke the limit, not the one written back.
    [(zh, en)] = texts_of(run, "ac_setpoint_violation")
    assert zh == "main / 3 / 301 空调 ac-301 设定温度 22°C，低于制冷下限 26°C"
    assert en == "main / 3 / 301: AC ac-301 setpoint 22°C is below the cooling minimum of 26°C"
    [(zh, en)] = texts_of(run, "threshold")
    assert en == "main / B1 / switch-room: meter-1 voltage_l1_v is 262.5V, above the limit of 250V"
    assert "高于上限 250V" in zh
    [(_, en)] = texts_of(run, "counter_jump")
    # A jump is measured against the most the meter can count in a minute (100 kW x 60 s).
    assert "+500kWh exceeds 1.68kWh" in en
    held = dict(texts_of(run, "door_held_open"))
    assert "main / B1 / archive: door door-archive held open for 125 s" in held.values()
    assert "main / 3 / 301: door window-301 held open for 601 s" in held.values()
    faults = {en for _, en in texts_of(run, "inverter_fault")}
    assert faults == {
        "main / roof: inverter pv-1 fault: Shutdown: fault (code 768)",
        "main / roof: inverter pv-1 fault (code 2011)",
    }
    [(zh, _)] = texts_of(run, "after_hours_access")
    assert zh.endswith("非工作时间通行：E1024")
    [(zh, _)] = texts_of(run, "invalid_cards_repeated")
    assert zh.endswith("5 分钟内无效刷卡 3 次")
    [(_, en)] = texts_of(run, "meter_stuck")
    assert en.endswith("reading 1234W has not changed for 0.5 h")


def test_facility_texts(run: Run) -> None:
    [(zh, en)] = texts_of(run, "water_leak_suspected")
    assert zh == (
        "main / B1 / pump-room 水表 water-1 连续 3 晚夜间最小流量 0.45 m³/h，高于 0.2 m³/h，"
        "疑似漏水"
    )
    assert en.endswith("minimum night flow 0.45 m³/h above 0.2 m³/h for 3 nights, suspected leak")
    [(zh, en)] = texts_of(run, "pue_high")
    assert zh == "main / B1 / switch-room 数据机房 srv-1 PUE 为 1.8，高于限值 1.6"
    assert en == "main / B1 / switch-room: data room srv-1 PUE is 1.8, above the limit of 1.6"


def test_a_smaller_change_of_setpoint_is_still_news(tmp_path: Path) -> None:
    # 24 °C, then 23.5 °C: within the book's value tolerance, but the text must follow.
    r = Run(tmp_path)
    ac = r.rule(AcPolicyRule, grace="0s")
    r.sample(ac, "ac-301", on_off=1, mode=0, setpoint_degc=24.0)
    assert "24°C" in r.texts.render(r.alarm(ac))[1]
    r.sample(ac, "ac-301", setpoint_degc=23.5)
    zh, en = r.texts.render(r.alarm(ac))
    assert "设定温度 23.5°C" in zh
    assert "setpoint 23.5°C" in en
