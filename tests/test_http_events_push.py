"""HTTP host push through the real gateway: cameras post their alerts to the gateway's listener
(on 127.0.0.1) the way a Hikvision camera set to an HTTP host does, with aiohttp's own Digest
client as the camera's login, as multipart form-data with the XML and its pictures, as plain
XML and as JSON. The Samples are those the alertStream gives for the same alert, the rules
raise from them, and the listener answers and counts what it must refuse: a wrong password,
a sender no device has, a body that cannot be read, another method."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from drivers.http_events.push import DigestVerifier
from drivers.http_events.runtime import HttpEventsDriver
from gateway.config_errors import ConfigError
from gateway.config_load import load_site
from gateway.service import Gateway
from tests.servers import free_ports
from tests.test_http_events_devices import (
    StreamDevice,
    anpr_alert,
    camera_heartbeat,
    form_data,
)
from tests.test_http_events_driver import PASSWORD_ENV, Recorder, _conn, _site, until

PUSH_ENV = "GUANJIA_TEST_PUSH_PASSWORD"


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    monkeypatch.setenv(PUSH_ENV, "push-s3cret")


@asynccontextmanager
async def camera(login: str | None = None, password: str = "") -> AsyncIterator[Poster]:
    middlewares = (aiohttp.DigestAuthMiddleware(login, password),) if login else ()
    async with aiohttp.ClientSession(middlewares=middlewares) as session:
        yield Poster(session)


class Poster:
    """A camera posting to its HTTP host."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(
        self, url: str, body: bytes | str, content_type: str, method: str = "POST"
    ) -> tuple[int, dict[str, str]]:
        data = body.encode() if isinstance(body, str) else body
        async with self.session.request(
            method, url, data=data, headers={"Content-Type": content_type}
        ) as response:
            await response.read()
            return response.status, dict(response.headers)


def _now() -> str:
    return datetime.now().astimezone().replace(microsecond=0).isoformat()


def json_alert(plate: str, when: str, speed: int) -> str:
    """The same ANPR alert as a camera set to parameterFormatType JSON posts it."""
    return json.dumps(
        {
            "ipAddress": "172.20.16.40",
            "macAddress": "44:a6:42:f3:2a:d7",
            "channelID": 1,
            "dateTime": when,
            "eventType": "ANPR",
            "eventState": "active",
            "UUID": f"json-{plate}",
            "ANPR": {
                "licensePlate": plate,
                "line": 1,
                "direction": "reverse",
                "confidenceLevel": 91,
                "vehicleType": "vehicle",
                "vehicleInfo": {"color": "gray", "speed": speed},
            },
        }
    )


async def test_a_pushed_alert_gives_what_the_stream_gives_and_raises_the_rules(
    tmp_path: Path, passwords: None
) -> None:
    listen, other = free_ports(2)
    async with StreamDevice.serve("hikvision") as streaming:
        site = _site(
            tmp_path,
            f"""\
            - id: cam-stream
              profile: hikvision_isapi_anpr_camera
              http_events: {_conn(streaming)}
            - id: cam-push
              profile: hikvision_isapi_anpr_camera
              http_events:
                host: 127.0.0.1
                username: camera
                password: "${{{PUSH_ENV}}}"
                push: {{port: {listen}, bind: 127.0.0.1}}
              tags: {{zone: gate}}
            - id: cam-nat
              profile: hikvision_isapi_anpr_camera
              http_events: {{host: 10.9.9.9, push: {{port: {other}, bind: 127.0.0.1,
                             device_id: "44:A6:42:F3:2A:D7"}}}}
            """,
            """\
            - {id: speed, kind: vehicle_speeding, limit_kmh: 30}
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
        seen = Recorder(gateway)
        await gateway.start()
        try:
            await streaming.wait_streams(1)
            url = f"http://127.0.0.1:{listen}/ISAPI/guanjia/anpr"
            when = _now()
            alert = anpr_alert("沪C55555", speed=52, lane=2, when=when, uuid="u1")
            streaming.send(streaming.part(alert))
            async with camera("camera", "push-s3cret") as cam:
                # The listener starts beside the streams: the camera retries until it answers.
                await until(lambda: _listening(gateway), "the listener")
                content_type, body = form_data(alert)
                assert await _status(cam, url, body, content_type) == 200
                # A camera repeats a post whose answer it lost: the same vehicle, counted once.
                assert await _status(cam, url, body, content_type) == 200
                assert await _status(cam, url, camera_heartbeat(when), "application/xml") == 200
                xml = anpr_alert("京A12345", speed=12, when=when, uuid="u2")
                assert await _status(cam, url, xml, 'application/xml; charset="UTF-8"') == 200
                posted = json_alert("粤B77777", when, 64)
                assert await _status(cam, url, posted, "application/json") == 200

            await until(lambda: len(seen.values("cam-push", "vehicle")) == 3, "three vehicles")
            await until(lambda: len(seen.values("cam-stream", "vehicle")) == 1, "the streamed")
            [streamed] = [
                s for s in seen.samples if s.device == "cam-stream" and "plate" in s.values
            ]
            [pushed, xml_car, json_car] = [
                s for s in seen.samples if s.device == "cam-push" and "plate" in s.values
            ]
            # Identical but for the arrival lag: same points, same values, same device time.
            lag = "arrival_lag_s"
            assert {k: v for k, v in pushed.values.items() if k != lag} == {
                k: v for k, v in streamed.values.items() if k != lag
            }
            assert pushed.ts == streamed.ts == int(datetime.fromisoformat(when).timestamp()) * 10**9
            assert pushed.bad == streamed.bad == {}
            assert xml_car.values["plate"] == "京A12345"
            assert (json_car.values["plate"], json_car.values["speed_kmh"]) == ("粤B77777", 64.0)
            assert json_car.values["direction"] == "reverse"
            assert seen.values("cam-push", "available") == [True]

            await until(lambda: len(seen.raised("vehicle_speeding")) == 3, "speeding")
            assert sorted(seen.raised("vehicle_speeding")) == [
                "cam-push:沪C55555",
                "cam-push:粤B77777",
                "cam-stream:沪C55555",
            ]

            # A camera behind a NAT, known by its MAC address, without a login.
            nat = f"http://127.0.0.1:{other}/"
            async with camera() as cam:
                await until(lambda: _listening(gateway, 2), "the second listener")
                content_type, body = form_data(anpr_alert("津D1", when=when))
                assert await _status(cam, nat, body, content_type) == 200
                stranger = anpr_alert("津D2", when=when).replace("44:a6:42:f3:2a:d7", "aa:bb")
                assert await _status(cam, nat, stranger, "application/xml") == 403
            await until(lambda: seen.values("cam-nat", "plate") == ["津D1"], "the NAT camera")

            health = gateway.health()
            assert health["http_events_push_listeners"] == 2
            assert health["http_events_push_accepted"] == 6
            assert health["http_events_push_events"] == 5
            assert health["http_events_push_keepalives"] == 1
            assert health["http_events_push_unknown_senders"] == 1
            assert health["http_events_duplicates"] == 1
            assert health["http_events_parts_skipped"] >= 6  # pictures, never decoded
            statuses = {s.device: s for s in gateway.statuses()}
            assert statuses["cam-push"].online is True
            assert statuses["cam-push"].timing == "push"
        finally:
            await gateway.stop()


async def test_the_listener_refuses_what_it_must_and_counts_it(
    tmp_path: Path, passwords: None
) -> None:
    [listen] = free_ports(1)
    site = _site(
        tmp_path,
        f"""\
        - id: cam-push
          profile: hikvision_isapi_anpr_camera
          http_events:
            host: 127.0.0.1
            username: camera
            password: "${{{PUSH_ENV}}}"
            push: {{port: {listen}, bind: 127.0.0.1}}
        """,
    )
    gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
    seen = Recorder(gateway)
    await gateway.start()
    url = f"http://127.0.0.1:{listen}/"
    alert = anpr_alert("沪C55555", when=_now())
    try:
        await until(lambda: _listening(gateway), "the listener")
        async with camera() as cam:  # no login at all: challenged
            status, headers = await cam.post(url, alert, "application/xml")
            assert status == 401
            assert headers["WWW-Authenticate"].startswith('Digest realm="guanjia"')
            assert (await cam.post(url, "", "text/plain", "GET"))[0] == 405
        async with camera("camera", "wrong") as cam:
            assert await _status(cam, url, alert, "application/xml") == 401
        async with camera("someone", "push-s3cret") as cam:
            assert await _status(cam, url, alert, "application/xml") == 401
        async with camera("camera", "push-s3cret") as cam:
            # Bodies that cannot be read are answered 200 (a resend would not mend them).
            assert await _status(cam, url, "<EventNotificationAlert><eventType>", "text/xml") == 200
            assert await _status(cam, url, b"\xff\xd8 a bare picture", "image/jpeg") == 200
            assert await _status(cam, url, "--x\r\n\r\n", "multipart/form-data") == 200
            content_type, body = form_data(alert, boundary="cut")
            assert await _status(cam, url, body[:300], content_type) == 200  # cut in the XML
            huge = alert.replace("<ANPR>", "<ANPR>" + "<x>padding</x>" * 30_000)
            assert await _status(cam, url, huge, "application/xml") == 200  # over 256 KiB
            assert await _status(cam, url, alert, "application/xml") == 200
        await until(lambda: seen.values("cam-push", "plate") == ["沪C55555"], "the good one")
        health = gateway.health()
        assert health["http_events_push_auth_refused"] == 2
        assert health["http_events_push_bad_bodies"] == 5
        assert health["http_events_parts_oversized"] == 1
        assert health["http_events_push_accepted"] == 1
        assert health["http_events_push_unknown_senders"] == 0
        problems = "\n".join(gateway.drivers["http_events"].problems())
        assert problems == ""  # refusals are counted and logged, not standing problems
    finally:
        await gateway.stop()


async def test_a_port_that_is_taken_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    async with StreamDevice.serve("hikvision") as taken:
        site = _site(
            tmp_path,
            f"""\
            - id: cam-push
              profile: hikvision_isapi_anpr_camera
              http_events: {{host: 127.0.0.1, push: {{port: {taken.port}, bind: 127.0.0.1}}}}
            """,
        )
        gateway = Gateway(load_site(site), spool_dir=tmp_path / "spool", health_interval=3600)
        await gateway.start()
        try:
            driver = gateway.drivers["http_events"]
            await until(lambda: bool(driver.problems()), "the problem")
            [problem] = driver.problems()
            assert f"cannot listen on 127.0.0.1:{taken.port}" in problem
            assert problem.startswith("cam-push (push listener")
        finally:
            await gateway.stop()


def test_push_mistakes_are_reported_before_anything_connects(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        """\
        - id: vto
          profile: dahua_vto
          http_events: {host: 10.0.8.50, push: {port: 8099}}
        - id: cam-a
          profile: hikvision_isapi_anpr_camera
          http_events: {host: 10.0.8.60, https: true, push: {port: 8099, bind: 10.0.0.2}}
        - id: cam-b
          profile: hikvision_isapi_anpr_camera
          http_events: {host: 10.0.8.60, push: {port: 8099}}
        - id: cam-c
          profile: hikvision_isapi_anpr_camera
          http_events: {host: 10.0.8.61, push: {port: 8099, device_id: "88"}}
        - id: cam-d
          profile: hikvision_isapi_anpr_camera
          http_events: {host: 10.0.8.61, push: {port: 8099, device_id: "89"}}
        - id: cam-e
          profile: hikvision_isapi_anpr_camera
          http_events: {host: gate-camera.local, push: {port: 8099}}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_site(site, resolve_secrets=False)
    found = {p.path: p.message for p in caught.value.problems}
    assert "push is the Hikvision HTTP host mode" in found["devices[0].http_events.push"]
    assert "applies to reading the device's stream" in found["devices[1].http_events.https"]
    assert "one port has one bind address" in found["devices[1].http_events.push.bind"]
    assert "give each device its channels" in found["devices[2].http_events.channels"]
    assert "write its IP address" in found["devices[5].http_events.host"]
    assert len(found) == 5  # two devices on one address told apart by their ids are fine


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "{host: 10.0.8.61, username: camera, push: {port: 8099}}",
            "push: give both username and password",
        ),
        ("{host: 10.0.8.62}", "username and password missing: the gateway logs in"),
        ("{host: 10.0.8.62, username: u}", "password missing"),
    ],
)
def test_credentials_a_mode_needs(tmp_path: Path, block: str, message: str) -> None:
    site = _site(
        tmp_path, f"- {{id: cam, profile: hikvision_isapi_anpr_camera, http_events: {block}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_site(site, resolve_secrets=False)
    [problem] = caught.value.problems
    assert problem.path == "devices[0].http_events"
    assert message in problem.message


def test_a_digest_answer_is_taken_once_and_goes_stale() -> None:
    now = [1_000_000.0]
    verifier = DigestVerifier(clock=lambda: now[0])
    nonce = verifier.challenge().split('nonce="')[1].split('"')[0]

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    def answer(nc: str, password: str = "pw", uri: str = "/a") -> str:
        ha1, ha2 = md5(f"cam:guanjia:{password}"), md5(f"POST:{uri}")
        response = md5(f"{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}")
        return (
            f'Digest username="cam", realm="guanjia", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, qop=auth, nc={nc}, cnonce="c0ffee", response="{response}"'
        )

    assert verifier.check(answer("00000001"), "POST", "/a", "cam", "pw") == "ok"
    assert verifier.check(answer("00000001"), "POST", "/a", "cam", "pw") == "refused"  # replay
    assert verifier.check(answer("00000002"), "POST", "/a", "cam", "pw") == "ok"
    assert verifier.check(answer("00000003", "bad"), "POST", "/a", "cam", "pw") == "refused"
    assert verifier.check(answer("00000004", uri="/b"), "POST", "/a", "cam", "pw") == "refused"
    assert verifier.check("Basic Y2FtOnB3", "POST", "/a", "cam", "pw") == "missing"
    assert verifier.check(answer("00000005"), "POST", "/a", "cam", "pw") == "ok"
    now[0] += 301
    assert verifier.check(answer("00000006"), "POST", "/a", "cam", "pw") == "stale"
    forged = answer("00000007").replace(nonce, "1000000." + "0" * 32)
    assert verifier.check(forged, "POST", "/a", "cam", "pw") == "missing"
    # Devices challenged in the same second get nonces of their own: one's count is no
    # replay of the other's.
    assert len({verifier.nonce() for _ in range(100)}) == 100


# --- helpers -----------------------------------------------------------------------------


def _listening(gateway: Gateway, count: int = 1) -> bool:
    driver = gateway.drivers["http_events"]
    assert isinstance(driver, HttpEventsDriver)
    return sum(p.address is not None for p in driver.listeners) >= count


async def _status(cam: Poster, url: str, body: bytes | str, content_type: str) -> int:
    status, _ = await cam.post(url, body, content_type)
    return status
