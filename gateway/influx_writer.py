"""Sending line-protocol batches to InfluxDB, and to the spool whenever that fails.

A dedicated thread owns the HTTP connection so a slow database never stalls the event loop.
Live batches go first; the spool is replayed oldest first, one chunk between live batches, so
new data waits at most one chunk's send while a backlog drains.
"""

from __future__ import annotations

import base64
import collections
import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import urllib3

from core.once import ProblemCounter
from gateway.dead_letter import DeadLetters
from gateway.spool import Spool

log = logging.getLogger("guanjia.influx")

PING_TIMEOUT = 2.0  # a probe of a database that is away must not hold the writer long


class WriteError(Exception):
    """A failed write. ``retryable``: the database is away or refusing for now (spool it);
    otherwise the data itself was refused (a bad line), and sending it again cannot help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def _retryable(status: int) -> bool:
    # 400 (bad line, field type conflict) and 413 (too large) won't change on retry;
    # auth, missing database, throttling and server errors can be fixed while we wait.
    return status not in (400, 413, 422)


class Transport(Protocol):
    def send(self, body: bytes) -> None: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


def _ping(http: urllib3.PoolManager, url: str) -> bool:
    """Whether the server answers at all (InfluxDB 1.x and 2.x answer GET /ping with 204;
    any HTTP answer means it is back, and the next write says whether it takes data)."""
    try:
        http.request("GET", url, timeout=urllib3.Timeout(total=PING_TIMEOUT))
    except (urllib3.exceptions.HTTPError, OSError):
        return False
    return True


def advice(exc: WriteError) -> str:
    """What an operator can do about a failed write."""
    if exc.status is None:
        return "is the database running and reachable at its URL?"
    if exc.status in (401, 403):
        return "check the token or user and password, and their write permission"
    if exc.status == 404:
        return "create the database (v1) or the bucket and organisation (v2) it names"
    if exc.status in (400, 422):
        return (
            "the lines are kept in the dead-letter file; fix the cause, stop the gateway, "
            "then run `guanjia replay --dead-letter`"
        )
    if exc.status == 413:
        return "lower batching.max_points, or raise the server's body size limit"
    return "the database answered with an error; its log says why"


class _HttpWrite:
    """One POST of line protocol per batch to a write endpoint, on one kept-alive connection
    (urllib3, no retries: the writer decides what a failure means); `/ping` to probe."""

    def __init__(self, write_url: str, ping_url: str, headers: dict[str, str], timeout: float):
        self._url = write_url
        self._ping_url = ping_url
        self._headers = {"Content-Type": "text/plain; charset=utf-8", **headers}
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout), retries=False, maxsize=1
        )

    def send(self, body: bytes) -> None:
        try:
            response = self._http.request("POST", self._url, body=body, headers=self._headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"cannot reach the database: {exc}", retryable=True) from None
        if response.status >= 300:
            status = response.status
            raise WriteError(
                f"HTTP {status}: {response.data[:200]!r}",
                retryable=_retryable(status),
                status=status,
            )

    def ping(self) -> bool:
        return _ping(self._http, self._ping_url)

    def close(self) -> None:
        self._http.clear()


class V2Transport(_HttpWrite):
    """InfluxDB v2 write API (`/api/v2/write`, InfluxDB 2.x and 3.x, VictoriaMetrics): the
    batch's line protocol as it is, with the token.

    Not through influxdb-client: its client and write API bring numpy, reactivex and
    dateutil, about 20 MiB more resident memory in each gateway (bench/bench_fleet.py runs 20
    on one box), for one POST; bench/bench_write.py compares this path with the library used
    at its best.
    """

    def __init__(self, url: str, org: str, bucket: str, token: str | None, timeout: float) -> None:
        self.org, self.bucket = org, bucket
        base = url.rstrip("/")
        params = urlencode({"org": org, "bucket": bucket, "precision": "ns"})
        headers = {"Authorization": f"Token {token}"} if token else {}
        super().__init__(f"{base}/api/v2/write?{params}", f"{base}/ping", headers, timeout)


class V1Transport(_HttpWrite):
    """InfluxDB 1.x `/write` API."""

    def __init__(
        self,
        url: str,
        database: str,
        retention_policy: str | None,
        username: str | None,
        password: str | None,
        timeout: float,
    ) -> None:
        params = {"db": database, "precision": "ns"}
        if retention_policy:
            params["rp"] = retention_policy
        headers = {}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        base = url.rstrip("/")
        super().__init__(f"{base}/write?{urlencode(params)}", f"{base}/ping", headers, timeout)


class Unsent(WriteError):
    """The database went away part way through a body: `body` (`points`) is what is left to
    send; `written` points went in before, and lines it refused went to `refused`. Whoever
    keeps the body for later keeps only this, so nothing is written or dead-lettered twice."""

    def __init__(self, cause: WriteError, body: bytes, points: int, written: int) -> None:
        super().__init__(str(cause), retryable=True, status=cause.status)
        self.body, self.points, self.written = body, points, written


_DROPPED = re.compile(r"dropped=(\d+)")


def _lines(body: bytes) -> list[bytes]:
    # Only \n ends a line in line protocol (splitlines would also cut at \r).
    return [line + b"\n" for line in body.split(b"\n") if line]


def send_or_split(
    send: Callable[[bytes], None],
    body: bytes,
    points: int,
    refused: Callable[[WriteError, bytes], None],
) -> int:
    """Send; if the database refuses the data itself (400, 413), send each half on its own,
    down to single lines, so one bad line or an oversized body costs only what cannot be
    written, and that is handed to `refused` with the database's reason. A part that
    InfluxDB 1.x says it dropped whole (`partial write: ... dropped=N` for all N lines) is
    refused line by line without more requests. Returns the points written; raises Unsent
    when the database goes away (what is left to send is in it)."""
    pending: collections.deque[tuple[bytes, int]] = collections.deque([(body, points)])
    written = 0
    while pending:
        piece, count = pending.popleft()
        try:
            send(piece)
        except WriteError as exc:
            if exc.retryable:
                rest = piece + b"".join(b for b, _ in pending)
                raise Unsent(exc, rest, count + sum(n for _, n in pending), written) from None
            lines = _lines(piece)
            dropped = _DROPPED.search(str(exc))
            if len(lines) <= 1 or (dropped is not None and int(dropped.group(1)) == len(lines)):
                for line in lines:
                    refused(exc, line)
                continue
            half = len(lines) // 2
            pending.appendleft((b"".join(lines[half:]), len(lines) - half))
            pending.appendleft((b"".join(lines[:half]), half))
            continue
        written += count
    return written


@dataclass
class WriterStats:
    points_written: int = 0
    batches_written: int = 0
    points_spooled: int = 0
    points_replayed: int = 0
    points_rejected: int = 0
    points_lost: int = 0  # could not even be spooled (disk full) or dead-lettered
    points_dead_lettered: int = 0  # refused by the database, kept in the dead-letter file
    write_failures: int = 0
    spool_failures: int = 0  # episodes of a spool that could not be written
    database_up: bool | None = None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    body: bytes
    points: int


class Writer:
    """Thread that delivers batches; anything it cannot deliver goes to the spool, and a line
    the database refuses goes to the dead-letter file."""

    def __init__(
        self,
        transport: Transport | None,
        spool: Spool,
        *,
        dead_letters: DeadLetters | None = None,
        queue_batches: int = 32,
        overflow_bytes: int = 64 * 1024 * 1024,
        replay_points: int = 20_000,
        replay_bytes: int = 1_000_000,  # under common proxy body limits (nginx: 1 MB)
        backoff_max: float = 30.0,
        probe_interval: float = 1.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.transport = transport
        self.spool = spool
        self.dead_letters = dead_letters or DeadLetters(
            spool.dir, max(1 << 20, spool.max_bytes // 16), fsync=spool.fsync
        )
        self.stats = WriterStats()
        self.problems = ProblemCounter(log)
        self._queue: queue.Queue[Batch] = queue.Queue(maxsize=queue_batches)
        # Past the queue, batches wait here for the writer thread to spool them, so the event
        # loop never does the spool's fsync itself; bounded in bytes (then, as a last resort,
        # the loop spools, under the lock that keeps the counters right).
        self._overflow: collections.deque[Batch] = collections.deque()
        self._overflow_bytes = 0
        self._overflow_max = overflow_bytes
        self._overflow_lock = threading.Lock()
        self._spool_lock = threading.Lock()
        self.spooled_on_loop = 0
        self._replay_points = replay_points
        self._replay_bytes = replay_bytes
        self._stop_timeout = stop_timeout
        self._stop_deadline = 0.0
        self._backoff_max = backoff_max
        self._backoff = 0.0
        self._retry_at = 0.0
        self._probe_interval = probe_interval
        self._probe_at = 0.0
        self._unreachable = False  # the last failure was the network, not an HTTP answer
        self._spool_episode_lost = 0  # points lost since the spool stopped accepting writes
        self._spool_failing = False
        self._stop = threading.Event()
        # Not a daemon: at exit the interpreter waits for a batch in flight to be delivered
        # or spooled rather than dropping it.
        self._thread = threading.Thread(target=self._run, name="influx-writer")

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        """Non-blocking hand-over from the event loop; a full queue overflows to the spool.

        Never raises: a spool that cannot be written (disk full) loses the batch, counted.
        """
        try:
            self._queue.put_nowait(batch)
            return
        except queue.Full:
            pass
        with self._overflow_lock:
            if self._overflow_bytes + len(batch.body) <= self._overflow_max:
                self._overflow.append(batch)
                self._overflow_bytes += len(batch.body)
                return
        self.spooled_on_loop += 1
        self._to_spool(batch, "writer queue and overflow full")

    def stop(self) -> None:
        """Deliver or spool everything queued, then stop. Nothing in memory is lost.

        While stopping, what is queued is still sent to a healthy database for a third of the
        stop timeout; after that, or to a database that is down, it goes to the spool. A slow
        database delays shutdown by that budget plus the one batch in flight.
        """
        self._stop_deadline = time.monotonic() + self._stop_timeout / 3
        self._stop.set()
        self._thread.join(self._stop_timeout)
        if self._thread.is_alive():
            # A send still waiting for its answer: the spool must not be released under it
            # (a reload opens it again in this process), so wait; its timeout ends it.
            log.warning("waiting for the database's answer to the batch in flight")
            self._thread.join()
        while True:  # anything the thread could not take before the deadline
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            self._to_spool(batch, "shutting down")
        if self.transport is not None:
            self.transport.close()

    # -- thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                batch: Batch | None = self._queue.get(timeout=0.05)
            except queue.Empty:
                batch = None
            stopping = self._stop.is_set()
            if batch is None and stopping:
                self._spool_overflow()
                return
            try:
                self._spool_overflow()
                if batch is not None and stopping and not self._stop_budget_left():
                    self._to_spool(batch, "shutting down")
                elif batch is not None:
                    self._deliver(batch)
                if not stopping:
                    self._probe()
                if not stopping and self._can_send() and len(self.spool):
                    self._replay_one()
            except Exception as exc:  # the thread must outlive any one failure
                self.problems.report(
                    f"writer:{type(exc).__name__}", f"influx writer: {exc!r}", logging.ERROR
                )
                time.sleep(0.5)

    def _spool_overflow(self) -> None:
        while True:
            with self._overflow_lock:
                if not self._overflow:
                    return
                batch = self._overflow.popleft()
                self._overflow_bytes -= len(batch.body)
            self._to_spool(batch, "writer queue full")

    def _probe(self) -> None:
        """While the database is unreachable, ask it once a second whether it is back (a
        cheap /ping), so writes resume within a couple of seconds of its return instead of
        at the end of a long backoff."""
        now = time.monotonic()
        if (
            self.transport is None
            or not self._unreachable
            or now >= self._retry_at
            or now < self._probe_at
        ):
            return
        up = self.transport.ping()
        # From the end of the ping: one that hangs until its timeout must not be followed by
        # another at once, while batches wait.
        self._probe_at = time.monotonic() + self._probe_interval
        if up:
            self._retry_at = time.monotonic()

    def _stop_budget_left(self) -> bool:
        """While stopping, a healthy database still gets what is queued, for a short while."""
        return self.stats.database_up is not False and time.monotonic() < self._stop_deadline

    def _can_send(self) -> bool:
        return self.transport is not None and time.monotonic() >= self._retry_at

    def _deliver(self, batch: Batch) -> None:
        if not self._can_send() or (len(self.spool) and self.stats.database_up is not True):
            self._to_spool(batch, "database unavailable")
            return
        try:
            written = self._send_or_split(batch.body, batch.points)
        except Unsent as exc:  # only what was not sent waits: no line twice
            self.stats.points_written += exc.written
            self._to_spool(Batch(exc.body, exc.points), str(exc))
            return
        self.stats.points_written += written
        self.stats.batches_written += 1

    def _replay_one(self) -> None:
        chunk = self.spool.peek(self._replay_points, self._replay_bytes)
        if chunk is None:
            return
        try:
            written = self._send_or_split(chunk.body, chunk.points)
        except Unsent as exc:
            if not exc.written and exc.body == chunk.body:
                return  # the database went away again: the chunk stays spooled
            # Part went in (or was dead-lettered): only the rest goes back, at the tail.
            self.stats.points_written += exc.written
            self.stats.points_replayed += exc.written
            self.spool.append(exc.body, exc.points)
            self.spool.ack(chunk)
            return
        self.stats.points_written += written
        self.stats.points_replayed += written
        self.spool.ack(chunk)
        if not len(self.spool):
            log.info("spool replayed: %d points in all", self.stats.points_replayed)

    def _send_or_split(self, body: bytes, points: int) -> int:
        return send_or_split(self._send, body, points, self._rejected)

    def _send(self, body: bytes) -> None:
        assert self.transport is not None
        try:
            self.transport.send(body)
        except WriteError as exc:
            self.stats.write_failures += 1
            if exc.retryable:
                self._down(exc)
            raise
        except Exception as exc:  # an unexpected client failure must not kill the thread
            self.stats.write_failures += 1
            error = WriteError(f"{type(exc).__name__}: {exc}", retryable=True)
            error.__cause__ = exc  # not the network: _down backs off instead of probing
            self._down(error)
            raise error from exc
        if self.stats.database_up is not True:
            log.info("database is accepting writes")
        self.stats.database_up = True
        self.stats.last_error = ""
        self._unreachable = False
        self._backoff = 0.0

    def _down(self, exc: WriteError) -> None:
        if self.stats.database_up is not False:
            log.warning(
                "database unavailable (%s): %s; spooling to %s meanwhile",
                exc,
                advice(exc),
                self.spool.dir,
            )
        self.stats.database_up = False
        self.stats.last_error = str(exc)[:200]
        self._unreachable = exc.status is None and not isinstance(exc.__cause__, Exception)
        self._backoff = min(self._backoff_max, max(0.25, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff

    def _to_spool(self, batch: Batch, why: str) -> None:
        # Normally only the writer thread gets here; the lock is for the last-resort spooling
        # from the event loop (submit), so the counters and the episode stay right.
        with self._spool_lock:
            self._to_spool_locked(batch, why)

    def _to_spool_locked(self, batch: Batch, why: str) -> None:
        try:
            self.spool.append(batch.body, batch.points)
        except OSError as exc:
            self.stats.points_lost += batch.points
            self._spool_episode_lost += batch.points
            if not self._spool_failing:  # each episode is logged, not each batch
                self._spool_failing = True
                self.stats.spool_failures += 1
                log.error(
                    "cannot spool %d points (%s): %s; points are being lost until the disk "
                    "under %s has room (free space, or lower spool.max_bytes)",
                    batch.points,
                    why,
                    exc,
                    self.spool.dir,
                )
            return
        if self._spool_failing:
            log.warning(
                "spool writable again: %d points were lost while it was not",
                self._spool_episode_lost,
            )
            self._spool_failing = False
            self._spool_episode_lost = 0
        self.stats.points_spooled += batch.points
        self.problems.report("spooled", f"spooling points: {why}", logging.INFO)

    def _rejected(self, exc: WriteError, line: bytes) -> None:
        """A line the database refused: kept in the dead-letter file with the reason."""
        self.stats.points_rejected += 1
        if self.dead_letters.add(line, str(exc)):
            self.stats.points_dead_lettered += 1
            where = f"kept in {self.dead_letters.path}"
        else:
            self.stats.points_lost += 1
            where = "LOST: the dead-letter file is full"
        # Logged once per kind of refusal (the measurement and the error without numbers).
        measurement = line.split(b",", 1)[0].split(b" ", 1)[0][:64].decode(errors="replace")
        kind = "".join(c for c in str(exc)[:80] if not c.isdigit())
        self.problems.report(
            f"refused:{measurement}:{kind}",
            f"database refused a line ({exc}); {where}; {advice(exc)}: "
            f"{line[:300].decode(errors='replace')}",
            logging.ERROR,
        )

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "database_up": s.database_up,
            "points_written": s.points_written,
            "points_spooled": s.points_spooled,
            "points_replayed": s.points_replayed,
            "points_rejected": s.points_rejected,
            "points_dead_lettered": s.points_dead_lettered,
            "points_lost": s.points_lost,
            "write_failures": s.write_failures,
            "spool_failures": s.spool_failures,
            "spool_points": len(self.spool),
            "spool_bytes": self.spool.total_bytes,
            "spooled_on_loop": self.spooled_on_loop,
            "spool_dropped_points": self.spool.dropped_points,
            "dead_letter_points": self.dead_letters.lines,
            "dead_letter_bytes": self.dead_letters.bytes,
        }
