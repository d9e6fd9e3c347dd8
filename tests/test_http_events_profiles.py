"""The event-stream profiles and the `http_events:` site block: every shipped profile loads,
the Hikvision ones map exactly as the MQTT ones do (so the rules read both alike), the Dahua
ones turn the public sample events into the same points, every profile agrees with the others
on its fields' types, and the site file's mistakes are reported before anything connects."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from drivers.http_events import decode
from drivers.http_events.mapper import EventMapper
from drivers.http_events.profile import PROTOCOLS, HttpEventsProfile
from drivers.mqtt.profile import MqttProfile
from drivers.registry import DRIVERS, profile_model
from gateway.config_errors import ConfigError
from gateway.config_load import BUILTIN_PROFILES, load_profile, load_site
from tests.test_http_events_devices import dahua_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
HTTP_PROFILES = sorted(
    p.stem
    for p in BUILTIN_PROFILES.glob("*.yaml")
    if yaml.safe_load(p.read_text(encoding="utf-8")).get("protocol") in PROTOCOLS
)


def _profile(name: str) -> HttpEventsProfile:
    profile = load_profile(BUILTIN_PROFILES / f"{name}.yaml")
    assert isinstance(profile, HttpEventsProfile)
    return profile


def test_the_shipped_profiles() -> None:
    assert HTTP_PROFILES == [
        "dahua_camera",
        "dahua_traffic_camera",
        "dahua_vto",
        "hikvision_isapi_access_controller",
        "hikvision_isapi_anpr_camera",
        "hikvision_isapi_camera",
    ]
    for name in HTTP_PROFILES:
        profile = _profile(name)
        assert profile.sources, name
        assert all(p.description for m in profile.events for p in m.points), name
    assert profile_model("dahua_events") is HttpEventsProfile
    assert profile_model("hikvision_isapi") is HttpEventsProfile
    assert profile_model("mqtt") is MqttProfile
    assert profile_model(None) is DRIVERS["modbus"].profile_model


def _mqtt(name: str) -> MqttProfile:
    profile = load_profile(BUILTIN_PROFILES / f"{name}.yaml")
    assert isinstance(profile, MqttProfile)
    return profile


def test_hikvision_maps_as_the_mqtt_profiles_do() -> None:
    """The same matches and the same points as the bridged events: the rules cannot tell."""
    acs, bridged_acs = (
        _profile("hikvision_isapi_access_controller"),
        _mqtt("hikvision_access_controller"),
    )
    assert [(m.match, m.points) for m in acs.events] == [
        (m.match, m.points) for m in bridged_acs.messages
    ]
    assert acs.event_id == bridged_acs.event_id
    assert acs.timestamp == bridged_acs.timestamp
    camera, bridged = _profile("hikvision_isapi_camera"), _mqtt("hikvision_camera")
    mqtt_events = [m for m in bridged.messages if m.event]
    assert [(m.match, m.points) for m in camera.events] == [
        (m.match, m.points) for m in mqtt_events
    ]
    # The MQTT profile's keep-alive mapping is this profile's keepalive.
    (heartbeat,) = [m for m in bridged.messages if not m.event]
    assert camera.keepalive is not None
    assert camera.keepalive.match == heartbeat.match


def _values(profile: str, text: str) -> list[dict[str, Any]]:
    mapper = EventMapper("d", _profile(profile), SHANGHAI)
    arrival = int(datetime.now(UTC).timestamp()) * 1_000_000_000
    out = []
    for event in decode.dahua(text.encode()):
        assert not mapper.is_keepalive(event)
        out += [dict(s.values) for s in mapper.samples(event, arrival)]
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (dahua_event("BreakIn", data={"Name": "Gate"}), [{"door_forced_open": True}]),
        (dahua_event("DoorNotClosed", "Start"), [{"door_held_open": True}]),
        (dahua_event("DoorNotClosed", "Stop"), [{"door_held_open": False}]),
        (dahua_event("DoorStatus", data={"Status": "Open"}), [{"door_open": True}]),
        (dahua_event("DoorStatus", "Close"), [{"door_open": False}]),
        (dahua_event("ChassisIntruded", "Start"), [{"controller_tamper": True}]),
        (dahua_event("Duress", data={"UserID": "7"}), [{"duress": True, "employee_no": "7"}]),
        (dahua_event("AlarmLocal", "Start", 1), [{"alarm_input": True, "input_no": 1}]),
        (dahua_event("CallNoAnswered", "Start", data={"CallID": "1"}), [{"call_unanswered": True}]),
        (dahua_event("VideoLoss", "Stop"), [{"video_loss": False}]),
        (
            dahua_event("AccessControl", data={"Method": 15, "Status": 0, "UserID": "12"}),
            [{"access_denied": True, "employee_no": "12", "access_method": "face"}],
        ),
    ],
)
def test_dahua_vto_events(text: str, expected: list[dict[str, Any]]) -> None:
    assert _values("dahua_vto", text) == expected


def test_dahua_camera_events_by_channel() -> None:
    values = _values(
        "dahua_camera",
        dahua_event("VideoMotion", "Start", 0)
        + "\r\n"
        + dahua_event("VideoLoss", "Start", 3)
        + "\r\n"
        + dahua_event("VideoBlind", "Stop", 3),
    )
    assert values == [
        {"motion": True, "channel_id": "1"},
        {"video_loss": True, "channel_id": "4"},
        {"tamper": False, "channel_id": "4"},
    ]


def _profile_data(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (BUILTIN_PROFILES / f"{name}.yaml").read_text(encoding="utf-8")
    )
    return data


def test_profile_mistakes_are_refused() -> None:
    data = _profile_data("dahua_vto")
    data["keepalive"]["interval"] = "0.5s"
    with pytest.raises(ValidationError, match="whole seconds"):
        HttpEventsProfile.model_validate(data)
    data = _profile_data("hikvision_isapi_camera")
    data["codes"] = ["VideoMotion"]
    with pytest.raises(ValidationError, match="dahua_events profiles only"):
        HttpEventsProfile.model_validate(data)
    data = _profile_data("hikvision_isapi_camera")
    data["events"][1]["points"][0]["type"] = "int"
    with pytest.raises(ValidationError, match="one type per field"):
        HttpEventsProfile.model_validate(data)


def _site(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {name: 测试, id: t}\nspool: {path: spool}\ndevices:\n"
        + textwrap.indent(textwrap.dedent(devices), "  "),
        encoding="utf-8",
    )
    return path


def test_every_security_profile_on_one_site_agrees_on_field_types(tmp_path: Path) -> None:
    """Cameras and doors bridged onto MQTT and read straight from their streams, on one site:
    one measurement per kind, and no field written with two types."""
    devices = "".join(
        f"- {{id: h{i}, profile: {name}, "
        f'http_events: {{host: 10.0.8.{i + 1}, username: u, password: "${{P}}"}}}}\n'
        for i, name in enumerate(HTTP_PROFILES)
    )
    devices += (
        "- {id: m1, profile: hikvision_camera, mqtt: {vars: {device: a}}}\n"
        "- {id: m2, profile: hikvision_access_controller, mqtt: {vars: {device: b}}}\n"
        "- {id: m3, profile: frigate_camera, mqtt: {vars: {camera: c}}}\n"
        "- {id: m4, profile: z2m_door_contact, mqtt: {vars: {id: d}}}\n"
    )
    site = _site(tmp_path, devices)
    text = site.read_text(encoding="utf-8") + "mqtt: {brokers: [{name: s, host: 127.0.0.1}]}\n"
    site.write_text(text, encoding="utf-8")
    loaded = load_site(site, resolve_secrets=False)
    assert len(loaded.site.devices) == len(HTTP_PROFILES) + 4


def test_site_mistakes_are_reported_before_anything_connects(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        """\
        - id: cam-1
          profile: hikvision_isapi_camera
          http_events: {host: 10.0.8.30, username: u, password: "${P}", channels: [1, 2]}
        - id: cam-2
          profile: hikvision_isapi_camera
          http_events: {host: 10.0.8.30, username: u, password: "${Q}", channels: [2]}
        - id: door
          profile: hikvision_isapi_access_controller
          http_events: {host: 10.0.8.40, username: u, password: "file:pw.txt", vendor: dahua}
        - id: vto
          profile: dahua_vto
          http_events:
            {host: 10.0.8.50, username: u, password: "${P}", channels: [1], tls_verify: false}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_site(site, resolve_secrets=False)
    problems = [(p.line, p.path, p.message) for p in caught.value.problems]
    text = "\n".join(f"{line} {path}: {message}" for line, path, message in problems)
    assert "devices[1].http_events.password: devices[0] (cam-1) shares the event stream" in text
    assert (
        "devices[1].http_events.channels: channel 2 of 10.0.8.30:80 is taken by devices[0]" in text
    )
    assert "devices[2].http_events.vendor: profile hikvision_isapi_access_controller is a " in text
    # A relative secret file is the site directory's (load_site resolves it): no mistake.
    assert "devices[2].http_events.password" not in text
    assert "devices[3].http_events.channels: profile dahua_vto has no channels to filter" in text
    assert "devices[3].http_events.tls_verify: tls_verify applies with https: true" in text
    assert all(line is not None for line, _, _ in problems)
    schema = _site(
        tmp_path,
        """\
        - id: nvr
          profile: dahua_camera
          http_events: {host: "http://10.0.8.60", username: u, password: hunter2}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_site(schema, resolve_secrets=False)
    text = "\n".join(f"{p.path}: {p.message}" for p in caught.value.problems)
    assert "devices[0].http_events.host: 'http://10.0.8.60' is a URL" in text
    assert "devices[0].http_events.password: secrets are not written in the site file" in text
