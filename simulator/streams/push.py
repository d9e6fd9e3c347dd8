"""A Hikvision device set to an HTTP host ("HTTP listening", ISAPI `httpHosts`): instead of
serving an alertStream it posts each alert to the gateway's listener (drivers/http_events/
push.py), as ANPR cameras and access controllers behind a NAT are usually set up.

What goes out, per alert (the shapes public receivers of these posts read; the shared facts
file describes the alerts, not the posts):
- an ANPR alert: `multipart/form-data; boundary=MIME_boundary`, the XML as `anpr.xml` then
  the pictures its `picNum` counts (detection, plate), each part with its Content-Length;
- an access controller's alert: the same form, the JSON as `event_log`, then the captures its
  `picturesNumber` counts as `Picture`;
- any other alert (motion, video loss, tampering): the bare XML, `application/xml;
  charset="UTF-8"`, or JSON as `application/json`.
A keep-alive (videoloss, inactive, activePostCount 0) is the stream's sign of life and is not
posted: a device that pushes posts only when something happens.

Posts go by POST to the host's path with a Content-Length (not chunked), one connection each,
HTTP Digest when the host was given a user (httpAuthenticationMethod MD5digest). The device
keeps what it could not deliver and sends it again, oldest first and one at a time: after a
refused connection, a timeout, a 5xx or an answer it never read, with a doubling wait up to
`retry_max`; up to `max_pending` posts, the oldest dropped beyond (counted). A 401 that
the Digest handshake did not mend is kept as well (the login may be set right); another 4xx
is a refusal that sending again would not mend: dropped, counted. (The
vendor's exact retry timing is not public; a camera re-sending what it thinks was lost is
what the gateway's duplicate ids are for.)

Fault for the tests: `lose_answers(n)`: the next n posts reach the host but their answers do
not reach the device, which sends them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from dataclasses import dataclass

import aiohttp

from simulator.streams.payloads import acs_form_data, form_data

log = logging.getLogger("guanjia.simulator.streams")

XML = 'application/xml; charset="UTF-8"'
JSON = "application/json"
_PICTURES = re.compile(rb"<picNum>\s*(\d+)\s*</picNum>")
_KEEPALIVE = (b"<eventType>videoloss</eventType>", b"<eventState>inactive</eventState>")


@dataclass(frozen=True, slots=True)
class Post:
    """One post as the device sends it."""

    content_type: str
    body: bytes


def push_post(payload: str | bytes) -> Post | None:
    """An alert (XML or JSON, as the device would stream it) as the device posts it; None for
    a keep-alive, which is not posted."""
    data = payload.encode() if isinstance(payload, str) else payload
    text = data.lstrip()
    if text.startswith(b"<"):
        if all(k in text for k in _KEEPALIVE) and re.search(
            rb"<activePostCount>\s*0\s*</activePostCount>", text
        ):
            return None
        if b"<ANPR>" in text:
            found = _PICTURES.search(text)
            content_type, body = form_data(data, pictures=int(found.group(1)) if found else 0)
            return Post(content_type, body)
        return Post(XML, data)
    if text.startswith(b"{"):
        doc = json.loads(data)
        acs = doc.get("AccessControllerEvent") if isinstance(doc, dict) else None
        if isinstance(acs, dict):
            pictures = acs.get("picturesNumber", 0)
            content_type, body = acs_form_data(data, pictures=pictures if pictures else 0)
            return Post(content_type, body)
        return Post(JSON, data)
    raise ValueError(f"not a Hikvision alert: {text[:40]!r}")


@dataclass
class PushStats:
    queued: int = 0  # alerts handed to the device to post
    attempts: int = 0  # posts sent (each retry counts)
    delivered: int = 0  # posts the host answered 2xx (and the device read it)
    failures: int = 0  # attempts that failed (refused connection, timeout, 5xx, lost answer)
    refused: int = 0  # posts the host refused for good (4xx), dropped
    dropped: int = 0  # posts dropped because the device's buffer was full
    lost_answers: int = 0  # answers lost on the way back (the fault)


class PushDevice:
    """One device's posting side; `start()` on the loop that runs it, `post()` per alert."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "",
        username: str | None = None,
        password: str | None = None,
        retry_first: float = 0.5,
        retry_max: float = 10.0,
        answer_timeout: float = 10.0,
        max_pending: int = 512,
    ) -> None:
        self.url = url
        self.name = name or url
        self.username = username
        self.password = password
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.answer_timeout = answer_timeout
        self.max_pending = max_pending
        self.pending: deque[Post] = deque()
        self.stats = PushStats()
        self.last_error = ""
        self._lose = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        middlewares = (
            (aiohttp.DigestAuthMiddleware(self.username, self.password or ""),)
            if self.username is not None
            else ()
        )
        # One connection per post, as the devices do: no connection kept across a restart
        # of the listener.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            middlewares=middlewares,
            timeout=aiohttp.ClientTimeout(total=self.answer_timeout),
        )
        self._task = asyncio.create_task(self._run(), name=f"push {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def post(self, post: Post) -> None:
        """Post an alert (after those still waiting)."""
        self.stats.queued += 1
        if len(self.pending) >= self.max_pending:
            self.pending.popleft()
            self.stats.dropped += 1
        self.pending.append(post)
        self._idle.clear()
        self._wake.set()

    def lose_answers(self, count: int = 1) -> None:
        """The next `count` posts arrive, but their answers never reach the device."""
        self._lose += count

    async def wait_idle(self, timeout: float = 20.0) -> None:
        """Until every alert handed to the device has been delivered or given up."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _run(self) -> None:
        wait = self.retry_first
        while True:
            if not self.pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            post = self.pending[0]
            outcome = await self._send(post)
            if outcome == "retry":
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.retry_max)
                continue
            wait = self.retry_first
            if self.pending and self.pending[0] is post:
                self.pending.popleft()

    async def _send(self, post: Post) -> str:
        """'done' (delivered or refused for good) or 'retry'."""
        assert self._session is not None
        self.stats.attempts += 1
        try:
            async with self._session.post(
                self.url, data=post.body, headers={"Content-Type": post.content_type}
            ) as response:
                if self._lose > 0:
                    self._lose -= 1
                    self.stats.lost_answers += 1
                    self.stats.failures += 1
                    return "retry"
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.stats.failures += 1
            self._error(f"cannot post to {self.url}: {exc or type(exc).__name__}")
            return "retry"
        if 200 <= status < 300:
            self.stats.delivered += 1
            self.last_error = ""
            return "done"
        if status >= 500 or status == 401:
            # 401 after the Digest handshake: the host refuses the login (perhaps being set
            # right): kept, like a host that is down.
            self.stats.failures += 1
            self._error(f"{self.url} answered {status}")
            return "retry"
        self.stats.refused += 1
        self._error(f"{self.url} refused a post ({status}); dropped")
        return "done"

    def _error(self, text: str) -> None:
        if text != self.last_error:
            log.info("%s: %s", self.name, text)
        self.last_error = text
