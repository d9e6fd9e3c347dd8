"""accounts.store: marks, day totals and write frontiers survive a reopening; pruning keeps the
mark a stretch starts from; a file from a newer version is refused with what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from accounts.counters import CounterTrack, Limits, Mark, Periods, Tally
from accounts.store import AccountsStore, AccountsStoreError, Changes

PERIODS = Periods("Asia/Shanghai")
LIMITS = Limits(max_per_hour=100.0)
T0 = 1_782_835_200.0  # 2026-07-01 00:00 in Shanghai


def test_a_reopened_store_gives_back_what_the_track_had(tmp_path: Path) -> None:
    track = CounterTrack(LIMITS, PERIODS)
    for i in range(2 * 360):  # two hours, every 10 s, 10 kWh an hour
        track.add(T0 + 10 * i, 10.0 * i * 10 / 3600)
    store = AccountsStore(tmp_path / "a.sqlite")
    store.save(
        Changes(
            {"m/energy_kwh": track.take_changes()},
            {"m/energy_kwh": {T0: Tally(20.0, 7190.0, 86400.0)}},
            {("m/energy_kwh", "hour"): T0 + 3600},
        )
    )
    for i in range(2 * 360, 3 * 360):  # the run goes on: the newest mark is replaced
        track.add(T0 + 10 * i, 10.0 * i * 10 / 3600)
    store.save(Changes({"m/energy_kwh": track.take_changes()}))
    store.close()

    kept = AccountsStore(tmp_path / "a.sqlite").load()["m/energy_kwh"]
    assert kept.marks == track.marks
    assert len(kept.marks) < 10
    assert kept.days == {T0: Tally(20.0, 7190.0, 86400.0)}
    assert kept.written == {"hour": T0 + 3600}
    again = CounterTrack(LIMITS, PERIODS, kept.marks)
    assert again.tally(T0 + 3600, T0 + 7200).amount == pytest.approx(10.0)


def test_pruning_keeps_the_last_mark_before_the_cut(tmp_path: Path) -> None:
    store = AccountsStore(tmp_path / "a.sqlite")
    marks = {T0 + 3600 * h: Mark(T0 + 3600 * h, float(h)) for h in range(5)}
    store.save(Changes({"m/x": marks, "n/x": {T0: Mark(T0, 1.0)}}))
    store.prune(T0 + 3600 * 2.5, T0)
    kept = store.load()
    assert [m.t for m in kept["m/x"].marks] == [T0 + 3600 * h for h in (2, 3, 4)]
    assert [m.t for m in kept["n/x"].marks] == [T0]  # its only mark: a stretch starts there


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite"
    AccountsStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(AccountsStoreError, match="newer version"):
        AccountsStore(path)
