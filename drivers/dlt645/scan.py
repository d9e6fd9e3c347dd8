"""Finding the DL/T 645 meters on a line (`guanjia scan --dlt645`): the broadcast read-address
(13H to AAAAAAAAAAAA), then a read of one identifier of each candidate profile at every
address that answered, through the driver's own line owner and codec.

The broadcast is the standard's way to learn the address of the one meter on a line: every
meter answers it, so on a real RS-485 line with several meters the answers collide and arrive
garbled (counted, and said). Each answer that does come through whole is taken, and every
address is then asked for data by itself, which proves it.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from pydantic import TypeAdapter, ValidationError

from drivers.dlt645.codec import (
    BROADCAST,
    READ_ADDRESS,
    Dlt645ConnectionError,
    Dlt645Error,
    Dlt645Timeout,
    ErrorAnswer,
    Frame,
    FrameError,
    address_answer,
    answers,
    read_address_request,
)
from drivers.dlt645.config import Dlt645Connection, RtuConnection, TcpConnection
from drivers.dlt645.line import FRAME_OVERHEAD, Line
from drivers.dlt645.profile import Dlt645Profile

SerialLine = RtuConnection  # for the command that prints the snippet
_LINE_URL = "tcp://HOST:PORT (a serial server) or /dev/ttyUSB1?baudrate=2400&parity=E"


class ScanError(Exception):
    """A DL/T 645 line address that does not parse: one line for the user."""


def parse_line(url: str, timeout: float) -> RtuConnection | TcpConnection:
    """``tcp://HOST:PORT`` or a serial device (``rtu:/dev/ttyUSB1`` or ``/dev/ttyUSB1``, with
    ``?baudrate=&parity=&bytesize=&stopbits=``), checked by the site file's models."""
    parts = urlsplit(url)
    query: dict[str, object] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    data: dict[str, object]
    if parts.scheme == "tcp":
        if parts.hostname is None or parts.port is None:
            raise ScanError(f"--dlt645 {url}: give the host and port; write {_LINE_URL}")
        data = {"transport": "tcp", "host": parts.hostname, "port": parts.port}
    elif parts.scheme in ("rtu", "") and (parts.path or parts.netloc):
        data = {"transport": "rtu", "port": parts.path or parts.netloc}
    else:
        raise ScanError(f"--dlt645 {url}: not a line address; write {_LINE_URL}")
    # The models want an address or discovery; a scan is discovery.
    data |= query | {"discover": True, "timeout": timeout, "retries": 0}
    try:
        conn: RtuConnection | TcpConnection = TypeAdapter(Dlt645Connection).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"][1:]) or "address"
        raise ScanError(f"--dlt645 {url}: {key}: {first['msg']}; write {_LINE_URL}") from None
    return conn


def candidates(profiles: Iterable[object]) -> list[Dlt645Profile]:
    """The profiles of this driver among all loaded ones."""
    return [p for p in profiles if isinstance(p, Dlt645Profile)]


def line_text(conn: RtuConnection | TcpConnection) -> str:
    if isinstance(conn, RtuConnection):
        return f"rtu:{conn.port}?baudrate={conn.baudrate}&parity={conn.parity}"
    return f"tcp://{conn.host}:{conn.port}"


@dataclass(slots=True)
class FoundMeter:
    address: str
    # Candidate profile -> "ok" (its first identifier read) or why not (an error answer).
    reads: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class MeterScan:
    line: str
    connection: RtuConnection | TcpConnection
    meters: list[FoundMeter] = field(default_factory=list)
    requests: int = 0
    garbled: int = 0  # broken frames during the broadcast: answers colliding, or noise
    error: str = ""


async def scan_line(
    conn: RtuConnection | TcpConnection,
    candidates: Sequence[Dlt645Profile] = (),
    timeout: float = 1.0,
) -> MeterScan:
    """One broadcast read-address (answers collected for the whole timeout, not just the
    first), then one read per candidate profile at each address found. No retries."""
    scan = MeterScan(line_text(conn), conn)
    line = Line(conn, connect_timeout=max(timeout, 2.0))
    problems: Counter[str] = Counter()
    addresses: list[str] = []

    def collect(frame: Frame) -> bool:
        if answers(frame, BROADCAST, READ_ADDRESS):
            with contextlib.suppress(Dlt645Error):
                address = address_answer(frame)
                if address not in addresses:
                    addresses.append(address)
        return False  # keep listening: every meter on the line answers the broadcast

    try:
        async with line.held():
            scan.requests += 1
            with contextlib.suppress(Dlt645Timeout):
                await line.exchange(
                    read_address_request(conn.wakeup),
                    collect,
                    timeout,
                    FRAME_OVERHEAD + 6,
                    lambda reason, _message: problems.update([reason]),
                )
        scan.garbled = sum(n for reason, n in problems.items() if reason != "unexpected_answer")
        for address in addresses:
            meter = FoundMeter(address)
            for profile in candidates:
                point = profile.points[0]
                size = point.data_format.size * (
                    1 + max(p.item for p in profile.points if p.di == point.di)
                )
                scan.requests += 1
                try:
                    await line.read(address, point.identifier, timeout, size, conn.wakeup)
                    meter.reads[profile.name] = "ok"
                except ErrorAnswer as exc:
                    meter.reads[profile.name] = f"error answer to {point.di}: {exc}"
                except Dlt645Timeout:
                    meter.reads[profile.name] = f"no answer to {point.di}"
                except FrameError as exc:
                    meter.reads[profile.name] = f"garbled answer to {point.di}: {exc}"
            scan.meters.append(meter)
    except Dlt645ConnectionError as exc:
        scan.error = str(exc)
    finally:
        line.close()
    return scan
