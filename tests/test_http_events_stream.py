"""The event streams' parts: the incremental multipart parser on golden parts shaped after the
facts (Hikvision camera XML and access-controller JSON, Dahua text), split at every byte,
several alerts in one part, newline keep-alives, garbage, a cut in the middle of a part,
oversized parts and lying lengths; the vendors' decoders; and Digest authentication answered
to a local aiohttp server that checks every answer itself."""

from __future__ import annotations

import asyncio
import contextlib
import random
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from drivers.http_events import decode
from drivers.http_events.config import HttpEventsConnection
from drivers.http_events.digest import ChallengeError, DigestAuth, parse_challenges
from drivers.http_events.mapper import EventMapper
from drivers.http_events.multipart import MultipartParser, Part, boundary_of
from drivers.http_events.profile import HttpEventsProfile
from drivers.http_events.stream import AuthRefused, EventStream, Member, backoff
from gateway.config_load import BUILTIN_PROFILES, load_profile
from tests.test_http_events_devices import (
    StreamDevice,
    acs_event,
    camera_alert,
    camera_heartbeat,
    dahua_event,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _profile(name: str) -> HttpEventsProfile:
    profile = load_profile(BUILTIN_PROFILES / f"{name}.yaml")
    assert isinstance(profile, HttpEventsProfile)
    return profile


def _frame(boundary: str, body: bytes, content_type: str, length: bool = True) -> bytes:
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n"
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body + b"\r\n"


GOLDEN_HIKVISION = [
    (camera_heartbeat().encode(), "application/xml"),
    (camera_alert("VMD").encode(), 'application/xml; charset="UTF-8"'),
    ((camera_alert("linedetection") + "\r\n" + camera_alert("tamperdetection")).encode(), ""),
    (acs_event(5, 27, 735, card="").encode(), "application/json"),
]
GOLDEN_DAHUA = [
    (b"Heartbeat", "text/plain"),
    (dahua_event("VideoMotion", "Start", 0).encode(), "text/plain"),
    (
        (
            dahua_event("AccessControl", data={"CardNo": "AB12", "Method": 1, "Status": 1})
            + "\r\n"
            + dahua_event("DoorStatus", data={"Status": "Open"})
        ).encode(),
        "text/plain",
    ),
]


def _stream(boundary: str, golden: list[tuple[bytes, str]]) -> bytes:
    out = b"\r\n"  # a newline before the first boundary, as some firmwares send
    for i, (body, kind) in enumerate(golden):
        out += _frame(boundary, body, kind or "application/xml", length=i % 2 == 0)
        out += b"\r\n\r\n" * (i % 3)  # newline keep-alives between parts
    return out + f"--{boundary}\r\n".encode()


def _feed(parser: MultipartParser, data: bytes, cuts: list[int]) -> list[Part]:
    parts: list[Part] = []
    at = 0
    for cut in [*cuts, len(data)]:
        parts += parser.feed(data[at:cut])
        at = cut
    return parts


@pytest.mark.parametrize(
    ("boundary", "golden"), [("boundary", GOLDEN_HIKVISION), ("myboundary", GOLDEN_DAHUA)]
)
def test_golden_parts_whole_however_the_bytes_are_split(
    boundary: str, golden: list[tuple[bytes, str]]
) -> None:
    data = _stream(boundary, golden)
    expected = [body for body, _ in golden]
    whole = MultipartParser(boundary)
    assert [p.body for p in whole.feed(data)] == expected
    byte_by_byte = MultipartParser(boundary)
    assert [p.body for p in _feed(byte_by_byte, data, list(range(1, len(data))))] == expected
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 5))
        parser = MultipartParser(boundary)
        assert [p.body for p in _feed(parser, data, cuts)] == expected
        stats = parser.stats
        assert (stats.garbage, stats.oversized, stats.length_mismatch) == (0, 0, 0)


def test_a_part_with_a_length_is_handed_on_before_the_next_boundary() -> None:
    """An event must not wait for the next keep-alive to open the following part."""
    parser = MultipartParser("boundary")
    body = camera_alert("VMD").encode()
    parts = parser.feed(_frame("boundary", body, "application/xml"))
    assert [p.body for p in parts] == [body]
    assert parts[0].content_type == "application/xml"


def test_several_alerts_in_one_part_are_each_an_event() -> None:
    body = (camera_alert("VMD") + "\n" + camera_alert("VMD", "inactive", post_count=2)).encode()
    events = decode.hikvision(body)
    assert [(e["eventType"], e["eventState"], e["activePostCount"]) for e in events] == [
        ("VMD", "active", "1"),
        ("VMD", "inactive", "2"),
    ]
    two_json = (acs_event(5, 25, 1) + acs_event(5, 26, 2)).encode()
    assert [e["AccessControllerEvent"]["serialNo"] for e in decode.hikvision(two_json)] == [1, 2]
    a_list = ("[" + acs_event(5, 25, 1) + "," + acs_event(5, 26, 2) + "]").encode()
    assert len(decode.hikvision(a_list)) == 2
    dahua = (
        dahua_event("VideoMotion", "Start", 0)
        + "\r\n"
        + dahua_event("AccessControl", data={"Name": "semi;colon", "Method": 4})
        + "\r\n"
        + dahua_event("VideoMotion", "Stop", 1)
    ).encode()
    events = decode.dahua(dahua)
    assert [(e["Code"], e["action"], e["channel"]) for e in events] == [
        ("VideoMotion", "Start", "1"),
        ("AccessControl", "Pulse", "1"),
        ("VideoMotion", "Stop", "2"),
    ]
    assert events[1]["data"] == {"Name": "semi;colon", "Method": 4}


def test_the_xml_is_read_as_a_bridge_would_give_it() -> None:
    """Namespaces dropped, every value text, nested and repeated elements kept."""
    xml = camera_alert("fielddetection").replace(
        "</EventNotificationAlert>",
        "<DetectionRegionList><DetectionRegionEntry><regionID>1</regionID>"
        "</DetectionRegionEntry><DetectionRegionEntry><regionID>2</regionID>"
        "</DetectionRegionEntry></DetectionRegionList></EventNotificationAlert>",
    )
    (event,) = decode.hikvision(b'<?xml version="1.0" encoding="UTF-8"?>\r\n' + xml.encode())
    assert event["channelID"] == "1"
    assert event["eventType"] == "fielddetection"
    regions = event["DetectionRegionList"]["DetectionRegionEntry"]
    assert [r["regionID"] for r in regions] == ["1", "2"]
    newer = xml.replace("www.hikvision.com", "www.isapi.org")
    assert decode.hikvision(newer.encode())[0]["eventType"] == "fielddetection"


def test_keepalives_are_no_garbage_and_garbage_is_counted_once_per_run() -> None:
    parser = MultipartParser("myboundary")
    heartbeat = _frame("myboundary", b"Heartbeat", "text/plain")
    event = _frame("myboundary", dahua_event("VideoLoss", "Start").encode(), "text/plain")
    parts = parser.feed(heartbeat + b"\r\n\r\n\n" + heartbeat + b"\r\n")
    assert [p.body for p in parts] == [b"Heartbeat", b"Heartbeat"]
    assert parser.stats.garbage == 0
    parts = parser.feed(b"\x00\xffjunk that is no part\r\nmore junk" * 50 + event)
    assert [p.body for p in parts] == [dahua_event("VideoLoss", "Start").encode()]
    assert parser.stats.garbage == 1
    assert parser.feed(heartbeat + b"--myboundary\r\n")[0].body == b"Heartbeat"


def test_a_cut_in_the_middle_of_a_part_loses_only_that_part() -> None:
    parser = MultipartParser("boundary")
    whole = _frame("boundary", camera_alert("VMD").encode(), "application/xml")
    assert parser.feed(whole + whole[: len(whole) // 2]) != []
    parser.reset()  # the connection was cut; the next one starts afresh
    assert parser.stats.truncated == 1
    parts = parser.feed(whole)
    assert [decode.hikvision(p.body)[0]["eventType"] for p in parts] == ["VMD"]


@pytest.mark.parametrize("length", [True, False])
def test_an_oversized_part_is_refused_and_the_stream_goes_on(length: bool) -> None:
    parser = MultipartParser("boundary", max_part=4096)
    big = _frame("boundary", b"<x>" + b"A" * 50_000 + b"</x>", "application/xml", length)
    small = _frame("boundary", camera_alert("VMD").encode(), "application/xml")
    parts: list[Part] = []
    high = 0
    data = small + big + small
    for at in range(0, len(data), 1000):
        parts += parser.feed(data[at : at + 1000])
        high = max(high, parser.buffered)
    parts += parser.feed(b"--boundary\r\n")
    assert len(parts) == 2
    assert parser.stats.oversized == 1
    assert high <= 4096 + 1000  # bounded: never the whole 50 kB part


def test_pictures_are_skipped_without_a_problem() -> None:
    parser = MultipartParser("boundary", max_part=1024)
    picture = _frame("boundary", bytes(range(256)) * 400, "image/jpeg")
    event = _frame("boundary", acs_event(5, 75, 9).encode(), "application/json")
    parts = parser.feed(event + picture + event + b"--boundary\r\n")
    assert len(parts) == 2
    assert (parser.stats.skipped, parser.stats.oversized) == (1, 0)


def test_a_length_running_past_the_next_boundary_ends_at_the_boundary() -> None:
    parser = MultipartParser("myboundary")
    first = b"Code=VideoMotion;action=Start;index=0"
    lying = b"--myboundary\r\nContent-Length: 400\r\n\r\n" + first + b"\r\n"
    second = _frame("myboundary", b"Heartbeat", "text/plain")
    parts = parser.feed(lying + second + b"--myboundary\r\n")
    assert [p.body for p in parts] == [first, b"Heartbeat"]
    assert parser.stats.length_mismatch == 1


def test_a_part_without_headers_and_a_quoted_boundary() -> None:
    assert boundary_of('multipart/x-mixed-replace; boundary="myboundary"') == "myboundary"
    assert boundary_of("multipart/mixed; boundary=--boundary") == "boundary"
    assert boundary_of("multipart/mixed") is None
    parser = MultipartParser("myboundary")
    parts = parser.feed(b"--myboundary\r\nCode=VideoLoss;action=Start;index=0\r\n--myboundary\r\n")
    assert [p.body for p in parts] == [b"Code=VideoLoss;action=Start;index=0"]
    assert parts[0].headers == {}


def test_header_blocks_seen_before_give_the_same_parts() -> None:
    """A camera heads every part with the same two headers: the parser reads a block it has
    seen once by looking it up, and the parts are the ones the block gives when read."""
    heartbeat = _frame("boundary", camera_heartbeat().encode(), 'application/xml; charset="UTF-8"')
    alert = camera_alert("VMD", post_count=12).encode()
    event = _frame("boundary", alert, 'application/xml; charset="UTF-8"')
    parser = MultipartParser("boundary")
    parts: list[Part] = []
    for data in (heartbeat, heartbeat, event, heartbeat * 3, event + heartbeat, event):
        parts += parser.feed(data)
    assert [p.body for p in parts] == [camera_heartbeat().encode()] * 2 + [alert] + [
        camera_heartbeat().encode()
    ] * 3 + [alert, camera_heartbeat().encode(), alert]
    assert {p.headers["content-length"] for p in parts} == {
        str(len(camera_heartbeat())),
        str(len(alert)),
    }
    assert all(p.content_type == "application/xml" for p in parts)
    assert (parser.buffered, parser.stats.parts, parser.stats.garbage) == (0, 9, 0)
    # The same headers over a body whose declared length runs past the next boundary: the
    # boundary ends it, as when the block is read afresh.
    short = b"Code=VideoMotion;action=Start;index=0"
    lying = _frame("boundary", short, 'application/xml; charset="UTF-8"').replace(
        f"Content-Length: {len(short)}".encode(), f"Content-Length: {len(alert)}".encode()
    )
    parts = parser.feed(lying + heartbeat)
    assert [p.body for p in parts] == [short, camera_heartbeat().encode()]
    assert parser.stats.length_mismatch == 1
    # A length running just into the next boundary line, read afresh and looked up.
    overrun = _frame("myboundary", short, "text/plain").replace(
        f"Content-Length: {len(short)}".encode(), f"Content-Length: {len(short) + 3}".encode()
    )
    beat = _frame("myboundary", b"Heartbeat", "text/plain")
    dahua = MultipartParser("myboundary")
    parts = dahua.feed(overrun + beat) + dahua.feed(overrun + beat)
    assert [p.body for p in parts] == [short, b"Heartbeat"] * 2
    assert dahua.stats.length_mismatch == 2
    # ... and a part of that length not whole yet waits for the rest.
    assert parser.feed(event[:-30]) == []
    assert [p.body for p in parser.feed(event[-30:])] == [alert]


def test_parsers_share_header_blocks_only_where_they_read_them_alike() -> None:
    body = b"<x>" + b"A" * 1000 + b"</x>"
    frame = _frame("boundary", body, "application/xml")
    roomy = MultipartParser("boundary", max_part=4096)
    assert [p.body for p in roomy.feed(frame + frame)] == [body, body]
    # The block said 1,008 bytes: too many for a parser that takes 512 at most.
    tight = MultipartParser("boundary", max_part=512)
    assert tight.feed(frame + frame + b"--boundary\r\n") == []
    assert tight.stats.oversized == 2
    pictures = MultipartParser("boundary", max_part=4096, skip_types=("application/",))
    assert pictures.feed(frame) == []
    assert pictures.stats.skipped == 1
    other = MultipartParser("myboundary", max_part=4096)
    assert [p.body for p in other.feed(frame.replace(b"--boundary", b"--myboundary"))] == [body]
    again = MultipartParser("boundary", max_part=4096)
    assert [p.body for p in again.feed(frame)] == [body]


def test_a_length_that_is_no_number_is_no_length() -> None:
    parser = MultipartParser("myboundary")
    data = "--myboundary\r\nContent-Length: \u00b2\r\n\r\nHeartbeat\r\n--myboundary\r\n"
    parts = parser.feed(data.encode("latin-1"))
    assert [p.body for p in parts] == [b"Heartbeat"]
    assert parts[0].headers == {"content-length": "\u00b2"}


def test_a_part_too_large_is_refused_even_when_it_comes_whole() -> None:
    parser = MultipartParser("boundary", max_part=1024)
    big = _frame("boundary", b"<x>" + b"A" * 5000 + b"</x>", "application/xml", length=False)
    small = _frame("boundary", camera_alert("VMD").encode(), "application/xml")
    parts = parser.feed(big + small)
    assert [p.body for p in parts] == [camera_alert("VMD").encode()]
    assert parser.stats.oversized == 1


_POOL = [
    _frame("boundary", camera_heartbeat().encode(), 'application/xml; charset="UTF-8"'),
    _frame("boundary", camera_alert("VMD").encode(), 'application/xml; charset="UTF-8"'),
    _frame("boundary", camera_alert("VMD", "inactive").encode(), "application/xml", length=False),
    _frame("boundary", acs_event(5, 75, 9).encode(), "application/json"),
    b"--boundary\nContent-Type: application/xml\nContent-Length: 9\n\nHeartbeat\n",
    b"\r\n",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(_POOL))), min_size=1, max_size=12),
    st.lists(st.integers(min_value=1, max_value=3), min_size=12, max_size=12),
    st.lists(st.integers(min_value=1, max_value=2000), max_size=6),
)
def test_well_formed_streams_give_the_same_parts_however_they_are_read(
    picks: list[int], groups: list[int], cuts: list[int]
) -> None:
    """Parts one to a read (as cameras send them), a few to a read, cut anywhere: the same
    parts, headers and all."""
    frames = [_POOL[i] for i in picks]
    data = b"".join(frames) + b"--boundary\r\n"

    def parts_of(chunks: list[bytes]) -> list[tuple[dict[str, str], bytes]]:
        parser = MultipartParser("boundary")
        out = [(dict(p.headers), p.body) for c in chunks for p in parser.feed(c)]
        assert parser.stats.garbage == parser.stats.length_mismatch == 0
        return out

    expected = parts_of([data])
    assert len(expected) == sum(1 for f in frames if f != b"\r\n")
    grouped, at = [], 0
    for n in groups:
        grouped.append(b"".join(frames[at : at + n]))
        at += n
    assert parts_of([*grouped, b"".join(frames[at:]), b"--boundary\r\n"]) == expected
    points = sorted({c % len(data) for c in cuts} - {0})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert parts_of(pieces) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_anything_at_all_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = MultipartParser("boundary", max_part=512, max_headers=256)
    for chunk in chunks:
        for part in parser.feed(chunk):
            assert len(part.body) <= 512
            with contextlib.suppress(decode.DecodeError):
                decode.hikvision(part.body)
        assert parser.buffered <= 512 + 300 + 16


_XML_NAMES = st.sampled_from(["eventType", "channelID", "a.b-c_1", "_x", "dateTime"])
_XML_TEXT = st.lists(st.sampled_from(["a", "7", " ", "\n", "\t", ">", "\xa0", "中"]), max_size=6)
# One thing at a time that a camera does not write, or that XML refuses or reads otherwise.
_XML_ODDITIES = [
    "&amp;",
    "&",
    "\r",
    "a\rb",
    "]]>",
    "\x01",
    "\x0c",
    "\ufffe",
    "<b>1</b>",
    "<!-- c -->",
    "<![CDATA[x]]>",
    "<b/>",
]


_XML_ROOT_ATTRIBUTES = [
    "",
    ' version="2.0"',
    ' version="2.0" xmlns="urn:x"',
    ' xmlns="urn:x" version="2.0"',
    ' version="2.0" version="2.0"',
    " version='2.0'",
    ' x:a="1"',
    ' version="a"b"',
    ' version="\r"',
]


def _odd_elements(name: str, before: str, oddity: str, after: str) -> list[str]:
    return [
        f"<{name}>{before}{oddity}{after}</{name}>",
        f"<{name}>{before}{after}</eventType>",
        f"<x:{name}>{before}{after}</x:{name}>",
        f"<{name}/>",
        f"<{name} a='1'>{before}{after}</{name}>",
        f"<1{name}>{before}{after}</1{name}>",
    ]


def _read_as_elementtree_reads(alert: str) -> None:
    body = alert.encode()
    flat = decode._flat_alert(body)
    try:
        tree = decode._element(ET.fromstring(body))
    except ET.ParseError:
        assert flat is None, alert
        return
    if flat is not None:
        assert flat == tree, alert


@st.composite
def _alerts(draw: st.DrawFn) -> str:
    """An EventNotificationAlert as cameras write it, or with one oddity in an element."""
    attributes = draw(st.sampled_from(_XML_ROOT_ATTRIBUTES))
    children = [
        (name, "".join(text)) for name, text in draw(st.lists(st.tuples(_XML_NAMES, _XML_TEXT)))
    ]
    space = draw(st.sampled_from(["", "\n", "\r\n  "]))
    elements = [f"<{name}>{text}</{name}>" for name, text in children]
    if elements and draw(st.booleans()):
        at = draw(st.integers(0, len(elements) - 1))
        name, text = children[at]
        oddity = draw(st.sampled_from(_XML_ODDITIES))
        cut = draw(st.integers(0, len(text)))
        elements[at] = draw(st.sampled_from(_odd_elements(name, text[:cut], oddity, text[cut:])))
    return (
        f"<EventNotificationAlert{attributes}>{space}"
        + space.join(elements)
        + f"{space}</EventNotificationAlert>"
    )


@settings(max_examples=500, deadline=None)
@given(_alerts())
def test_flat_alerts_read_as_elementtree_reads_them(alert: str) -> None:
    """The regular expressions read a camera's flat alert; whatever they take must read as
    ElementTree reads it, and what ElementTree refuses they must leave to it."""
    _read_as_elementtree_reads(alert)


def test_every_oddity_in_an_alert_reads_as_elementtree_reads_it() -> None:
    for attributes in _XML_ROOT_ATTRIBUTES:
        for oddity in ["", *_XML_ODDITIES]:
            for element in _odd_elements("eventState", "a", oddity, "b"):
                _read_as_elementtree_reads(
                    f"<EventNotificationAlert{attributes}>\n<eventType>VMD</eventType>"
                    f"{element}</EventNotificationAlert>"
                )


def test_camera_alerts_take_the_flat_path() -> None:
    for alert in (camera_alert("VMD"), camera_heartbeat(), camera_alert("linedetection")):
        body = alert.encode()
        assert decode._flat_alert(body) == decode._element(ET.fromstring(body))
        assert decode.hikvision(body + b"\r\n" + body) == [decode._flat_alert(body)] * 2


def test_bodies_that_are_not_the_vendors_are_refused_by_the_decoders() -> None:
    for body in (b"<html>login</html>", b"{not json", b"\xff\xfe", b"<EventNotificationAlert>"):
        with pytest.raises(decode.DecodeError):
            decode.hikvision(body)
    for body in (b"Welcome", b"Code=X;data={broken"):
        with pytest.raises(decode.DecodeError):
            decode.dahua(body)
    assert decode.hikvision(b"\r\n") == []
    assert decode.dahua(b"Heartbeat") == [{"Code": "Heartbeat"}]


# --- mapping -----------------------------------------------------------------------------


def _now_iso() -> str:
    return datetime.now(SHANGHAI).replace(microsecond=0).isoformat()


def test_camera_events_become_the_mqtt_profiles_points_with_the_cameras_time() -> None:
    mapper = EventMapper("cam", _profile("hikvision_isapi_camera"), SHANGHAI)
    when = _now_iso()
    arrival = int(datetime.fromisoformat(when).timestamp() * 1e9) + 2_500_000_000
    (heartbeat,) = decode.hikvision(camera_heartbeat(when).encode())
    assert mapper.is_keepalive(heartbeat)
    (loss,) = decode.hikvision(camera_alert("videoloss", when=when).encode())
    assert not mapper.is_keepalive(loss)
    (sample,) = mapper.samples(loss, arrival)
    assert sample.values == {"video_loss": True, "channel_id": "1", "arrival_lag_s": 2.5}
    assert sample.ts == arrival - 2_500_000_000
    assert mapper.samples(loss, arrival) == []  # the same alert again: a duplicate
    assert mapper.stats.duplicates == 1
    (next_post,) = decode.hikvision(camera_alert("videoloss", when=when, post_count=2).encode())
    assert len(mapper.samples(next_post, arrival)) == 1  # a new post of the same alarm


def test_channel_filter_and_channels_from_either_field() -> None:
    profile = _profile("hikvision_isapi_camera")
    mapper = EventMapper("cam2", profile, SHANGHAI, channels=[2])
    (one,) = decode.hikvision(camera_alert("VMD", channel=1, when=_now_iso()).encode())
    (two,) = decode.hikvision(camera_alert("VMD", channel=2, when=_now_iso()).encode())
    assert mapper.samples(one, 0) == []
    assert mapper.stats.filtered == 1
    assert mapper.samples(two, int(datetime.now(UTC).timestamp() * 1e9)) != []
    older = dict(two)
    del older["channelID"]
    older["dynChannelID"] = "1"
    assert mapper.channel_of(older) == 1


def test_vto_access_events_with_method_and_record_number() -> None:
    mapper = EventMapper("vto", _profile("dahua_vto"), SHANGHAI)
    now = int(datetime.now(UTC).timestamp())
    arrival = now * 1_000_000_000
    card = {"CardNo": "AB12", "Method": 1, "Status": 1, "RecNo": 7, "UTC": now, "UserID": "101"}
    (event,) = decode.dahua(dahua_event("AccessControl", data=card).encode())
    (sample,) = mapper.samples(event, arrival)
    assert sample.values == {
        "access_granted": True,
        "card_no": "AB12",
        "employee_no": "101",
        "access_method": "card",
        "record_no": 7,
    }
    assert mapper.samples(event, arrival + 10) == []  # RecNo and UTC seen: sent again
    remote = {**card, "Method": 4, "RecNo": 8, "CardNo": ""}
    (event,) = decode.dahua(dahua_event("AccessControl", data=remote).encode())
    values = [s.values for s in mapper.samples(event, arrival)]
    assert {"access_method": "remote"}.items() <= values[0].items()
    assert values[1] == {"remote_door_open": True, "record_no": 8}
    refused = {"CardNo": "FFFF", "Method": 1, "Status": 0, "RecNo": 9, "UTC": now}
    (event,) = decode.dahua(dahua_event("AccessControl", data=refused).encode())
    (sample,) = mapper.samples(event, arrival)
    assert sample.values == {"invalid_card": True, "card_no": "FFFF", "record_no": 9}
    odd = {**card, "Method": 99, "RecNo": 10}
    (event,) = decode.dahua(dahua_event("AccessControl", data=odd).encode())
    (sample,) = mapper.samples(event, arrival)
    assert sample.bad == {"access_method": "unmapped"}
    assert sample.values["access_granted"] is True


def test_an_event_no_mapping_takes_is_counted_not_guessed() -> None:
    mapper = EventMapper("vto", _profile("dahua_vto"), SHANGHAI)
    (event,) = decode.dahua(dahua_event("NTPAdjustTime", data={"result": True}).encode())
    assert mapper.samples(event, 0) == []
    assert mapper.stats.unmatched == 1


# --- digest authentication, against a device that checks every answer -------------------


def test_parse_challenges_of_several_schemes() -> None:
    header = 'Digest realm="a \\"b\\"", nonce="n1", qop="auth,auth-int", algorithm=MD5'
    (digest, basic) = parse_challenges([header + ', Basic realm="x"'])
    assert digest.scheme == "digest"
    assert digest.params == {
        "realm": 'a "b"',
        "nonce": "n1",
        "qop": "auth,auth-int",
        "algorithm": "MD5",
    }
    assert basic.scheme == "basic"


def test_the_rfc_2617_example() -> None:
    auth = DigestAuth("Mufasa", "Circle Of Life", cnonce=lambda: "0a4f113b")
    auth.challenged(
        [
            'Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        ]
    )
    header = auth.header("GET", "/dir/index.html")
    assert header is not None
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_a_challenge_that_cannot_be_answered() -> None:
    auth = DigestAuth("u", "p")
    with pytest.raises(ChallengeError, match="Digest is needed"):
        auth.challenged(["Negotiate", 'Digest realm="r", nonce="n", algorithm=SHA-512-256'])


async def _get(session: aiohttp.ClientSession, port: int, auth: DigestAuth) -> int:
    path = "/ISAPI/Event/notification/alertStream"
    for _ in range(3):
        headers = {}
        answer = auth.header("GET", path)
        if answer:
            headers["Authorization"] = answer
        async with session.get(URL(f"http://127.0.0.1:{port}{path}"), headers=headers) as r:
            if r.status != 401:
                return r.status
            auth.challenged(r.headers.getall("WWW-Authenticate"))
    return 401


@pytest.mark.parametrize(
    ("algorithm", "qop"), [("MD5", True), ("MD5-sess", True), ("SHA-256", True), ("MD5", False)]
)
async def test_digest_answers_the_device_accepts(algorithm: str, qop: bool) -> None:
    async with StreamDevice.serve("hikvision", algorithm=algorithm, qop=qop) as device:
        auth = DigestAuth("guanjia", "s3cret")
        async with aiohttp.ClientSession() as session:
            assert await _get(session, device.port, auth) == 200
            device.drop()
            await asyncio.sleep(0)
            assert await _get(session, device.port, auth) == 200
            device.drop()
    # The second stream was answered at once, with the next nonce count: one challenge.
    assert device.challenges == 1
    assert device.refused == 0
    assert device.streams == 2


async def test_a_stale_nonce_is_answered_again_and_a_wrong_password_is_refused() -> None:
    async with StreamDevice.serve("hikvision") as device:
        conn = HttpEventsConnection(
            host="127.0.0.1", port=device.port, username="guanjia", password="${X}"
        )
        member = Member("cam", EventMapper("cam", _profile("hikvision_isapi_camera"), SHANGHAI))
        stream = EventStream(
            conn,
            "hikvision_isapi",
            "s3cret",
            [member],
            lambda s: None,
            max_part=65536,
            problems=member.mapper.stats.problems,
        )
        async with aiohttp.ClientSession() as session:
            response = await stream._request(session)
            response.close()
            device.stale_next = True
            response = await stream._request(session)  # stale: a new nonce, not a refusal
            response.close()
            assert device.streams == 2
            wrong = EventStream(
                conn,
                "hikvision_isapi",
                "wrong",
                [member],
                lambda s: None,
                max_part=65536,
                problems=member.mapper.stats.problems,
            )
            with pytest.raises(AuthRefused, match="refuses user 'guanjia'"):
                await wrong._request(session)
    assert device.refused == 1  # asked once, refused once: no retry storm


def test_reconnect_waits_are_spread_and_capped() -> None:
    rng = random.Random(1)
    first = [backoff(1, 20.0, rng) for _ in range(1000)]
    assert min(first) >= 1.0
    assert max(first) <= 5.0
    # A thousand devices that lost their stream at once call back over seconds, not at once.
    per_second = [sum(1 for d in first if s <= d < s + 1) for s in range(6)]
    assert max(per_second) < 400
    later = [backoff(n, 20.0, rng) for n in range(2, 40) for _ in range(50)]
    assert max(later) <= 20.0
    assert min(later) >= 2.0
