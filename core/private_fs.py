"""Files and directories only the gateway's user can read: spools, alarm stores, dead letters.

Readings, alarms and audit records of a public building are not for every local account. The
helpers create with private modes from the start (no window in which a file is world-readable)
and never depend on the process umask. They tighten what the gateway made before (0644/0755)
but never touch the parents of the directory they are given, which may be shared.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path | str, *, tighten_existing: bool = True) -> Path:
    """Create `path` (and missing parents) as 0700, or tighten it to 0700 if it exists.

    Parents that exist are left alone; parents this call creates are 0700 too. An existing
    directory is left alone when `tighten_existing` is false (a directory the gateway only
    puts a file into) and always when it is a shared one (sticky and writable by all, like
    /tmp): changing those would lock other users out.
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:  # made meanwhile by another process: checked below
            continue
        os.chmod(directory, DIR_MODE)  # exactly: a strict umask could leave it unusable
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    shared = path.stat().st_mode & 0o1002 == 0o1002
    if (tighten_existing or path in missing) and not shared:
        _tighten(path, DIR_MODE)
    return path


def open_private(path: Path | str, mode: str = "ab", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)`, creating the file 0600 (an existing file is tightened to 0600).

    `mode` is any of open()'s modes ("ab", "wb", "r+b", "w", "a+", ...); "x" is honoured.
    """
    path = Path(path)
    flags = {"r": 0, "w": os.O_CREAT | os.O_TRUNC, "a": os.O_CREAT | os.O_APPEND, "x": 0}
    kind = next(c for c in mode if c in flags)
    flags_ = flags[kind] | (os.O_CREAT | os.O_EXCL if kind == "x" else 0)
    flags_ |= os.O_RDWR if "+" in mode else (os.O_RDONLY if kind == "r" else os.O_WRONLY)
    flags_ |= getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags_, FILE_MODE)
    try:
        _tighten_fd(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def touch_private(path: Path | str) -> Path:
    """Make sure `path` exists as a 0600 file, e.g. before `sqlite3.connect(path)`.

    SQLite creates its `-wal` and `-shm` files with the database file's mode, so a database
    created through this stays private with all its journals.

    An existing file is only chmod-ed by its path, never opened: closing any descriptor of a
    SQLite database drops every POSIX lock this process holds on it, another connection's
    included (SQLite's "How To Corrupt An SQLite Database File", 2.2).
    """
    path = Path(path)
    try:
        fd = os.open(
            path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), FILE_MODE
        )
    except FileExistsError:
        make_private(path)
        return path
    try:
        _tighten_fd(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def make_private(path: Path | str) -> None:
    """An existing file (a SQLite database and its -wal, -shm files) tightened to 0600."""
    path = Path(path)
    if path.exists():
        _tighten(path, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    st = os.stat(path)
    if stat.S_IMODE(st.st_mode) & ~mode and st.st_uid == os.geteuid():
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)


def _tighten_fd(fd: int, mode: int) -> None:
    st = os.fstat(fd)
    if stat.S_IMODE(st.st_mode) & ~mode and st.st_uid == os.geteuid():
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & mode)
