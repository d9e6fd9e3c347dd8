"""The HTTP event-stream driver in the real gateway (gateway.service.Gateway) on a site file
with a Hikvision camera, a Hikvision access controller and a Dahua VTO, each a local server
that demands Digest authentication (tests/test_http_events_devices.py): their events become
Samples with the devices' own times, the security rules raise door_forced_open and video_loss
through the real rules runtime, a stream cut in the middle of a part comes back without losing
or doubling an event, a silent stream makes its device offline, and a refused password is
reported and not hammered."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from core.types import Sample
from drivers.contract import secret_key
from gateway.config_errors import ConfigError
from gateway.config_load import BUILTIN_PROFILES, load_site
from gateway.messages import AlarmTransition
from gateway.service import Gateway
from tests.test_http_events_devices import (
    StreamDevice,
    acs_event,
    camera_alert,
    camera_heartbeat,
    dahua_event,
)
from tests.waiting import until

SHANGHAI = ZoneInfo("Asia/Shanghai")
PASSWORD_ENV = "GUANJIA_TEST_HX_PASSWORD"


def _now_iso() -> str:
    return datetime.now(SHANGHAI).replace(microsecond=0).isoformat()


def _site(tmp_path: Path, devices: str, rules: str = "", profiles: bool = False) -> Path:
    text = textwrap.dedent("""\
        site: {name: 测试楼, id: hx-site, timezone: Asia/Shanghai, tags: {building: main}}
        spool: {path: spool}
        alarms: {store: alarms.sqlite}
        """)
    if profiles:
        text += "profile_dirs: [profiles]\n"
    text += "devices:\n" + textwrap.indent(textwrap.dedent(devices), "  ")
    if rules:
        text += "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  ")
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _conn(device: StreamDevice, extra: str = "") -> str:
    return (
        f"{{host: 127.0.0.1, port: {device.port}, username: guanjia, "
        f'password: "${{{PASSWORD_ENV}}}", retry_max: 0.5s{extra}}}'
    )


class Recorder:
    """What the gateway's bus carries: Samples and alarm transitions."""

    def __init__(self, gateway: Gateway) -> None:
        self.samples: list[Sample] = []
        self.alarms: list[AlarmTransition] = []
        gateway.bus.subscribe(Sample, self.samples.append, name="test-samples")
        gateway.bus.subscribe(AlarmTransition, self.alarms.append, name="test-alarms")

    def values(self, device: str, point: str) -> list[object]:
        return [s.values[point] for s in self.samples if s.device == device and point in s.values]

    def raised(self, kind: str) -> list[str]:
        return [
            a.transition.alarm.subject
            for a in self.alarms
            if a.transition.what == "raised" and a.transition.alarm.kind == kind
        ]


@pytest.fixture
def password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    return "s3cret"


async def test_three_devices_events_alarms_and_a_reconnect(tmp_path: Path, password: str) -> None:
    async with (
        StreamDevice.serve("hikvision") as camera,
        StreamDevice.serve("hikvision") as controller,
        StreamDevice.serve("dahua") as vto,
    ):
        site = _site(
            tmp_path,
            f"""\
            - id: cam-lobby
              profile: hikvision_isapi_camera
              http_events: {_conn(camera, ", vendor: hikvision")}
              tags: {{zone: lobby}}
            - id: door-archive
              profile: hikvision_isapi_access_controller
              http_events: {_conn(controller)}
              tags: {{zone: archive}}
            - id: vto-gate
              profile: dahua_vto
              http_events: {_conn(vto, ", vendor: dahua")}
              tags: {{zone: gate}}
            """,
            """\
            - {id: forced, kind: door_forced, secured_zones: [archive]}
            - {id: cameras, kind: camera}
            - {id: cards, kind: invalid_cards, count: 2}
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
        assert set(gateway.drivers) == {"http_events"}
        seen = Recorder(gateway)
        await gateway.start()
        try:
            for device in (camera, controller, vto):
                await device.wait_streams(1)
            await until(lambda: all(s.online for s in gateway.statuses()), "every device online")
            assert seen.values("cam-lobby", "available") == [True]

            # A camera: keep-alives are no readings; a video loss is, with the camera's time.
            when = _now_iso()
            camera.send_part(camera_heartbeat(when))
            camera.send_part(camera_alert("videoloss", when=when))
            await until(lambda: seen.raised("video_loss"), "video_loss raised")
            (loss,) = [s for s in seen.samples if "video_loss" in s.values]
            assert loss.device == "cam-lobby"
            assert loss.ts == int(datetime.fromisoformat(when).timestamp()) * 1_000_000_000
            assert loss.values["channel_id"] == "1"
            assert loss.values["arrival_lag_s"] >= 0
            assert seen.raised("video_loss") == ["cam-lobby:video_loss"]

            # An access controller: a forced door in a secured zone.
            controller.send_part(acs_event(5, 27, 100, when=when, door=2))
            await until(lambda: seen.raised("door_forced_open"), "door_forced_open raised")
            assert seen.raised("door_forced_open") == ["door-archive:door2"]

            # A Dahua VTO: a card refused twice (the invalid_cards rule), a break-in.
            utc = int(datetime.now(UTC).timestamp())
            for rec in (1, 2):
                vto.send_part(
                    dahua_event(
                        "AccessControl",
                        data={
                            "CardNo": f"BAD{rec}",
                            "Method": 1,
                            "Status": 0,
                            "RecNo": rec,
                            "UTC": utc,
                            "Type": "Entry",
                        },
                    )
                )
            vto.send_part("Heartbeat")
            vto.send_part(dahua_event("BreakIn", data={"Name": "Gate", "UTC": utc}))
            await until(lambda: len(seen.raised("door_forced_open")) == 2, "the VTO's forced door")
            await until(lambda: seen.raised("invalid_cards_repeated"), "invalid cards")
            assert seen.values("vto-gate", "card_no") == ["BAD1", "BAD2"]
            assert seen.raised("door_forced_open")[1] == "vto-gate"

            # The controller's stream is cut in the middle of a part; the device sends the
            # event before the cut again after the reconnect, then the one the cut broke.
            controller.send_part(acs_event(5, 25, 101, when=when))
            await until(lambda: seen.values("door-archive", "door_open") == [True], "door open")
            half = controller.part(acs_event(5, 26, 102, when=when))
            controller.cut(half[: len(half) // 2])
            await controller.wait_streams(2)
            controller.send_part(acs_event(5, 25, 101, when=when))  # sent again: a duplicate
            controller.send_part(acs_event(5, 26, 102, when=when))
            await until(lambda: len(seen.values("door-archive", "door_open")) == 2, "door closed")
            await asyncio.sleep(0.2)  # anything more would have arrived by now
            serials = [
                s.values["serial_no"]
                for s in seen.samples
                if s.device == "door-archive" and "serial_no" in s.values
            ]
            assert serials == [100, 101, 102]  # none lost, none counted twice
            health = gateway.health()
            # The resent 101, and whatever the controller's log search after the reconnect
            # brought again (catch_up: it searches from the last event, 101's time)
            assert health["http_events_catch_ups"] == 1
            assert health["http_events_duplicates"] >= 1 + health["http_events_caught_up"] - 1
            assert health["http_events_parts_truncated"] == 1
            assert health["http_events_streams"] == 3
            assert health["http_events_keepalives"] == 2  # the camera's and the VTO's
            assert health["http_events_unmatched"] == 0
            # The cut was shorter than the allowance: the controller never went offline.
            assert seen.values("door-archive", "available") == [True]
            assert gateway.drivers["http_events"].problems() == []
        finally:
            await gateway.stop()
    # One challenge per device: every later request answered the nonce it had.
    assert (camera.challenges, controller.challenges, vto.challenges) == (1, 1, 1)
    assert vto.requests[0] == "/cgi-bin/eventManager.cgi?action=attach&codes=[All]&heartbeat=5"


async def test_a_silent_stream_takes_its_cameras_offline_and_back(
    tmp_path: Path, password: str
) -> None:
    """A recorder's stream, two cameras on it (one channel each): when it stops sending (no
    keep-alive, no byte) both go offline; when it comes back, both are online again."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    data = yaml.safe_load((BUILTIN_PROFILES / "hikvision_isapi_camera.yaml").read_text("utf-8"))
    data["name"] = "fast_camera"
    data["keepalive"] = {**data["keepalive"], "interval": "0.2s", "missed": 3}
    (profiles / "fast_camera.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    async with StreamDevice.serve("hikvision") as nvr:
        site = _site(
            tmp_path,
            f"""\
            - id: cam-1
              profile: fast_camera
              http_events: {_conn(nvr, ", channels: [1]")}
            - id: cam-2
              profile: fast_camera
              http_events: {_conn(nvr, ", channels: [2]")}
            """,
            profiles=True,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
        seen = Recorder(gateway)
        await gateway.start()
        try:
            await nvr.wait_streams(1)
            when = _now_iso()
            nvr.send_part(camera_alert("VMD", channel=2, when=when))
            await until(lambda: seen.values("cam-2", "motion") == [True], "cam-2's motion")
            assert seen.values("cam-1", "motion") == []  # channel 2 is not cam-1's
            # Silence: the stream stays open, nothing comes.
            await until(
                lambda: (
                    seen.values("cam-1", "available")[-1:] == [False]
                    and seen.values("cam-2", "available")[-1:] == [False]
                ),
                "offline after missed keep-alives",
            )
            await nvr.wait_streams(2)  # the silent stream was given up and opened again
            nvr.send_part(camera_heartbeat(_now_iso()))
            await until(lambda: seen.values("cam-1", "available")[-1:] == [True], "online again")
            assert gateway.health()["http_events_silent"] >= 1
            assert nvr.streams >= 2
        finally:
            await gateway.stop()


async def test_a_refused_password_is_reported_and_not_hammered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    async with StreamDevice.serve("dahua") as vto:
        site = _site(
            tmp_path,
            f"""\
            - id: vto-gate
              profile: dahua_vto
              http_events: {_conn(vto)}
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
        await gateway.start()
        try:
            driver = gateway.drivers["http_events"]
            await until(lambda: driver.problems() != [], "the refusal reported")
            await asyncio.sleep(1.0)  # retry_max is 0.5 s: a retry storm would show here
            (problem,) = driver.problems()
            assert "refuses user 'guanjia'" in problem
            assert "vto-gate" in problem
            (status,) = gateway.statuses()
            assert "HTTP 401" in status.last_error
            assert gateway.health()["http_events_auth_refused"] == 1
        finally:
            await gateway.stop()
    assert vto.refused == 1


def test_a_password_that_cannot_be_resolved_fails_the_check_before_anything_connects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    site = _site(
        tmp_path,
        f"""\
        - id: cam-lobby
          profile: hikvision_isapi_camera
          http_events: {{host: 127.0.0.1, port: 8, username: u, password: "${{{PASSWORD_ENV}}}"}}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_site(site)
    (problem,) = caught.value.problems
    assert problem.path == "devices[0].http_events.password"
    assert f"environment variable {PASSWORD_ENV} is not set" in problem.message


def test_a_password_file_is_read_relative_to_the_site_file(tmp_path: Path) -> None:
    (tmp_path / "camera.secret").write_text("s3cret\n", encoding="utf-8")
    site = _site(
        tmp_path,
        """\
        - id: cam-lobby
          profile: hikvision_isapi_camera
          http_events: {host: 127.0.0.1, port: 8, username: u, password: "file:camera.secret"}
        """,
    )
    loaded = load_site(site)
    assert loaded.secrets[secret_key("cam-lobby", "password")] == "s3cret"
