"""Files and directories only the gateway's user can read: spools, alarm stores, dead letters.

Readings, alarm texts and audit records are the site's business; on a shared edge box they
must not be world-readable, whatever the umask of the shell that started the service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create the directory (and its parents) if missing; the directory itself is 0700.

    Parents that exist keep their mode: they may be shared (/var/lib).
    """
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)


def open_private(path: Path, mode: str = "ab") -> IO[Any]:
    """Open a file for writing, created 0600 if new (an existing file is made 0600)."""
    flags = os.O_WRONLY | os.O_CREAT
    if "a" in mode:
        flags |= os.O_APPEND
    elif "w" in mode:
        flags |= os.O_TRUNC
    if "+" in mode:
        flags = (flags & ~os.O_WRONLY) | os.O_RDWR
    fd = os.open(path, flags, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def make_private(path: Path) -> None:
    """An existing file (a SQLite database and its -wal, -shm files) made 0600."""
    if path.exists() and path.stat().st_mode & 0o777 != FILE_MODE:
        path.chmod(FILE_MODE)
