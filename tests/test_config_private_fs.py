"""core.private_fs: what the gateway stores (spool, alarm store) is readable by its user only."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.private_fs import (
    make_private,
    make_private_dir,
    open_private,
    touch_private,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The worst case: a umask that would leave everything world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_new_directories_are_private_down_the_path(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    spool = make_private_dir(shared / "var" / "spool")
    assert spool == shared / "var" / "spool"
    assert _mode(shared / "var") == 0o700
    assert _mode(spool) == 0o700
    assert _mode(shared) == 0o755  # an existing parent is not the gateway's to change


def test_an_existing_directory_is_tightened(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o755)
    make_private_dir(spool)
    assert _mode(spool) == 0o700
    make_private_dir(spool)  # again: nothing to do, no error
    assert _mode(spool) == 0o700


def test_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("")
    with pytest.raises(NotADirectoryError):
        make_private_dir(tmp_path / "spool")


@pytest.mark.usefixtures("open_umask")
@pytest.mark.parametrize("mode", ["ab", "wb", "w", "a+", "xb"])
def test_open_private_creates_0600(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "segment"
    with open_private(path, mode) as fh:
        fh.write(b"x" if "b" in mode else "x")
    assert _mode(path) == 0o600
    assert path.read_text() == "x"


def test_open_private_tightens_and_keeps_the_content(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    path.write_bytes(b"first\n")
    path.chmod(0o644)
    with open_private(path, "ab") as fh:
        fh.write(b"second\n")
    with open_private(path, "rb") as fh:
        assert fh.read() == b"first\nsecond\n"
    assert _mode(path) == 0o600
    with pytest.raises(FileNotFoundError):
        open_private(tmp_path / "missing", "rb")


@pytest.mark.usefixtures("open_umask")
def test_sqlite_database_and_journals_stay_private(tmp_path: Path) -> None:
    store = touch_private(make_private_dir(tmp_path / "var") / "alarms.sqlite")
    db = sqlite3.connect(store)
    try:
        assert db.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()
        journals = [store.with_name(store.name + s) for s in ("-wal", "-shm")]
        assert all(j.exists() for j in journals)
        assert {p.name: _mode(p) for p in [store, *journals]} == {
            "alarms.sqlite": 0o600,
            "alarms.sqlite-wal": 0o600,
            "alarms.sqlite-shm": 0o600,
        }
    finally:
        db.close()


def test_make_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "alarms.sqlite-wal"
    path.write_text("")
    path.chmod(0o644)
    make_private(path)
    assert _mode(path) == 0o600
    make_private(tmp_path / "missing")  # nothing to do


def test_shared_directories_are_never_tightened(tmp_path: Path) -> None:
    # /tmp, or a directory the alarm store is merely put into: other users still need them.
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    make_private_dir(shared)
    assert _mode(shared) == 0o1777
    kept = tmp_path / "var-lib"
    kept.mkdir()
    kept.chmod(0o755)
    make_private_dir(kept, tighten_existing=False)
    assert _mode(kept) == 0o755


def test_the_alarm_store_leaves_an_existing_directory_alone(tmp_path: Path) -> None:
    from gateway.alarm_store import AlarmStore

    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o1777)
    AlarmStore(directory / "alarms.sqlite").close()
    assert _mode(directory) == 0o1777
    assert _mode(directory / "alarms.sqlite") == 0o600
