"""Simulated event-stream devices for the HTTP event-stream tests (no tests of its own).

The devices themselves are the virtual building's (simulator/streams): a `StreamDevice` is a
local aiohttp server that behaves like a Hikvision camera or access controller or a Dahua camera
or VTO, demands HTTP Digest authentication and checks every answer, and streams whatever the
test sends: whole parts in the devices' shapes (simulator/streams/payloads.py), bare newlines,
garbage, half a part followed by a cut connection, or nothing at all (a stall). What only the
tests need is here: the form-data body an ANPR camera posts to an HTTP host.
"""

from __future__ import annotations

from simulator.streams.payloads import (
    HIK_NS,
    acs_event,
    anpr_alert,
    camera_alert,
    camera_heartbeat,
    dahua_event,
    traffic_event,
)
from simulator.streams.server import StreamDevice

__all__ = [
    "HIK_NS",
    "JPEG",
    "StreamDevice",
    "acs_event",
    "anpr_alert",
    "camera_alert",
    "camera_heartbeat",
    "dahua_event",
    "form_data",
    "traffic_event",
]

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
