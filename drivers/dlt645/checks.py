"""The DL/T 645 driver's checks of a site's meters, before anything connects: points the
profile has, one meter per address on a line, one set of serial settings per port, discovery
only where a meter is alone among the line's meters, and a line shared with another driver's
devices only where turns can work: a local port (set to each driver's settings for its
turns), or a serial server's port whose one baud rate every device on it uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.text import suggest
from drivers.dlt645.config import RtuConnection, TcpConnection
from drivers.dlt645.line import LineKey, line_key
from drivers.dlt645.profile import Dlt645Profile

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


def _path_of(conn: Any) -> tuple[LineKey, int | None] | None:
    """The physical path another driver's connection occupies, read from its fields: a local
    serial port (`transport: rtu`, `port`), or a TCP endpoint (`host`, `port`), with the baud
    rate of the line behind it. A TCP endpoint without one (Modbus TCP) frames its own
    requests: it is no bare line."""
    port = getattr(conn, "port", None)
    if getattr(conn, "transport", None) == "rtu" and isinstance(port, str):
        return ("rtu", port), None
    host = getattr(conn, "host", None)
    if isinstance(host, str) and isinstance(port, int):
        baudrate = getattr(conn, "baudrate", None)
        return ("tcp", f"{host}:{port}"), baudrate if isinstance(baudrate, int) else None
    return None


class Dlt645Checks:
    """One per site file: what the meters checked so far use, to find clashes."""

    def __init__(self) -> None:
        self._addresses: dict[tuple[LineKey, str], int] = {}
        self._lines: dict[LineKey, list[tuple[int, bool]]] = {}  # (device index, discovers)
        self._serial: dict[str, tuple[int, int, str, int]] = {}

    def check(
        self,
        _device_id: str,
        conn: RtuConnection | TcpConnection,
        profile: Dlt645Profile,
        points: Sequence[str] | None,
        _poll: float,
        loc: Loc,
        report: Report,
        site: Any,
    ) -> None:
        names = [p.name for p in profile.points]
        for j, point in enumerate(points or []):
            if point not in names:
                report(
                    (*loc, "points", j),
                    f"profile {profile.name} has no point '{point}'" + suggest(point, names),
                )
        index = int(loc[-1])
        key = line_key(conn)
        if conn.address is not None:
            owner = self._addresses.setdefault((key, conn.address), index)
            if owner != index:
                report(
                    (*loc, "dlt645", "address"),
                    f"address {conn.address} on {key[1]} is already used by devices[{owner}]; "
                    "every meter on a line has its own address (on its nameplate)",
                )
        on_line = self._lines.setdefault(key, [])
        discoverer = next((i for i, discovers in on_line if discovers), None)
        if conn.discover and on_line:
            report(
                (*loc, "dlt645", "discover"),
                f"{key[1]} has other meters (devices[{on_line[0][0]}]): every meter on it "
                "would answer the broadcast read-address at once; give this one its "
                '`address: "..."`',
            )
        elif discoverer is not None:
            report(
                (*loc, "dlt645"),
                f"devices[{discoverer}] finds its address by broadcast on {key[1]}, which "
                'needs it alone on the line; give it its `address: "..."` instead of '
                "`discover: true`",
            )
        on_line.append((index, conn.discover))
        if isinstance(conn, RtuConnection):
            settings = (conn.baudrate, conn.bytesize, conn.parity, conn.stopbits)
            first = self._serial.setdefault(conn.port, settings)
            if first != settings:
                report(
                    (*loc, "dlt645"),
                    f"{conn.port} is already opened with baudrate/bytesize/parity/stopbits "
                    f"{first}; all meters on one line must match",
                )
        self._other_drivers(conn, loc, report, site)

    def _other_drivers(
        self, conn: RtuConnection | TcpConnection, loc: Loc, report: Report, site: Any
    ) -> None:
        """Another driver's devices on the line take turns with the meters through the line's
        one owner (drivers/lines.py), which sets a local port to each one's settings. A serial
        server's port has one setting, and a Modbus TCP endpoint is no bare line."""
        key = line_key(conn)
        for i, device in enumerate(getattr(site, "devices", None) or []):
            if not device.enabled:
                continue
            for driver, other in device.connections().items():
                found = _path_of(other) if driver != "dlt645" else None
                if found is None or found[0] != key or isinstance(conn, RtuConnection):
                    continue
                baudrate = found[1]
                if baudrate is None:
                    report(
                        (*loc, "dlt645"),
                        f"{key[1]} is the {driver} TCP endpoint of devices[{i}] ({device.id}), "
                        "which frames its own requests; DL/T 645 meters need a transparent "
                        "serial server's port (if that device is behind the same server, give "
                        "it `transport: rtu_over_tcp`)",
                    )
                    return
                if baudrate != conn.baudrate:
                    report(
                        (*loc, "dlt645", "baudrate"),
                        f"{key[1]} is a serial server's port, which has one setting, and the "
                        f"{driver} device devices[{i}] ({device.id}) reads its line at "
                        f"{baudrate} baud, this meter at {conn.baudrate}: set the server and "
                        "every device on the line to one baud rate and parity, or put the "
                        "meters on another port of the server",
                    )
                    return
