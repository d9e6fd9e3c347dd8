"""The alarm store: round trips, restarts, history, and two processes on one file."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.alarm_store import SCHEMA_VERSION, AlarmStore, AlarmStoreError, StoreThread
from rules.alarms import AlarmBook, FlapPolicy, Transition
from rules.model import Clear, Grade, Raise

RESPONSE: dict[Grade, float] = {"red": 60.0, "orange": 300.0, "yellow": 900.0, "blue": math.inf}
AID = "ac-policy.ac-301"
ROOT = Path(__file__).resolve().parent.parent


def grade_of(kind: str, override: Grade | None) -> Grade:
    return override or "yellow"


def response_time(grade: Grade) -> float:
    return RESPONSE[grade]


def up(subject: str = "ac-301", value: float = 24.0, grade: Grade | None = None) -> Raise:
    return Raise("ac-policy", subject, "ac_setpoint", value=value, limit=26.0, grade=grade)


def test_round_trip_preserves_every_field(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "alarms.db")
    book = AlarmBook(FlapPolicy(max_cycles=1, window_s=100, hold_s=5000))
    out: list[Transition] = []
    out += book.apply(
        Raise(
            "door-policy",
            "门禁-1F",
            "door_forced_open",
            value=True,
            limit="closed",
            grade="orange",
            details={"door": "东门", "held_s": 31, "ratio": 0.5, "armed": False},
        ),
        0.25,
        grade_of,
    )
    out += book.apply(up(value=1), 1.0, grade_of)  # an int must come back an int
    out += book.shelve(AID, 1000.5, "维修", "zhang", 2.0)
    out += book.apply(Clear("ac-policy", "ac-301"), 3.0, grade_of)
    out += book.apply(up(value=1), 4.0, grade_of)
    out += book.apply(Clear("ac-policy", "ac-301"), 5.0, grade_of)  # flapping
    out += book.ack(AID, "li", 6.0, "看到了")
    out += book.apply(up("ac-302", value=math.nan), 7.0, grade_of)
    out += book.tick(2000.0, response_time)
    store.save(out, book)
    store.close()

    loaded = AlarmStore(tmp_path / "alarms.db").load()
    # repr: NaN != NaN, and 1 == 1.0 == True would hide a type lost on the way.
    assert repr(sorted(loaded.all(), key=lambda a: a.id)) == repr(
        sorted(book.all(), key=lambda a: a.id)
    )
    door = loaded.find("door-policy", "门禁-1F")
    assert door is not None
    assert door.value is True
    assert dict(door.details) == {"door": "东门", "held_s": 31, "ratio": 0.5, "armed": False}
    assert type(door.details["held_s"]) is int
    ac = loaded.get(AID)
    assert ac is not None
    assert type(ac.value) is int
    assert (ac.flapping, ac.clear_pending_since, ac.flap_clears) == (True, 5, (3, 5))
    assert (ac.acked_by, ac.ack_note, ac.state) == ("li", "看到了", "acknowledged")
    nan = loaded.find("ac-policy", "ac-302")
    assert nan is not None
    assert isinstance(nan.value, float)
    assert math.isnan(nan.value)


def test_restart_keeps_active_alarms_and_escalation(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    store = AlarmStore(path)
    book = store.load()
    store.save(book.apply(up(grade="orange"), 0, grade_of), book)
    store.save(book.apply(up("ac-302"), 0, grade_of), book)
    store.save(book.ack("ac-policy.ac-302", "zhang", 10), book)
    [esc] = book.tick(300, response_time)
    store.save([esc], book)
    assert esc.alarm.escalation == 1
    store.close()  # the gateway restarts here

    store = AlarmStore(path)
    book = store.load()
    assert {a.id: a.state for a in book.open_alarms()} == {
        AID: "active",
        "ac-policy.ac-302": "acknowledged",
    }
    assert book.get(AID).escalation == 1  # type: ignore[union-attr]
    assert book.tick(599, response_time) == []  # level 1 is not sent again
    [esc] = book.tick(600, response_time)
    assert esc.alarm.escalation == 2
    assert book.apply(up(grade="orange"), 601, grade_of) == []  # the rule re-raises: no news
    store.save([esc], book)
    store.close()
    assert AlarmStore(path).load().get(AID).escalation == 2  # type: ignore[union-attr]


def test_held_clear_survives_restart(tmp_path: Path) -> None:
    """A flapping alarm's pending clear makes no transition but must still be saved."""
    flap = FlapPolicy(max_cycles=1, window_s=100, hold_s=50)
    store = AlarmStore(tmp_path / "a.db")
    book = store.load(flap)
    steps: list[tuple[float, Raise | Clear]] = [
        (0, up()),
        (1, Clear("ac-policy", "ac-301")),
        (2, up()),
    ]
    for t, eff in steps:
        store.save(book.apply(eff, t, grade_of), book)
    store.save(book.apply(Clear("ac-policy", "ac-301"), 3, grade_of), book)  # flapping
    store.save(book.apply(up(), 4, grade_of), book)  # silent
    store.save(book.apply(Clear("ac-policy", "ac-301"), 5, grade_of), book)  # silent, pending
    store.close()
    book = AlarmStore(tmp_path / "a.db").load(flap)
    assert [tr.what for tr in book.tick(55, response_time)] == ["cleared"]


def test_history_order_and_filters(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "a.db")
    book = store.load()
    store.save(book.apply(up(), 0, grade_of), book)
    store.save(book.apply(up("ac-302"), 1, grade_of), book)
    store.save(book.ack(AID, "zhang", 2, "ok"), book)
    store.save(book.apply(Clear("ac-policy", "ac-301"), 3, grade_of), book)
    entries = store.history()
    assert [(e.alarm_id, e.what) for e in entries] == [
        (AID, "raised"),
        ("ac-policy.ac-302", "raised"),
        (AID, "acked"),
        (AID, "cleared"),
        (AID, "closed"),
    ]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    acked = entries[2]
    assert (acked.by, acked.note, acked.state, acked.grade, acked.value) == (
        "zhang",
        "ok",
        "acknowledged",
        "yellow",
        24.0,
    )
    assert [e.what for e in store.history(AID)] == ["raised", "acked", "cleared", "closed"]
    assert [e.what for e in store.history(AID, since=2)] == ["acked", "cleared", "closed"]
    assert [e.what for e in store.history(limit=2)] == ["cleared", "closed"]  # the latest two
    assert [a.id for a in store.open_alarms()] == ["ac-policy.ac-302"]


def test_ack_request_from_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    gateway = AlarmStore(path)
    book = gateway.load()
    gateway.save(book.apply(up(), 0, grade_of), book)
    assert gateway.pending_acks() == []

    cli = AlarmStore(path)  # what `guanjia ack` opens
    rid = cli.ack_request(AID, "zhang", "on my way", t=5)
    cli.ack_request("no.such", "zhang")

    # The gateway's once-a-second poll.
    first, second = gateway.pending_acks()
    assert (first.id, first.alarm_id, first.by, first.note) == (rid, AID, "zhang", "on my way")
    transitions = book.ack(first.alarm_id, first.by, 6, first.note)
    gateway.save(transitions, book, acks_done=[(first.id, "acked")], t=6)
    gateway.mark_done(second.id, "unknown alarm")
    assert gateway.pending_acks() == []

    status = cli.ack_status(rid)
    assert status is not None
    assert (status.done_at, status.result) == (6, "acked")
    assert [a.state for a in cli.open_alarms()] == ["acknowledged"]
    gateway.close()
    cli.close()


def test_ack_request_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    gateway = AlarmStore(path)
    code = (
        "import sys; from gateway.alarm_store import AlarmStore; "
        "print(AlarmStore(sys.argv[1]).ack_request('ac-policy.ac-301', 'cli'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    [req] = gateway.pending_acks()
    assert req.id == int(done.stdout)


def test_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    AlarmStore(path).close()
    errors: list[BaseException] = []

    def gateway_writer() -> None:
        try:
            store = AlarmStore(path, busy_timeout_s=10)
            book = store.load(FlapPolicy(enabled=False))
            for i in range(200):
                subject = f"ac-{i % 20}"
                store.save(book.apply(up(subject, value=float(i)), float(i), grade_of), book)
                store.save_rule_state("ac-policy", {"since": {subject: i}})
                store.save(book.apply(Clear("ac-policy", subject), i + 0.5, grade_of), book)
            store.close()
        except BaseException as e:  # reported to the test thread
            errors.append(e)

    def cli_writer(n: int) -> None:
        try:
            store = AlarmStore(path, busy_timeout_s=10)
            for i in range(100):
                store.ack_request(f"x.{n}-{i}", f"cli-{n}")
                store.pending_acks()
            store.close()
        except BaseException as e:
            errors.append(e)

    # Separate processes as well as threads: file locks between processes are what the
    # gateway and `guanjia ack` really share.
    code = (
        "import sys; from gateway.alarm_store import AlarmStore\n"
        "s = AlarmStore(sys.argv[1], busy_timeout_s=10)\n"
        "for i in range(100): s.ack_request(f'p.{sys.argv[2]}-{i}', 'proc'); s.pending_acks()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(n)], cwd=ROOT)
        for n in range(2)
    ]
    threads = [threading.Thread(target=gateway_writer)]
    threads += [threading.Thread(target=cli_writer, args=(n,)) for n in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert errors == []
    store = AlarmStore(path)
    assert len(store.pending_acks()) == 500
    assert len(store.history(limit=10_000)) == 400
    assert store.load_rule_state() == {"ac-policy": {"since": {"ac-19": 199}}}


def test_rule_state_round_trip_and_atomic_with_alarms(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = AlarmStore(path)
    store.save_rule_state("ac-policy", {"on_since": {"ac-301": 1700000000.5}})
    store.save_rule_state("door-policy", {})
    book = store.load()
    store.save(book.apply(up(), 0, grade_of), book, rule_states={"ac-policy": {"on_since": {}}})
    store.close()
    store = AlarmStore(path)
    assert store.load_rule_state() == {"ac-policy": {"on_since": {}}, "door-policy": {}}
    assert store.load().get(AID) is not None


def test_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    AlarmStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    AlarmStore(path).close()  # reopening does not add a second version row
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(AlarmStoreError, match="upgrade guanjia"):
        AlarmStore(path)


def test_save_without_changes_writes_nothing(tmp_path: Path) -> None:
    store = AlarmStore(tmp_path / "a.db")
    book = store.load()
    store.save(book.apply(up(), 0, grade_of), book)
    before = store._db.total_changes
    store.save(book.apply(up(), 1, grade_of), book)  # an identical re-raise
    store.save_rule_state("r", {"a": 1})
    store.save_rule_state("r", {"a": 1})
    assert store._db.total_changes == before + 1  # only the first rule state


def test_the_alarm_store_is_private(tmp_path: Path) -> None:
    from gateway.alarm_store import AlarmStore

    directory = tmp_path / "state"
    store = AlarmStore(directory / "alarms.sqlite")
    store.close()
    assert directory.stat().st_mode & 0o777 == 0o700
    files = list(directory.iterdir())
    assert any(f.name == "alarms.sqlite" for f in files)
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600, f


def test_a_write_whose_waiter_gave_up_is_stored_and_the_thread_goes_on(tmp_path: Path) -> None:
    """At shutdown asyncio cancels the future a cancelled task awaited, maybe before its write
    commits. The write is stored all the same, and the thread goes on to answer what is queued
    behind it and to stop (answering the cancelled future ended it, and `guanjia run` could
    hang on SIGTERM)."""
    thread = StoreThread(AlarmStore(tmp_path / "a.db"))
    written = thread.write([], [], rule_states={"r-1": {"seen": 1}})
    assert written.cancel()
    given_up = thread.read(lambda store: store.load_rule_state())
    assert given_up.cancel()
    read = thread.read(lambda store: store.load_rule_state())
    thread.start()
    assert read.result(timeout=5) == {"r-1": {"seen": 1}}
    stopping = threading.Thread(target=thread.stop)
    stopping.start()
    stopping.join(5)
    assert not stopping.is_alive()
    assert AlarmStore(tmp_path / "a.db").load_rule_state() == {"r-1": {"seen": 1}}
