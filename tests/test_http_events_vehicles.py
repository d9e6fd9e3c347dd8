"""Vehicle events: a Hikvision ANPR alert (XML with its JPEG pictures in one multipart body) and
Dahua traffic events become one Sample per vehicle with plate, lane, direction and speed, as
the vehicle rules read them; numbers written as XML text are read as numbers, and nothing else
is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.types import Sample
from drivers.http_events import decode
from drivers.http_events.mapper import EventMapper
from drivers.http_events.multipart import MultipartParser
from drivers.http_events.profile import HttpEventsProfile
from gateway.config_load import BUILTIN_PROFILES, load_profile
from tests.test_http_events_devices import JPEG, anpr_alert, traffic_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
ARRIVAL = int(datetime(2024, 5, 7, 9, 48, 10, tzinfo=UTC).timestamp()) * 1_000_000_000


def _profile(name: str) -> HttpEventsProfile:
    profile = load_profile(BUILTIN_PROFILES / f"{name}.yaml")
    assert isinstance(profile, HttpEventsProfile)
    return profile


def _multipart(boundary: str, *parts: tuple[str, bytes]) -> bytes:
    """A body as an ANPR camera posts it: the alert's XML, then its pictures."""
    out = b""
    for i, (kind, body) in enumerate(parts):
        name = "anpr.xml" if kind.endswith("xml") else f"picture{i}.jpg"
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}"\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n'
        ).encode()
        out += body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def _hikvision(body: bytes, mapper: EventMapper) -> list[Sample]:
    parser = MultipartParser("boundary")
    samples: list[Sample] = []
    for part in parser.feed(body):
        for event in decode.hikvision(part.body):
            samples += mapper.samples(event, ARRIVAL)
    assert parser.stats.skipped == 2  # the pictures
    return samples


def test_an_anpr_alert_with_its_pictures_is_one_vehicle() -> None:
    mapper = EventMapper("cam-gate", _profile("hikvision_isapi_anpr_camera"), SHANGHAI)
    body = _multipart(
        "boundary",
        ("application/xml", anpr_alert("京A12345", speed=52, lane=2).encode()),
        ("image/jpeg", JPEG),
        ("image/jpeg", JPEG),
    )
    [sample] = _hikvision(body, mapper)
    assert sample.values == {
        "vehicle": True,
        "plate": "京A12345",
        "lane": 2,
        "direction": "forward",
        "speed_kmh": 52.0,
        "plate_confidence": 98,
        "vehicle_type": "SUVMPV",
        "vehicle_color": "white",
        "channel_id": "1",
        "arrival_lag_s": 6.153,
    }
    assert sample.bad == {}
    assert sample.ts == ARRIVAL - 6_153_000_000  # the camera's own time
    # The same alert again (a reconnect, a device retrying its push): no second vehicle.
    assert _hikvision(body, mapper) == []
    assert mapper.stats.duplicates == 1


def test_an_anpr_alert_split_anywhere_is_the_same_vehicle() -> None:
    body = _multipart(
        "boundary", ("text/xml", anpr_alert("沪C55555").encode()), ("image/jpeg", JPEG)
    )
    whole = EventMapper("c", _profile("hikvision_isapi_anpr_camera"), SHANGHAI)
    expected = [
        s.values for p in MultipartParser("boundary").feed(body) for s in _map(whole, p.body)
    ]
    assert [v["plate"] for v in expected] == ["沪C55555"]
    for step in (1, 7, 97, 1000):
        parser = MultipartParser("boundary")
        mapper = EventMapper("c", _profile("hikvision_isapi_anpr_camera"), SHANGHAI)
        got: list[dict[str, Any]] = []
        for at in range(0, len(body), step):
            for part in parser.feed(body[at : at + step]):
                got += [s.values for s in _map(mapper, part.body)]
        assert got == expected, step


def _map(mapper: EventMapper, body: bytes) -> list[Sample]:
    return [s for e in decode.hikvision(body) for s in mapper.samples(e, ARRIVAL)]


@pytest.mark.parametrize(
    ("speed", "expected", "bad"),
    [
        ("0", 0.0, {}),  # a camera without a radar
        ("61.5", 61.5, {}),
        ("", None, {"speed_kmh": "type"}),
        ("fast", None, {"speed_kmh": "type"}),
        ("1e3", None, {"speed_kmh": "type"}),  # plain decimals only
        ("999", None, {"speed_kmh": "out_of_range"}),
    ],
)
def test_numbers_written_as_xml_text(
    speed: str, expected: float | None, bad: dict[str, str]
) -> None:
    mapper = EventMapper("c", _profile("hikvision_isapi_anpr_camera"), SHANGHAI)
    xml = anpr_alert("京A12345").replace("<speed>0</speed>", f"<speed>{speed}</speed>")
    [sample] = _map(mapper, xml.encode())
    assert sample.values.get("speed_kmh") == expected
    assert sample.bad == bad
    assert sample.values["plate"] == "京A12345"


def test_a_plate_of_digits_keeps_its_zeros() -> None:
    mapper = EventMapper("c", _profile("hikvision_isapi_anpr_camera"), SHANGHAI)
    [sample] = _map(mapper, anpr_alert("0123456").encode())
    assert sample.values["plate"] == "0123456"


def test_an_alert_with_a_lane_number_and_a_top_level_vehicle_info() -> None:
    """The other shape seen: ANPR.laneNo, and vehicleInfo beside ANPR."""
    xml = (
        "<EventNotificationAlert><eventType>ANPR</eventType>"
        "<dateTime>2024-05-07T17:48:03+08:00</dateTime><channelID>1</channelID>"
        "<ANPR><licensePlate>京B00001</licensePlate><laneNo>3</laneNo>"
        "<direction>reverse</direction></ANPR>"
        "<vehicleInfo><color>black</color><speed>33</speed></vehicleInfo>"
        "</EventNotificationAlert>"
    )
    mapper = EventMapper("c", _profile("hikvision_isapi_anpr_camera"), SHANGHAI)
    [sample] = _map(mapper, xml.encode())
    assert {k: sample.values[k] for k in ("plate", "lane", "direction", "speed_kmh")} == {
        "plate": "京B00001",
        "lane": 3,
        "direction": "reverse",
        "speed_kmh": 33.0,
    }
    assert sample.values["vehicle_color"] == "black"


def test_dahua_traffic_events_are_vehicles_with_the_true_time() -> None:
    mapper = EventMapper("cam-road", _profile("dahua_traffic_camera"), SHANGHAI)
    arrival = (1706600095 + 2) * 1_000_000_000
    text = (
        traffic_event("TrafficJunction", "浙A12345", speed=52, lane=2, event_id=516)
        + "\r\n"
        + traffic_event("TrafficOverSpeed", "浙B67890", speed=88, lane=1, event_id=517)
    )
    samples = [s for e in decode.dahua(text.encode()) for s in mapper.samples(e, arrival)]
    assert [s.values for s in samples] == [
        {
            "vehicle": True,
            "traffic_event": "TrafficJunction",
            "plate": "浙A12345",
            "lane": 2,
            "direction": "0",
            "speed_kmh": 52.0,
            "speed_limit_kmh": 70.0,
            "vehicle_color": "White",
            "channel_id": "1",
            "arrival_lag_s": 2.0,
        },
        {
            "vehicle": True,
            "traffic_event": "TrafficOverSpeed",
            "plate": "浙B67890",
            "lane": 1,
            "direction": "0",
            "speed_kmh": 88.0,
            "speed_limit_kmh": 70.0,
            "vehicle_color": "White",
            "channel_id": "1",
            "arrival_lag_s": 2.0,
        },
    ]
    # RealUTC, not the camera's local `UTC` 7 h ahead: the time is trusted, nothing refused.
    assert all(s.ts == 1706600095 * 1_000_000_000 for s in samples)
    assert mapper.stats.clock_refused == 0
    # Sent again after a reconnect: dropped.
    again = [s for e in decode.dahua(text.encode()) for s in mapper.samples(e, arrival)]
    assert again == []
    assert mapper.stats.duplicates == 2


def test_the_vehicle_profiles_agree_on_their_points() -> None:
    """Both vendors' vehicles carry the points the rules read, with the same types."""
    hik = _profile("hikvision_isapi_anpr_camera")
    dahua = _profile("dahua_traffic_camera")

    def types(profile: HttpEventsProfile) -> dict[str, str]:
        return {p.name: p.type for m in profile.events for p in m.points}

    shared = {"vehicle", "plate", "lane", "direction", "speed_kmh", "vehicle_color"}
    assert {k: v for k, v in types(hik).items() if k in shared} == {
        k: v for k, v in types(dahua).items() if k in shared
    }
    assert shared <= set(types(hik))
    assert hik.kind == dahua.kind == "camera"
