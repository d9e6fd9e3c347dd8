"""MQTT ingest that can be trusted: a point fed by two topics, the device's own time in every
form devices write it, QoS 1 redeliveries dropped by event id, retained events replayed by the
broker dropped while retained state is kept, variables in JSON paths (the channels of one
Shelly), and problem counters that a publisher inventing topics cannot grow. The shipped
profiles and the code that runs on the broker's network thread; the same paths run against a
real Mosquitto in test_mqtt_control.py."""

from __future__ import annotations

import copy
import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.mqtt.ingest import ARRIVAL_LAG, OTHER, Ingest, MqttDevice
from drivers.mqtt.mapping import parse_device_time
from drivers.mqtt.profile import MqttProfile
from gateway.config_errors import ConfigError
from gateway.config_load import load_profile, load_site
from gateway.mqtt_service import parse_command
from tests.mqtt_payloads import (
    ACS_ALERT,
    ACS_TOPIC,
    FRIGATE_EVENT_UPDATE,
    acs,
    acs_ingest,
    ingest_of,
    profile_named,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NS = 1_000_000_000


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * NS


def _now_s() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------
# A point on two state topics


TWO_TOPICS: dict[str, Any] = {
    "name": "two_topics",
    "protocol": "mqtt",
    "kind": "meter",
    "variables": ["topic"],
    "messages": [
        {
            "topic": "tele/{topic}/STATE",
            "points": [{"name": "relay_on", "path": "POWER", "type": "bool", "map": {"ON": True}}],
        },
        {
            "topic": "stat/{topic}/RESULT",
            "points": [
                {"name": "relay_on", "path": "POWER", "type": "bool", "map": {"OFF": False}}
            ],
        },
    ],
}


def test_a_point_on_two_state_topics_takes_the_latest_message() -> None:
    profile = MqttProfile.model_validate(TWO_TOPICS)
    ingest = Ingest([MqttDevice("plug", profile, "site", {"topic": "p"})])
    first = ingest.on_message("tele/p/STATE", b'{"POWER": "ON"}')
    second = ingest.on_message("stat/p/RESULT", b'{"POWER": "OFF"}')
    assert [dict(s.values) for s in first + second] == [{"relay_on": True}, {"relay_on": False}]
    assert second[0].ts >= first[0].ts


def test_a_type_clash_between_two_topics_names_the_later_line(tmp_path: Path) -> None:
    clash = copy.deepcopy(TWO_TOPICS)
    clash["messages"][1]["points"][0]["type"] = "str"
    path = tmp_path / "two_topics.yaml"
    path.write_text(json.dumps(clash, indent=2), encoding="utf-8")  # JSON is YAML
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    [problem] = info.value.problems
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if '"type": "str"' in text
    )
    assert problem.line == line
    assert problem.path == "messages[1].points[0].type"
    assert "same type" in problem.message


# ---------------------------------------------------------------------------------------------
# The device's own time


def test_tasmota_time_is_local_time_at_the_site() -> None:
    ingest = ingest_of("tasmota_energy_plug", {"topic": "p"})
    ingest.local = SHANGHAI
    when = _now_s() - timedelta(seconds=20)
    doc = {"Time": when.replace(tzinfo=None).isoformat(), "POWER": "ON"}
    [sample, _availability] = ingest.on_message("tele/p/STATE", json.dumps(doc).encode())
    assert sample.ts == _ns(when)
    assert 19 <= float(sample.values[ARRIVAL_LAG]) < 120
    # Old firmware writes the date with dots.
    old = {"Time": when.strftime("%Y.%m.%d %H:%M:%S"), "POWER": "OFF"}
    [sample] = ingest.on_message("tele/p/STATE", json.dumps(old).encode())
    assert sample.ts == _ns(when)


def test_hikvision_time_with_its_offset_and_frigate_frame_time() -> None:
    when = _now_s() - timedelta(seconds=5)
    doc = acs(5, 27)
    doc["dateTime"] = when.astimezone(ZoneInfo("Europe/Madrid")).isoformat()
    [sample] = acs_ingest().on_message(ACS_TOPIC, json.dumps(doc).encode())
    assert sample.ts == _ns(when)
    frigate = ingest_of("frigate_camera", {"camera": "front_door"})
    event = copy.deepcopy(FRIGATE_EVENT_UPDATE)
    frame = time.time() - 2.5
    event["after"]["frame_time"] = frame
    [sample] = frigate.on_message("frigate/events", json.dumps(event).encode())
    assert sample.ts == round(frame * 1_000_000) * 1000


@pytest.mark.parametrize(
    ("stamp", "why"),
    [("1970-01-01T00:05:00", "never set"), ("2099-01-01T00:00:00", "far ahead")],
)
def test_a_clock_not_to_trust_keeps_the_arrival_time(
    stamp: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guanjia.mqtt")
    ingest = ingest_of("tasmota_energy_plug", {"topic": "p"})
    before = time.time_ns()
    for _ in range(3):
        samples = ingest.on_message(
            "tele/p/STATE", json.dumps({"Time": stamp, "POWER": "ON"}).encode()
        )
    after = time.time_ns()
    assert before <= samples[0].ts <= after, why
    assert ARRIVAL_LAG not in samples[0].values
    assert ingest.stats.clock_refused == 3
    clock = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert len(clock) == 1  # logged once, counted always
    assert "NTP" in clock[0]


def test_a_late_message_keeps_its_time_and_is_noted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="guanjia.mqtt")
    ingest = ingest_of("hikvision_camera", {"device": "cam"})
    for hours in (8, 9):  # a backlog, or a clock in the wrong zone: kept, and said once
        when = _now_s() - timedelta(hours=hours)
        doc = {"eventType": "VMD", "eventState": "active", "dateTime": when.isoformat()}
        sample = ingest.on_message("hikvision/cam/event", json.dumps(doc).encode())[0]
        assert sample.ts == _ns(when)
        assert float(sample.values[ARRIVAL_LAG]) >= hours * 3600
    late = [r.getMessage() for r in caplog.records if "arrive" in r.getMessage()]
    assert len(late) == 1
    assert "time zone" in late[0]
    assert ingest.stats.clock_refused == 0


def test_a_time_that_is_no_time_is_counted_and_the_arrival_time_used() -> None:
    ingest = ingest_of("tasmota_energy_plug", {"topic": "p"})
    for bad in ("yesterday", 17, None, [1], "9" * 500):
        before = time.time_ns()
        [sample, *_] = ingest.on_message(
            "tele/p/STATE", json.dumps({"Time": bad, "POWER": "ON"}).encode()
        )
        assert sample.ts >= before
        assert sample.values["relay_on"] is True  # the values are still good
    assert ingest.stats.problems.counts["tele/p/STATE:time:bad"] == 4  # None: no time given
    assert ingest.stats.rejected == 0


# ---------------------------------------------------------------------------------------------
# QoS 1 redeliveries


def test_a_redelivered_access_event_is_dropped_and_counted() -> None:
    ingest = acs_ingest()
    event = json.dumps(ACS_ALERT).encode()
    assert len(ingest.on_message(ACS_TOPIC, event)) == 1
    assert ingest.on_message(ACS_TOPIC, event) == []
    assert ingest.stats.duplicates == 1
    assert ingest.stats.unmatched == 0  # a duplicate is not a message nobody maps
    # The same counter value at another time is another event (the controller was reset).
    reset = copy.deepcopy(ACS_ALERT)
    reset["dateTime"] = "2027-01-01T08:00:00+08:00"
    assert len(ingest.on_message(ACS_TOPIC, json.dumps(reset).encode())) == 1


def test_frigate_new_update_end_of_one_object_are_three_messages() -> None:
    ingest = ingest_of("frigate_camera", {"camera": "front_door"})
    out = []
    for kind, frame in (("new", 1.0), ("update", 2.0), ("end", 3.0)):
        event = copy.deepcopy(FRIGATE_EVENT_UPDATE)
        event["type"] = kind
        event["after"]["frame_time"] = event["after"]["frame_time"] + frame
        out += ingest.on_message("frigate/events", json.dumps(event).encode())
    assert [s.values["event_type"] for s in out] == ["new", "update", "end"]
    assert ingest.on_message("frigate/events", json.dumps(event).encode()) == []
    assert ingest.stats.duplicates == 1


def test_the_memory_of_recent_ids_is_bounded() -> None:
    profile = profile_named("hikvision_access_controller")
    ingest = Ingest([MqttDevice("dev", profile, "site", {"device": "entrance"})], recent_ids=100)
    first = acs(5, 27, serialNo=1)
    for serial in range(1, 1001):
        assert len(ingest.on_message(ACS_TOPIC, json.dumps(acs(5, 27, serialNo=serial)).encode()))
    assert len(ingest.seen["dev"]) == 100
    # Long forgotten: a copy of the first would now be taken as new (documented trade-off).
    assert len(ingest.on_message(ACS_TOPIC, json.dumps(first).encode())) == 1


def test_two_mappings_reading_one_message_do_not_take_it_for_a_copy() -> None:
    profile = MqttProfile.model_validate(
        {
            "name": "twice",
            "protocol": "mqtt",
            "kind": "access",
            "event_id": ["n"],
            "messages": [
                {"topic": "e", "event": True, "points": [{"name": "a", "path": "a"}]},
                {"topic": "e", "event": True, "points": [{"name": "b", "path": "b"}]},
            ],
        }
    )
    ingest = Ingest([MqttDevice("dev", profile, "site", {})])
    out = ingest.on_message("e", b'{"n": 1, "a": 1, "b": 2}')
    assert [dict(s.values) for s in out] == [{"a": 1.0}, {"b": 2.0}]
    assert ingest.on_message("e", b'{"n": 1, "a": 1, "b": 2}') == []
    assert ingest.stats.duplicates == 1


# ---------------------------------------------------------------------------------------------
# Bounded problem counters


def test_a_million_topics_do_not_grow_the_problem_counters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="guanjia.mqtt")
    ingest = Ingest(
        [MqttDevice("dev", profile_named("z2m_door_contact"), "site", {"id": "d"})],
        max_problem_keys=50,
    )
    for i in range(20_000):
        ingest.on_message(f"zigbee2mqtt/intruder_{i}", b"{}")  # claimed by nobody
        ingest.on_message("zigbee2mqtt/d", f'{{"contact": {i}}}'.encode())  # one bad key
    counts = ingest.stats.problems.counts
    assert len(counts) <= 51
    assert counts["zigbee2mqtt/d:door_open:unmapped"] == 20_000  # known keys keep counting
    assert counts[OTHER] == 20_000 - 49
    assert ingest.stats.folded == counts[OTHER]
    assert ingest.stats.unclaimed == 20_000
    assert len(caplog.records) <= 51
    assert len(ingest.router._cache) <= 10_001


# ---------------------------------------------------------------------------------------------
# A command's own time


def test_a_command_gives_its_time_as_epoch_seconds_or_iso() -> None:
    assert parse_command(b'{"value": 26, "ts": 1752543000}') == (26, "", 1752543000.0)
    assert parse_command(b'{"value": 26, "ts": 1752543000000}')[2] == 1752543000.0
    iso = datetime(2025, 7, 15, 9, 30, tzinfo=SHANGHAI)
    payload = json.dumps({"value": 26, "by": "a" * 500, "ts": iso.isoformat()}).encode()
    _value, who, ts = parse_command(payload)
    assert ts == iso.timestamp()
    assert len(who) <= 64
    with pytest.raises(ValueError, match="UTC offset"):
        parse_command(b'{"value": 26, "ts": "2025-07-15T09:30:00"}')
    with pytest.raises(ValueError, match="epoch seconds"):
        parse_command(b'{"value": 26, "ts": true}')
    assert parse_command(b"26") == (26, "", None)


# ---------------------------------------------------------------------------------------------
# Variables in JSON paths: the channels of one Shelly Pro 4PM


def _pro_4pm(channels: range = range(4)) -> Ingest:
    profile = profile_named("shelly_pro_4pm")
    devices = [
        MqttDevice(f"ch{n}", profile, "site", {"prefix": "shellypro4pm-a8032ab", "channel": str(n)})
        for n in channels
    ]
    return Ingest(devices)


def test_each_channel_reads_its_own_component_of_one_status_document() -> None:
    ingest = _pro_4pm()
    status = {
        "src": "shellypro4pm-a8032ab",
        "dst": "shellypro4pm-a8032ab/events",
        "method": "NotifyFullStatus",
        "params": {
            "ts": time.time() - 3,
            **{
                f"switch:{n}": {
                    "id": n,
                    "source": "init",
                    "output": n != 2,
                    "apower": 100.0 * n,
                    "voltage": 231.0,
                    "current": 0.5 * n,
                    "aenergy": {"total": 1000.0 * (n + 1), "by_minute": [0, 0, 0], "minute_ts": 1},
                    "temperature": {"tC": 40.0 + n, "tF": 104.0},
                }
                for n in range(4)
            },
        },
    }
    samples = ingest.on_message("shellypro4pm-a8032ab/events/rpc", json.dumps(status).encode())
    by_device = {s.device: s.values for s in samples}
    assert sorted(by_device) == ["ch0", "ch1", "ch2", "ch3"]
    for n in range(4):
        values = by_device[f"ch{n}"]
        assert values["active_power_total_w"] == 100.0 * n
        assert values["energy_import_kwh"] == pytest.approx(n + 1)
        assert values["relay_on"] is (n != 2)
        assert values["device_temperature_degc"] == 40.0 + n
    # params.ts is the device's time (epoch seconds with a fraction).
    assert all(2 <= float(s.values[ARRIVAL_LAG]) < 60 for s in samples)


def test_a_path_variable_must_be_declared() -> None:
    raw = profile_named("shelly_pro_4pm").model_dump()
    raw["variables"] = ["prefix"]
    raw["messages"] = [raw["messages"][1]]
    with pytest.raises(ValueError, match=r"uses channel; list it under `variables`"):
        MqttProfile.model_validate(raw)


@pytest.mark.parametrize(
    "where",
    [
        {"timestamp": {"path": "params.{unit}.ts", "format": "unix_s"}},
        {"event_id": ["events.{unit}.seq"]},
        {"match": {"params.{unit}.kind": "x"}},
    ],
)
def test_every_path_that_names_a_variable_must_declare_it(where: dict[str, Any]) -> None:
    mapping = {"topic": "t/{id}", "points": [{"name": "x_w", "path": "x"}], **where}
    raw = {"name": "p", "protocol": "mqtt", "kind": "meter", "variables": ["id"]}
    with pytest.raises(ValueError, match=r"uses unit; list it under `variables`"):
        MqttProfile.model_validate({**raw, "messages": [mapping]})
    declared = MqttProfile.model_validate(
        {**raw, "variables": ["id", "unit"], "messages": [mapping]}
    )
    assert any("{unit}" in path for path in declared.paths())


def _site_with(tmp_path: Path, device: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {name: 测试楼, id: test-site, tags: {building: main}}\n"
        "mqtt: {brokers: [{name: site, host: 127.0.0.1}]}\n"
        "devices:\n" + device,
        encoding="utf-8",
    )
    return path


def test_a_site_device_without_its_channel_is_one_line_before_anything_connects(
    tmp_path: Path,
) -> None:
    site = _site_with(
        tmp_path,
        "  - id: circuit-1\n"
        "    profile: shelly_pro_4pm\n"
        "    mqtt: {vars: {prefix: shellypro4pm-a8032ab}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_site(site)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{site}:")
    assert "devices[0].mqtt.vars" in str(problem)
    assert "needs channel" in str(problem)


def test_a_channel_that_would_split_the_path_is_refused(tmp_path: Path) -> None:
    site = _site_with(
        tmp_path,
        "  - id: circuit-1\n"
        "    profile: shelly_pro_4pm\n"
        "    mqtt: {vars: {prefix: shellypro4pm-a8032ab, channel: '0.apower'}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_site(site)
    [problem] = info.value.problems
    assert "devices[0].mqtt.vars.channel" in str(problem)
    assert "must be one key" in str(problem)


# ---------------------------------------------------------------------------------------------
# Retained events and retained state


def test_a_retained_event_replayed_on_subscribe_is_dropped_and_counted() -> None:
    ingest = ingest_of("dahua_mqtt_camera", {"topic": "cameras/3"})
    assert ingest.on_message("cameras/3/CrossLineDetection", b"Start", retained=True) == []
    assert ingest.stats.retained_events == 1
    assert ingest.stats.unmatched == 0  # dropped on purpose, not a message nobody maps
    [live] = ingest.on_message("cameras/3/CrossLineDetection", b"Start")
    assert live.values == {"intrusion": True}
    assert ingest.stats.retained_events == 1


def test_retained_state_is_the_latest_state() -> None:
    ingest = ingest_of("dahua_mqtt_camera", {"topic": "cameras/3"})
    [replayed] = ingest.on_message("cameras/3/VideoLoss", b"Stop", retained=True)
    assert replayed.values == {"video_loss": False}
    assert ingest.stats.retained_events == 0
    # The same for JSON state with a device time: the Shelly's retained status document.
    shelly = _pro_4pm(range(1))
    doc = {
        "id": 0,
        "output": True,
        "apower": 12.5,
        "voltage": 230.0,
        "current": 0.1,
        "aenergy": {"total": 10.0},
    }
    [state] = shelly.on_message(
        "shellypro4pm-a8032ab/status/switch:0", json.dumps(doc).encode(), retained=True
    )
    assert state.values["active_power_total_w"] == 12.5


def test_an_event_replay_does_not_reach_the_id_memory() -> None:
    """A retained copy is dropped before its id is remembered: the live event with the same id
    that follows is still taken once."""
    ingest = acs_ingest()
    event = json.dumps(ACS_ALERT).encode()
    assert ingest.on_message(ACS_TOPIC, event, retained=True) == []
    assert len(ingest.on_message(ACS_TOPIC, event)) == 1
    assert ingest.stats.duplicates == 0
    assert ingest.stats.retained_events == 1


def test_a_point_may_not_be_both_event_and_state(tmp_path: Path) -> None:
    mixed = copy.deepcopy(TWO_TOPICS)
    mixed["messages"][1]["event"] = True
    path = tmp_path / "two_topics.yaml"
    path.write_text(json.dumps(mixed, indent=2), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    [problem] = info.value.problems
    assert problem.path == "messages[1].points[0].name"
    assert "an event point here and state point in messages[0]" in problem.message


# ---------------------------------------------------------------------------------------------
# Times written by the devices: epoch seconds and milliseconds, ISO 8601 with and without zone


WHEN = datetime(2026, 3, 2, 20, 11, 13, 250000, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        (WHEN.timestamp(), "unix_s"),  # Shelly's params.ts: 1772453473.25
        (str(WHEN.timestamp()), "unix_s"),
        (int(WHEN.timestamp() * 1000), "unix_ms"),
        (WHEN.isoformat(), "iso8601"),  # Hikvision: 2026-03-02T20:11:13.250000+08:00
        (WHEN.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z"), "iso8601"),
        ("2026-03-02 20:11:13.25", "iso8601"),  # Dahua's LocaleTime: the site's local time
        ("2026-03-02T12:11:13.25+0000", "iso8601"),
        (WHEN.timestamp(), "auto"),
        (int(WHEN.timestamp() * 1000), "auto"),
        (str(int(WHEN.timestamp() * 1000)), "auto"),
        ("2026-03-02T20:11:13.25+08:00", "auto"),
    ],
)
def test_device_times_in_every_written_form(raw: Any, fmt: str) -> None:
    assert parse_device_time(raw, fmt, SHANGHAI) == int(WHEN.timestamp() * 1000) * 1_000_000


@pytest.mark.parametrize(("raw", "fmt"), [("yesterday", "auto"), (True, "auto"), ([1], "auto")])
def test_a_time_that_is_none_is_refused(raw: Any, fmt: str) -> None:
    with pytest.raises(ValueError, match=r"time|ISO|number|isoformat"):
        parse_device_time(raw, fmt, SHANGHAI)
