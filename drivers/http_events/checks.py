"""The HTTP event-stream driver's checks of a site's devices, before anything connects: the
points the profile has, a vendor that matches the profile, a password reference this driver can
resolve, TLS settings that apply, channels only where the profile knows channels, and devices
that share one stream (one address and user) agreeing on it without taking the same channel
twice."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.text import suggest
from drivers.http_events.config import HttpEventsConnection, StreamKey, stream_key
from drivers.http_events.describe import describe
from drivers.http_events.profile import HttpEventsProfile

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


@dataclass(frozen=True, slots=True)
class _Claim:
    index: int  # the device's position in the site file's devices
    device: str
    conn: HttpEventsConnection
    protocol: str


class HttpEventsChecks:
    """One per site file: the streams the devices checked so far use."""

    def __init__(self) -> None:
        self._streams: dict[StreamKey, list[_Claim]] = {}
        self._listeners: dict[int, tuple[str, int, str]] = {}  # port -> bind, index, device
        self._senders: dict[tuple[int, str], list[_Claim]] = {}  # (port, host) -> devices

    def check(
        self,
        device_id: str,
        conn: HttpEventsConnection,
        profile: HttpEventsProfile,
        points: Sequence[str] | None,
        _poll: float,
        loc: Loc,
        report: Report,
        _site: Any,
    ) -> None:
        at = (*loc, "http_events")
        names = list(describe(profile))
        for j, point in enumerate(points or []):
            if point not in names:
                report(
                    (*loc, "points", j),
                    f"profile {profile.name} has no point '{point}'" + suggest(point, names),
                )
        if conn.vendor is not None and conn.vendor != profile.vendor:
            report(
                (*at, "vendor"),
                f"profile {profile.name} is a {profile.vendor} profile ({profile.protocol}); "
                f"write vendor: {profile.vendor}, or choose a {conn.vendor} profile",
            )
        if not conn.https:
            if conn.ca_file is not None:
                report((*at, "ca_file"), "ca_file applies with https: true; add it or remove this")
            if not conn.tls_verify:
                report((*at, "tls_verify"), "tls_verify applies with https: true; remove it")
        if conn.channels is not None and not profile.channel:
            report(
                (*at, "channels"),
                f"profile {profile.name} has no channels to filter; remove channels",
            )
        if conn.push is not None:
            self._push(device_id, conn, profile, int(loc[-1]), at, report)
            return
        self._shared(device_id, conn, profile, int(loc[-1]), at, report)

    def _push(
        self,
        device_id: str,
        conn: HttpEventsConnection,
        profile: HttpEventsProfile,
        index: int,
        at: Loc,
        report: Report,
    ) -> None:
        """A device that posts its events: a Hikvision one, without the stream's settings,
        on a listener whose port has one bind address, told apart from the other devices
        posting from its address."""
        push = conn.push
        assert push is not None
        try:
            ipaddress.ip_address(conn.host)
        except ValueError:
            report(
                (*at, "host"),
                f"{conn.host} is a name: with push the device's posts are matched by their "
                "source address; write its IP address, e.g. host: 10.0.8.61",
            )
        if profile.protocol != "hikvision_isapi":
            report(
                (*at, "push"),
                f"profile {profile.name} is a {profile.protocol} profile: push is the Hikvision "
                "HTTP host mode; remove push to read the device's event stream",
            )
        for name in ("port", "https", "ca_file", "retry_max"):
            if name in conn.model_fields_set:
                report(
                    (*at, name),
                    f"{name} applies to reading the device's stream, not to push; remove it "
                    "(the listener's port is push.port)",
                )
        bound = self._listeners.setdefault(push.port, (push.bind, index, device_id))
        if bound[0] != push.bind:
            report(
                (*at, "push", "bind"),
                f"devices[{bound[1]}] ({bound[2]}) listens on port {push.port} at {bound[0]}: "
                f"one port has one bind address; write bind: {bound[0]}",
            )
        claims = self._senders.setdefault((push.port, conn.host), [])
        for other in claims:
            first = f"devices[{other.index}] ({other.device})"
            if other.conn.push is not None and other.conn.push.device_id != push.device_id:
                continue  # told apart by their device ids
            mine, theirs = conn.channels, other.conn.channels
            if mine is None or theirs is None:
                report(
                    (*at, "channels"),
                    f"{first} posts from {conn.host} to port {push.port} too: give each device "
                    "its channels (e.g. channels: [1]) or its push.device_id",
                )
            elif both := sorted(set(mine) & set(theirs)):
                report(
                    (*at, "channels"),
                    f"channel {both[0]} of {conn.host} is taken by {first} already",
                )
            elif (other.conn.username, other.conn.password) != (conn.username, conn.password):
                report(
                    (*at, "password"),
                    f"{first} posts from {conn.host} too but with another username or "
                    "password; one device authenticates its posts one way",
                )
        claims.append(_Claim(index, device_id, conn, profile.protocol))

    def _shared(
        self,
        device_id: str,
        conn: HttpEventsConnection,
        profile: HttpEventsProfile,
        index: int,
        at: Loc,
        report: Report,
    ) -> None:
        """Devices on one stream (one address, port and user): one protocol, one password,
        one TLS setting, and each channel taken by one device only."""
        key = stream_key(conn)
        claims = self._streams.setdefault(key, [])
        where = f"{conn.host}:{conn.effective_port}"
        for other in claims:
            first = f"devices[{other.index}] ({other.device})"
            if other.protocol != profile.protocol:
                report(
                    (*at, "host"),
                    f"{first} reads {where} as {other.protocol}, this device as "
                    f"{profile.protocol}; one address speaks one protocol",
                )
                continue
            for name in ("password", "tls_verify", "ca_file", "retry_max"):
                if getattr(other.conn, name) != getattr(conn, name):
                    report(
                        (*at, name),
                        f"{first} shares the event stream of {where} with this device "
                        f"(same user) but gives another {name}; give both the same",
                    )
            mine, theirs = conn.channels, other.conn.channels
            if mine is None or theirs is None:
                report(
                    (*at, "channels"),
                    f"{first} reads {where} too: give each device its channels "
                    "(e.g. channels: [1]) so no event goes to both",
                )
            elif both := sorted(set(mine) & set(theirs)):
                report(
                    (*at, "channels"),
                    f"channel {both[0]} of {where} is taken by {first} already",
                )
        claims.append(_Claim(index, device_id, conn, profile.protocol))
