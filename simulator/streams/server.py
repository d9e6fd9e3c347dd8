"""A camera, recorder, access controller or door station's HTTP event stream, served on
loopback: what the virtual building offers the gateway's HTTP event driver, and what its tests
stream through.

A `StreamDevice` behaves like a Hikvision device (GET /ISAPI/Event/notification/alertStream,
`multipart/mixed; boundary=boundary`) or a Dahua one (GET /cgi-bin/eventManager.cgi?action=
attach..., `multipart/x-mixed-replace; boundary=myboundary`, and the `Heartbeat` entry every
`heartbeat=` seconds the client asked for): it demands HTTP Digest authentication (RFC 7616,
MD5 or SHA-256, qop=auth) and checks every answer itself, with hashlib, nonce counts that must
grow and nonces it may declare stale; then it streams whatever it is given to every open
stream: whole parts in the devices' shapes, bare newlines, garbage, half a part followed by a
cut connection, or nothing at all (a stall).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

_AUTH_PARAM = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]+)')


@dataclass
class _Client:
    queue: asyncio.Queue[bytes | str] = field(default_factory=asyncio.Queue)


class StreamDevice:
    """One simulated device on loopback; `async with StreamDevice.serve(...) as device`."""

    def __init__(
        self,
        vendor: str,
        *,
        username: str = "guanjia",
        password: str = "s3cret",
        algorithm: str = "MD5",
        qop: bool = True,
        heartbeat: bool = False,
    ) -> None:
        self.vendor = vendor
        # Dahua: send `Heartbeat` every `heartbeat=` seconds the client asks for, as the
        # devices do (tests that want a silent stream leave it off).
        self.heartbeat = heartbeat
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
        # An access controller's event log: every AccessControllerEvent it sent or would have
        # sent (with nobody streaming), for the AcsEvent search.
        self.log: list[dict[str, Any]] = []
        self.searches: list[dict[str, Any]] = []  # the search conditions asked, in order
        self.port = 0
        self._opened = asyncio.Condition()

    # --- HTTP --------------------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def serve(
        cls, vendor: str, host: str = "127.0.0.1", port: int = 0, **kwargs: object
    ) -> AsyncIterator[StreamDevice]:
        device = cls(vendor, **kwargs)  # type: ignore[arg-type]
        app = web.Application()
        if vendor == "hikvision":
            app.router.add_get("/ISAPI/Event/notification/alertStream", device._handle)
            app.router.add_post("/ISAPI/AccessControl/AcsEvent", device._search)
        else:
            app.router.add_get("/cgi-bin/eventManager.cgi", device._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"cannot serve a simulated event stream on {host}:{port}: {exc.strerror}"
            ) from None
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
        ha2 = self._hash(f"{request.method}:{request.path_qs}")
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
        beat: asyncio.Task[None] | None = None
        every = request.query.get("heartbeat", "")
        if self.heartbeat and self.vendor == "dahua" and every.isdigit() and int(every) > 0:
            beat = asyncio.create_task(self._beat(client, int(every)))
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
                try:
                    await response.write(item)
                except ConnectionResetError:  # the reader went away: its stream ends here
                    break
        finally:
            if beat is not None:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
            if client in self.clients:
                self.clients.remove(client)
        return response

    async def _beat(self, client: _Client, every: int) -> None:
        part = self.part("Heartbeat", "text/plain")
        while True:
            client.queue.put_nowait(part)
            await asyncio.sleep(every)

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
        self.record(body)
        self.send(self.part(body, content_type))

    def record(self, body: str | bytes) -> None:
        """Keep an access-control alert in the device's log (sent to a stream or not)."""
        if self.vendor != "hikvision" or b"AccessControllerEvent" not in _bytes(body):
            return
        try:
            alert = json.loads(body)
        except ValueError:
            return
        acs = alert.get("AccessControllerEvent") if isinstance(alert, dict) else None
        if not isinstance(acs, dict):
            return
        entry = {
            "major": acs.get("majorEventType"),
            "minor": acs.get("subEventType"),
            "time": alert.get("dateTime"),
            "serialNo": acs.get("serialNo"),
        }
        for field_name in ("doorNo", "cardNo", "employeeNoString", "name", "currentVerifyMode"):
            if field_name in acs:
                entry[field_name] = acs[field_name]
        self.log.append(entry)

    async def _search(self, request: web.Request) -> web.Response:
        """POST /ISAPI/AccessControl/AcsEvent?format=json: the log between two times, a page
        at a time, in the firmware's answer shape (facts: access_control.event_search)."""
        verdict = self._verify(request)
        if verdict != "ok":
            return self._challenge(stale=verdict == "stale")
        cond = (await request.json()).get("AcsEventCond", {})
        self.searches.append(cond)
        start = datetime.fromisoformat(cond["startTime"])
        end = datetime.fromisoformat(cond["endTime"])
        matches = [
            e
            for e in self.log
            if isinstance(e["time"], str) and start <= datetime.fromisoformat(e["time"]) <= end
        ]
        position, most = int(cond.get("searchResultPosition", 0)), int(cond.get("maxResults", 30))
        page = matches[position : position + most]
        more = position + len(page) < len(matches)
        status = "MORE" if more else "OK" if page else "NO MATCH"
        body = {
            "AcsEvent": {
                "searchID": cond.get("searchID", ""),
                "responseStatusStrg": status,
                "numOfMatches": len(page),
                "totalMatches": len(matches),
                "InfoList": page,
            }
        }
        return web.json_response(body)

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


def _bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body
