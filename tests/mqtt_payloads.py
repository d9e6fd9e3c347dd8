"""Payloads and ingests of the shipped MQTT profiles, recorded from the device facts, shared
by the profile and ingest tests."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from drivers.mqtt.ingest import Ingest, MqttDevice
from drivers.mqtt.profile import MqttProfile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "config" / "profiles"
DEV = "dev"


def load_raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def profile_named(name: str) -> MqttProfile:
    return MqttProfile.model_validate(load_raw(PROFILE_DIR / f"{name}.yaml"))


def ingest_of(name: str, variables: Mapping[str, str], *, max_payload: int = 256 * 1024) -> Ingest:
    device = MqttDevice(DEV, profile_named(name), "site", dict(variables))
    return Ingest([device], max_payload=max_payload)


FRIGATE_EVENT_UPDATE: dict[str, Any] = {
    "type": "update",
    "before": {
        "id": "1607123955.475377-mxklsc",
        "camera": "front_door",
        "frame_time": 1607123961.837752,
        "snapshot": {
            "frame_time": 1607123965.975463,
            "box": [415, 489, 528, 700],
            "area": 12728,
            "region": [260, 446, 660, 846],
            "score": 0.77546,
            "attributes": [],
        },
        "label": "person",
        "sub_label": None,
        "top_score": 0.958984375,
        "false_positive": False,
        "start_time": 1607123955.475377,
        "end_time": None,
        "score": 0.7890625,
        "box": [424, 500, 536, 712],
        "area": 23744,
        "ratio": 2.113207,
        "region": [264, 450, 667, 853],
        "current_zones": ["driveway"],
        "entered_zones": ["yard", "driveway"],
        "thumbnail": None,
        "has_snapshot": False,
        "has_clip": False,
        "active": True,
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 2,
        "attributes": {"face": 0.64},
        "current_attributes": [],
        "current_estimated_speed": 0.71,
        "average_estimated_speed": 14.3,
        "velocity_angle": 180,
        "recognized_license_plate": "ABC12345",
        "recognized_license_plate_score": 0.933451,
    },
    "after": {
        "id": "1607123955.475377-mxklsc",
        "camera": "front_door",
        "frame_time": 1607123962.082975,
        "snapshot": {
            "frame_time": 1607123965.975463,
            "box": [415, 489, 528, 700],
            "area": 12728,
            "region": [260, 446, 660, 846],
            "score": 0.77546,
            "attributes": [],
        },
        "label": "person",
        "sub_label": ["John Smith", 0.79],
        "top_score": 0.958984375,
        "false_positive": False,
        "start_time": 1607123955.475377,
        "end_time": None,
        "score": 0.87890625,
        "box": [432, 496, 544, 854],
        "area": 40096,
        "ratio": 1.251397,
        "region": [218, 440, 693, 915],
        "current_zones": ["yard", "driveway"],
        "entered_zones": ["yard", "driveway"],
        "thumbnail": None,
        "has_snapshot": False,
        "has_clip": False,
        "active": True,
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 2,
        "attributes": {"face": 0.86},
        "current_attributes": [{"label": "face", "box": [442, 506, 534, 524], "score": 0.86}],
        "current_estimated_speed": 0.77,
        "average_estimated_speed": 14.31,
        "velocity_angle": 180,
        "recognized_license_plate": "ABC12345",
        "recognized_license_plate_score": 0.933451,
    },
}


ACS_ALERT: dict[str, Any] = {
    "ipAddress": "192.168.1.64",
    "portNo": 80,
    "protocol": "HTTP",
    "dateTime": "2026-08-09T10:00:00+01:00",
    "activePostCount": 1,
    "eventType": "AccessControllerEvent",
    "eventState": "active",
    "eventDescription": "Access Controller Event",
    "AccessControllerEvent": {
        "deviceName": "Entrance",
        "majorEventType": 5,
        "subEventType": 75,
        "cardNo": "0",
        "employeeNoString": "5001",
        "name": "PERSONA PRUEBA",
        "serialNo": 1234,
        "currentVerifyMode": "cardOrFaceOrFp",
        "currentEvent": True,
        "attendanceStatus": "checkIn",
    },
}
ACS_TOPIC = "hikvision/entrance/event"


_serials = itertools.count(2000)


def acs(major: Any, minor: Any, **fields: Any) -> dict[str, Any]:
    """The recorded alert with other codes, numbered as the controller numbers its events (a
    repeated serialNo and time is a redelivery, dropped)."""
    doc = copy.deepcopy(ACS_ALERT)
    fields.setdefault("serialNo", next(_serials))
    doc["AccessControllerEvent"].update(majorEventType=major, subEventType=minor, **fields)
    return doc


def acs_ingest() -> Ingest:
    return ingest_of("hikvision_access_controller", {"device": "entrance"})
