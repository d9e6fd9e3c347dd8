"""HTTP host push: devices post their events to a listener on the gateway (Hikvision "HTTP
listening", `PUT /ISAPI/Event/notification/httpHosts`) instead of the gateway holding their
alertStream open. Many ANPR cameras are set up this way, and a camera behind a NAT can only
push.

One listener per bind address and port, shared by every device the site file points at it.
A post is taken from whichever path the device was given (`/`, `/guanjia`, ...), with POST or
PUT, as XML, JSON, or multipart (form-data or mixed) with the alert's XML or JSON and its
pictures; pictures are dropped as they arrive, never buffered. Each alert goes through the
device's EventMapper, the same as on the alertStream, so the Samples are identical in both
modes (same points, same device time, same duplicate ids: a camera that posts an alert again
after a lost answer counts it once).

Who sent it: the post's source address is a device's `host`; a device whose posts come from
elsewhere (a NAT) names the deviceID or MAC address its alerts carry (`push.device_id`).
Several devices on one address are split by their `channels:` (the channels of a recorder),
as on a shared stream, or by their `push.device_id` (devices behind one NAT address). A
device given a username and password must authenticate its posts with HTTP Digest (its
httpHosts `httpAuthenticationMethod: MD5digest`): without them, anyone on the camera network
could post a plate the allow list knows.

Answers: 200 as soon as the body is read and mapped (the device waits for it, and re-sends
what it thinks was lost); 401 with a challenge for a missing or wrong Digest answer; 403 to
an address no device of the site has (counted, logged once per address). A body that cannot
be read is answered 200 all the same (sending it again would not mend it) and counted.

Availability: a pushing device is online from its first accepted post. The gateway cannot tell
a quiet camera from a dead one (devices post only when something happens), so it never marks
one offline; the camera rule's silence check (`silence_check: all`) can.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from core.once import ProblemCounter
from core.types import Sample
from drivers.http_events import decode
from drivers.http_events.digest import parse_challenges
from drivers.http_events.mapper import EventMapper
from drivers.http_events.multipart import MultipartParser, PartStats, boundary_of
from drivers.mqtt.ingest import AVAILABLE

log = logging.getLogger("guanjia.http_events")

REALM = "guanjia"
NONCE_LIFE = 300.0  # seconds a Digest nonce is good for; an older one is answered stale
NONCES_KEPT = 1024  # nonce counts remembered (replays refused), oldest forgotten first
MAX_PICTURES = 16 * 1024 * 1024  # a post with its pictures may be this large at most
_CHUNK = 64 * 1024


@dataclass
class PushMember:
    """A site device that posts to a listener."""

    device: str
    mapper: EventMapper
    host: str
    device_id: str | None = None
    username: str | None = None
    password: str | None = None
    online: bool | None = None
    posts: int = 0  # posts accepted from this device
    last_error: str = ""

    def takes(self, event: dict[str, object]) -> bool:
        """Whether an alert that came by device id (not by address) is this device's."""
        if self.device_id is None:
            return False
        want = _ident(self.device_id)
        return any(
            isinstance(event.get(k), str | int) and _ident(str(event.get(k))) == want
            for k in ("deviceID", "macAddress")
        )


def _at_address(members: Sequence[PushMember], event: dict[str, object]) -> list[PushMember]:
    """Which of the devices posting from one address an alert is: the one whose device id it
    names; else, where devices there are told apart by channel, those without an id (their
    mappers take their channels); a lone device is its address's whatever the alert names."""
    named = [m for m in members if m.takes(event)]
    if named:
        return named
    if len(members) == 1:
        return list(members)
    return [m for m in members if m.device_id is None]


def _ident(text: str) -> str:
    """deviceID or MAC address as compared: case and separators do not matter."""
    return text.strip().lower().replace(":", "").replace("-", "")


@dataclass
class PushStats:
    posts: int = 0  # requests received
    accepted: int = 0  # posts read and mapped
    unknown_senders: int = 0  # posts from an address (or id) no device has
    auth_refused: int = 0  # posts with a wrong Digest answer
    bad_bodies: int = 0  # posts that held no readable alert
    events: int = 0
    keepalives: int = 0
    parser: PartStats = field(default_factory=PartStats)


class DigestVerifier:
    """The server side of HTTP Digest (RFC 7616, MD5, qop=auth, as Hikvision devices answer):
    nonces the gateway can check without keeping them (a time, a salt and their HMAC), good
    for five minutes, each nonce count taken once."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.key = os.urandom(16)
        self.clock = clock
        self.counts: OrderedDict[str, int] = OrderedDict()

    def nonce(self) -> str:
        # A salt of its own: devices challenged in the same second must not share a nonce
        # (the second to answer would look like a replay of the first's count).
        issued = f"{self.clock():.0f}.{os.urandom(6).hex()}"
        return f"{issued}.{self._mac(issued)}"

    def _mac(self, issued: str) -> str:
        return hmac.new(self.key, issued.encode(), hashlib.sha256).hexdigest()[:32]

    def challenge(self, stale: bool = False) -> str:
        header = f'Digest realm="{REALM}", nonce="{self.nonce()}", algorithm=MD5, qop="auth"'
        return header + (", stale=true" if stale else "")

    def check(self, header: str, method: str, uri: str, user: str, password: str) -> str:
        """'ok', 'stale' (a good answer to an old nonce), 'missing' or 'refused'."""
        challenges = parse_challenges([header]) if header else []
        if not challenges or challenges[0].scheme != "digest":
            return "missing"
        p = challenges[0].params
        nonce = p.get("nonce", "")
        issued, _, mac = nonce.rpartition(".")
        stamp = issued.partition(".")[0]
        if not hmac.compare_digest(mac, self._mac(issued)) or not stamp.isdigit():
            return "missing"  # not our nonce (a restart): challenge afresh
        if p.get("username") != user or p.get("uri") != uri or p.get("realm") != REALM:
            return "refused"
        if p.get("algorithm", "MD5").upper() != "MD5":
            return "refused"

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        ha1 = md5(f"{user}:{REALM}:{password}")
        ha2 = md5(f"{method}:{uri}")
        qop = p.get("qop")
        if qop == "auth":
            nc = p.get("nc", "")
            want = md5(f"{ha1}:{nonce}:{nc}:{p.get('cnonce', '')}:auth:{ha2}")
        elif qop is None:
            nc = ""
            want = md5(f"{ha1}:{nonce}:{ha2}")
        else:
            return "refused"
        if not hmac.compare_digest(p.get("response", ""), want):
            return "refused"
        if self.clock() - int(stamp) > NONCE_LIFE:
            return "stale"
        if nc:
            try:
                count = int(nc, 16)
            except ValueError:
                return "refused"
            if count <= self.counts.get(nonce, 0):
                return "refused"  # a replay
            self.counts[nonce] = count
            self.counts.move_to_end(nonce)
            while len(self.counts) > NONCES_KEPT:
                self.counts.popitem(last=False)
        return "ok"


class PushListener:
    """One bind address and port: the devices that post there."""

    def __init__(
        self,
        bind: str,
        port: int,
        members: Sequence[PushMember],
        emit: Callable[[Sample], None],
        *,
        max_part: int,
        problems: ProblemCounter,
    ) -> None:
        self.bind = bind
        self.port = port
        self.members = list(members)
        self.emit = emit
        self.max_part = max_part
        self.problems = problems
        self.stats = PushStats()
        self.digest = DigestVerifier()
        self.by_host: dict[str, list[PushMember]] = {}
        for m in self.members:
            self.by_host.setdefault(m.host, []).append(m)
        self.by_id = [m for m in self.members if m.device_id is not None]
        self.name = f"push listener {bind}:{port}"
        self.error = ""  # the listener could not start (port taken, ...)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_PICTURES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.bind, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            self.error = f"cannot listen on {self.bind}:{self.port}: {exc.strerror or exc}"
            log.error("%s: %s; these devices' events are not received", self.name, self.error)
            for m in self.members:
                m.last_error = self.error
            return
        self._runner = runner
        log.info("%s: listening for %d devices", self.name, len(self.members))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens (the port chosen when 0 was asked for, in tests)."""
        if self._runner is None or not self._runner.addresses:
            return None
        host, port = self._runner.addresses[0][:2]
        return str(host), int(port)

    # --- one post ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.posts += 1
        if request.method not in ("POST", "PUT"):
            return web.Response(status=405, headers={"Allow": "POST, PUT"})
        # A listener bound to :: sees IPv4 senders as ::ffff:a.b.c.d.
        remote = (request.remote or "").removeprefix("::ffff:")
        by_address = self.by_host.get(remote)
        candidates = by_address or self.by_id
        if not candidates:
            return self._unknown(remote, "no device of the site has this address")
        login = [m for m in candidates if m.username is not None]
        if login:
            verdict = self._authenticate(request, login)
            if verdict != "ok":
                if verdict == "refused":
                    stats.auth_refused += 1
                    self.problems.report(
                        f"push:auth:{remote}",
                        f"{self.name}: {remote} posts with a wrong username or password: "
                        "check the device's HTTP host settings against http_events.username "
                        "and password",
                    )
                return web.Response(
                    status=401,
                    headers={"WWW-Authenticate": self.digest.challenge(verdict == "stale")},
                )
        events = await self._events(request)
        if events is None:
            stats.bad_bodies += 1
            return web.Response(text="OK")
        arrival = time.time_ns()
        taken = 0
        seen: set[str] = set()
        for event in events:
            targets = (
                _at_address(by_address, event)
                if by_address is not None
                else [m for m in candidates if m.takes(event)]
            )
            if not targets:
                continue
            taken += 1
            keepalive = False
            for member in targets:
                seen.add(member.device)
                if member.mapper.is_keepalive(event):
                    keepalive = True
                    continue
                for sample in member.mapper.samples(event, arrival):
                    self.emit(sample)
            if keepalive:
                stats.keepalives += 1
            else:
                stats.events += 1
        if events and not taken:
            return self._unknown(remote, "its alerts name no device id of the site")
        stats.accepted += 1
        for member in candidates:
            # The channels of one sender are all up when it posts; devices told apart by
            # their ids only when their own alerts come.
            shared = by_address is not None and member.device_id is None
            if member.device in seen or shared:
                member.posts += 1
                self._online(member)
        return web.Response(text="OK")

    def _unknown(self, remote: str, why: str) -> web.Response:
        self.stats.unknown_senders += 1
        self.problems.report(
            f"push:unknown:{remote}",
            f"{self.name}: a post from {remote}, refused: {why} (http_events.host, or "
            "push.device_id for posts through a NAT)",
        )
        return web.Response(status=403, text="unknown sender")

    def _authenticate(self, request: web.Request, login: Sequence[PushMember]) -> str:
        header = request.headers.get("Authorization", "")
        best = "missing"
        for m in login:
            assert m.username is not None
            verdict = self.digest.check(
                header, request.method, request.path_qs, m.username, m.password or ""
            )
            if verdict == "ok":
                return verdict
            if verdict == "stale" or (verdict == "refused" and best == "missing"):
                best = verdict
        return best

    async def _events(self, request: web.Request) -> list[decode.Event] | None:
        """The alerts of a post; None when it holds none that can be read."""
        content_type = request.headers.get("Content-Type", "")
        events: list[decode.Event] = []
        bad = False
        if content_type.lower().startswith("multipart/"):
            boundary = boundary_of(content_type)
            if boundary is None:
                self._bad(request, "a multipart body without a boundary")
                await request.read()
                return None
            parser = MultipartParser(boundary, max_part=self.max_part, stats=self.stats.parser)
            async for chunk in request.content.iter_chunked(_CHUNK):
                for part in parser.feed(chunk):
                    got = self._decode(request, part.body)
                    bad = bad or got is None
                    events += got or []
            # The closing delimiter (`--boundary--`) ends the last part without a length.
            for part in parser.feed(b"\r\n--" + boundary.encode("latin-1") + b"--\r\n"):
                got = self._decode(request, part.body)
                bad = bad or got is None
                events += got or []
        else:
            data = bytearray()
            async for chunk in request.content.iter_chunked(_CHUNK):
                data += chunk
                if len(data) > self.max_part:
                    # Not read to its end: the connection is closed after the answer.
                    self.stats.parser.oversized += 1
                    self._bad(request, f"a body over {self.max_part} bytes")
                    return None
            got = self._decode(request, bytes(data))
            bad = got is None
            events = got or []
        events = [e for e in events if isinstance(e, dict)]
        if not events:
            if not bad:
                self._bad(request, "no alert in it")
            return None
        return events

    def _decode(self, request: web.Request, body: bytes) -> list[decode.Event] | None:
        if not body.strip():
            return []
        try:
            return decode.hikvision(body)
        except decode.DecodeError as exc:
            self._bad(request, str(exc))
            return None

    def _bad(self, request: web.Request, why: str) -> None:
        self.problems.report(
            f"push:bad:{request.remote}",
            f"{self.name}: a post from {request.remote} that cannot be read ({why}); "
            "answered 200 (sending it again would not mend it) and counted",
        )

    def _online(self, member: PushMember) -> None:
        if member.online is True:
            return
        member.online = True
        member.last_error = ""
        log.info("%s posts its events to %s", member.device, self.name)
        self.emit(Sample(member.device, time.time_ns(), {AVAILABLE: True}))
