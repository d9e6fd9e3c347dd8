"""The notification outbox: every delivery is on disk before anything is sent.

One SQLite file (WAL) on the local disk. A delivery is stored once under its idempotency key
(alarm transition, person, channel): enqueueing the same key again is ignored, whatever state
the first one reached, for as long as the row is kept (`prune`). Rows go pending -> delivered,
or pending -> dead (a permanent refusal, or given up); a failed attempt stays pending with its
next try.

Durability, in two steps, so that the fsync is neither between an alarm and its message nor
beside it:
1. the new rows are committed to the WAL without an fsync (the writing connection runs
   `synchronous=NORMAL`): from then on they survive the process (a SIGKILL, a crash), and the
   worker is handed them and may send;
2. a second, fsynced commit of one row (`synchronous=FULL` for it alone: that syncs the whole
   WAL file, the first commit's frames included) makes them survive a power cut too, and only
   then does `enqueue` return. It comes with the thread's next round of work after the
   commit (typically the worker marking the message sent, whose commit it then covers too) or
   after `sync_within_s`, whichever is first: an fsync takes CPU and I/O from the small box
   that the send needs more.
So nothing is sent that is not stored, and nothing `enqueue` returned can be lost. A power cut
between the two steps may lose rows whose `enqueue` never returned (some perhaps already sent):
the caller was not told they were stored, and enqueues them again (at least once; DingTalk
drops the repeat by its msgUuid). Transactions that only mark outcomes are not fsynced by
themselves: a power cut may forget that a message went out, and it is sent again.

One connection: a second one for the fsynced commit would make the first one's page cache
stale at each of them, and its next commit read its pages back from the file. The WAL is
checkpointed by the outbox thread between rounds (`CHECKPOINT_COMMITS`), not by SQLite inside
whichever commit makes it long: that could be the one an alarm waits for.

Nothing here blocks the event loop: `Outbox` runs every SQLite call on a thread of its own,
writes that queue up while one commits share the next transaction, and each caller awaits a
future. The thread calls back to the loop once right after a commit (the subscribers hear of
the new deliveries, the writes that need no fsync are answered), once after the reads of the
round, and once after an fsync (the enqueues are answered). The thread's queue is unbounded
in count, not in practice: every producer awaits its write before it makes the next. The file
itself is bounded by `max_pending` (see `enqueue`) and by `prune`.

One delivery worker per file: two workers on one outbox would both send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from core.private_fs import make_private_dir, touch_private
from gateway.notify.delivery import Delivery, Grade, Message, Recipient

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RANK: dict[str, int] = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
# How long committed deliveries wait at most for their fsync while the thread has nothing
# else to do (see the notes on durability): long enough for the answer of an endpoint nearby
# and the worker's mark, short for the caller of `enqueue`.
SYNC_WITHIN_S = 0.02
# The outbox thread checkpoints the WAL after this many commits (a few pages each; SQLite's
# automatic checkpoint comes at 1,000 pages).
CHECKPOINT_COMMITS = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,             -- the idempotency key
    channel TEXT NOT NULL,
    grade TEXT NOT NULL,
    rank INTEGER NOT NULL,            -- 0 red .. 3 blue: the order of sending
    alarm_id TEXT NOT NULL,
    recipient TEXT NOT NULL,          -- JSON
    message TEXT NOT NULL,            -- JSON
    created REAL NOT NULL,
    enqueued REAL NOT NULL,
    state TEXT NOT NULL,              -- pending | delivered | dead
    attempts INTEGER NOT NULL,        -- failed attempts so far
    next_try REAL NOT NULL,
    last_error TEXT NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (rank, next_try)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (channel, state)
    WHERE state != 'delivered';
CREATE INDEX IF NOT EXISTS deliveries_done ON deliveries (done_at)
    WHERE state != 'pending';
CREATE TABLE IF NOT EXISTS sync_mark (  -- written by the fsynced commit that ends a round
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at REAL NOT NULL
);
"""

_COLUMNS = (
    "key, channel, grade, alarm_id, recipient, message, created, enqueued, attempts, next_try, "
    "last_error"
)


class OutboxError(RuntimeError):
    """The file cannot be used (written by a newer version, or not an outbox)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """An undelivered delivery as stored: how often it failed, since when it waits."""

    delivery: Delivery
    attempts: int
    enqueued: float
    next_try: float
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class ChannelStats:
    depth: int = 0  # pending
    failing: int = 0  # pending with at least one failed attempt
    dead: int = 0  # refused or given up, still kept
    oldest_s: float = 0.0  # age of the oldest pending delivery


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int = 0
    failing: int = 0
    dead: int = 0
    oldest_s: float = 0.0
    overflowed: int = 0  # refused by the max_pending bound since this process opened the file
    channels: dict[str, ChannelStats] = field(default_factory=dict)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _encode(d: Delivery) -> tuple[str, str]:
    # Field by field rather than dataclasses.asdict (a deep copy): this runs between an alarm
    # and its message.
    r, m = d.recipient, d.message
    recipient = {
        "name": r.name,
        "mobile": r.mobile,
        "email": r.email,
        "dingtalk_user": r.dingtalk_user,
        "wecom_user": r.wecom_user,
    }
    message = {"title": m.title, "text": m.text, "markdown": m.markdown, "params": m.params}
    return _dumps(recipient), _dumps(message)


def _decode(row: Sequence[Any]) -> Pending:
    (
        key,
        channel,
        grade,
        alarm_id,
        recipient,
        message,
        created,
        enqueued,
        attempts,
        next_try,
        error,
    ) = row
    m = json.loads(message)
    delivery = Delivery(
        key=key,
        channel=channel,
        recipient=Recipient(**json.loads(recipient)),
        message=Message(m["title"], m["text"], m["markdown"], dict(m["params"])),
        grade=cast(Grade, grade),
        alarm_id=alarm_id,
        created=created,
    )
    return Pending(delivery, attempts, enqueued, next_try, error)


class OutboxStore:
    """The outbox file, synchronous. Thread-safe (one lock); the running gateway uses it
    through `Outbox`, a CLI may use it directly."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_pending: int = 100_000,
        busy_timeout_s: float = 5.0,
        auto_checkpoint: bool = True,
    ) -> None:
        """`auto_checkpoint=False`: the WAL is copied into the file only by `checkpoint` (the
        owner calls it when it suits), never inside whichever commit makes the WAL long."""
        self.path = Path(path)
        self.max_pending = max_pending
        # Who was told what, when: private (0600; SQLite gives -wal and -shm the same mode).
        make_private_dir(self.path.parent, tighten_existing=False)
        touch_private(self.path)
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"{self.path}: cannot use WAL journal (got {mode!r})")
        # Commits are not fsynced; `sync` makes every earlier one durable.
        self._db.execute("PRAGMA synchronous = NORMAL")
        if not auto_checkpoint:
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
        self._migrate()
        self.overflowed = 0
        self._pending = self._count_pending()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; `durable=False` skips the fsync after its commit."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if durable:
                self.sync()

    def _migrate(self) -> None:
        with self.transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
            if version is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise OutboxError(
                    f"{self.path} has schema version {version}, this guanjia knows up to "
                    f"{SCHEMA_VERSION}; upgrade guanjia or point it at another file"
                )

    def _count_pending(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'")
            return int(row.fetchone()[0])

    def recount(self) -> None:
        """Count the undelivered rows again (after a rolled-back transaction)."""
        self._pending = self._count_pending()

    # -- writes: each takes the open transaction, so several can share one commit ----------

    def insert(
        self, db: sqlite3.Connection, deliveries: Iterable[Delivery], now: float
    ) -> list[Delivery]:
        """Store the deliveries whose key is new; the ones stored pending are returned.

        Past `max_pending` undelivered rows (a channel down for days in a flood), a new
        delivery below red is stored dead ("outbox full") instead: kept, counted, visible,
        never sent. Red ones are always stored pending.
        """
        stored: list[Delivery] = []
        for d in deliveries:
            full = self._pending >= self.max_pending and d.grade != "red"
            recipient, message = _encode(d)
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (key, channel, grade, rank, alarm_id, "
                "recipient, message, created, enqueued, state, attempts, next_try, last_error, "
                "done_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                (
                    d.key,
                    d.channel,
                    d.grade,
                    RANK.get(d.grade, len(RANK)),
                    d.alarm_id,
                    recipient,
                    message,
                    d.created,
                    now,
                    "dead" if full else "pending",
                    now,
                    f"outbox full ({self._pending} undelivered)" if full else "",
                    now if full else None,
                ),
            )
            if cursor.rowcount == 0:
                continue  # a key seen before: ignored
            if full:
                self.overflowed += 1
            else:
                self._pending += 1
                stored.append(d)
        return stored

    def set_delivered(self, db: sqlite3.Connection, keys: Iterable[str], now: float) -> None:
        for key in keys:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'delivered', done_at = ?, last_error = '' "
                "WHERE key = ? AND state = 'pending'",
                (now, key),
            )
            self._pending -= cursor.rowcount

    def set_failed(self, db: sqlite3.Connection, key: str, reason: str, next_try: float) -> None:
        db.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_try = ? "
            "WHERE key = ? AND state = 'pending'",
            (reason, next_try, key),
        )

    def set_dead(self, db: sqlite3.Connection, key: str, reason: str, now: float) -> None:
        cursor = db.execute(
            "UPDATE deliveries SET state = 'dead', last_error = ?, done_at = ? "
            "WHERE key = ? AND state = 'pending'",
            (reason, now, key),
        )
        self._pending -= cursor.rowcount

    def delete_done(self, db: sqlite3.Connection, before: float) -> int:
        cursor = db.execute(
            "DELETE FROM deliveries WHERE state != 'pending' AND done_at < ?", (before,)
        )
        return cursor.rowcount

    # -- the same, each in a transaction of its own -----------------------------------------

    def enqueue(self, deliveries: Iterable[Delivery], now: float | None = None) -> list[Delivery]:
        with self.transaction() as db:
            return self.insert(db, deliveries, time.time() if now is None else now)

    def mark_delivered(self, *keys: str, now: float | None = None) -> None:
        with self.transaction(durable=False) as db:
            self.set_delivered(db, keys, time.time() if now is None else now)

    def mark_failed(self, key: str, reason: str, next_try: float) -> None:
        with self.transaction(durable=False) as db:
            self.set_failed(db, key, reason, next_try)

    def mark_dead(self, key: str, reason: str, now: float | None = None) -> None:
        with self.transaction(durable=False) as db:
            self.set_dead(db, key, reason, time.time() if now is None else now)

    def sync(self, now: float | None = None) -> None:
        """Make every earlier commit durable: a fsynced commit of one small row (in WAL mode,
        the fsync covers the earlier commits that were not synced). One statement in
        autocommit: its own transaction."""
        with self._lock:
            self._db.execute("PRAGMA synchronous = FULL")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO sync_mark (id, at) VALUES (1, ?)",
                    (time.time() if now is None else now,),
                )
            finally:
                self._db.execute("PRAGMA synchronous = NORMAL")

    def prune(self, before: float) -> int:
        """Forget delivered and dead rows finished before `before` (epoch seconds); their
        keys may then be enqueued again."""
        with self.transaction(durable=False) as db:
            return self.delete_done(db, before)

    def checkpoint(self) -> None:
        """Copy the WAL into the file (as far as no reader holds it back), so that the WAL
        starts over; a checkpoint fsyncs both."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- reads -----------------------------------------------------------------------------

    def due(self, now: float, limit: int) -> list[Pending]:
        """Pending deliveries whose next try has come: red first, then by next try.
        `now` = infinity lists every pending one."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM deliveries WHERE state = 'pending' AND next_try <= ? "
                "ORDER BY rank, next_try, enqueued LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_decode(r) for r in rows]

    def get(self, key: str) -> tuple[str, Pending] | None:
        """(state, row) of one key, for tests and `guanjia` listings."""
        with self._lock:
            row = self._db.execute(
                f"SELECT state, {_COLUMNS} FROM deliveries WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else (row[0], _decode(row[1:]))

    def stats(self, now: float | None = None) -> OutboxStats:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT channel, state, count(*), sum(attempts > 0), min(enqueued) "
                "FROM deliveries WHERE state != 'delivered' GROUP BY channel, state"
            ).fetchall()
        per: dict[str, dict[str, float]] = {}
        for channel, state, count, failing, oldest in rows:
            c = per.setdefault(channel, {"depth": 0, "failing": 0, "dead": 0, "oldest_s": 0.0})
            if state == "pending":
                c["depth"] += count
                c["failing"] += failing or 0
                c["oldest_s"] = max(c["oldest_s"], now - oldest)
            elif state == "dead":
                c["dead"] += count
        channels = {
            name: ChannelStats(int(c["depth"]), int(c["failing"]), int(c["dead"]), c["oldest_s"])
            for name, c in sorted(per.items())
        }
        self._pending = sum(c.depth for c in channels.values())  # other processes write too
        return OutboxStats(
            depth=self._pending,
            failing=sum(c.failing for c in channels.values()),
            dead=sum(c.dead for c in channels.values()),
            oldest_s=max((c.oldest_s for c in channels.values()), default=0.0),
            overflowed=self.overflowed,
            channels=channels,
        )


T = TypeVar("T")

# (future, value, error): one answer for a caller's future, given on the caller's loop.
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None]


@dataclass(slots=True)
class _Job:
    run: Callable[..., Any]  # (connection) for writes, () for reads
    done: asyncio.Future[Any]  # on `loop`, resolved there
    loop: asyncio.AbstractEventLoop
    write: bool
    durable: bool = False  # answer only after an fsynced commit
    announce: bool = False  # the result (new deliveries) goes to the subscribers at commit


class Outbox:
    """The running gateway's outbox, on a thread of its own.

    `subscribe` a callback to hear, on the event loop, of each delivery `enqueue` stored: the
    delivery worker sends those at once instead of finding them on its next scan.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_pending: int = 100_000,
        sync_within_s: float = SYNC_WITHIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = OutboxStore(path, max_pending=max_pending, auto_checkpoint=False)
        self.sync_within_s = sync_within_s
        self._clock = clock
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # A daemon: a process that exits without stop() must not hang on it. Nothing durable
        # is lost that way: enqueue has returned only for what was committed.
        self._thread = threading.Thread(target=self._run, name="notify-outbox", daemon=True)
        self._listeners: list[Callable[[list[Delivery]], None]] = []
        self._unsynced = _Replies()  # enqueues committed, waiting for the fsync to answer
        self._sync_by = 0.0  # time.monotonic() by which that fsync is done
        self.commits = 0
        self.syncs = 0
        self.checkpoints = 0
        self._checkpointed_at = 0  # self.commits at the last checkpoint

    def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        """Finish what is queued, then close the file."""
        if self._thread.is_alive():
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
        self.store.close()

    def subscribe(self, listener: Callable[[list[Delivery]], None]) -> None:
        self._listeners.append(listener)

    async def _call(
        self, run: Callable[..., T], *, write: bool, durable: bool = False, announce: bool = False
    ) -> T:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(run, done, loop, write, durable, announce))
        return await done

    async def enqueue(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Store the deliveries; returns, once they are fsynced, the ones that were new.

        The subscribers hear of the new ones as soon as they are committed, before the
        fsync (see the module's notes on durability)."""
        now = self._clock()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Delivery]] = loop.create_future()

        def insert(db: sqlite3.Connection) -> list[Delivery]:
            return self.store.insert(db, deliveries, now)

        self._jobs.put(_Job(insert, done, loop, write=True, durable=True, announce=True))
        return await done

    async def due(self, now: float, limit: int) -> list[Pending]:
        return await self._call(lambda: self.store.due(now, limit), write=False)

    async def mark_delivered(self, *keys: str) -> None:
        now = self._clock()
        await self._call(lambda db: self.store.set_delivered(db, keys, now), write=True)

    async def mark_failed(self, key: str, reason: str, next_try: float) -> None:
        await self._call(lambda db: self.store.set_failed(db, key, reason, next_try), write=True)

    async def mark_dead(self, key: str, reason: str) -> None:
        now = self._clock()
        await self._call(lambda db: self.store.set_dead(db, key, reason, now), write=True)

    async def prune(self, before: float) -> int:
        return await self._call(lambda db: self.store.delete_done(db, before), write=True)

    async def stats(self) -> OutboxStats:
        now = self._clock()
        return await self._call(lambda: self.store.stats(now), write=False)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                first = self._jobs.get(timeout=self._sync_wait())
            except queue.Empty:  # nothing else came: the fsync is due
                self._sync()
                self._checkpoint_if_due()
                continue
            jobs = [first]
            while not self._jobs.empty():  # everything queued meanwhile joins this round
                jobs.append(self._jobs.get())
            waiting = bool(self._unsynced)
            writes = [j for j in jobs if j is not None and j.write]
            if writes:
                self._commit(writes)
            reads = [j for j in jobs if j is not None and not j.write]
            if reads:
                replies = _Replies()
                for job in reads:
                    replies.answer(job, *_attempt(job.run))
                replies.send(self._on_loop)
            if waiting or None in jobs or time.monotonic() >= self._sync_by:
                self._sync()
            if None in jobs:
                return
            self._checkpoint_if_due()

    def _checkpoint_if_due(self) -> None:
        """A checkpoint takes a millisecond or more (two fsyncs): not inside a commit an alarm
        waits for, as SQLite's automatic one would be, but when no fsync is pending and, as
        long as the WAL is not too long, no job is waiting."""
        since = self.commits - self._checkpointed_at
        if self._unsynced or since < CHECKPOINT_COMMITS:
            return
        if not self._jobs.empty() and since < 4 * CHECKPOINT_COMMITS:
            return
        self._checkpointed_at = self.commits
        _none, error = _attempt(self.store.checkpoint)
        if error is not None:
            log.warning("notification outbox: checkpoint failed: %s", error)
        else:
            self.checkpoints += 1

    def _sync_wait(self) -> float | None:
        """How long the thread may wait for the next job before the pending fsync is due."""
        if not self._unsynced:
            return None
        return max(0.0, self._sync_by - time.monotonic())

    def _sync(self) -> None:
        """The fsync the committed enqueues wait for; then they are answered."""
        if not self._unsynced:
            return
        waiting, self._unsynced = self._unsynced, _Replies()
        _none, error = _attempt(self.store.sync, self._clock())
        self.syncs += 1
        if error is not None:
            waiting.fail(error)
        waiting.send(self._on_loop)

    def _commit(self, writes: list[_Job]) -> None:
        try:
            with self.store.transaction(durable=False) as db:
                results = [j.run(db) for j in writes]
        except Exception:
            # One bad job must not fail the others: each again, in a transaction of its own.
            self.store.recount()
            replies = _Replies()
            for job in writes:
                value, error = _attempt(self._alone, job)
                if job.announce and error is None:
                    replies.stored(job.loop, value)
                replies.answer(job, value, error)
            replies.send(self._on_loop)
            return
        self.commits += 1
        # Committed: in one call to the loop, the subscribers hear of the new deliveries (and
        # may send them) and the writes that need no fsync are answered. The enqueues wait
        # for the fsync (see `_run`).
        now = _Replies()
        for job, value in zip(writes, results, strict=True):
            if job.announce:
                now.stored(job.loop, value)
            if job.durable:
                if not self._unsynced:
                    self._sync_by = time.monotonic() + self.sync_within_s
                self._unsynced.answer(job, value, None)
            else:
                now.answer(job, value, None)
        now.send(self._on_loop)

    def _alone(self, job: _Job) -> Any:
        with self.store.transaction(durable=job.durable) as db:
            return job.run(db)

    def _on_loop(self, stored: list[Delivery], answers: list[_Answer]) -> None:
        if stored:
            for listener in self._listeners:
                try:
                    listener(stored)
                except Exception:  # the answers below must still go out
                    log.exception("notification outbox: a subscriber failed")
        for done, value, error in answers:
            if done.done():  # the caller was cancelled
                continue
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)


class _Replies:
    """What the outbox thread tells each caller's loop at one point of a round: the deliveries
    just stored, and answers to futures. `send` makes one call per loop."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, tuple[list[Delivery], list[_Answer]]] = {}

    def __bool__(self) -> bool:
        return bool(self._by_loop)

    def _of(self, loop: asyncio.AbstractEventLoop) -> tuple[list[Delivery], list[_Answer]]:
        return self._by_loop.setdefault(loop, ([], []))

    def stored(self, loop: asyncio.AbstractEventLoop, deliveries: list[Delivery]) -> None:
        if deliveries:
            self._of(loop)[0].extend(deliveries)

    def answer(self, job: _Job, value: Any, error: BaseException | None) -> None:
        self._of(job.loop)[1].append((job.done, value, error))

    def fail(self, error: BaseException) -> None:
        for _stored, answers in self._by_loop.values():
            answers[:] = [(done, None, error) for done, _value, _error in answers]

    def send(self, on_loop: Callable[[list[Delivery], list[_Answer]], None]) -> None:
        for loop, (stored, answers) in self._by_loop.items():
            if stored or answers:
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody to tell
                    loop.call_soon_threadsafe(on_loop, stored, answers)


def _attempt(run: Callable[..., Any], *args: Any) -> tuple[Any, BaseException | None]:
    try:
        return run(*args), None
    except Exception as exc:
        return None, exc
