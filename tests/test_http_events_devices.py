"""Simulated event-stream devices for the HTTP event-stream tests (no tests of its own).

A `StreamDevice` is a local aiohttp server that behaves like a Hikvision camera or access
controller (GET /ISAPI/Event/notification/alertStream, `multipart/mixed; boundary=boundary`)
or a Dahua camera or VTO (GET /cgi-bin/eventManager.cgi?action=attach..., `multipart/
x-mixed-replace; boundary=myboundary`): it demands HTTP Digest authentication (RFC 7616, MD5,
qop=auth) and checks every answer itself, with hashlib, nonce counts that must grow and nonces
it may declare stale; then it streams whatever the test sends, to every open stream: whole
parts in the devices' shapes, bare newlines, garbage, half a part followed by a cut connection,
or nothing at all (a stall).

The part bodies are shaped after the shared facts (shared/facts/devices/hikvision_isapi.yaml:
the camera XML, the access-controller JSON) and the public Dahua samples the profiles cite.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

HIK_NS = "http://www.hikvision.com/ver20/XMLSchema"

_AUTH_PARAM = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]+)')


def camera_alert(
    event_type: str,
    state: str = "active",
    *,
    channel: int = 1,
    when: str = "2024-05-06T10:11:12+08:00",
    post_count: int = 1,
    description: str = "Motion alarm",
) -> str:
    """One <EventNotificationAlert> as a Hikvision camera sends it (facts: camera_motion_xml)."""
    return (
        f'<EventNotificationAlert version="2.0" xmlns="{HIK_NS}">'
        "<ipAddress>192.168.1.64</ipAddress><portNo>80</portNo><protocol>HTTP</protocol>"
        "<macAddress>44:19:b6:00:00:01</macAddress>"
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
) -> str:
    """An ANPR camera's alert, shaped after a DS-TCG405-E push and a DeepinView alert (see
    config/profiles/hikvision_isapi_anpr_camera.yaml): the plate, lane (`line`), direction,
    confidence, and the radar's speed inside ANPR.vehicleInfo (0 without a radar)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">\n'
        "<ipAddress>172.20.16.40</ipAddress>\n<ipv6Address>::</ipv6Address>\n"
        "<protocol>HTTP</protocol>\n<macAddress>44:a6:42:f3:2a:d7</macAddress>\n"
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


# A JPEG's first and last bytes around filler: what the picture parts look like to a parser.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40 + b"\xff\xd9"


def form_data(
    xml: str | bytes, pictures: int = 2, boundary: str = "MIME_boundary"
) -> tuple[str, bytes]:
    """(content type, body) of an alert as an ANPR camera posts it to an HTTP host: a
    multipart/form-data body with the alert's XML (or JSON) part, then its pictures, closed by
    the final delimiter."""
    data = xml.encode() if isinstance(xml, str) else xml
    kind = "application/json" if data.lstrip().startswith(b"{") else "text/xml"
    name = "anpr.json" if kind == "application/json" else "anpr.xml"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}"\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    for i, picture in enumerate(["detectionPicture.jpg", "licensePlatePicture.jpg"][:pictures]):
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{picture}"; '
                f'filename="{picture}"\r\nContent-Type: image/jpeg\r\n'
                f"Content-Length: {len(JPEG) + i}\r\n\r\n"
            ).encode()
            + JPEG
            + b"\x00" * i
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


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


@dataclass
class _Client:
    queue: asyncio.Queue[bytes | str] = field(default_factory=asyncio.Queue)


class StreamDevice:
    """One simulated device on 127.0.0.1; `async with StreamDevice.serve(...) as device`."""

    def __init__(
        self,
        vendor: str,
        *,
        username: str = "guanjia",
        password: str = "s3cret",
        algorithm: str = "MD5",
        qop: bool = True,
    ) -> None:
        self.vendor = vendor
        self.username = username
        self.password = password
        self.algorithm = algorithm
        self.qop = qop
        self.realm = "DS-2CD2143G2" if vendor == "hikvision" else "Login to 4L0AB1CPAZ12345"
        self.boundary = "boundary" if vendor == "hikvision" else "myboundary"
        self.nonces: dict[str, int] = {}  # nonce -> the highest nc answered with it
        self.stale_next = False  # the next answer's nonce is declared stale
        self.requests: list[str] = []  # request targets, in order
        self.challenges = 0  # 401s sent
        self.refused = 0  # answers with wrong credentials
        self.streams = 0  # streams opened
        self.clients: list[_Client] = []
        self.port = 0
        self._opened = asyncio.Condition()

    # --- HTTP --------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def serve(cls, vendor: str, **kwargs: object) -> AsyncIterator[StreamDevice]:
        device = cls(vendor, **kwargs)  # type: ignore[arg-type]
        app = web.Application()
        if vendor == "hikvision":
            app.router.add_get("/ISAPI/Event/notification/alertStream", device._handle)
        else:
            app.router.add_get("/cgi-bin/eventManager.cgi", device._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        device.port = runner.addresses[0][1]
        try:
            yield device
        finally:
            device.drop()
            await runner.cleanup()

    def _hash(self, text: str) -> str:
        data = text.encode()
        if self.algorithm.startswith("SHA-256"):
            return hashlib.sha256(data).hexdigest()
        return hashlib.md5(data).hexdigest()

    def _challenge(self, stale: bool = False) -> web.Response:
        self.challenges += 1
        nonce = os.urandom(12).hex()
        self.nonces[nonce] = 0
        header = f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={self.algorithm}'
        if self.qop:
            header += ', qop="auth"'
        if stale:
            header += ", stale=TRUE"
        return web.Response(status=401, headers={"WWW-Authenticate": header}, text="Unauthorized")

    def _verify(self, request: web.Request) -> str:
        """'ok', 'challenge' (no or unknown nonce), 'stale' or 'refused'."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return "challenge"
        params = {k: v.strip('"') for k, v in _AUTH_PARAM.findall(header[7:])}
        nonce = params.get("nonce", "")
        if nonce not in self.nonces:
            return "challenge"
        if self.stale_next:
            self.stale_next = False
            del self.nonces[nonce]
            return "stale"
        if params.get("uri") != request.path_qs or params.get("username") != self.username:
            return "refused"
        ha1 = self._hash(f"{self.username}:{self.realm}:{self.password}")
        if self.algorithm.endswith("-sess"):
            ha1 = self._hash(f"{ha1}:{nonce}:{params.get('cnonce', '')}")
        ha2 = self._hash(f"GET:{request.path_qs}")
        if self.qop:
            nc = int(params.get("nc", "0"), 16)
            if params.get("qop") != "auth" or nc <= self.nonces[nonce]:
                return "refused"  # a replayed or missing nonce count
            self.nonces[nonce] = nc
            want = self._hash(f"{ha1}:{nonce}:{params['nc']}:{params.get('cnonce', '')}:auth:{ha2}")
        else:
            want = self._hash(f"{ha1}:{nonce}:{ha2}")
        return "ok" if params.get("response") == want else "refused"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        verdict = self._verify(request)
        if verdict == "refused":
            self.refused += 1
        if verdict != "ok":
            return self._challenge(stale=verdict == "stale")
        kind = "mixed" if self.vendor == "hikvision" else "x-mixed-replace"
        response = web.StreamResponse(
            headers={"Content-Type": f"multipart/{kind}; boundary={self.boundary}"}
        )
        await response.prepare(request)
        client = _Client()
        self.clients.append(client)
        async with self._opened:
            self.streams += 1
            self._opened.notify_all()
        try:
            while True:
                item = await client.queue.get()
                if item == "cut":
                    if request.transport is not None:
                        request.transport.abort()
                    break
                if item == "end":
                    break
                assert isinstance(item, bytes)
                await response.write(item)
        finally:
            if client in self.clients:
                self.clients.remove(client)
        return response

    # --- what the test sends -----------------------------------------------------------

    def part(self, body: str | bytes, content_type: str = "", *, length: bool = True) -> bytes:
        """One whole part, boundary first, as the vendor frames it."""
        data = body.encode() if isinstance(body, str) else body
        kind = content_type or (
            'application/xml; charset="UTF-8"'
            if data.startswith(b"<")
            else "application/json"
            if data.startswith(b"{")
            else "text/plain"
        )
        head = f"--{self.boundary}\r\nContent-Type: {kind}\r\n"
        if length:
            head += f"Content-Length: {len(data)}\r\n"
        return head.encode() + b"\r\n" + data + b"\r\n"

    def send(self, data: bytes) -> None:
        for client in list(self.clients):
            client.queue.put_nowait(data)

    def send_part(self, body: str | bytes, content_type: str = "") -> None:
        self.send(self.part(body, content_type))

    def cut(self, half_part: bytes = b"") -> None:
        """Send the start of a part (if any), then drop every connection mid-stream."""
        for client in list(self.clients):
            if half_part:
                client.queue.put_nowait(half_part)
            client.queue.put_nowait("cut")

    def drop(self) -> None:
        for client in list(self.clients):
            client.queue.put_nowait("cut")

    async def wait_streams(self, count: int, timeout: float = 20.0) -> None:
        """Until `count` streams have been opened in all (and one is open now)."""
        async with asyncio.timeout(timeout), self._opened:
            await self._opened.wait_for(lambda: self.streams >= count and bool(self.clients))
