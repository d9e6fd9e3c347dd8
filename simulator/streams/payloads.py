"""Event bodies in the devices' own shapes, one function per kind of part: Hikvision
EventNotificationAlert XML (cameras, ANPR) and JSON (access controllers), Dahua eventManager
entries (`Code=...;action=...;index=...;data={...}`), and the multipart/form-data bodies a
Hikvision device set to an HTTP host posts (the alert, then its pictures). Shaped after the
shared facts (shared/facts/devices/hikvision_isapi.yaml) and the public samples the profiles
cite; the virtual building's devices and the driver's tests both send these.
"""

from __future__ import annotations

import json

HIK_NS = "http://www.hikvision.com/ver20/XMLSchema"
ANPR_MAC = "44:a6:42:f3:2a:d7"  # the DS-TCG405-E push the ANPR alert is shaped after
CAMERA_MAC = "44:19:b6:00:00:01"
FORM_BOUNDARY = "MIME_boundary"
# A JPEG's first and last bytes around filler: what the picture parts look like to a parser.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40 + b"\xff\xd9"


def camera_alert(
    event_type: str,
    state: str = "active",
    *,
    channel: int = 1,
    when: str = "2024-05-06T10:11:12+08:00",
    post_count: int = 1,
    description: str = "Motion alarm",
    mac: str = CAMERA_MAC,
) -> str:
    """One <EventNotificationAlert> as a Hikvision camera sends it (facts: camera_motion_xml)."""
    return (
        f'<EventNotificationAlert version="2.0" xmlns="{HIK_NS}">'
        "<ipAddress>192.168.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>"
        f"<macAddress>{mac}</macAddress>"
        f"<channelID>{channel}</channelID><dateTime>{when}</dateTime>"
        f"<activePostCount>{post_count}</activePostCount><eventType>{event_type}</eventType>"
        f"<eventState>{state}</eventState><eventDescription>{description}</eventDescription>"
        "</EventNotificationAlert>"
    )


def camera_heartbeat(when: str = "2024-05-06T10:11:12+08:00") -> str:
    """The idle keep-alive (facts: heartbeat_xml): videoloss, inactive, activePostCount 0."""
    return camera_alert("videoloss", "inactive", when=when, post_count=0, description="videoloss")


def anpr_alert(
    plate: str,
    *,
    speed: int = 0,
    lane: int = 1,
    direction: str = "forward",
    when: str = "2024-05-07T17:48:03.847+08:00",
    uuid: str = "a0fe72d4-3652-464a-aebd-3f9190010236",
    channel: int = 1,
    mac: str = ANPR_MAC,
) -> str:
    """An ANPR camera's alert, shaped after a DS-TCG405-E push and a DeepinView alert (see
    config/profiles/hikvision_isapi_anpr_camera.yaml): the plate, lane (`line`), direction,
    confidence, and the radar's speed inside ANPR.vehicleInfo (0 without a radar)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">\n'
        "<ipAddress>172.20.16.40</ipAddress>\n<ipv6Address>::</ipv6Address>\n"
        f"<protocol>HTTP</protocol>\n<macAddress>{mac}</macAddress>\n"
        f"<dynChannelID>{channel}</dynChannelID>\n<channelID>{channel}</channelID>\n"
        f"<dateTime>{when}</dateTime>\n<activePostCount>1</activePostCount>\n"
        "<eventType>ANPR</eventType>\n<eventState>active</eventState>\n"
        "<eventDescription>ANPR</eventDescription>\n<channelName>GATE IN</channelName>\n"
        "<deviceID>88</deviceID>\n"
        f"<ANPR>\n<country>3</country>\n<licensePlate>{plate}</licensePlate>\n"
        f"<line>{lane}</line>\n<direction>{direction}</direction>\n"
        "<confidenceLevel>98</confidenceLevel>\n<plateType>unknown</plateType>\n"
        "<plateColor>blue</plateColor>\n<speedLimit>0</speedLimit>\n"
        "<illegalInfo>\n<illegalCode>0</illegalCode>\n<illegalName>Normal</illegalName>\n"
        "</illegalInfo>\n<vehicleType>SUVMPV</vehicleType>\n"
        "<vehicleInfo>\n<index>0</index>\n<vehicleType>1</vehicleType>\n"
        f"<colorDepth>0</colorDepth>\n<color>white</color>\n<speed>{speed}</speed>\n"
        "<length>0</length>\n</vehicleInfo>\n"
        "<pictureInfoList>\n<pictureInfo>\n<fileName>detectionPicture.jpg</fileName>\n"
        "<type>detectionPicture</type>\n</pictureInfo>\n<pictureInfo>\n"
        "<fileName>licensePlatePicture.jpg</fileName>\n<type>licensePlatePicture</type>\n"
        "</pictureInfo>\n</pictureInfoList>\n"
        f"<originalLicensePlate>{plate}</originalLicensePlate>\n</ANPR>\n"
        f"<UUID>{uuid}</UUID>\n<picNum>2</picNum>\n"
        "</EventNotificationAlert>\n"
    )


def traffic_event(
    code: str,
    plate: str,
    *,
    speed: int = 0,
    lane: int = 1,
    event_id: int = 516,
    real_utc: int = 1706600095,
    index: int = 0,
) -> str:
    """A Dahua ITC camera's vehicle, shaped after a TrafficJunction event (see
    config/profiles/dahua_traffic_camera.yaml): `UTC` is the camera's local time as epoch
    seconds (7 h ahead here, as in the sample), RealUTC the true time."""
    data = {
        "Action": "Pulse",
        "Class": "Traffic",
        "Code": code,
        "CountInGroup": 1,
        "EventID": event_id,
        "GroupID": 175706653,
        "Lane": lane,
        "LocaleTime": "2024-01-30 14:34:55",
        "Name": "TrafficTollGate0",
        "RealUTC": real_utc,
        "UTC": real_utc + 7 * 3600,
        "UTCMS": 305,
        "TrafficCar": {
            "CountInGroup": 1,
            "Direction": 0,
            "Event": code,
            "Lane": lane,
            "LowerSpeedLimit": 60,
            "PlateColor": "Blue",
            "PlateNumber": plate,
            "PlateType": "Normal",
            "Speed": speed,
            "UTC": real_utc + 7 * 3600,
            "UpperSpeedLimit": 70,
            "VehicleColor": "White",
            "VehicleSize": "Light-duty",
            "ViolationName": "ANPR",
        },
    }
    return dahua_event(code, "Pulse", index, data)


def acs_event(
    major: int,
    minor: int,
    serial: int,
    *,
    when: str = "2026-08-09T10:00:00+08:00",
    door: int = 1,
    card: str = "",
    employee: str = "",
) -> str:
    """An access controller's alert (facts: acs_alert_json_shape)."""
    inner: dict[str, object] = {
        "deviceName": "Entrance",
        "majorEventType": major,
        "subEventType": minor,
        "doorNo": door,
        "serialNo": serial,
        "currentVerifyMode": "cardOrFaceOrFp",
        "currentEvent": True,
    }
    if card:
        inner["cardNo"] = card
    if employee:
        inner["employeeNoString"] = employee
    return json.dumps(
        {
            "ipAddress": "192.168.1.64",
            "portNo": 80,
            "protocol": "HTTP",
            "dateTime": when,
            "activePostCount": 1,
            "eventType": "AccessControllerEvent",
            "eventState": "active",
            "eventDescription": "Access Controller Event",
            "AccessControllerEvent": inner,
        }
    )


def dahua_event(code: str, action: str = "Pulse", index: int = 0, data: object = None) -> str:
    """One eventManager entry, `data` as a multi-line JSON object the way Dahua writes it."""
    text = f"Code={code};action={action};index={index}"
    if data is not None:
        text += ";data=" + json.dumps(data, indent=3, separators=(",", " : "))
    return text


def form_data(
    xml: str | bytes, pictures: int = 2, boundary: str = FORM_BOUNDARY
) -> tuple[str, bytes]:
    """(content type, body) of an alert as an ANPR camera posts it to an HTTP host: a
    multipart/form-data body with the alert's XML (or JSON) part, then its pictures (the
    `pictureInfoList` of the alert: detection, then plate), closed by the final delimiter."""
    data = xml.encode() if isinstance(xml, str) else xml
    kind = "application/json" if data.lstrip().startswith(b"{") else "text/xml"
    name = "anpr.json" if kind == "application/json" else "anpr.xml"
    parts: list[_Part] = [(name, name, kind, data)]
    for i, picture in enumerate(["detectionPicture.jpg", "licensePlatePicture.jpg"][:pictures]):
        parts.append((picture, picture, "image/jpeg", JPEG + b"\x00" * i))
    return _form(parts, boundary)


def acs_form_data(
    alert: str | bytes, pictures: int = 0, boundary: str = FORM_BOUNDARY
) -> tuple[str, bytes]:
    """(content type, body) of an access controller's alert as it posts it to an HTTP host:
    the JSON as the form field `event_log`, then its captures (`picturesNumber` of them) as
    `Picture` (the field names public receivers of face terminals' posts read)."""
    data = alert.encode() if isinstance(alert, str) else alert
    parts: list[_Part] = [("event_log", None, "application/json", data)]
    parts += [("Picture", "Picture.jpg", "image/jpeg", JPEG)] * pictures
    return _form(parts, boundary)


# A form field: its name, file name (None: a plain field), content type and bytes.
_Part = tuple[str, str | None, str, bytes]


def _form(parts: list[_Part], boundary: str) -> tuple[str, bytes]:
    body = b""
    for name, filename, kind, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        body += head.encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body
