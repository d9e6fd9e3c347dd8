"""What the accounts must not forget across a restart, and what late data needs: per counter
its marks (accounts.counters: the readings around period boundaries, gaps and events, not every
reading), its day totals (a month adds them up, also when its first days' marks are gone) and
how far each period kind has been written. One SQLite file, used by the running gateway only,
on a thread of its own (`StoreThread`): nothing here runs on the event loop.

`synchronous=NORMAL` in WAL mode: a power cut may lose the last commits, which is a few seconds
of marks, a gap the next readings cover again (the counter's own value is the truth); the file
is never corrupted by it.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from accounts.counters import Mark, Tally
from core.private_fs import make_private_dir, touch_private

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    counter TEXT NOT NULL,        -- device/point
    t REAL NOT NULL,              -- epoch seconds
    value REAL NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY (counter, t)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marks_t ON marks (t);
CREATE TABLE IF NOT EXISTS days (
    counter TEXT NOT NULL,
    start REAL NOT NULL,          -- the local day's start, epoch seconds
    amount REAL NOT NULL,
    covered REAL NOT NULL,
    span REAL NOT NULL,
    PRIMARY KEY (counter, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written (
    counter TEXT NOT NULL,
    period TEXT NOT NULL,         -- hour | day | month
    until REAL NOT NULL,          -- periods starting before this were written
    PRIMARY KEY (counter, period)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revisions (  -- periods written again (late data), how many times
    counter TEXT NOT NULL,
    period TEXT NOT NULL,
    start REAL NOT NULL,
    rev INTEGER NOT NULL,
    PRIMARY KEY (counter, period, start)
) WITHOUT ROWID;
"""


class AccountsStoreError(RuntimeError):
    """The file cannot be used (written by a newer version, or not an accounts store)."""


@dataclass
class StoredCounter:
    marks: list[Mark] = field(default_factory=list)
    days: dict[float, Tally] = field(default_factory=dict)
    written: dict[str, float] = field(default_factory=dict)  # period kind -> until
    revisions: dict[tuple[str, float], int] = field(default_factory=dict)  # (kind, start) -> n


@dataclass(frozen=True, slots=True)
class Changes:
    """One save: marks added or removed, day totals, how far each kind was written, how
    often a period was written again."""

    marks: Mapping[str, Mapping[float, Mark | None]]
    days: Mapping[str, Mapping[float, Tally]] = field(default_factory=dict)
    written: Mapping[tuple[str, str], float] = field(default_factory=dict)
    revisions: Mapping[tuple[str, str, float], int] = field(default_factory=dict)


class AccountsStore:
    def __init__(self, path: Path) -> None:
        make_private_dir(path.parent)
        touch_private(path)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        try:
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise AccountsStoreError(f"{path}: not an accounts store ({exc})") from exc
        row = self.db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            self.db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise AccountsStoreError(
                f"{path}: written by a newer version (schema {row[0]}); "
                "run that version or move the file away"
            )

    def load(self) -> dict[str, StoredCounter]:
        out: dict[str, StoredCounter] = {}
        for counter, t, value, run in self.db.execute(
            "SELECT counter, t, value, run FROM marks ORDER BY counter, t"
        ):
            entry = out.setdefault(counter, StoredCounter())
            entry.marks.append(Mark(t, value, bool(run)))
        for counter, start, amount, covered, span in self.db.execute(
            "SELECT counter, start, amount, covered, span FROM days"
        ):
            out.setdefault(counter, StoredCounter()).days[start] = Tally(amount, covered, span)
        for counter, period, until in self.db.execute("SELECT counter, period, until FROM written"):
            out.setdefault(counter, StoredCounter()).written[period] = until
        for counter, period, start, rev in self.db.execute(
            "SELECT counter, period, start, rev FROM revisions"
        ):
            out.setdefault(counter, StoredCounter()).revisions[(period, start)] = rev
        return out

    def save(self, changes: Changes) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for counter, marks in changes.marks.items():
                gone = [(counter, t) for t, m in marks.items() if m is None]
                kept = [
                    (counter, m.t, m.value, int(m.run)) for m in marks.values() if m is not None
                ]
                db.executemany("DELETE FROM marks WHERE counter = ? AND t = ?", gone)
                db.executemany("INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?)", kept)
            db.executemany(
                "INSERT OR REPLACE INTO days VALUES (?, ?, ?, ?, ?)",
                [
                    (counter, start, tally.amount, tally.covered, tally.span)
                    for counter, days in changes.days.items()
                    for start, tally in days.items()
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO written VALUES (?, ?, ?)",
                [(c, period, until) for (c, period), until in changes.written.items()],
            )
            db.executemany(
                "INSERT OR REPLACE INTO revisions VALUES (?, ?, ?, ?)",
                [(c, period, start, n) for (c, period, start), n in changes.revisions.items()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def prune(self, marks_before: float, days_before: float) -> None:
        """Forget marks older than `marks_before` (keeping each counter's last one before it:
        a stretch starts there), and day totals and revision counts of periods that start
        before `days_before`."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "DELETE FROM marks WHERE t < ? AND t < "
                "(SELECT MAX(m.t) FROM marks m WHERE m.counter = marks.counter AND m.t < ?)",
                (marks_before, marks_before),
            )
            db.execute("DELETE FROM days WHERE start < ?", (days_before,))
            db.execute("DELETE FROM revisions WHERE start < ?", (days_before,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


T = TypeVar("T")


class StoreThread:
    """The store on a thread of its own: each call is queued and its future resolves once it
    has run (saves queued meanwhile run one after the other, in order)."""

    def __init__(self, store: AccountsStore) -> None:
        self.store = store
        self._jobs: queue.SimpleQueue[tuple[Callable[[AccountsStore], Any], Future[Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="accounts-store", daemon=False)
        self.commits = 0

    def start(self) -> None:
        self._thread.start()

    def call(self, job: Callable[[AccountsStore], T]) -> Future[T]:
        done: Future[T] = Future()
        self._jobs.put((job, done))
        return done

    def save(self, changes: Changes) -> Future[None]:
        return self.call(lambda store: store.save(changes))

    def stop(self) -> None:
        """Run what is queued, then close the store."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self.store.close()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            try:
                done.set_result(job(self.store))
                self.commits += 1
            except BaseException as exc:
                done.set_exception(exc)
