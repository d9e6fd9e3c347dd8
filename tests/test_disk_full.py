"""A full disk under the spool: each episode is logged (start, points lost, end), not only the
first one of the process; the spool works again when the disk has room. A real full disk: a
small tmpfs (needs root, as CI has; skipped elsewhere)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.influx_writer import Batch, Writer
from gateway.spool import Spool


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Take every byte the disk has left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def _submit_until(writer: Writer, condition: object, start: int) -> int:
    i = start
    deadline = time.monotonic() + 20
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        body = "".join(f"meter,device=d{i} v={j}.5 {i * 100 + j}\n" for j in range(20))
        writer.submit(Batch(body.encode(), 20))
        i += 1
        time.sleep(0.01)
    assert condition(), "the writer did not get there"  # type: ignore[operator]
    return i


def test_each_full_disk_episode_is_logged_and_the_spool_recovers(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(small_disk / "spool", max_bytes=64 * 1024 * 1024, segment_bytes=16 * 1024)
    writer = Writer(None, spool)  # no database: everything goes to the spool
    writer.start()
    i = 0
    try:
        with caplog.at_level(logging.INFO, logger="guanjia.influx"):
            for episode in (1, 2):
                filler = _fill(small_disk)
                i = _submit_until(writer, lambda e=episode: writer.stats.spool_failures == e, i)
                lost = writer.stats.points_lost
                assert lost > 0
                filler.unlink()
                spooled = writer.stats.points_spooled
                i = _submit_until(writer, lambda s=spooled: writer.stats.points_spooled > s, i)
    finally:
        writer.stop()
        spool.close()
    starts = [r for r in caplog.records if "points are being lost" in r.getMessage()]
    ends = [r for r in caplog.records if "spool writable again" in r.getMessage()]
    assert len(starts) == 2
    assert len(ends) == 2
    told = sum(int(r.getMessage().split(": ")[1].split()[0]) for r in ends)
    assert told == writer.stats.points_lost
    # Everything not counted as lost is in the spool, in order.
    assert writer.stats.points_spooled == i * 20 - writer.stats.points_lost
    with Spool(small_disk / "spool", 1 << 30) as reopened:
        assert len(reopened) == writer.stats.points_spooled
