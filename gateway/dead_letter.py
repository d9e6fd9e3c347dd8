"""Lines the database refused, kept with its reason until the cause is fixed.

A refused line (a field type conflict, a malformed value) cannot be helped by sending it again
as it is, but it is still a reading someone paid for: it goes to `dead-letter.lp` in the spool
directory, after a comment with the time and the database's reason. The file is line protocol
(comments start with `#`), so a person can read it, fix it by hand, or send it with any tool;
`guanjia replay --dead-letter` sends it again and keeps only what is refused once more.

Bounded in bytes: past the bound new refusals are counted as lost rather than filling the disk
(the first ones are the ones that show the cause).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from core.private_fs import open_private

log = logging.getLogger("guanjia.dead_letter")

FILE_NAME = "dead-letter.lp"
_REASON_CHARS = 400


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str  # "2026-12-01T04:30:00Z HTTP 400: ...": when and why it was refused
    line: bytes


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_REASON_CHARS]


class DeadLetters:
    """The dead-letter file of one spool directory. Thread-safe; appends are fsynced."""

    def __init__(self, directory: Path, max_bytes: int, *, fsync: bool = True) -> None:
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dropped = 0  # refused lines that did not fit under the bound, this process
        self._lock = threading.Lock()
        self.lines = 0
        self.bytes = 0
        if self.path.exists():
            data = self.path.read_bytes()
            self.bytes = len(data)
            self.lines = sum(1 for _ in _records(data))

    def add(self, line: bytes, reason: str) -> bool:
        """Keep a refused line; False if it did not fit under the bound (or the disk failed)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = f"# {stamp} {_one_line(reason)}\n".encode() + line.rstrip(b"\n") + b"\n"
        with self._lock:
            if self.bytes + len(record) > self.max_bytes:
                self.dropped += 1
                return False
            try:
                with open_private(self.path, "ab") as fh:
                    fh.write(record)
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
            except OSError as exc:
                self.dropped += 1
                log.error("cannot write the dead-letter file %s: %s", self.path, exc)
                return False
            self.bytes += len(record)
            self.lines += 1
            return True

    def read(self) -> list[DeadLetter]:
        with self._lock:
            if not self.path.exists():
                return []
            return list(_records(self.path.read_bytes()))

    def replace(self, remaining: list[DeadLetter]) -> None:
        """Keep only these (after a replay), atomically."""
        with self._lock:
            if not remaining:
                self.path.unlink(missing_ok=True)
                self.lines = self.bytes = 0
                return
            data = b"".join(b"# " + d.reason.encode() + b"\n" + d.line + b"\n" for d in remaining)
            tmp = self.path.with_suffix(".tmp")
            with open_private(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            tmp.replace(self.path)
            self.lines, self.bytes = len(remaining), len(data)


def _records(data: bytes) -> Iterator[DeadLetter]:
    reason = ""
    for raw in data.splitlines():
        if raw.startswith(b"#"):
            reason = raw[1:].strip().decode(errors="replace")
        elif raw.strip():
            yield DeadLetter(reason, raw)
            reason = ""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    sent: int
    refused: int  # refused again, kept with the new reason
    left: int  # not tried: the database went away during the replay


def replay(
    dead: DeadLetters,
    send_or_split: Callable[[bytes, int, Callable[[Exception, bytes], None]], int],
    chunk_lines: int = 5000,
) -> ReplayResult:
    """Send the dead letters again, in order; keep what is refused again (with the new
    reason) and what could not be tried. `send_or_split(body, lines, refused)` sends a body,
    splitting it down to the lines the database refuses; when the database goes away it
    raises, with the unsent rest in `exc.body` where it knows it (influx_writer.Unsent).
    """
    letters = dead.read()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    again: list[DeadLetter] = []  # refused once more, with the new reason

    def keep(exc: Exception, line: bytes) -> None:
        again.append(DeadLetter(f"{stamp} {_one_line(str(exc))}", line.rstrip(b"\n")))

    sent = 0
    for start in range(0, len(letters), chunk_lines):
        chunk = letters[start : start + chunk_lines]
        try:
            sent += send_or_split(b"".join(d.line + b"\n" for d in chunk), len(chunk), keep)
        except Exception as exc:  # the database went away: keep what was not tried
            sent += getattr(exc, "written", 0)
            body = getattr(exc, "body", None)
            unsent = set(body.split(b"\n")) if isinstance(body, bytes) else None
            untried = [d for d in chunk if unsent is None or d.line in unsent]
            untried += letters[start + chunk_lines :]
            dead.replace(again + untried)
            return ReplayResult(sent, len(again), len(untried))
    dead.replace(again)
    return ReplayResult(sent, len(again), 0)
