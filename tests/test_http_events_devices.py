"""Simulated event-stream devices for the HTTP event-stream tests (no tests of its own).

The devices themselves are the virtual building's (simulator/streams): a `StreamDevice` is a
local aiohttp server that behaves like a Hikvision camera or access controller or a Dahua camera
or VTO, demands HTTP Digest authentication and checks every answer, and streams whatever the
test sends: whole parts in the devices' shapes (simulator/streams/payloads.py, which also
shapes the form-data body an ANPR camera posts to an HTTP host), bare newlines, garbage, half a
part followed by a cut connection, or nothing at all (a stall).
"""

from __future__ import annotations

from simulator.streams.payloads import (
    HIK_NS,
    JPEG,
    acs_event,
    anpr_alert,
    camera_alert,
    camera_heartbeat,
    dahua_event,
    form_data,
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
