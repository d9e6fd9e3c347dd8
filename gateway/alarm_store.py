"""Alarms on local disk: current state, append-only history, ack requests and rule timers.

One SQLite file, shared by the running gateway and short-lived CLI processes (`guanjia ack`,
`guanjia alarms`). Why it is safe for both to open it:

- WAL journal: readers never block the writer and the writer never blocks readers, so the
  gateway's once-a-second poll of pending acks and a CLI listing cost each other nothing.
- Every write is one `BEGIN IMMEDIATE` transaction. It takes the write lock up front, so a
  second writer waits in the busy handler (`busy_timeout`) instead of failing: a deferred
  transaction that reads first and upgrades later can get SQLITE_BUSY at once, without the
  wait, because SQLite cannot resolve that deadlock by waiting.
- `synchronous=FULL`: each commit is fsynced before it returns. In WAL mode NORMAL is safe
  against corruption but a power cut may roll back the last commits; here a commit is an
  acknowledgement someone gave, or a raise the notifier is about to send and MQTT about to
  publish, so losing it would make the record disagree with what people were told. Alarm
  transitions are rare (a few per minute in a storm), so the fsync is affordable, and saves
  with nothing to write skip the transaction altogether.
- The file must be on a local disk: WAL needs shared memory between the processes, which
  network file systems do not provide.

The store is also the outbox of the messages that tell a broker of each transition
(gateway/mqtt_outbox.py): they are written in the transaction that writes the transition, so
no transition is durable without its message, and they stay until the broker has
acknowledged them, across an outage of the link and a restart of the gateway.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.private_fs import make_private_dir, touch_private
from rules.alarms import Alarm, AlarmBook, FlapPolicy, Transition

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    grade TEXT NOT NULL,
    state TEXT NOT NULL,              -- derived, kept for queries and dashboards
    raised_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    value TEXT NOT NULL,              -- JSON: keeps true apart from 1
    limit_value TEXT NOT NULL,        -- JSON
    details TEXT NOT NULL,            -- JSON object
    acked_at REAL,
    acked_by TEXT NOT NULL,
    ack_note TEXT NOT NULL,
    cleared_at REAL,
    count INTEGER NOT NULL,
    escalation INTEGER NOT NULL,
    escalation_since REAL NOT NULL,
    shelved_until REAL,
    shelve_reason TEXT NOT NULL,
    flapping INTEGER NOT NULL,
    clear_pending_since REAL,
    flap_clears TEXT NOT NULL,        -- JSON list of epoch seconds
    UNIQUE (rule, subject)
);
CREATE INDEX IF NOT EXISTS alarms_state ON alarms (state);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- the order things happened in
    alarm_id TEXT NOT NULL,
    what TEXT NOT NULL,
    t REAL NOT NULL,
    by TEXT NOT NULL,
    note TEXT NOT NULL,
    grade TEXT NOT NULL,
    state TEXT NOT NULL,
    value TEXT NOT NULL,              -- JSON
    escalation INTEGER NOT NULL,
    quiet INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_alarm ON transitions (alarm_id, seq);
CREATE INDEX IF NOT EXISTS transitions_t ON transitions (t);
CREATE TABLE IF NOT EXISTS ack_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id TEXT NOT NULL,
    by TEXT NOT NULL,
    note TEXT NOT NULL,
    requested_at REAL NOT NULL,
    done_at REAL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS ack_requests_pending ON ack_requests (id) WHERE done_at IS NULL;
CREATE TABLE IF NOT EXISTS rule_state (
    rule_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,              -- JSON object from Rule.snapshot()
    saved_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- the order the messages go out in
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL
);
"""
# Messages kept for a broker that is away; past it the oldest go, counted (`outbox_dropped`):
# weeks of an alarm storm with the centre unreachable.
MAX_OUTBOX = 100_000

_ALARM_COLUMNS = (
    "id, rule, subject, kind, grade, state, raised_at, updated_at, value, limit_value, details, "
    "acked_at, acked_by, ack_note, cleared_at, count, escalation, escalation_since, "
    "shelved_until, shelve_reason, flapping, clear_pending_since, flap_clears"
)
_JSON_FIELDS = ("value", "limit", "details", "flap_clears")


class AlarmStoreError(RuntimeError):
    """The file cannot be used (written by a newer version, or not an alarm store)."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    alarm_id: str
    what: str
    t: float
    by: str
    note: str
    grade: str
    state: str
    value: Any
    escalation: int
    quiet: bool


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message about one transition of a write (`transition`: its index there), stored with
    it. A mapping payload gets the transition's `seq` (its place in the history: consecutive,
    so a reader sees a gap) and is encoded as JSON."""

    transition: int
    topic: str
    payload: bytes | Mapping[str, Any]
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A stored message, by its place in the outbox."""

    seq: int
    topic: str
    payload: bytes
    retain: bool


_dump_event = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class AckRequest:
    id: int
    alarm_id: str
    by: str
    note: str
    requested_at: float
    done_at: float | None = None
    result: str | None = None  # "acked", "already acknowledged", "unknown alarm", ...


class AlarmStore:
    """The alarm database. One instance per process; thread-safe (one lock per instance)."""

    def __init__(
        self, path: Path | str, *, busy_timeout_s: float = 5.0, max_outbox: int = MAX_OUTBOX
    ) -> None:
        self.path = Path(path)
        self.max_outbox = max_outbox
        self.outbox_dropped = 0  # messages the bound pushed out since this process opened it
        # Alarm texts, who acknowledged what: the site's business, 0600 whatever the umask
        # (SQLite gives its -wal and -shm files the database file's mode), in a directory
        # made 0700 if the gateway creates it; an existing one may be shared: left alone.
        make_private_dir(self.path.parent, tighten_existing=False)
        touch_private(self.path)
        # Autocommit (isolation_level=None): transactions are begun explicitly, IMMEDIATE.
        self._db = sqlite3.connect(
            self.path,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,  # guarded by self._lock; lets callers use to_thread
        )
        self._lock = threading.RLock()
        self._rule_state_cache: dict[str, str] = {}
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AlarmStoreError(f"{self.path}: cannot use WAL journal (got {mode!r})")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()
        # Messages waiting in the outbox, and the last one's seq (for whoever sends them).
        self.outbox_rows, self.outbox_last = self._db.execute(
            "SELECT count(*), coalesce(max(seq), 0) FROM outbox"
        ).fetchone()
        self._outbox_counts = (self.outbox_rows, self.outbox_last, 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AlarmStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            # executescript would commit our transaction; run the statements one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0]
            if version is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise AlarmStoreError(
                    f"{self.path} has schema version {version}, this guanjia knows up to "
                    f"{SCHEMA_VERSION}; upgrade guanjia or point it at another file"
                )
            # Older versions migrate here, step by step, when there are any.

    # -- alarms ---------------------------------------------------------------------------

    def load(self, flap: FlapPolicy | None = None, value_tolerance: float = 0.02) -> AlarmBook:
        """The book as last saved: open alarms with their escalation, and closed ones."""
        return AlarmBook.from_rows(self._alarm_rows(""), flap, value_tolerance)

    def open_alarms(self) -> list[Alarm]:
        return [Alarm.from_row(r) for r in self._alarm_rows("WHERE state != 'closed'")]

    def _alarm_rows(self, where: str) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(
                f"SELECT {_ALARM_COLUMNS} FROM alarms {where} ORDER BY raised_at, id"
            )
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        out = []
        for values in rows:
            row = dict(zip(names, values, strict=True))
            row["limit"] = row.pop("limit_value")
            for name in _JSON_FIELDS:
                row[name] = json.loads(row[name])
            out.append(row)
        return out

    def save(
        self,
        transitions: Sequence[Transition],
        book: AlarmBook,
        *,
        acks_done: Iterable[tuple[int, str]] = (),
        rule_states: Mapping[str, Mapping[str, Any]] | None = None,
        t: float | None = None,
    ) -> None:
        """Append the transitions and write every changed alarm, in one transaction.

        `acks_done` ((request id, result)) and `rule_states` may ride along, so an ack and the
        request it answers, or an alarm and the rule timer behind it, never disagree after a
        crash.
        """
        changed = book.unsaved()
        self.write(transitions, changed, acks_done=acks_done, rule_states=rule_states, t=t)
        book.saved(changed)

    def write(
        self,
        transitions: Sequence[Transition],
        changed: Sequence[Alarm],
        *,
        acks_done: Iterable[tuple[int, str]] = (),
        rule_states: Mapping[str, Mapping[str, Any]] | None = None,
        t: float | None = None,
        outbox: Sequence[OutboxEntry] = (),
        sent: Sequence[int] = (),
    ) -> list[Outgoing]:
        """`save` from data alone (the alarms' versions to write), for the store's thread:
        the book stays on the event loop, which marks them saved once this has returned.

        `outbox`: messages about these transitions, stored with them and returned as stored;
        `sent`: outbox messages the broker has acknowledged, deleted."""
        acks = list(acks_done)
        states = self._changed_rule_states(rule_states or {})
        if not (transitions or changed or acks or states or outbox or sent):
            return []  # nothing to say: no fsync
        now = time.time() if t is None else t
        with self._write() as db:
            db.executemany(
                "INSERT INTO transitions (alarm_id, what, t, by, note, grade, state, value, "
                "escalation, quiet) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        tr.alarm.id,
                        tr.what,
                        tr.t,
                        tr.by,
                        tr.note,
                        tr.alarm.grade,
                        tr.alarm.state,
                        json.dumps(tr.alarm.value),
                        tr.alarm.escalation,
                        int(tr.quiet),
                    )
                    for tr in transitions
                ],
            )
            # AUTOINCREMENT under the write lock: this write's transitions are consecutive.
            last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            stored = self._write_outbox(db, outbox, last - len(transitions) + 1, sent)
            db.executemany(
                f"INSERT OR REPLACE INTO alarms ({_ALARM_COLUMNS}) VALUES ({', '.join('?' * 23)})",
                [_alarm_values(a) for a in changed],
            )
            self._mark_done(db, acks, now)
            self._write_rule_states(db, states, now)
        self._rule_state_cache.update(states)
        self.outbox_rows, self.outbox_last, dropped = self._outbox_counts
        self.outbox_dropped += dropped
        return stored

    # -- the outbox -----------------------------------------------------------------------

    def _write_outbox(
        self,
        db: sqlite3.Connection,
        entries: Sequence[OutboxEntry],
        first_seq: int,
        sent: Sequence[int],
    ) -> list[Outgoing]:
        """Delete what was sent, add the entries (the oldest go past the bound)."""
        rows = self.outbox_rows
        if sent:
            rows -= db.executemany(
                "DELETE FROM outbox WHERE seq = ?", [(s,) for s in sent]
            ).rowcount
        stored = []
        for entry in entries:
            payload = entry.payload
            if not isinstance(payload, bytes):
                payload = _dump_event({"seq": first_seq + entry.transition, **payload}).encode()
            cursor = db.execute(
                "INSERT INTO outbox (topic, payload, retain) VALUES (?, ?, ?)",
                (entry.topic, payload, int(entry.retain)),
            )
            assert cursor.lastrowid is not None
            stored.append(Outgoing(cursor.lastrowid, entry.topic, payload, entry.retain))
        rows += len(stored)
        over = rows - self.max_outbox
        if over > 0:
            db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                (over,),
            )
            rows -= over
        # Counted once the transaction is in (`write`): a rollback leaves them as they were.
        self._outbox_counts = (rows, stored[-1].seq if stored else self.outbox_last, max(over, 0))
        return stored

    def outbox_after(self, seq: int, limit: int) -> list[Outgoing]:
        """Stored messages after `seq`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [Outgoing(r[0], r[1], bytes(r[2]), bool(r[3])) for r in rows]

    def history(
        self, alarm_id: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[HistoryEntry]:
        """The latest `limit` transitions (of one alarm, from `since` on), oldest first."""
        where: list[str] = []
        args: list[str | float] = []
        if alarm_id is not None:
            where.append("alarm_id = ?")
            args.append(alarm_id)
        if since is not None:
            where.append("t >= ?")
            args.append(since)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, alarm_id, what, t, by, note, grade, state, value, escalation, quiet "
                f"FROM transitions {clause} ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [
            HistoryEntry(
                seq=r[0],
                alarm_id=r[1],
                what=r[2],
                t=r[3],
                by=r[4],
                note=r[5],
                grade=r[6],
                state=r[7],
                value=json.loads(r[8]),
                escalation=r[9],
                quiet=bool(r[10]),
            )
            for r in reversed(rows)
        ]

    # -- acknowledgements from other processes ----------------------------------------------

    def ack_request(self, alarm_id: str, by: str, note: str = "", t: float | None = None) -> int:
        """Ask the running gateway to acknowledge; returns the request id to wait on."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO ack_requests (alarm_id, by, note, requested_at) VALUES (?, ?, ?, ?)",
                (alarm_id, by, note, time.time() if t is None else t),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def pending_acks(self) -> list[AckRequest]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, alarm_id, by, note, requested_at FROM ack_requests "
                "WHERE done_at IS NULL ORDER BY id"
            ).fetchall()
        return [AckRequest(*r) for r in rows]

    def ack_status(self, request_id: int) -> AckRequest | None:
        """For the CLI waiting on its request: done_at and result are set once handled."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, alarm_id, by, note, requested_at, done_at, result "
                "FROM ack_requests WHERE id = ?",
                (request_id,),
            ).fetchone()
        return None if row is None else AckRequest(*row)

    def mark_done(self, request_id: int, result: str, t: float | None = None) -> None:
        """Answer a request on its own; `save(acks_done=...)` does it with the transitions."""
        with self._write() as db:
            self._mark_done(db, [(request_id, result)], time.time() if t is None else t)

    @staticmethod
    def _mark_done(db: sqlite3.Connection, acks: Sequence[tuple[int, str]], t: float) -> None:
        db.executemany(
            "UPDATE ack_requests SET done_at = ?, result = ? WHERE id = ? AND done_at IS NULL",
            [(t, result, rid) for rid, result in acks],
        )

    # -- rule timers ----------------------------------------------------------------------

    def save_rule_state(self, rule_id: str, state: Mapping[str, Any]) -> None:
        self.save_rule_states({rule_id: state})

    def save_rule_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Write the snapshots that differ from the last ones written (unchanged: no fsync)."""
        encoded = self._changed_rule_states(states)
        if not encoded:
            return
        with self._write() as db:
            self._write_rule_states(db, encoded, time.time())
        self._rule_state_cache.update(encoded)

    def load_rule_state(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT rule_id, state FROM rule_state").fetchall()
        self._rule_state_cache = {rule_id: text for rule_id, text in rows}
        return {rule_id: json.loads(text) for rule_id, text in rows}

    def _changed_rule_states(self, states: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
        encoded = {k: json.dumps(v, sort_keys=True) for k, v in states.items()}
        return {k: v for k, v in encoded.items() if self._rule_state_cache.get(k) != v}

    @staticmethod
    def _write_rule_states(db: sqlite3.Connection, states: Mapping[str, str], t: float) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO rule_state (rule_id, state, saved_at) VALUES (?, ?, ?)",
            [(k, v, t) for k, v in states.items()],
        )


def _alarm_values(a: Alarm) -> tuple[Any, ...]:
    return (
        a.id,
        a.rule,
        a.subject,
        a.kind,
        a.grade,
        a.state,
        a.raised_at,
        a.updated_at,
        json.dumps(a.value),
        json.dumps(a.limit),
        json.dumps(dict(a.details), ensure_ascii=False),
        a.acked_at,
        a.acked_by,
        a.ack_note,
        a.cleared_at,
        a.count,
        a.escalation,
        a.escalation_since,
        a.shelved_until,
        a.shelve_reason,
        int(a.flapping),
        a.clear_pending_since,
        json.dumps(list(a.flap_clears)),
    )


@dataclass(frozen=True, slots=True)
class _Write:
    transitions: Sequence[Transition]
    changed: Sequence[Alarm]
    acks_done: Sequence[tuple[int, str]]
    rule_states: Mapping[str, Mapping[str, Any]] | None
    t: float | None
    done: Future[list[Outgoing]]
    outbox: Sequence[OutboxEntry] = ()
    sent: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class _Read:
    call: Callable[[AlarmStore], Any]
    done: Future[Any]


class StoreThread:
    """The running gateway's alarm store, on a thread of its own.

    Every SQLite call of the service (writes with their fsync, the poll of pending `guanjia
    ack` requests, a busy wait while the CLI holds the write lock) happens here, never on the
    event loop. Writes that queue up while one commits go into the next transaction together:
    one fsync for a burst of transitions. Each caller gets a future that resolves when its
    data is durable, and only then announces its alarms. The queue is unbounded in count but
    not in practice: its producers are the rules runtime and acknowledgements, each of which
    waits for its write before it makes the next.
    """

    def __init__(self, store: AlarmStore) -> None:
        self.store = store
        self._jobs: queue.SimpleQueue[_Write | _Read | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alarm-store", daemon=False)
        self.commits = 0
        self.batched = 0  # writes that shared a commit with another

    def start(self) -> None:
        self._thread.start()

    def write(
        self,
        transitions: Sequence[Transition],
        changed: Sequence[Alarm],
        *,
        acks_done: Sequence[tuple[int, str]] = (),
        rule_states: Mapping[str, Mapping[str, Any]] | None = None,
        t: float | None = None,
        outbox: Sequence[OutboxEntry] = (),
        sent: Sequence[int] = (),
    ) -> Future[list[Outgoing]]:
        """Resolves, once durable, to the outbox messages as stored (AlarmStore.write)."""
        done: Future[list[Outgoing]] = Future()
        self._jobs.put(_Write(transitions, changed, acks_done, rule_states, t, done, outbox, sent))
        return done

    def read(self, call: Callable[[AlarmStore], Any]) -> Future[Any]:
        done: Future[Any] = Future()
        self._jobs.put(_Read(call, done))
        return done

    def stop(self) -> None:
        """Finish what is queued, then close the store."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self.store.close()

    def _run(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            while True:  # everything queued meanwhile joins this round
                try:
                    jobs.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stop = None in jobs
            writes = [j for j in jobs if isinstance(j, _Write)]
            if writes:
                self._commit(writes)
            for job in jobs:
                if isinstance(job, _Read) and job.done.set_running_or_notify_cancel():
                    try:
                        job.done.set_result(job.call(self.store))
                    except BaseException as exc:
                        job.done.set_exception(exc)
            if stop:
                return

    def _commit(self, writes: list[_Write]) -> None:
        latest: dict[tuple[str, str], Alarm] = {}
        states: dict[str, Mapping[str, Any]] = {}
        outbox: list[OutboxEntry] = []
        shares: list[int] = []  # how many of the stored messages are each write's
        offset = 0
        for w in writes:  # later versions of an alarm or a rule's state win
            latest.update((a.key, a) for a in w.changed)
            states.update(w.rule_states or {})
            # A message names its transition by index: in the joint write, past the others'.
            outbox += [replace(e, transition=e.transition + offset) for e in w.outbox]
            shares.append(len(w.outbox))
            offset += len(w.transitions)
        try:
            stored = self.store.write(
                [tr for w in writes for tr in w.transitions],
                list(latest.values()),
                acks_done=[a for w in writes for a in w.acks_done],
                rule_states=states or None,
                t=max((w.t for w in writes if w.t is not None), default=None),
                outbox=outbox,
                sent=[s for w in writes for s in w.sent],
            )
        except BaseException as exc:
            for w in writes:
                _settle(w.done, exception=exc)
            return
        self.commits += 1
        self.batched += len(writes) - 1
        start = 0
        for w, share in zip(writes, shares, strict=True):
            _settle(w.done, stored[start : start + share])
            start += share


def _settle(done: Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    """Answer a write's waiter, unless it gave up: at shutdown asyncio cancels the future a
    cancelled task awaited, maybe while its write commits. The write is stored all the same;
    answering a cancelled future would raise here and end the thread, and whatever was queued
    behind it (the stop too) would never be answered."""
    with contextlib.suppress(InvalidStateError):
        if exception is not None:
            done.set_exception(exception)
        else:
            done.set_result(result)
