"""Tests of the MQTT device profiles in config/profiles/ (`protocol: mqtt`).

Every MQTT profile is validated; the shipped ones are fed the payloads recorded in the device
facts (shared/facts/devices/{zigbee2mqtt,tasmota,frigate,hikvision_isapi}.yaml, copied here
so the tests stand alone) through Ingest, the code that runs on the broker's network thread, and
the values are checked exactly. Bad input must never raise, and is counted and logged once.
Property tests throw arbitrary bytes, arbitrary JSON and JSON shaped like each mapping (its match
values and paths, with arbitrary values there) at every profile's topics.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.types import Sample
from drivers.mqtt.ingest import AVAILABLE, Ingest, MqttDevice
from drivers.mqtt.mapping import Handler, compile_profile
from drivers.mqtt.profile import MqttProfile
from tests.mqtt_payloads import (
    ACS_ALERT,
    ACS_TOPIC,
    DEV,
    FRIGATE_EVENT_UPDATE,
    PROFILE_DIR,
    acs,
    acs_ingest,
    ingest_of,
    load_raw,
    profile_named,
)


def _protocol(path: Path) -> Any:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None  # a broken file is the Modbus profile tests' to report
    return data.get("protocol") if isinstance(data, dict) else None


MQTT_FILES = sorted(p for p in PROFILE_DIR.glob("*.yaml") if _protocol(p) == "mqtt")
SHIPPED = {
    "z2m_temperature_humidity",
    "z2m_door_contact",
    "z2m_occupancy",
    "tasmota_energy_plug",
    "frigate_camera",
    "hikvision_access_controller",
    "hikvision_camera",
    "shelly_pro_4pm",
    "shelly_pro_em",
    "dahua_mqtt_camera",
}
PY_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


def payload(obj: Any) -> bytes:
    """Bytes as they are, a str as a text payload, anything else as JSON."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, str):
        return obj.encode()
    return json.dumps(obj).encode()


def send(ingest: Ingest, topic: str, obj: Any) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """(device, values, bad) of each Sample the message produced."""
    return [(s.device, dict(s.values), dict(s.bad)) for s in ingest.on_message(topic, payload(obj))]


def declared_types(profile: MqttProfile) -> dict[str, set[str]]:
    types: dict[str, set[str]] = {AVAILABLE: {"bool"}}
    for m in profile.messages:
        for p in m.points:
            types.setdefault(p.name, set()).add(p.type)
    return types


def assert_samples_typed(samples: Sequence[Sample], profile: MqttProfile) -> None:
    types = declared_types(profile)
    for s in samples:
        assert s.device == DEV
        assert s.values or s.bad, "an empty sample"
        assert set(s.values) <= set(types), set(s.values) - set(types)
        assert set(s.bad) <= set(types) - {AVAILABLE}, set(s.bad)
        assert not set(s.values) & set(s.bad)
        for name, value in s.values.items():
            assert any(type(value) is PY_TYPES[t] for t in types[name]), (name, value)


# ---------------------------------------------------------------------------------------------
# Every MQTT profile


def test_shipped_profiles_are_found() -> None:
    assert {p.stem for p in MQTT_FILES} >= SHIPPED


@pytest.mark.parametrize("path", MQTT_FILES, ids=lambda p: p.stem)
def test_profile_is_valid_and_documented(path: Path) -> None:
    raw = load_raw(path)
    profile = MqttProfile.model_validate(raw)
    assert profile.name == path.stem, "file name must be the profile's name"
    assert profile.description.strip()
    assert profile.sources, "say where the payload shapes come from"
    for message in raw["messages"]:
        for point in message["points"]:
            assert "unit" in point, f"{point['name']}: give a unit ('' if dimensionless)"
            assert str(point.get("description", "")).strip(), f"{point['name']}: describe it"
    # every declared variable is used somewhere, so a site file is not asked for nothing
    used = " ".join(profile.templates())
    for var in profile.variables:
        assert "{" + var + "}" in used, f"variable {var!r} is never used"


@pytest.mark.parametrize("path", MQTT_FILES, ids=lambda p: p.stem)
def test_text_payload_maps_have_string_keys(path: Path) -> None:
    """YAML 1.1 reads ON/OFF/yes/no as booleans: an unquoted `ON:` key never matches "ON"."""
    profile = MqttProfile.model_validate(load_raw(path))
    for m in profile.messages:
        for p in m.points:
            if m.format == "text" and p.map is not None and p.value is None:
                bad = [k for k in p.map if not isinstance(k, str)]
                assert not bad, f"{m.topic} {p.name}: quote the map keys {bad}"


@pytest.mark.parametrize("path", MQTT_FILES, ids=lambda p: p.stem)
def test_a_point_keeps_one_type(path: Path) -> None:
    """A point in several (event) mappings must land in InfluxDB as one field type."""
    profile = MqttProfile.model_validate(load_raw(path))
    for name, types in declared_types(profile).items():
        assert len(types) == 1, f"{name} is declared as {sorted(types)}"


# ---------------------------------------------------------------------------------------------
# Zigbee2MQTT

Z2M_PROFILES = ["z2m_temperature_humidity", "z2m_door_contact", "z2m_occupancy"]


def test_z2m_temperature_humidity_doc_payload() -> None:
    ing = ingest_of("z2m_temperature_humidity", {"id": "floor3/office"})
    out = send(ing, "zigbee2mqtt/floor3/office", {"temperature": 27.34, "humidity": 44.72})
    assert out == [
        (DEV, {"temperature_degc": 27.34, "humidity_pct": 44.72}, {}),
        (DEV, {AVAILABLE: True}, {}),  # first values with a heartbeat: the device is up
    ]
    full = {
        "battery": 97,
        "humidity": 51.2,
        "linkquality": 87,
        "pressure": 1003.4,
        "temperature": 21.5,
        "voltage": 3025,
    }
    out = send(ing, "zigbee2mqtt/floor3/office", full)
    assert out == [
        (
            DEV,
            {
                "temperature_degc": 21.5,
                "humidity_pct": 51.2,
                "pressure_hpa": 1003.4,
                "battery_pct": 97.0,
                "voltage_mv": 3025.0,
                "linkquality": 87,
            },
            {},
        )
    ]
    values = out[0][1]
    assert type(values["battery_pct"]) is float
    assert type(values["linkquality"]) is int


@pytest.mark.parametrize("name", Z2M_PROFILES)
def test_z2m_availability_both_forms(name: str) -> None:
    ing = ingest_of(name, {"id": "office_3F_door"})
    topic = "zigbee2mqtt/office_3F_door/availability"
    assert send(ing, topic, "offline") == [(DEV, {AVAILABLE: False}, {})]  # 1.x plain string
    assert send(ing, topic, {"state": "online"}) == [(DEV, {AVAILABLE: True}, {})]  # 2.x JSON
    assert send(ing, topic, {"state": "online"}) == []  # no change, no reading
    assert send(ing, topic, b'{"state":"offline"}') == [(DEV, {AVAILABLE: False}, {})]
    assert send(ing, topic, "online") == [(DEV, {AVAILABLE: True}, {})]
    assert ing.stats.rejected == 0


def test_z2m_door_contact_true_means_closed() -> None:
    ing = ingest_of("z2m_door_contact", {"id": "office_3F_door"})
    topic = "zigbee2mqtt/office_3F_door"
    composed = {
        "battery": 91,
        "contact": False,
        "temperature": 24,
        "voltage": 3005,
        "linkquality": 87,
    }
    out = send(ing, topic, composed)
    assert out[0] == (
        DEV,
        {
            "door_open": True,
            "temperature_degc": 24.0,
            "battery_pct": 91.0,
            "voltage_mv": 3005.0,
            "linkquality": 87,
        },
        {},
    )
    assert send(ing, topic, {"contact": True}) == [(DEV, {"door_open": False}, {})]


def test_z2m_occupancy() -> None:
    ing = ingest_of("z2m_occupancy", {"id": "hall_pir"})
    out = send(ing, "zigbee2mqtt/hall_pir", {"occupancy": True})
    assert out == [(DEV, {"occupancy": True}, {}), (DEV, {AVAILABLE: True}, {})]
    later = {"occupancy": False, "illuminance": 12, "no_occupancy_since": 60, "battery": 100}
    assert send(ing, "zigbee2mqtt/hall_pir", later) == [
        (
            DEV,
            {
                "occupancy": False,
                "illuminance_lx": 12.0,
                "no_occupancy_since_s": 60,
                "battery_pct": 100.0,
            },
            {},
        )
    ]


def test_z2m_heartbeat_marks_a_silent_sensor_offline() -> None:
    ing = ingest_of("z2m_temperature_humidity", {"id": "t1"})
    assert profile_named("z2m_temperature_humidity").availability.heartbeat == 7200
    send(ing, "zigbee2mqtt/t1", {"temperature": 20.0, "humidity": 40.0})
    assert ing.check_heartbeats() == []
    ing.state[DEV].last_message -= 7201
    out = ing.check_heartbeats()
    assert [(s.device, dict(s.values)) for s in out] == [(DEV, {AVAILABLE: False})]


# ---------------------------------------------------------------------------------------------
# Tasmota

POW_R2_SENSOR = {
    "Time": "2018-02-15T17:37:10",
    "ENERGY": {
        "TotalStartTime": "2018-11-14T18:39:40",
        "Total": 6.294,
        "Yesterday": 5.340,
        "Today": 0.954,
        "Period": 217,
        "Power": 2635,
        "ApparentPower": 2650,
        "ReactivePower": 282,
        "Factor": 0.99,
        "Voltage": 227,
        "Current": 11.661,
    },
}
TASMOTA_STATE = {
    "Time": "2021-06-27T15:03:44+02:00",
    "Uptime": "0T00:00:13",
    "UptimeSec": 13,
    "Heap": 28,
    "SleepMode": "Dynamic",
    "Sleep": 50,
    "LoadAvg": 19,
    "MqttCount": 1,
    "POWER": "ON",
    "Wifi": {
        "AP": 1,
        "SSId": "DEMOAP",
        "BSSId": "XX:XX:XX:XX:XX:XX",
        "Channel": 1,
        "Mode": "11n",
        "RSSI": 86,
        "Signal": -57,
        "LinkCount": 1,
        "Downtime": "0T00:00:07",
    },
}
DUAL_CHANNEL_SENSOR = {
    "Time": "2026-09-18T11:19:21",
    "ENERGY": {
        "TotalStartTime": "2026-09-16T00:00:00",
        "Total": [2.813, 0.254],
        "Yesterday": [1.530, 0.125],
        "Today": [0.772, 0.059],
        "Power": [52, 5],
        "ApparentPower": [66, 10],
        "ReactivePower": [40, 9],
        "Factor": [0.79, 0.50],
        "Voltage": 235,
        "Current": [0.278, 0.044],
        "BL09XX": {"Temperature": 46.5},
    },
}


def test_tasmota_pow_r2_sensor() -> None:
    ing = ingest_of("tasmota_energy_plug", {"topic": "pow1"})
    out = send(ing, "tele/pow1/SENSOR", POW_R2_SENSOR)
    assert out == [
        (
            DEV,
            {
                "energy_total_kwh": 6.294,
                "energy_today_kwh": 0.954,
                "energy_yesterday_kwh": 5.34,
                "energy_period_wh": 217.0,
                "power_w": 2635.0,
                "apparent_power_va": 2650.0,
                "reactive_power_var": 282.0,
                "power_factor": 0.99,
                "voltage_v": 227.0,
                "current_a": 11.661,
            },
            {},
        ),
        (DEV, {AVAILABLE: True}, {}),
    ]
    assert all(type(v) is float for v in out[0][1].values())


def test_tasmota_state_power_and_lwt() -> None:
    ing = ingest_of("tasmota_energy_plug", {"topic": "demo-sensor"})
    assert send(ing, "tele/demo-sensor/LWT", "Online") == [(DEV, {AVAILABLE: True}, {})]
    assert send(ing, "tele/demo-sensor/STATE", TASMOTA_STATE) == [
        (
            DEV,
            {"relay_on": True, "wifi_rssi_pct": 86, "wifi_signal_dbm": -57, "uptime_s": 13},
            {},
        )
    ]
    assert send(ing, "stat/demo-sensor/POWER", "OFF") == [(DEV, {"relay_on": False}, {})]
    assert send(ing, "stat/demo-sensor/POWER", "ON") == [(DEV, {"relay_on": True}, {})]
    assert send(ing, "tele/demo-sensor/LWT", "Offline") == [(DEV, {AVAILABLE: False}, {})]
    assert ing.stats.rejected == 0


def test_tasmota_heartbeat_is_three_teleperiods() -> None:
    assert profile_named("tasmota_energy_plug").availability.heartbeat == 3 * 300


def test_tasmota_multi_channel_arrays_are_bad_not_fatal() -> None:
    """A Sonoff Dual R3 sends per-channel arrays: this single-channel profile flags them."""
    ing = ingest_of("tasmota_energy_plug", {"topic": "tasmota"})
    out = send(ing, "tele/tasmota/SENSOR", DUAL_CHANNEL_SENSOR)
    _, values, bad = out[0]
    assert values == {"voltage_v": 235.0}
    assert bad == dict.fromkeys(
        [
            "energy_total_kwh",
            "energy_today_kwh",
            "energy_yesterday_kwh",
            "power_w",
            "apparent_power_va",
            "reactive_power_var",
            "power_factor",
            "current_a",
        ],
        "type",
    )
    assert ing.stats.problems.counts["tele/tasmota/SENSOR:energy_total_kwh:type"] == 1


# ---------------------------------------------------------------------------------------------
# Frigate


def frigate_two_cameras() -> Ingest:
    profile = profile_named("frigate_camera")
    return Ingest(
        [
            MqttDevice("cam_front", profile, "site", {"camera": "front_door"}),
            MqttDevice("cam_back", profile, "site", {"camera": "back_yard"}),
        ]
    )


def test_frigate_event_goes_to_its_camera_only() -> None:
    ing = frigate_two_cameras()
    assert send(ing, "frigate/events", FRIGATE_EVENT_UPDATE) == [
        (
            "cam_front",
            {
                "event_type": "update",
                "object_label": "person",
                "event_id": "1607123955.475377-mxklsc",
                "score": 0.958984375,
            },
            {},
        )
    ]
    back = copy.deepcopy(FRIGATE_EVENT_UPDATE)
    back["after"]["camera"] = "back_yard"
    back["type"] = "end"
    assert [(d, v["event_type"]) for d, v, _ in send(ing, "frigate/events", back)] == [
        ("cam_back", "end")
    ]
    other = copy.deepcopy(FRIGATE_EVENT_UPDATE)
    other["after"]["camera"] = "driveway"
    assert send(ing, "frigate/events", other) == []
    # the older event shape has no sub_label etc.; only what the profile reads matters
    old = {"type": "new", "after": {"id": "1.2-abcdef", "camera": "back_yard", "label": "car"}}
    assert send(ing, "frigate/events", old) == [
        ("cam_back", {"event_type": "new", "object_label": "car", "event_id": "1.2-abcdef"}, {})
    ]
    assert ing.stats.rejected == 0


def test_frigate_camera_status_motion_review() -> None:
    ing = frigate_two_cameras()
    assert send(ing, "frigate/front_door/status/detect", "offline") == [
        ("cam_front", {"detect_status": "offline", "video_ok": False}, {})
    ]
    assert send(ing, "frigate/front_door/status/detect", "online") == [
        ("cam_front", {"detect_status": "online", "video_ok": True}, {})
    ]
    assert send(ing, "frigate/back_yard/status/detect", "disabled") == [
        ("cam_back", {"detect_status": "disabled", "video_ok": False}, {})
    ]
    assert send(ing, "frigate/back_yard/motion", "ON") == [("cam_back", {"motion": True}, {})]
    assert send(ing, "frigate/back_yard/motion", "OFF") == [("cam_back", {"motion": False}, {})]
    assert send(ing, "frigate/front_door/review_status", "ALERT") == [
        ("cam_front", {"review_status": "ALERT"}, {})
    ]
    out = send(ing, "frigate/front_door/status/detect", "rebooting")
    assert out == [("cam_front", {}, {"detect_status": "unmapped", "video_ok": "unmapped"})]


def test_frigate_available_is_shared_by_all_cameras() -> None:
    ing = frigate_two_cameras()
    assert send(ing, "frigate/available", "online") == [
        ("cam_front", {AVAILABLE: True}, {}),
        ("cam_back", {AVAILABLE: True}, {}),
    ]
    assert send(ing, "frigate/available", "stopped") == [
        ("cam_front", {AVAILABLE: False}, {}),
        ("cam_back", {AVAILABLE: False}, {}),
    ]


def test_frigate_snapshot_jpeg_is_not_claimed() -> None:
    ing = frigate_two_cameras()
    assert send(ing, "frigate/front_door/person/snapshot", b"\xff\xd8\xff\xe0JFIF") == []
    assert ing.stats.unclaimed == 1
    assert ing.stats.rejected == 0


# ---------------------------------------------------------------------------------------------
# Hikvision access controller


def test_acs_face_pass_sample() -> None:
    assert send(acs_ingest(), ACS_TOPIC, ACS_ALERT) == [
        (
            DEV,
            {
                "access_granted": True,
                "card_no": "0",
                "employee_no": "5001",
                "verify_mode": "cardOrFaceOrFp",
                "serial_no": 1234,
            },
            {},
        )
    ]


@pytest.mark.parametrize(
    ("minor", "point"), [(27, "door_forced_open"), (28, "door_held_open"), (25, "door_open")]
)
def test_acs_door_events(minor: int, point: str) -> None:
    out = send(acs_ingest(), ACS_TOPIC, acs(5, minor, doorNo=1, serialNo=735))
    assert out == [(DEV, {point: True, "door_no": 1, "serial_no": 735}, {})]


def test_acs_door_closed_and_locked_clear() -> None:
    ing = acs_ingest()
    assert send(ing, ACS_TOPIC, acs(5, 26, doorNo=2))[0][1]["door_open"] is False
    assert send(ing, ACS_TOPIC, acs(5, 21, doorNo=2))[0][1]["door_unlocked"] is True
    assert send(ing, ACS_TOPIC, acs(5, 22, doorNo=2))[0][1]["door_unlocked"] is False


def test_acs_invalid_card_with_card_number() -> None:
    doc = acs(5, 9, cardNo="3215470981", doorNo=1, serialNo=1234)
    del doc["AccessControllerEvent"]["employeeNoString"]  # nobody: the card is unknown
    assert send(acs_ingest(), ACS_TOPIC, doc) == [
        (DEV, {"invalid_card": True, "card_no": "3215470981", "door_no": 1, "serial_no": 1234}, {})
    ]


@pytest.mark.parametrize(
    ("major", "minor", "point"),
    [
        (1, 1034, "duress"),
        (1, 1028, "controller_tamper"),
        (1, 1030, "reader_tamper"),
        (1, 1048, "fire_button"),
        (1, 1052, "panic_button"),
        (1, 1024, "zone_short_circuit"),
        (3, 1024, "remote_door_open"),
        (2, 1029, "mains_lost"),
        (2, 1027, "battery_low"),
    ],
)
def test_acs_alarm_codes(major: int, minor: int, point: str) -> None:
    out = send(acs_ingest(), ACS_TOPIC, acs(major, minor))
    assert len(out) == 1
    _, values, bad = out[0]
    assert values[point] is True
    assert bad == {}
    flags = {k for k, v in values.items() if v is True}
    assert flags == {point}, "exactly one event per (major, minor)"


def test_acs_minor_codes_are_only_unique_per_major() -> None:
    """(3, 0x400) is a remote door open, not the (1, 0x400) zone alarm; (2, 0x400) is unmapped."""
    ing = acs_ingest()
    values = send(ing, ACS_TOPIC, acs(3, 1024, doorNo=1))[0][1]
    assert "zone_short_circuit" not in values
    assert values["remote_door_open"] is True
    assert send(ing, ACS_TOPIC, acs(2, 1024)) == []  # device power-on: not mapped
    assert send(ing, ACS_TOPIC, acs(5, 39 + 1024)) == []  # no such event
    assert ing.stats.rejected == 0


def test_acs_ignores_other_event_types_and_devices() -> None:
    ing = acs_ingest()
    heartbeat = {"eventType": "videoloss", "eventState": "inactive", "activePostCount": 0}
    assert send(ing, ACS_TOPIC, heartbeat) == []
    assert send(ing, "hikvision/garage/event", acs(5, 27)) == []
    assert ing.stats.unclaimed == 1


def test_acs_codes_as_strings_still_match() -> None:
    out = send(acs_ingest(), ACS_TOPIC, acs("5", "27", doorNo="1"))
    assert out
    assert out[0][1].get("door_forced_open") is True


# ---------------------------------------------------------------------------------------------
# Hikvision camera

CAM_TOPIC = "hikvision/lobby_cam/event"


def cam(event_type: str, state: str, **fields: Any) -> dict[str, Any]:
    """An EventNotificationAlert as an XML-to-JSON bridge gives it: every value a string."""
    return {
        "ipAddress": "192.168.1.64",
        "portNo": "80",
        "protocol": "HTTP",
        "macAddress": "44:19:b6:00:00:01",
        "channelID": "1",
        "dateTime": "2024-05-06T10:11:12+08:00",
        "activePostCount": "1",
        "eventType": event_type,
        "eventState": state,
        "eventDescription": "Motion alarm",
        **fields,
    }


def cam_ingest() -> Ingest:
    return ingest_of("hikvision_camera", {"device": "lobby_cam"})


def test_camera_motion_sample() -> None:
    ing = cam_ingest()
    assert send(ing, CAM_TOPIC, cam("VMD", "active")) == [
        (DEV, {"motion": True, "channel_id": "1"}, {}),
        (DEV, {AVAILABLE: True}, {}),
    ]
    assert send(ing, CAM_TOPIC, cam("VMD", "inactive")) == [
        (DEV, {"motion": False, "channel_id": "1"}, {})
    ]


def test_camera_videoloss_active_is_video_loss() -> None:
    out = send(cam_ingest(), CAM_TOPIC, cam("videoloss", "active", channelID="2"))
    assert out[0] == (DEV, {"video_loss": True, "channel_id": "2"}, {})


def test_camera_videoloss_inactive_is_only_a_heartbeat() -> None:
    ing = cam_ingest()
    keepalive = cam("videoloss", "inactive", activePostCount="0")
    assert send(ing, CAM_TOPIC, keepalive) == [
        (DEV, {"heartbeat": True}, {}),
        (DEV, {AVAILABLE: True}, {}),
    ]
    assert send(ing, CAM_TOPIC, keepalive) == [(DEV, {"heartbeat": True}, {})]
    assert profile_named("hikvision_camera").availability.heartbeat == 300
    ing.state[DEV].last_message -= 301
    assert [dict(s.values) for s in ing.check_heartbeats()] == [{AVAILABLE: False}]


@pytest.mark.parametrize(
    ("event_type", "point"),
    [
        ("tamperdetection", "tamper"),
        ("shelteralarm", "tamper"),
        ("diskfull", "disk_full"),
        ("diskerror", "disk_error"),
        ("linedetection", "intrusion"),
        ("fielddetection", "intrusion"),
    ],
)
def test_camera_alarm_raised_and_cleared(event_type: str, point: str) -> None:
    ing = cam_ingest()
    assert send(ing, CAM_TOPIC, cam(event_type, "active"))[0][1] == {point: True, "channel_id": "1"}
    assert send(ing, CAM_TOPIC, cam(event_type, "inactive")) == [
        (DEV, {point: False, "channel_id": "1"}, {})
    ]


def test_camera_json_native_numbers_and_unknown_types() -> None:
    ing = cam_ingest()
    out = send(ing, CAM_TOPIC, cam("VMD", "active", channelID=1, activePostCount=3))
    assert out[0][1] == {"motion": True, "channel_id": "1"}
    assert send(ing, CAM_TOPIC, cam("nicbroken", "active")) == []  # not mapped: ignored
    assert send(ing, CAM_TOPIC, cam("vmd", "active")) == []  # eventType is matched exactly


def test_camera_batched_alerts_in_a_list() -> None:
    out = send(cam_ingest(), CAM_TOPIC, [cam("videoloss", "active"), cam("VMD", "active")])
    values = [v for _, v, _ in out]
    assert {"video_loss": True, "channel_id": "1"} in values
    assert {"motion": True, "channel_id": "1"} in values


# ---------------------------------------------------------------------------------------------
# Shelly Pro 4PM (Gen2 RPC over MQTT), one site device per channel. Shapes from Shelly's Gen2
# API docs (Switch status, Notifications, MQTT): a switch status as Switch.GetStatus returns
# it, NotifyStatus with only what changed, params.ts epoch seconds.

SHELLY = "shellypro4pm-08f9e0e5d6c4"
SHELLY_SWITCH_1: dict[str, Any] = {
    "id": 1,
    "source": "WS_in",
    "output": True,
    "apower": 235.4,
    "voltage": 229.8,
    "freq": 50.0,
    "current": 1.103,
    "pf": 0.93,
    "aenergy": {"total": 12345.678, "by_minute": [3912.1, 3921.6, 3916.2], "minute_ts": 1700000040},
    "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1700000040},
    "temperature": {"tC": 44.2, "tF": 111.6},
}
SHELLY_VALUES = {
    "relay_on": True,
    "active_power_total_w": 235.4,
    "voltage_l1_v": 229.8,
    "current_l1_a": 1.103,
    "power_factor_total": 0.93,
    "frequency_hz": 50.0,
    "energy_import_kwh": pytest.approx(12.345678),
    "energy_export_kwh": 0.0,
    "device_temperature_degc": 44.2,
}


def shelly_ingest(channel: int = 1) -> Ingest:
    return ingest_of("shelly_pro_4pm", {"prefix": SHELLY, "channel": str(channel)})


def test_shelly_component_status_topic() -> None:
    out = send(shelly_ingest(), f"{SHELLY}/status/switch:1", SHELLY_SWITCH_1)
    assert out == [(DEV, SHELLY_VALUES, {})]
    # Another channel's topic is not this device's.
    assert send(shelly_ingest(), f"{SHELLY}/status/switch:0", SHELLY_SWITCH_1) == []


def test_shelly_full_status_and_partial_notify_status() -> None:
    ingest = shelly_ingest()
    ts = round(time.time() - 5, 2)  # a device time the gateway trusts: near the arrival
    full = {
        "src": SHELLY,
        "dst": f"{SHELLY}/events",
        "method": "NotifyFullStatus",
        "params": {
            "ts": ts,
            "switch:0": {**SHELLY_SWITCH_1, "id": 0, "apower": 0.0},
            "switch:1": SHELLY_SWITCH_1,
            "sys": {"mac": "08F9E0E5D6C4", "uptime": 3600},
        },
    }
    [sample] = ingest.on_message(f"{SHELLY}/events/rpc", payload(full))
    values = {k: v for k, v in sample.values.items() if k != "arrival_lag_s"}
    assert values == SHELLY_VALUES
    assert sample.ts == round(ts * 1_000_000) * 1000  # params.ts, not the arrival
    # NotifyStatus carries what changed: the relay went off, the power fell.
    change = {
        "src": SHELLY,
        "dst": f"{SHELLY}/events",
        "method": "NotifyStatus",
        "params": {"ts": ts + 1, "switch:1": {"id": 1, "output": False, "apower": 0.0}},
    }
    [sample] = ingest.on_message(f"{SHELLY}/events/rpc", payload(change))
    assert {k: v for k, v in sample.values.items() if k != "arrival_lag_s"} == {
        "relay_on": False,
        "active_power_total_w": 0.0,
    }
    assert sample.bad == {}


def test_shelly_other_components_and_the_online_topic() -> None:
    ingest = shelly_ingest()
    wifi = {"method": "NotifyStatus", "params": {"ts": 1700000090.0, "wifi": {"rssi": -61}}}
    assert send(ingest, f"{SHELLY}/events/rpc", wifi) == []
    # The NotifyStatus mapping took it: nothing for this channel, not a message nobody maps.
    assert ingest.stats.unmatched == 0
    event = {"method": "NotifyEvent", "params": {"ts": 1700000090.0, "events": []}}
    assert send(ingest, f"{SHELLY}/events/rpc", event) == []
    assert ingest.stats.unmatched == 1
    # Out-of-range temperature is null in the status: that point is bad, the others stand.
    hot = {**SHELLY_SWITCH_1, "temperature": {"tC": None, "tF": None}}
    [(_, values, bad)] = send(ingest, f"{SHELLY}/status/switch:1", hot)
    assert bad == {"device_temperature_degc": "type"}
    assert values["active_power_total_w"] == 235.4
    assert send(ingest, f"{SHELLY}/online", "false") == [(DEV, {AVAILABLE: False}, {})]
    assert send(ingest, f"{SHELLY}/online", "true") == [(DEV, {AVAILABLE: True}, {})]


# Shelly Pro EM: a CT channel is two components, em1:<n> and em1data:<n>. Shapes from Shelly's
# EM1 / EM1Data docs and a Pro EM-50's Shelly.GetStatus posted in Jan200101/ShellyPy#20.

PRO_EM = "shellyproem50-08f9e0e5d6c4"
PRO_EM_1 = {
    "id": 1,
    "current": 2.598,
    "voltage": 234.9,
    "act_power": 501.8,
    "aprt_power": 612.4,
    "pf": 0.84,
    "freq": 50,
    "calibration": "factory",
}
PRO_EM_DATA_1 = {"id": 1, "total_act_energy": 2768.67, "total_act_ret_energy": 25.49}
PRO_EM_VALUES = {
    "active_power_total_w": 501.8,
    "apparent_power_total_va": 612.4,
    "voltage_l1_v": 234.9,
    "current_l1_a": 2.598,
    "power_factor_total": 0.84,
    "frequency_hz": 50.0,
    "energy_import_kwh": pytest.approx(2.76867),
    "energy_export_kwh": pytest.approx(0.02549),
}


def test_shelly_pro_em_component_topics() -> None:
    ingest = ingest_of("shelly_pro_em", {"prefix": PRO_EM, "channel": "1"})
    power = send(ingest, f"{PRO_EM}/status/em1:1", PRO_EM_1)
    energy = send(ingest, f"{PRO_EM}/status/em1data:1", PRO_EM_DATA_1)
    assert [values for _, values, _ in power + energy] == [
        {k: v for k, v in PRO_EM_VALUES.items() if not k.startswith("energy")},
        {k: v for k, v in PRO_EM_VALUES.items() if k.startswith("energy")},
    ]
    # Export shows as negative active power.
    [(_, values, bad)] = send(ingest, f"{PRO_EM}/status/em1:1", {**PRO_EM_1, "act_power": -820.5})
    assert values["active_power_total_w"] == -820.5
    assert bad == {}
    assert send(ingest, f"{PRO_EM}/status/em1:0", PRO_EM_1) == []


def test_shelly_pro_em_full_status_feeds_each_clamp() -> None:
    profile = profile_named("shelly_pro_em")
    ingest = Ingest(
        [
            MqttDevice(f"ct{n}", profile, "site", {"prefix": PRO_EM, "channel": str(n)})
            for n in (0, 1)
        ]
    )
    full = {
        "src": PRO_EM,
        "method": "NotifyFullStatus",
        "params": {
            "ts": round(time.time() - 2, 2),
            "em1:0": {**PRO_EM_1, "id": 0, "act_power": 0.0, "pf": 0.0},
            "em1:1": PRO_EM_1,
            "em1data:0": {"id": 0, "total_act_energy": 3458.24, "total_act_ret_energy": 1605.24},
            "em1data:1": PRO_EM_DATA_1,
            "switch:0": {"id": 0, "output": True, "source": "init"},
        },
    }
    samples = {s.device: s for s in ingest.on_message(f"{PRO_EM}/events/rpc", payload(full))}
    assert {k: v for k, v in samples["ct1"].values.items() if k != "arrival_lag_s"} == PRO_EM_VALUES
    assert samples["ct0"].values["energy_export_kwh"] == pytest.approx(1.60524)
    # NotifyStatus with the energy counter of one clamp only.
    change = {
        "method": "NotifyStatus",
        "params": {"ts": round(time.time(), 2), "em1data:0": {"id": 0, "total_act_energy": 3459.0}},
    }
    [sample] = ingest.on_message(f"{PRO_EM}/events/rpc", payload(change))
    assert sample.device == "ct0"
    assert sample.values["energy_import_kwh"] == pytest.approx(3.459)
    assert sample.bad == {}


# ---------------------------------------------------------------------------------------------
# Dahua camera events through the dahua2mqtt bridge: <topic><index>/<Code>, Start or Stop


def test_dahua_bridge_start_and_stop() -> None:
    ingest = ingest_of("dahua_mqtt_camera", {"topic": "cameras/3"})
    cases = [
        ("VideoMotion", "motion"),
        ("VideoLoss", "video_loss"),
        ("VideoBlind", "tamper"),
        ("AlarmLocal", "alarm_input"),
        ("CrossLineDetection", "intrusion"),
        ("CrossRegionDetection", "intrusion"),
    ]
    for code, point in cases:
        assert send(ingest, f"cameras/3/{code}", "Start") == [(DEV, {point: True}, {})]
        assert send(ingest, f"cameras/3/{code}", "Stop") == [(DEV, {point: False}, {})]
    # Another channel of the recorder is another device; an unknown action is bad, not fatal.
    assert send(ingest, "cameras/4/VideoMotion", "Start") == []
    assert send(ingest, "cameras/3/VideoMotion", "Pulse") == [(DEV, {}, {"motion": "unmapped"})]


# ---------------------------------------------------------------------------------------------
# Bad input: never raises, counted, logged once

Z2M_TOPIC = "zigbee2mqtt/t1"


def z2m_ingest(**kw: Any) -> Ingest:
    return ingest_of("z2m_temperature_humidity", {"id": "t1"}, **kw)


def test_non_json_on_a_json_topic() -> None:
    ing = z2m_ingest()
    assert send(ing, Z2M_TOPIC, b"Online") == []
    assert send(ing, Z2M_TOPIC, b"\xff\xfe\x00garbage") == []
    assert ing.stats.rejected == 2
    assert ing.stats.problems.counts[f"{Z2M_TOPIC}:not_json"] == 2


@pytest.mark.parametrize(
    "doc",
    [
        [1, 2, 3],
        "a string",
        42,
        {},
        None,
    ],
    ids=repr,
)
def test_json_of_the_wrong_shape(doc: Any) -> None:
    """Valid JSON that is not an object: every required point is missing, none is invented."""
    ing = z2m_ingest()
    out = send(ing, Z2M_TOPIC, json.dumps(doc).encode())
    assert out == [(DEV, {}, {"temperature_degc": "missing", "humidity_pct": "missing"})]
    counts = ing.stats.problems.counts
    assert counts[f"{Z2M_TOPIC}:temperature_degc:missing"] == 1
    assert counts[f"{Z2M_TOPIC}:humidity_pct:missing"] == 1


def test_wrong_types_and_ranges() -> None:
    ing = z2m_ingest()
    out = send(ing, Z2M_TOPIC, {"temperature": "abc", "humidity": 40, "linkquality": 87.5})
    assert out[0] == (
        DEV,
        {"humidity_pct": 40.0},
        {"temperature_degc": "type", "linkquality": "type"},
    )
    out = send(ing, Z2M_TOPIC, {"temperature": 500, "humidity": True, "battery": [90]})
    assert out[0][2] == {
        "temperature_degc": "out_of_range",
        "humidity_pct": "type",
        "battery_pct": "type",
    }
    counts = ing.stats.problems.counts
    assert counts[f"{Z2M_TOPIC}:temperature_degc:type"] == 1
    assert counts[f"{Z2M_TOPIC}:temperature_degc:out_of_range"] == 1


def test_missing_required_field() -> None:
    """With cache_state: false Z2M may send only what changed; the required points count."""
    ing = z2m_ingest()
    assert send(ing, Z2M_TOPIC, {"humidity": 40.0, "battery": 88}) == [
        (DEV, {"humidity_pct": 40.0, "battery_pct": 88.0}, {"temperature_degc": "missing"}),
        (DEV, {AVAILABLE: True}, {}),
    ]
    assert ing.stats.problems.counts[f"{Z2M_TOPIC}:temperature_degc:missing"] == 1


def test_oversized_payload() -> None:
    ing = z2m_ingest(max_payload=100)
    small = {"temperature": 20.0, "humidity": 40.0}
    big = {**small, "padding": "x" * 100}
    assert send(ing, Z2M_TOPIC, small) != []
    assert send(ing, Z2M_TOPIC, big) == []
    assert ing.stats.rejected == 1
    assert ing.stats.problems.counts[f"{Z2M_TOPIC}:too_large"] == 1


def test_unclaimed_topic() -> None:
    ing = z2m_ingest()
    assert send(ing, "zigbee2mqtt/someone_else", {"temperature": 1}) == []
    assert send(ing, "zigbee2mqtt/bridge/state", {"state": "online"}) == []
    assert ing.stats.unclaimed == 2
    assert ing.stats.problems.counts["zigbee2mqtt/someone_else:unclaimed"] == 1


def test_bad_text_and_availability_payloads() -> None:
    ing = ingest_of("tasmota_energy_plug", {"topic": "plug"})
    assert send(ing, "stat/plug/POWER", b"\xff\xfe") == []
    assert send(ing, "stat/plug/POWER", "TOGGLE") == [(DEV, {}, {"relay_on": "unmapped"})]
    assert send(ing, "tele/plug/LWT", "Maybe") == []
    assert send(ing, "tele/plug/LWT", {"state": 1}) == []
    counts = ing.stats.problems.counts
    assert counts["stat/plug/POWER:not_text"] == 1
    assert counts["stat/plug/POWER:relay_on:unmapped"] == 1
    assert counts["tele/plug/LWT:availability"] == 2
    assert ing.stats.rejected == 3


def test_each_problem_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="guanjia.mqtt")
    ing = z2m_ingest(max_payload=200)
    bad_inputs = [
        (Z2M_TOPIC, b"not json"),
        (Z2M_TOPIC, b'{"temperature": "abc", "humidity": 40}'),
        (Z2M_TOPIC, b'{"humidity": 40}'),
        (Z2M_TOPIC, b"[" + b"1," * 150 + b"1]"),
        ("zigbee2mqtt/nobody", b"{}"),
        ("zigbee2mqtt/t1/availability", b"maybe"),
    ]
    for _ in range(50):
        for topic, data in bad_inputs:
            ing.on_message(topic, data)
    counts = ing.stats.problems.counts
    assert set(counts) == {
        f"{Z2M_TOPIC}:not_json",
        f"{Z2M_TOPIC}:temperature_degc:type",
        f"{Z2M_TOPIC}:temperature_degc:missing",
        f"{Z2M_TOPIC}:too_large",
        "zigbee2mqtt/nobody:unclaimed",
        "zigbee2mqtt/t1/availability:availability",
    }
    assert all(n == 50 for n in counts.values()), counts
    warnings = [
        r for r in caplog.records if r.name == "guanjia.mqtt" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == len(counts), [r.getMessage() for r in warnings]
    assert ing.stats.rejected == 150
    assert ing.stats.unclaimed == 50


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        ("frigate/events", b"[1, 2, 3]"),
        ("frigate/events", b'"update"'),
        (ACS_TOPIC, b"[]"),
    ],
)
def test_wrong_shape_on_match_only_topics_is_counted(topic: str, data: bytes) -> None:
    ing = frigate_two_cameras() if topic.startswith("frigate") else acs_ingest()
    assert ing.on_message(topic, data) == []
    assert ing.stats.problems.counts, "the message left no trace"


def _hostile(case: str, topic: str, data: bytes, error: type[Exception], reason: str) -> Any:
    # Once each of these raised out of on_message (the reason says which path); now none may.
    return pytest.param(topic, data, id=case)


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        _hostile(
            "nan-int",
            Z2M_TOPIC,
            b'{"temperature": 20, "humidity": 40, "linkquality": NaN}',
            ValueError,
            "drivers/mqtt/mapping.py CompiledPoint.convert, type int: `raw != int(raw)` raises "
            "ValueError for NaN (json.loads accepts NaN); expected BadValue('nan' or 'type')",
        ),
        _hostile(
            "infinity-int",
            Z2M_TOPIC,
            b'{"temperature": 20, "humidity": 40, "linkquality": Infinity}',
            OverflowError,
            "drivers/mqtt/mapping.py CompiledPoint.convert, type int: int(inf) raises "
            "OverflowError; expected BadValue('nan' or 'type')",
        ),
        _hostile(
            "huge-int-float",
            Z2M_TOPIC,
            b'{"temperature": 1' + b"0" * 400 + b', "humidity": 40}',
            OverflowError,
            "drivers/mqtt/mapping.py CompiledPoint.convert, type float: float(10**400) raises "
            "OverflowError (json.loads gives a 401-digit int); expected BadValue",
        ),
        _hostile(
            "deep-json",
            Z2M_TOPIC,
            b"[" * 100_000,
            RecursionError,
            "drivers/mqtt/mapping.py decode_payload: json.loads raises RecursionError, not "
            "ValueError, on 100k nested brackets (100 kB, under the 256 KiB limit), and "
            "Ingest.on_message catches only ValueError; expected a 'not_json' problem",
        ),
        _hostile(
            "deep-json-availability",
            "zigbee2mqtt/t1/availability",
            b'{"a":' * 50_000,
            RecursionError,
            "drivers/mqtt/mapping.py availability_of: json.loads raises RecursionError on a "
            "deeply nested object, caught only as ValueError/AttributeError; expected None "
            "(an 'availability' problem)",
        ),
        pytest.param(Z2M_TOPIC, b'{"temperature": NaN, "humidity": 40}', id="nan-float"),
        pytest.param(Z2M_TOPIC, b'{"temperature": -Infinity, "humidity": 40}', id="inf-float"),
        pytest.param(Z2M_TOPIC, b'{"temperature": 1' + b"0" * 5000 + b"}", id="int-limit"),
    ],
)
def test_hostile_json_never_raises(topic: str, data: bytes) -> None:
    """Python's json accepts NaN, Infinity and long integers, and recurses on nesting.

    Each must be counted as a problem, never raised out of the network thread.
    """
    ing = z2m_ingest()
    ing.on_message(topic, data)
    assert ing.stats.problems.total() >= 1


def test_int_is_not_a_bool_in_a_map() -> None:
    ing = ingest_of("z2m_door_contact", {"id": "d"})
    assert send(ing, "zigbee2mqtt/d", {"contact": 1})[0][2] == {"door_open": "unmapped"}


# ---------------------------------------------------------------------------------------------
# Property tests: whatever arrives on a profile's topics, ingest never raises, and every sample
# holds only the profile's points (and `available`), with values of the declared type.

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _concrete(topic: str) -> str:
    """A topic a device could publish on, for a filter that may hold wildcards."""
    return "/".join(
        "x" if level == "+" else "x/y" if level == "#" else level for level in topic.split("/")
    )


@functools.cache
def _setup(path: Path) -> tuple[MqttProfile, dict[str, str], list[Handler], list[str]]:
    profile = MqttProfile.model_validate(load_raw(path))
    variables = {v: f"{v}1" for v in profile.variables}
    handlers = compile_profile(DEV, profile, variables)
    topics = {_concrete(h.topic) for h in handlers}
    if profile.availability.topic:
        avail = profile.availability.topic
        for key, value in variables.items():
            avail = avail.replace("{" + key + "}", value)
        topics.add(_concrete(avail))
    return profile, variables, handlers, sorted(topics)


def _ingest(profile: MqttProfile, variables: Mapping[str, str]) -> Ingest:
    return Ingest([MqttDevice(DEV, profile, "site", dict(variables))])


def _put(doc: dict[str, Any], steps: Sequence[str | int], value: Any) -> None:
    """Set doc[steps...] = value, creating dicts and lists on the way (skip on a clash)."""
    node: Any = doc
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list):
                return
            while len(node) <= step:
                node.append(None)
        elif not isinstance(node, dict):
            return
        if last:
            node[step] = value
            return
        container: type = list if isinstance(steps[i + 1], int) else dict
        if not isinstance(node[step] if isinstance(step, int) else node.get(step), container):
            node[step] = container()
        node = node[step]


@st.composite
def shaped_message(draw: st.DrawFn, handler: Handler) -> bytes:
    """A message aimed at one mapping: its match values (mostly) and arbitrary values at its
    paths, map keys among them."""
    if handler.text:
        keys = [str(k) for p in handler.points if p.map for k in p.map]
        options = [st.text(max_size=16)] + ([st.sampled_from(keys)] if keys else [])
        return draw(st.one_of(options)).encode()
    doc: dict[str, Any] = {}
    all_match = draw(st.integers(0, 4)) > 0
    for path, want in handler.match:
        _put(doc, path, want if all_match else draw(st.one_of(st.just(want), JSON_VALUES)))
    for point in handler.points:
        if point.path is None or draw(st.integers(0, 5)) == 0:
            continue  # constants, and sometimes a missing value
        options = [JSON_SCALARS, JSON_VALUES]
        if point.map:
            options.append(st.sampled_from(list(point.map)))
        _put(doc, point.path, draw(st.one_of(options)))
    return json.dumps(doc).encode()


@pytest.mark.parametrize("path", MQTT_FILES, ids=lambda p: p.stem)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_arbitrary_bytes_never_raise(path: Path, data: st.DataObject) -> None:
    profile, variables, _, topics = _setup(path)
    ing = _ingest(profile, variables)
    for _ in range(3):
        topic = data.draw(st.sampled_from(topics), label="topic")
        raw = data.draw(st.binary(max_size=300), label="payload")
        assert_samples_typed(ing.on_message(topic, raw), profile)
    assert ing.stats.messages == 3


@pytest.mark.parametrize("path", MQTT_FILES, ids=lambda p: p.stem)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_arbitrary_json_never_raises(path: Path, data: st.DataObject) -> None:
    profile, variables, _, topics = _setup(path)
    ing = _ingest(profile, variables)
    for _ in range(3):
        topic = data.draw(st.sampled_from(topics), label="topic")
        doc = data.draw(JSON_VALUES, label="json")
        assert_samples_typed(ing.on_message(topic, json.dumps(doc).encode()), profile)


@pytest.mark.parametrize("path", MQTT_FILES, ids=lambda p: p.stem)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_messages_shaped_like_the_mappings(path: Path, data: st.DataObject) -> None:
    profile, variables, handlers, _ = _setup(path)
    ing = _ingest(profile, variables)
    for _ in range(3):
        handler = data.draw(st.sampled_from(handlers), label="mapping")
        raw = data.draw(shaped_message(handler), label="payload")
        samples = ing.on_message(_concrete(handler.topic), raw)
        assert_samples_typed(samples, profile)
        for s in samples:
            for name, value in s.values.items():
                if name != AVAILABLE and type(value) in (int, float):
                    assert math.isfinite(value), (name, value)
