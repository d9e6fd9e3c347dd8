"""The disk spool: order, bound, crash recovery, persistence across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.spool import Spool


def _batch(i: int, points: int = 10) -> bytes:
    return "".join(f"m,b={i} v={j}i {i * 1000 + j}\n" for j in range(points)).encode()


def _drain(spool: Spool, max_points: int = 25) -> list[bytes]:
    out = []
    while (chunk := spool.peek(max_points)) is not None:
        out.append(chunk.body)
        spool.ack(chunk)
    return out


def test_fifo_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=600)
    for i in range(20):
        spool.append(_batch(i), 10)
    assert len(spool) == 200
    assert len(list(tmp_path.glob("*.seg"))) > 3
    assert b"".join(_drain(spool)) == b"".join(_batch(i) for i in range(20))
    assert len(spool) == 0
    assert spool.dropped_points == 0


def test_peek_respects_max_points_but_returns_at_least_one_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_batch(0, 50), 50)
    spool.append(_batch(1, 5), 5)
    first = spool.peek(10)
    assert first is not None
    assert first.points == 50
    spool.ack(first)
    second = spool.peek(10)
    assert second is not None
    assert second.points == 5


def test_unacked_points_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=1000)
    for i in range(10):
        spool.append(_batch(i), 10)
    chunk = spool.peek(30)
    assert chunk is not None
    spool.ack(chunk)
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=1000)
    assert len(reopened) == 70
    assert b"".join(_drain(reopened)) == b"".join(_batch(i) for i in range(3, 10))


def test_bound_drops_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=4000, segment_bytes=1000)
    for i in range(40):
        spool.append(_batch(i), 10)
    total_bytes = sum(p.stat().st_size for p in tmp_path.glob("*.seg"))
    assert total_bytes <= 4000
    assert spool.dropped_points > 0
    assert len(spool) + spool.dropped_points == 400
    drained = b"".join(_drain(spool, 1000))
    assert drained.endswith(_batch(39))  # the newest points are the ones kept
    assert _batch(0) not in drained
    # The dropped count is part of the spool's state: it survives a restart.
    spool.close()
    with Spool(tmp_path, max_bytes=4000) as reopened:
        assert reopened.dropped_points == spool.dropped_points


def test_torn_record_after_a_crash_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_batch(0), 10)
    spool.append(_batch(1), 10)
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with segment.open("ab") as fh:  # half a record, as a power cut mid-write leaves it
        fh.write(b"GJS1\x40\x00\x00\x00\x0a\x00\x00\x00garbage")
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1_000_000)
    assert reopened.corrupt_records == 1
    assert len(reopened) == 20
    reopened.append(_batch(2), 10)
    assert b"".join(_drain(reopened)) == _batch(0) + _batch(1) + _batch(2)


def test_appends_after_a_full_drain_continue_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=200)
    spool.append(_batch(0), 10)
    _drain(spool)
    spool.append(_batch(1), 10)
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=200)
    assert b"".join(_drain(reopened)) == _batch(1)


def test_one_process_per_spool(tmp_path: Path) -> None:
    from gateway.spool import SpoolBusy

    with Spool(tmp_path, max_bytes=1_000_000), pytest.raises(SpoolBusy, match="in use"):
        Spool(tmp_path, max_bytes=1_000_000)
    Spool(tmp_path, max_bytes=1_000_000).close()  # free again once closed


def test_failed_append_leaves_no_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    spool = Spool(tmp_path, max_bytes=1_000_000)
    spool.append(_batch(0), 10)
    real_fsync = os.fsync

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        spool.append(_batch(1), 10)
    monkeypatch.setattr(os, "fsync", real_fsync)
    spool.append(_batch(2), 10)
    assert b"".join(_drain(spool)) == _batch(0) + _batch(2)


def test_drop_while_a_chunk_is_out_keeps_the_count_right(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1500, segment_bytes=500)
    for i in range(4):
        spool.append(_batch(i), 10)
    chunk = spool.peek(10)  # out for sending ...
    assert chunk is not None
    for i in range(4, 20):  # ... while the bound drops the segment it came from
        spool.append(_batch(i), 10)
    assert spool.dropped_points > 0
    spool.ack(chunk)
    counted = len(spool)
    lines = sum(body.count(b"\n") for body in _drain(spool, 1000))
    assert counted == lines > 0


def test_a_drained_spool_gives_its_disk_back_and_the_next_outage_has_all_of_it(
    tmp_path: Path,
) -> None:
    # Issue 7: after a replay the last (active) segment stayed on disk, so on a small bound
    # the next outage found the bound taken by delivered data and dropped every new point.
    spool = Spool(tmp_path, max_bytes=4000, segment_bytes=1000)
    for i in range(3):
        spool.append(_batch(i), 10)
    _drain(spool)
    assert spool.total_bytes == 0
    assert list(tmp_path.glob("*.seg")) == []
    # The next outage: as much as the bound holds, none of it dropped.
    for i in range(3, 6):
        spool.append(_batch(i), 10)
    assert spool.dropped_points == 0
    assert b"".join(_drain(spool)) == b"".join(_batch(i) for i in range(3, 6))
    spool.close()
    # And the order survives a restart after the segment numbers moved on.
    spool = Spool(tmp_path, max_bytes=4000, segment_bytes=1000)
    spool.append(_batch(9), 10)
    assert b"".join(_drain(spool)) == _batch(9)


def test_spool_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, max_bytes=1_000_000, segment_bytes=1000)
    spool.append(_batch(0), 10)
    spool.append(_batch(1), 10)
    chunk = spool.peek(10)
    assert chunk is not None
    spool.ack(chunk)
    spool.close()
    assert directory.stat().st_mode & 0o777 == 0o700
    files = list(directory.iterdir())
    assert {f.name for f in files} >= {"cursor", "lock"}
    assert any(f.suffix == ".seg" for f in files)
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600, f


def test_a_full_spool_logs_each_episode_not_each_drop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_bytes=3000, segment_bytes=1000)
    with caplog.at_level("WARNING", logger="guanjia.spool"):
        for _episode in range(2):
            for i in range(30):  # far past the bound: many segments dropped
                spool.append(_batch(i), 10)
            _drain(spool)
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    room = [r for r in caplog.records if "has room again" in r.getMessage()]
    assert len(full) == 2
    assert len(room) == 2
    first_episode = int(room[0].getMessage().split(": ")[1].split()[0])
    assert first_episode == spool.dropped_points // 2 > 0


def test_a_crash_between_the_cursor_and_the_reclaim_loses_nothing(tmp_path: Path) -> None:
    # The review's case: everything delivered, the segments reclaimed, and on disk a cursor
    # with an offset into a segment that no longer exists (an older save, a crash). The next
    # segment must not be read from that offset.
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=1000)
    spool.append(_batch(0), 10)
    _drain(spool)
    spool.close()
    cursor = tmp_path / "cursor"
    segment = json.loads(cursor.read_text())["segment"]
    cursor.write_text(json.dumps({"segment": segment - 1, "offset": 333}))
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=1000)
    for i in range(1, 4):
        spool.append(_batch(i), 10)
    assert len(spool) == 30
    assert b"".join(_drain(spool)) == b"".join(_batch(i) for i in range(1, 4))
    assert spool.corrupt_records == 0
