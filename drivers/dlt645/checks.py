"""The DL/T 645 driver's checks of a site's meters, before anything connects: points the
profile has, one meter per address on a line, one set of serial settings per port, discovery
only where a meter is alone on its line, and no line another driver uses too."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from core.text import suggest
from drivers.dlt645.config import RtuConnection, TcpConnection
from drivers.dlt645.line import LineKey, line_key
from drivers.dlt645.profile import Dlt645Profile

Loc = tuple[str | int, ...]
Report = Callable[[Loc, str], None]


def _path_of(conn: Any) -> LineKey | None:
    """The physical path another driver's connection occupies, read from its fields: a local
    serial port (`transport: rtu`, `port`), or a TCP endpoint (`host`, `port`)."""
    port = getattr(conn, "port", None)
    if getattr(conn, "transport", None) == "rtu" and isinstance(port, str):
        return ("rtu", port)
    host = getattr(conn, "host", None)
    if isinstance(host, str) and isinstance(port, int):
        return ("tcp", f"{host}:{port}")
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
        self._other_drivers(key, loc, report, site)

    def _other_drivers(self, key: LineKey, loc: Loc, report: Report, site: Any) -> None:
        """A line is one owner's: two drivers each opening it would interleave their bytes."""
        for i, device in enumerate(getattr(site, "devices", None) or []):
            if not device.enabled:
                continue
            for driver, conn in device.connections().items():
                if driver != "dlt645" and _path_of(conn) == key:
                    report(
                        (*loc, "dlt645"),
                        f"{key[1]} is also used by the {driver} device devices[{i}] "
                        f"({device.id}); the gateway cannot share one line between two "
                        "drivers yet: put the DL/T 645 meters on their own port or serial "
                        "server",
                    )
                    return
