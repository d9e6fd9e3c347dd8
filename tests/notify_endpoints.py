"""Local stand-ins for the notification endpoints, speaking the vendors' documented wire format
(shared facts channels.md): a DingTalk custom robot, a WeCom group robot, an SMS gateway and a
plain webhook.

Each one is an aiohttp server on 127.0.0.1 (a free port), on a thread with its own event loop,
so sync tests, async tests and benchmarks can all use it, and it never competes with the loop
under test for scheduling. Each records every request (`requests`), what it accepted
(`accepted`), and can be told to misbehave:

    with DingTalkRobot(token="t", secret="SEC…") as robot:
        robot.fail(500, times=2)      # the next two requests: HTTP 500
        robot.fail(500)               # every request from now on, until robot.heal()
        robot.script({"errcode": -1, "errmsg": "系统繁忙"})   # the next request's answer
        robot.drop()                  # accept the next one, then close without answering
        robot.down(); robot.up()      # connections refused, then served again (same port)
        robot.wait_for(lambda r: len(r.posted) >= 3)          # or: await robot.until(...)

Like the real services, the robots answer HTTP 200 with an `errcode` for their own errors, and
a robot that was sent more than `limit` messages within `window_s` refuses everything for
`punish_s` (DingTalk: 20 a minute, then 10 minutes). Tests shrink the window and the
punishment; the logic stays the vendor's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs

from aiohttp import web

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as it arrived, and what the endpoint did with it."""

    path: str
    query: dict[str, str]  # decoded once, `+` as space: as the vendors decode it
    raw_query: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the body parsed, None if it was not JSON
    at: float  # time.perf_counter() when the body had arrived
    status: int = 0  # the HTTP status answered; 0 = dropped without an answer
    answer: Any = None  # the JSON answered


@dataclass(slots=True)
class _Scripted:
    status: int
    body: Any  # JSON to answer; None with drop
    drop: bool = False


@dataclass(slots=True)
class _Window:
    """The vendor's rate limit: `limit` in `window_s`, then refused for `punish_s`."""

    limit: int
    window_s: float
    punish_s: float
    times: deque[float] = field(default_factory=deque)
    punished_until: float = 0.0

    def admit(self, now: float) -> bool:
        if now < self.punished_until:
            return False
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        if len(self.times) >= self.limit:
            self.punished_until = now + self.punish_s
            return False
        self.times.append(now)
        return True


class Endpoint:
    """The common part: server thread, recording, scripted failures. Subclasses answer."""

    path = "/"

    def __init__(self) -> None:
        self.port = 0
        self._lock = threading.Condition()
        self._requests: list[Recorded] = []
        self._script: deque[_Scripted] = deque()
        self._sticky: _Scripted | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.on_request: list[Callable[[Recorded], None]] = []  # called on the server thread

    # -- life -------------------------------------------------------------------------------

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait()
        self.up()
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None, "start() the endpoint first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def up(self) -> None:
        """Listen (again, on the same port after `down`)."""

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, LOOPBACK, self.port, reuse_address=True).start()
            self.port = runner.addresses[0][1]
            self._runner = runner

        if self._runner is None:
            self._call(serve())

    def down(self) -> None:
        """Close the port and every open connection: clients get "connection refused"."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._call(runner.cleanup())

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.path}"

    # -- scripts ----------------------------------------------------------------------------

    def fail(self, status: int = 500, times: int | None = None) -> None:
        """Answer HTTP `status` to the next `times` requests (None: until `heal`)."""
        self._add(_Scripted(status, {"error": f"scripted {status}"}), times)

    def script(self, answer: Any, times: int | None = 1, status: int = 200) -> None:
        """Answer this JSON (e.g. a vendor error code) to the next `times` requests."""
        self._add(_Scripted(status, answer), times)

    def drop(self, times: int | None = 1) -> None:
        """Take the next requests as usual (a robot posts them), then close the connection
        without an answer: the client cannot know they arrived."""
        self._add(_Scripted(0, None, drop=True), times)

    def heal(self) -> None:
        with self._lock:
            self._script.clear()
            self._sticky = None

    def _add(self, scripted: _Scripted, times: int | None) -> None:
        with self._lock:
            if times is None:
                self._sticky = scripted
            else:
                self._script.extend([scripted] * times)

    # -- what arrived -----------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def accepted(self) -> list[Recorded]:
        """Requests answered as a success by this vendor's rules."""
        return [r for r in self.requests if self.is_success(r)]

    def is_success(self, r: Recorded) -> bool:
        return 200 <= r.status < 300

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(self, predicate: Callable[[Self], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate(self)` holds (re-checked at each request) or the timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
        return True

    async def until(self, predicate: Callable[[Self], bool], timeout: float = 10.0) -> None:
        """`wait_for` without blocking the caller's event loop; fails the test on timeout."""
        ok = await asyncio.to_thread(self.wait_for, predicate, timeout)
        assert ok, f"{type(self).__name__}: condition not met within {timeout} s"

    # -- serving ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw = request.rel_url.raw_query_string
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        rec = Recorded(
            path=request.path,
            query={k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()},
            raw_query=raw,
            headers=dict(request.headers),
            body=body,
            json=parsed,
            at=time.perf_counter(),
        )
        with self._lock:
            scripted = self._script.popleft() if self._script else self._sticky
        if scripted is not None and scripted.drop:
            self.answer(rec)  # taken as usual: a robot posts it
            self._record(rec)
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if scripted is not None:
            status, answer = scripted.status, scripted.body
        elif request.path != self.path:
            status, answer = 404, {"error": "not found"}
        else:
            status, answer = self.answer(rec)
        self._record(_replace(rec, status, answer))
        return web.json_response(answer, status=status, dumps=_dumps)

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self._requests.append(rec)
            self._lock.notify_all()
        for hook in self.on_request:
            hook(rec)

    def answer(self, rec: Recorded) -> tuple[int, Any]:
        """(HTTP status, JSON) for a request that reached the vendor's logic."""
        return 200, {"ok": True}


def _replace(rec: Recorded, status: int, answer: Any) -> Recorded:
    return Recorded(
        rec.path, rec.query, rec.raw_query, rec.headers, rec.body, rec.json, rec.at, status, answer
    )


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


# -- DingTalk ------------------------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int | str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


_DT_TYPES = {
    "text": ("content",),
    "markdown": ("title", "text"),
    "link": ("title", "text", "messageUrl"),
    "actionCard": ("title", "text"),
    "feedCard": ("links",),
}


class DingTalkRobot(Endpoint):
    """A custom robot with 加签: checks the token, the timestamp (within an hour of now, in
    ms) and the signature exactly as decoded once from the URL, the Content-Type, the
    msgtype's required fields and the keywords; enforces `limit` per `window_s`, then refuses
    everything for `punish_s` with 130101. `msgUuid` makes a repeat a no-op, as documented:
    `posted` lists what appeared in the group, once per msgUuid."""

    path = "/robot/send"

    def __init__(
        self,
        token: str = "robot-token",
        secret: str | None = None,
        *,
        keywords: tuple[str, ...] = (),
        limit: int = 20,
        window_s: float = 60.0,
        punish_s: float = 600.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.keywords = keywords
        self.window = _Window(limit, window_s, punish_s)
        self._uuids: set[str] = set()
        self._posted: list[Recorded] = []

    @property
    def posted(self) -> list[Recorded]:
        with self._lock:
            return list(self._posted)

    def is_success(self, r: Recorded) -> bool:
        return r.status == 200 and isinstance(r.answer, dict) and r.answer.get("errcode") == 0

    def answer(self, rec: Recorded) -> tuple[int, Any]:
        code, message = self._check(rec)
        if code == 0:
            uuid = rec.json.get("msgUuid")
            with self._lock:
                if not uuid or uuid not in self._uuids:
                    self._posted.append(rec)
                    if uuid:
                        self._uuids.add(uuid)
        return 200, {"errcode": code, "errmsg": message}

    def _check(self, rec: Recorded) -> tuple[int, str]:
        if rec.query.get("access_token") != self.token:
            return 300005, "token is not exist"
        if self.secret is not None:
            ts, sign = rec.query.get("timestamp", ""), rec.query.get("sign", "")
            if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000:
                return 310000, "invalid timestamp"
            if not hmac.compare_digest(sign, dingtalk_sign(self.secret, ts)):
                return 310000, "sign not match"
        if not rec.headers.get("Content-Type", "").startswith("application/json"):
            return 43004, "无效的HTTP HEADER Content-Type"
        body = rec.json
        if not isinstance(body, dict):
            return 40035, "缺少参数 json"
        fields = _DT_TYPES.get(body.get("msgtype", ""))
        if fields is None:
            return 400105, "不支持的消息类型"
        part = body.get(body["msgtype"])
        if not isinstance(part, dict) or any(not part.get(f) for f in fields):
            return 40035, "缺少参数 json"
        if self.keywords and not any(
            k in json.dumps(part, ensure_ascii=False) for k in self.keywords
        ):
            return 310000, "keywords not in content"
        if not self.window.admit(time.monotonic()):
            return 130101, "send too fast, exceed 20 times per minute"
        return 0, "ok"


# -- WeCom ---------------------------------------------------------------------------------


class WeComRobot(Endpoint):
    """A WeCom group robot: the key, text ≤ `text_max_bytes` and markdown ≤ 4096 bytes of
    UTF-8 (40058 beyond), 45009 beyond `limit` per `window_s`. No idempotency key."""

    path = "/cgi-bin/webhook/send"

    def __init__(
        self,
        key: str = "robot-key",
        *,
        text_max_bytes: int = 2048,
        markdown_max_bytes: int = 4096,
        limit: int = 20,
        window_s: float = 60.0,
        punish_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.key = key
        self.max_bytes = {"text": text_max_bytes, "markdown": markdown_max_bytes}
        self.window = _Window(limit, window_s, punish_s)

    def is_success(self, r: Recorded) -> bool:
        return r.status == 200 and isinstance(r.answer, dict) and r.answer.get("errcode") == 0

    def _error(self, code: int, message: str) -> tuple[int, Any]:
        text = f"{message}, hint: [1733000000_1_local], from ip: 127.0.0.1, more info at "
        text += f"https://open.work.weixin.qq.com/devtool/query?e={code}"
        return 200, {"errcode": code, "errmsg": text}

    def answer(self, rec: Recorded) -> tuple[int, Any]:
        if rec.query.get("key") != self.key:
            return self._error(93000, "invalid webhook url")
        body = rec.json
        kind = body.get("msgtype") if isinstance(body, dict) else None
        if kind not in ("text", "markdown"):
            return self._error(40008, "invalid message type")
        content = body[kind].get("content", "") if isinstance(body.get(kind), dict) else ""
        if not content:
            return self._error(44004, "empty content")
        limit = self.max_bytes[kind]
        if len(content.encode("utf-8")) > limit:
            return self._error(
                40058, f"{kind}.content exceed max length {limit}. invalid Request Parameter"
            )
        if not self.window.admit(time.monotonic()):
            return self._error(45009, "api freq out of limit")
        return 200, {"errcode": 0, "errmsg": "ok"}


# -- SMS gateway and webhook ---------------------------------------------------------------


class SmsGateway(Endpoint):
    """A site's SMS gateway: Bearer token, JSON {template, params, phones}; answers
    {"code": "OK"} like Aliyun (script other codes with `script`)."""

    path = "/sms/send"

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token

    def is_success(self, r: Recorded) -> bool:
        return r.status == 200 and isinstance(r.answer, dict) and r.answer.get("code") == "OK"

    def answer(self, rec: Recorded) -> tuple[int, Any]:
        if self.token is not None and rec.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"code": "Unauthorized"}
        body = rec.json
        if not isinstance(body, dict) or not body.get("template") or not body.get("phones"):
            return 400, {"code": "isv.INVALID_PARAMETERS"}
        return 200, {"code": "OK", "message": "OK", "biz_id": f"biz-{len(self.requests)}"}


class Webhook(Endpoint):
    """Any JSON endpoint; with `hmac_secret`, refuses (401) a body whose `sha256=` signature
    in `signature_header` does not match."""

    path = "/hook"

    def __init__(
        self, hmac_secret: str | None = None, signature_header: str = "X-Guanjia-Signature"
    ) -> None:
        super().__init__()
        self.hmac_secret = hmac_secret
        self.signature_header = signature_header

    def answer(self, rec: Recorded) -> tuple[int, Any]:
        if self.hmac_secret is not None:
            mac = hmac.new(self.hmac_secret.encode(), rec.body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(rec.headers.get(self.signature_header, ""), f"sha256={mac}"):
                return 401, {"error": "bad signature"}
        return 200, {"ok": True}
