"""The alarm lifecycle as a pure state machine, driven with explicit times."""

from __future__ import annotations

import math

import pytest

from rules.alarms import (
    Alarm,
    AlarmBook,
    FlapPolicy,
    Transition,
    UnknownAlarm,
    alarm_id,
)
from rules.model import Clear, Grade, Raise

RESPONSE: dict[Grade, float] = {"red": 60.0, "orange": 300.0, "yellow": 900.0, "blue": math.inf}
DEFAULT_GRADE: dict[str, Grade] = {"door_forced_open": "orange", "ac_setpoint": "yellow"}


def grade_of(kind: str, override: Grade | None) -> Grade:
    return override or DEFAULT_GRADE.get(kind, "blue")


def response_time(grade: Grade) -> float:
    return RESPONSE[grade]


def up(
    value: float | bool = 24.0,
    grade: Grade | None = None,
    subject: str = "ac-301",
    limit: float = 26.0,
) -> Raise:
    return Raise("ac-policy", subject, "ac_setpoint", value=value, limit=limit, grade=grade)


def down(subject: str = "ac-301") -> Clear:
    return Clear("ac-policy", subject)


def whats(transitions: list[Transition]) -> list[str]:
    return [tr.what for tr in transitions]


AID = "ac-policy.ac-301"


def test_ids_are_stable_safe_and_unique() -> None:
    assert alarm_id("ac-policy", "ac-301") == AID
    assert alarm_id("ac-policy", "ac-301") == AID  # deterministic
    tricky = [
        ("ac-policy", "AC-301"),
        ("ac-policy", "ac 301"),
        ("ac-policy", "三楼东区"),
        ("ac-policy", "三楼西区"),
        ("a.b", "c"),
        ("a", "b.c"),
        ("door/+#", "x" * 200),
    ]
    ids = [alarm_id(r, s) for r, s in tricky] + [AID]
    assert len(set(ids)) == len(ids)
    for i in ids:
        assert all(ch in "abcdefghijklmnopqrstuvwxyz0123456789._-" for ch in i), i
        assert len(i) <= 64


def test_raise_ack_clear_closes() -> None:
    book = AlarmBook()
    [raised] = book.apply(up(), 0, grade_of)
    assert raised.what == "raised"
    assert raised.by == "rule:ac-policy"
    a = raised.alarm
    assert (a.id, a.state, a.grade, a.value, a.limit) == (AID, "active", "yellow", 24.0, 26.0)
    assert a.thingsboard_status == "ACTIVE_UNACK"

    [acked] = book.ack(AID, "zhang", 10, "on my way")
    assert acked.alarm.state == "acknowledged"
    assert (acked.alarm.acked_by, acked.alarm.ack_note, acked.alarm.acked_at) == (
        "zhang",
        "on my way",
        10,
    )

    out = book.apply(down(), 20, grade_of)
    assert whats(out) == ["cleared", "closed"]
    assert out[-1].alarm.state == "closed"
    assert out[-1].alarm.thingsboard_status == "CLEARED_ACK"
    assert book.open_alarms() == []
    assert book.active() == []


def test_raise_clear_waits_for_ack_then_closes() -> None:
    book = AlarmBook()
    book.apply(up(), 0, grade_of)
    [cleared] = book.apply(down(), 5, grade_of)
    assert cleared.alarm.state == "cleared"
    assert cleared.alarm.thingsboard_status == "CLEARED_UNACK"
    assert [a.id for a in book.open_alarms()] == [AID]  # open until someone has seen it
    assert book.active() == []
    out = book.ack(AID, "li", 50)
    assert whats(out) == ["acked", "closed"]
    assert book.get(AID) is not None
    assert book.get(AID).state == "closed"  # type: ignore[union-attr]


def test_repeated_ack_and_clear_are_idempotent() -> None:
    book = AlarmBook()
    book.apply(up(), 0, grade_of)
    assert whats(book.ack(AID, "zhang", 1)) == ["acked"]
    assert book.ack(AID, "wang", 2) == []  # an MQTT retry, a second CLI call
    assert book.get(AID).acked_by == "zhang"  # type: ignore[union-attr]
    assert whats(book.apply(down(), 3, grade_of)) == ["cleared", "closed"]
    assert book.apply(down(), 4, grade_of) == []
    assert book.apply(Clear("ac-policy", "never-raised"), 4, grade_of) == []
    with pytest.raises(UnknownAlarm):
        book.ack("no.such-alarm", "zhang", 5)


def test_identical_reraises_emit_nothing() -> None:
    book = AlarmBook()
    book.apply(up(24.0), 0, grade_of)
    for t in range(1, 100):
        assert book.apply(up(24.0), t, grade_of) == []
        # Sample noise well within the tolerance (2 % of the 26 °C limit) is no news either.
        assert book.apply(up(24.0 + (t % 3) * 0.1), t, grade_of) == []
    assert book.get(AID).updated_at == 0  # type: ignore[union-attr]


def test_updated_on_grade_or_meaningful_value_change() -> None:
    book = AlarmBook()
    book.apply(up(24.0), 0, grade_of)
    [upd] = book.apply(up(24.0, grade="red"), 10, grade_of)
    assert upd.what == "updated"
    assert upd.alarm.grade == "red"
    assert upd.alarm.updated_at == 10
    assert book.apply(up(24.0, grade="red"), 11, grade_of) == []
    [upd] = book.apply(up(22.0, grade="red"), 12, grade_of)  # a whole degree lower
    assert (upd.what, upd.alarm.value) == ("updated", 22.0)
    # Slow drift adds up: each step is small, but the stored value is the last reported one.
    outs = [book.apply(up(22.0 - 0.2 * i, grade="red"), 12 + i, grade_of) for i in range(1, 5)]
    assert [whats(o) for o in outs] == [[], [], ["updated"], []]
    # A flag turning into a number is news even though True == 1 in Python.
    book2 = AlarmBook()
    book2.apply(Raise("r", "d", "k", value=True), 0, grade_of)
    assert whats(book2.apply(Raise("r", "d", "k", value=1), 1, grade_of)) == ["updated"]


def test_at_most_one_open_alarm_per_key() -> None:
    book = AlarmBook()
    book.apply(up(subject="ac-301"), 0, grade_of)
    book.apply(up(subject="ac-302"), 0, grade_of)
    book.apply(Raise("door-policy", "ac-301", "door_forced_open"), 0, grade_of)
    for t in range(1, 10):
        book.apply(up(subject="ac-301"), t, grade_of)
        book.apply(up(subject="ac-301", grade="orange"), t, grade_of)
    keys = [a.key for a in book.open_alarms()]
    assert len(keys) == len(set(keys)) == 3
    assert book.find("door-policy", "ac-301").grade == "orange"  # type: ignore[union-attr]


def test_raise_after_close_opens_a_new_instance_with_the_same_id() -> None:
    """The id stays, so the retained topic guanjia/<site>/alarm/<id> stays too."""
    book = AlarmBook()
    book.apply(up(), 0, grade_of)
    book.ack(AID, "zhang", 1)
    book.apply(down(), 2, grade_of)
    [raised] = book.apply(up(23.0), 100, grade_of)
    a = raised.alarm
    assert raised.what == "raised"
    assert (a.id, a.state, a.raised_at, a.count, a.escalation) == (AID, "active", 100, 1, 0)
    assert (a.acked_at, a.acked_by, a.cleared_at) == (None, "", None)
    assert len(book) == 1


def test_reraise_while_cleared_unacked_reactivates_and_counts() -> None:
    book = AlarmBook()
    book.apply(up(), 0, grade_of)
    book.apply(down(), 10, grade_of)
    [again] = book.apply(up(), 20, grade_of)
    assert (again.what, again.alarm.state, again.alarm.count) == ("raised", "active", 2)
    assert again.alarm.raised_at == 0  # the same occurrence chain, still unacknowledged


def test_escalation_levels_at_response_time_multiples() -> None:
    book = AlarmBook()
    book.apply(up(grade="orange"), 1000, grade_of)  # response time 300 s
    levels: dict[float, int] = {}
    for t in range(1000, 2300):
        for tr in book.tick(t, response_time):
            assert tr.what == "escalated"
            assert tr.by == "guanjia"
            levels[t] = tr.alarm.escalation
    assert levels == {1300: 1, 1600: 2, 1900: 3, 2200: 4}
    book.ack(AID, "zhang", 2250)
    assert book.tick(5000, response_time) == []  # acknowledged: no more escalation
    assert book.get(AID).escalation == 4  # type: ignore[union-attr]


def test_escalation_after_downtime_jumps_once_and_keeps_the_grid() -> None:
    book = AlarmBook()
    book.apply(up(grade="red"), 0, grade_of)  # 60 s
    [tr] = book.tick(250, response_time)
    assert tr.alarm.escalation == 4
    assert book.tick(299, response_time) == []
    assert book.tick(300, response_time)[0].alarm.escalation == 5


def test_no_escalation_for_cleared_acked_or_never_escalating_grades() -> None:
    book = AlarmBook()
    book.apply(up(grade="blue"), 0, grade_of)  # response time inf
    book.apply(up(subject="ac-302", grade="red"), 0, grade_of)
    book.apply(down("ac-302"), 10, grade_of)  # cleared but not acked: condition gone
    assert book.tick(10_000, response_time) == []


def test_shelving_hides_then_reappears() -> None:
    book = AlarmBook()
    book.apply(up(grade="red"), 0, grade_of)
    [shelved] = book.shelve(AID, 600, "maintenance on 3F", "zhang", 10)
    assert (shelved.what, shelved.quiet) == ("shelved", False)
    assert shelved.alarm.shelve_reason == "maintenance on 3F"
    # While shelved it still changes, quietly, and does not escalate.
    [upd] = book.apply(up(20.0, grade="red"), 20, grade_of)
    assert (upd.what, upd.quiet) == ("updated", True)
    assert book.tick(300, response_time) == []
    [cleared] = book.apply(down(), 400, grade_of)
    assert cleared.quiet
    [back] = book.apply(up(grade="red"), 500, grade_of)
    assert (back.what, back.quiet) == ("raised", True)
    # Expiry: it reappears loudly, with a full response time before it escalates.
    [unshelved] = book.tick(600, response_time)
    assert (unshelved.what, unshelved.quiet, unshelved.by) == ("unshelved", False, "guanjia")
    assert unshelved.alarm.shelved_until is None
    assert book.tick(659, response_time) == []
    [esc] = book.tick(660, response_time)
    assert (esc.what, esc.quiet, esc.alarm.escalation) == ("escalated", False, 1)


def test_shelving_covers_recurrences_and_can_be_lifted() -> None:
    book = AlarmBook()
    book.apply(up(), 0, grade_of)
    book.ack(AID, "zhang", 1)
    book.apply(down(), 2, grade_of)  # closed
    book.shelve(AID, 1000, "known nuisance", "zhang", 3)
    [raised] = book.apply(up(), 10, grade_of)
    assert raised.quiet
    assert raised.alarm.shelved_until == 1000
    [lifted] = book.unshelve(AID, "li", 20, "fixed")
    assert (lifted.what, lifted.quiet, lifted.by, lifted.note) == (
        "unshelved",
        False,
        "li",
        "fixed",
    )
    assert book.unshelve(AID, "li", 21) == []
    with pytest.raises(ValueError, match="not after"):
        book.shelve(AID, 5, "past", "zhang", 30)


def _cycle(book: AlarmBook, t: float) -> list[str]:
    return whats(book.apply(up(), t, grade_of)) + whats(book.apply(down(), t + 10, grade_of))


def test_flapping_is_held_and_released() -> None:
    book = AlarmBook(FlapPolicy(max_cycles=4, window_s=600, hold_s=300))
    for i in range(4):
        assert _cycle(book, i * 60) == ["raised", "cleared"]
    # The fifth clear within ten minutes: held, one "flapping" transition, still active.
    assert whats(book.apply(up(), 240, grade_of)) == ["raised"]
    [flap] = book.apply(down(), 250, grade_of)
    assert flap.what == "flapping"
    assert (flap.alarm.state, flap.alarm.flapping) == ("active", True)
    # Further cycles say nothing; they are counted.
    for t in range(260, 400, 20):
        assert book.apply(up(), t, grade_of) == []
        assert book.apply(down(), t + 10, grade_of) == []
        assert book.tick(t + 10, response_time) == []
    held = book.get(AID)
    assert held is not None
    # Nobody acked, so all five cycles were one instance coming back; then seven held returns.
    assert held.count == 5 + 7
    assert held.clear_pending_since == 390
    # Clear for the hold time: released by the clock.
    assert book.tick(689, response_time) == []
    out = book.tick(690, response_time)
    assert whats(out) == ["cleared"]
    assert out[0].alarm.flapping is False
    assert out[0].alarm.state == "cleared"
    # The flap history starts over: a new cycle is news again.
    book.ack(AID, "zhang", 700)
    assert _cycle(book, 800) == ["raised", "cleared"]


def test_flapping_acked_alarm_closes_on_release_and_old_cycles_age_out() -> None:
    book = AlarmBook(FlapPolicy(max_cycles=2, window_s=100, hold_s=50))
    _cycle(book, 0)
    _cycle(book, 20)
    book.apply(up(), 40, grade_of)
    book.ack(AID, "zhang", 41)
    assert whats(book.apply(down(), 50, grade_of)) == ["flapping"]
    # A repeated Clear does not restart the hold; one after it has run out releases.
    assert book.apply(down(), 70, grade_of) == []
    assert whats(book.apply(down(), 100, grade_of)) == ["cleared", "closed"]
    # Cycles spaced wider than the window never flap.
    slow = AlarmBook(FlapPolicy(max_cycles=2, window_s=100, hold_s=50))
    for i in range(10):
        assert _cycle(slow, i * 60) == ["raised", "cleared"]
        slow.ack(AID, "zhang", i * 60 + 11)


def test_flap_policy_can_be_disabled_and_is_validated() -> None:
    book = AlarmBook(FlapPolicy(enabled=False))
    for i in range(20):
        assert _cycle(book, i * 20) == ["raised", "cleared"]
    with pytest.raises(ValueError, match="flap"):
        FlapPolicy(max_cycles=0)


def test_rows_round_trip_and_unsaved_tracking() -> None:
    book = AlarmBook()
    book.apply(
        Raise("door-policy", "门禁-1F", "door_forced_open", value=True, details={"door": "东门"}),
        0,
        grade_of,
    )
    book.apply(up(), 0, grade_of)
    book.shelve(AID, 100, "x", "zhang", 1)
    book.tick(400, response_time)
    rows = book.to_rows()
    again = AlarmBook.from_rows(rows)
    assert again.all() == book.all()
    assert again.unsaved() == []
    assert {a.id for a in book.unsaved()} == {a.id for a in book.all()}
    book.saved(book.unsaved())
    assert book.unsaved() == []
    # A held clear makes no transition, but it must still reach the store.
    flappy = AlarmBook(FlapPolicy(max_cycles=1, window_s=100, hold_s=50))
    _cycle(flappy, 0)
    flappy.apply(up(), 20, grade_of)
    flappy.apply(down(), 30, grade_of)  # flapping
    flappy.apply(up(), 31, grade_of)
    flappy.saved(flappy.unsaved())
    assert flappy.apply(down(), 32, grade_of) == []
    [pending] = flappy.unsaved()
    assert pending.clear_pending_since == 32


def test_transitions_hold_snapshots() -> None:
    book = AlarmBook()
    [raised] = book.apply(up(), 0, grade_of)
    book.ack(AID, "zhang", 1)
    assert raised.alarm.state == "active"  # frozen: later changes do not reach back
    assert isinstance(raised.alarm, Alarm)
