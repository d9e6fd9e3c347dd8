"""One event stream: a long GET to a device, authenticated, read part by part for as long as
the device sends, opened again when it ends.

Several site devices may share one stream (the cameras of one recorder, each with its own
`channels:`): the stream is one connection per device address and user, and each event goes
to every device whose channel filter takes it.

Reconnecting: the first attempt after a stream ends waits 1-5 s, each failure doubles the
window up to `retry_max` (20 s by default), and every wait is drawn at random within its
window: when a switch reboots under a thousand cameras, their handshakes spread over seconds
instead of arriving in the same one. A stream that ran a minute starts over at the first
window. A device that refuses the password is asked again only every 5 minutes: Hikvision
locks an address out after a few failed logins, and hammering it would keep the lock on.

Silence: where the profile has keep-alives (a Hikvision camera's `videoloss inactive`, a
Dahua `Heartbeat`), a stream that sends no byte for `missed` intervals is judged dead: its
devices go offline and it is opened again. Where it has none (an access controller speaks only
when something happens), TCP keep-alives find a dead connection, and the devices are offline
once their stream has been down for a minute. A reconnect within those allowances is not an
outage: the devices stay online.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from core.once import ProblemCounter
from core.types import Sample
from drivers.http_events import catch_up, decode
from drivers.http_events.config import HttpEventsConnection
from drivers.http_events.digest import ChallengeError, DigestAuth
from drivers.http_events.mapper import EventMapper
from drivers.http_events.multipart import MultipartParser, PartStats, boundary_of
from drivers.mqtt.ingest import AVAILABLE

log = logging.getLogger("guanjia.http_events")


HIKVISION_PATHS = ("/ISAPI/Event/notification/alertStream", "/Event/notification/alertStream")
DEFAULT_BOUNDARY = {"hikvision_isapi": "boundary", "dahua_events": "myboundary"}
REQUEST_TIMEOUT = 10.0  # connect, authenticate and get the response headers
FIRST_WINDOW = 5.0  # the first reconnect waits up to this long
STABLE = 60.0  # a stream that ran this long starts the backoff over
AUTH_RETRY = 300.0  # a refused password is tried again this often
DOWN_GRACE = 60.0  # without keep-alives: offline after the stream is down this long
TCP_KEEPALIVE = (30, 10, 3)  # idle, interval, probes: a dead peer found in about a minute


def backoff(failures: int, cap: float, rng: random.Random) -> float:
    """The wait before the next attempt after `failures` failures in a row (1 or more)."""
    window = min(cap, FIRST_WINDOW * 2 ** min(failures - 1, 30))
    return rng.uniform(window / 5, window)


class StreamError(Exception):
    """The device answered, but not with an event stream."""


class AuthRefused(StreamError):
    """The device refused the user name or password."""


@dataclass
class Member:
    """A site device on a stream."""

    device: str
    mapper: EventMapper
    online: bool | None = None


@dataclass
class StreamStats:
    connects: int = 0  # streams established
    attempts: int = 0  # connection attempts
    failures: int = 0  # attempts that failed
    disconnects: int = 0  # established streams that ended
    silent: int = 0  # streams judged silent (no byte for the keep-alive allowance)
    auth_refused: int = 0
    bytes: int = 0
    parts: int = 0
    events: int = 0
    keepalives: int = 0
    undecodable: int = 0  # parts that are not the vendor's XML, JSON or text
    catch_ups: int = 0  # event searches after a reconnect (access controllers)
    caught_up: int = 0  # records those searches brought (the stream's own ones included)
    catch_up_failures: int = 0
    parser: PartStats = field(default_factory=PartStats)


def _ssl(conn: HttpEventsConnection) -> ssl.SSLContext | bool | None:
    if not conn.https:
        return None
    if not conn.tls_verify:
        return False
    return ssl.create_default_context(cafile=conn.ca_file)


def _tcp_keepalive(transport: Any) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle, interval, count = TCP_KEEPALIVE
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def _keepalive_signature(protocol: str, members: Sequence[Member]) -> tuple[bytes, ...] | None:
    """`<eventType>videoloss</eventType>`, ...: a Hikvision keep-alive's elements, when every
    device on the stream has the same keep-alive of plain top-level text values."""
    if protocol != "hikvision_isapi" or not members:
        return None
    matches = {
        tuple(m.mapper.profile.keepalive.match.items()) if m.mapper.profile.keepalive else ()
        for m in members
    }
    if len(matches) != 1:
        return None
    (match,) = matches
    if not match or not all(isinstance(v, str) and "." not in k for k, v in match):
        return None
    return tuple(f"<{k}>{v}</{k}>".encode() for k, v in match)


class EventStream:
    """One connection's worth of devices: connect, read, map, judge, reconnect."""

    def __init__(
        self,
        conn: HttpEventsConnection,
        protocol: str,
        password: str | None,
        members: Sequence[Member],
        emit: Callable[[Sample], None],
        *,
        max_part: int,
        problems: ProblemCounter,
        codes: Sequence[str] = ("All",),
        keepalive: float | None = None,
        allowance: float | None = None,
        setup_error: str = "",
        rng: random.Random | None = None,
        catch_up: bool = False,
    ) -> None:
        self.conn = conn
        self.protocol = protocol
        self.members = list(members)
        self.emit = emit
        self.problems = problems
        self.allowance = allowance  # silence after which the stream is dead; None: no keep-alive
        self.setup_error = setup_error  # no password, no TLS context: the stream cannot run
        self.auth = DigestAuth(conn.username or "", password or "")
        self.rng = rng or random.Random()
        self.stats = StreamStats()
        self.max_part = max_part
        self.parser = MultipartParser(
            DEFAULT_BOUNDARY[protocol], max_part=max_part, stats=self.stats.parser
        )
        self.decode = decode.hikvision if protocol == "hikvision_isapi" else decode.dahua
        scheme = "https" if conn.https else "http"
        host = f"[{conn.host}]" if ":" in conn.host else conn.host
        self.base = f"{scheme}://{host}:{conn.effective_port}"
        if protocol == "hikvision_isapi":
            self.paths: tuple[str, ...] = HIKVISION_PATHS
        else:
            query = f"action=attach&codes=[{','.join(codes)}]"
            if keepalive is not None:
                query += f"&heartbeat={max(1, round(keepalive))}"
            self.paths = (f"/cgi-bin/eventManager.cgi?{query}",)
        self.path = self.paths[0]
        self.ssl: ssl.SSLContext | bool | None = None
        try:
            self.ssl = _ssl(conn)
        except (OSError, ssl.SSLError) as exc:
            self.setup_error = self.setup_error or f"http_events.ca_file: {exc}"
        self.name = f"{self.base} ({', '.join(m.device for m in self.members)})"
        self.connected = False
        self.online: bool | None = None  # as last told to the bus, for every member alike
        started = time.monotonic()
        self.last_life = started  # the last byte (or the start, before any)
        self.down_since: float | None = started  # not streaming since; None while streaming
        self.last_error = ""
        self.refused = False  # the device refuses the credentials
        self._response: aiohttp.ClientResponse | None = None  # the open stream, if any
        self._silenced = False  # judge() closed the open stream for its silence
        self._keepalive_xml = _keepalive_signature(protocol, self.members)
        # Access controllers: after a reconnect, search the device's log from the last event
        # the stream brought (drivers/http_events/catch_up.py).
        self.catch_up = catch_up and protocol == "hikvision_isapi"
        self.last_event_time: str | None = None
        self._catching_up: asyncio.Task[None] | None = None

    # --- the connection loop -----------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession) -> None:
        failures = 0
        if self.setup_error:
            self.last_error = self.setup_error
            log.error("%s: %s; its events are not read", self.name, self.setup_error)
            self._set_online(False)
            return
        while True:
            began = time.monotonic()
            wait: float | None = None
            try:
                await self._stream(session)
                error = "the device ended the stream"
            except AuthRefused as exc:
                error = str(exc)
                self.refused = True
                self.stats.auth_refused += 1
                wait = AUTH_RETRY * self.rng.uniform(0.8, 1.2)
            except (StreamError, ChallengeError) as exc:
                error = str(exc)
            except TimeoutError:
                error = f"no answer within {REQUEST_TIMEOUT:g} s"
            except aiohttp.ClientPayloadError:
                error = "the connection was cut in the middle of a part"
            except (aiohttp.ClientError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            except Exception as exc:  # a bug here must not end the device's stream for good
                log.exception("%s: unexpected error", self.name)
                error = f"unexpected error: {exc!r}"
            if self._silenced:
                error = f"no byte for {self.allowance:g} s: the stream is silent"
            was_connected = self.connected
            self._ended(error)
            if was_connected and time.monotonic() - began >= STABLE:
                failures = 0
            failures += 1
            if wait is None:
                wait = backoff(failures, self.conn.retry_max, self.rng)
            await asyncio.sleep(wait)

    async def _stream(self, session: aiohttp.ClientSession) -> None:
        self.stats.attempts += 1
        response = await self._request(session)
        async with response:
            content_type = response.headers.get("Content-Type", "")
            if not content_type.lower().startswith("multipart/"):
                raise StreamError(
                    f"the device answered {content_type or 'without a content type'}: "
                    "not an event stream"
                )
            self.parser = MultipartParser(
                boundary_of(content_type) or DEFAULT_BOUNDARY[self.protocol],
                max_part=self.max_part,
                stats=self.stats.parser,
            )
            _tcp_keepalive(response.connection.transport if response.connection else None)
            self._connected()
            self._response = response
            if self.catch_up and self.last_event_time is not None:
                self._catching_up = asyncio.create_task(
                    self._catch_up(session, self.last_event_time), name=f"catch-up {self.name}"
                )
            try:
                while True:
                    data = await response.content.readany()
                    if not data:
                        return
                    self._received(data)
            finally:
                self._response = None
                catching_up, self._catching_up = self._catching_up, None
                if catching_up is not None and not catching_up.done():
                    catching_up.cancel()  # the next reconnect searches from the last event
                    with contextlib.suppress(asyncio.CancelledError):
                        await catching_up

    async def _catch_up(self, session: aiohttp.ClientSession, since: str) -> None:
        """What the controller logged since the last event this stream brought."""
        self.stats.catch_ups += 1
        try:
            zone = datetime.fromisoformat(since).tzinfo
            until = datetime.now(zone).isoformat(timespec="seconds")
            records = await catch_up.search(session, self.base, self.auth, self.ssl, since, until)
        except (catch_up.CatchUpError, aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            self.stats.catch_up_failures += 1
            self.problems.report(
                f"{self.base}:catch-up",
                f"{self.name}: the events logged while the stream was down could not be read "
                f"({e or type(e).__name__}); they are in the controller's own log",
            )
            return
        arrival = time.time_ns()
        for record in records:
            self.stats.caught_up += 1
            self._deliver(catch_up.alert_of(record), arrival)
        if records:
            log.info("%s: %d logged records since %s", self.name, len(records), since)

    async def _request(self, session: aiohttp.ClientSession) -> aiohttp.ClientResponse:
        """The stream's response (status 200), after answering the device's challenges."""
        fresh = False  # the last answer was to a challenge of this very attempt
        # No read timeout: judge() closes a stream that has gone silent (an aiohttp read
        # timeout would re-arm a timer for every chunk of every stream).
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
        for _ in range(4):
            headers = {"Accept": "multipart/x-mixed-replace, multipart/mixed, */*"}
            answer = self.auth.header("GET", self.path)
            if answer is not None:
                headers["Authorization"] = answer
            async with asyncio.timeout(REQUEST_TIMEOUT):
                response = await session.get(
                    URL(self.base + self.path, encoded=True),
                    headers=headers,
                    ssl=self.ssl if self.ssl is not None else True,
                    timeout=timeout,
                    allow_redirects=False,
                )
            status = response.status
            if status == 200:
                return response
            challenges = response.headers.getall("WWW-Authenticate", [])
            response.release()
            if status == 401:
                stale = self.auth.challenged(challenges)
                if answer is not None and fresh and not stale:
                    raise AuthRefused(
                        f"the device refuses user {self.conn.username!r} (HTTP 401): check "
                        "http_events.username and password, and that the user may read events"
                    )
                fresh = True
                continue
            if status == 404 and self.path != self.paths[-1]:
                self.path = self.paths[self.paths.index(self.path) + 1]
                continue
            raise StreamError(f"the device answered HTTP {status} to {self.path}")
        raise AuthRefused("the device keeps asking for credentials (HTTP 401)")

    # --- what the stream brings --------------------------------------------------------

    def _connected(self) -> None:
        self._silenced = False
        self.connected = True
        self.refused = False
        self.stats.connects += 1
        now = time.monotonic()
        self.last_life = now
        if self.down_since is not None and self.last_error:
            log.info("%s: streaming again", self.name)
        self.down_since = None
        self.last_error = ""
        self._set_online(True)

    def _received(self, data: bytes) -> None:
        self.last_life = time.monotonic()
        if self.online is not True:  # judged silent a moment ago, and the bytes came after all
            self._set_online(True)
        stats = self.stats
        stats.bytes += len(data)
        for part in self.parser.feed(data):
            stats.parts += 1
            if self._is_keepalive_xml(part.body):
                stats.keepalives += 1
                continue
            try:
                events = self.decode(part.body)
            except decode.DecodeError as exc:
                stats.undecodable += 1
                self.problems.report(
                    f"{self.base}:undecodable", f"{self.name}: a part that cannot be read ({exc})"
                )
                continue
            arrival = time.time_ns()
            for event in events:
                if not isinstance(event, dict):
                    continue
                if self._deliver(event, arrival):
                    stats.keepalives += 1
                else:
                    stats.events += 1

    def _deliver(self, event: dict[str, Any], arrival: int) -> bool:
        """Map one event to every member's Samples; True when it is a keep-alive."""
        keepalive = False
        for member in self.members:
            if member.mapper.is_keepalive(event):
                keepalive = True
                continue
            for sample in member.mapper.samples(event, arrival):
                self.emit(sample)
        if not keepalive and self.catch_up:
            when = event.get("dateTime")
            if isinstance(when, str):
                self.last_event_time = when
        return keepalive

    def _is_keepalive_xml(self, body: bytes) -> bool:
        """A camera's idle keep-alive, told without parsing its XML: one alert whose elements
        carry exactly the keep-alive's values. Most parts of an idle camera are keep-alives,
        and parsing them is most of the driver's work; anything less plain is parsed."""
        signature = self._keepalive_xml
        if signature is None:
            return False
        for element in signature:  # an event fails the first (its eventType) at once
            if element not in body:
                return False
        return body.count(b"<EventNotificationAlert") == 1

    def _ended(self, error: str) -> None:
        if self.connected:
            self.stats.disconnects += 1
            self.parser.reset()
        else:
            self.stats.failures += 1
        self.connected = False
        if self.down_since is None:
            self.down_since = time.monotonic()
        if error != self.last_error:
            log.warning("%s: %s; trying again", self.name, error)
        self.last_error = error
        self.judge()

    # --- availability ------------------------------------------------------------------

    def alive(self, now: float) -> bool:
        """Whether the devices count as online now (see the module's docstring)."""
        if self.allowance is not None:
            return now - self.last_life <= self.allowance
        return self.down_since is None or now - self.down_since <= DOWN_GRACE

    def judge(self) -> None:
        """Offline once the stream has been silent or down past its allowance; a stream open
        but silent that long is closed (and opened again by run())."""
        if self.alive(time.monotonic()):
            return
        response = self._response
        if response is not None and not self._silenced:
            self._silenced = True
            self.stats.silent += 1
            response.close()
        self._set_online(False)

    def _set_online(self, online: bool) -> None:
        self.online = online
        ts = time.time_ns()
        for member in self.members:
            if member.online is online:
                continue
            member.online = online
            if online:
                log.info("%s is online", member.device)
            else:
                log.warning("%s is offline: %s", member.device, self.last_error or "silent")
            self.emit(Sample(member.device, ts, {AVAILABLE: online}))
