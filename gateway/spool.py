"""A crash-safe, size-bounded FIFO of line-protocol batches on local disk.

Layout: numbered segment files of records, a `cursor` file (segment and offset of the oldest
unsent record) and `stats.json` (points dropped over the bound, ever). A record is a header
(magic, body length, point count, CRC-32) and the body. Appends are fsynced before they are
acknowledged; a record torn by a crash fails its CRC on open and the segment is cut there.
Replay is at-least-once: a crash between sending and moving the cursor resends a batch, which
InfluxDB absorbs (same series and timestamp overwrite).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from core.private_fs import make_private_dir, open_private

log = logging.getLogger("guanjia.spool")

_HEADER = struct.Struct("<4sIII")  # magic, length, points, crc32
_MAGIC = b"GJS1"
_SUFFIX = ".seg"


@dataclass(frozen=True, slots=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records read for replay: their bodies joined, their point count, where they end."""

    body: bytes
    points: int
    end: Position
    drops: int = 0  # the spool's drop count when it was read


class SpoolBusy(RuntimeError):
    """Another process holds the spool."""


class Spool:
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        fsync: bool = True,
        segment_bytes: int | None = None,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        # Small enough that dropping one segment at the bound loses little.
        self.segment_bytes = segment_bytes or max(64 * 1024, min(8 * 1024 * 1024, max_bytes // 16))
        self._lock = threading.Lock()
        make_private_dir(self.dir)
        self.dropped_points = 0
        self.corrupt_records = 0
        self.pending_points = 0
        self._segments: dict[int, int] = {}  # number -> size in bytes
        self._cursor = Position(0, 0)
        self._active: int | None = None  # segment open for appends
        self._drops = 0
        self._episode_dropped = 0  # points dropped since the spool last reached its bound
        self._lock_file = self._take_lock()
        self._open()

    # -- state on disk -------------------------------------------------------------------

    def _take_lock(self) -> IO[str]:
        """One process per spool: a second (a `guanjia replay` beside the service) would
        delete segments the first is still appending to."""
        fh: IO[str] = open_private(self.dir / "lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise SpoolBusy(
                f"spool {self.dir} is in use by another guanjia process; stop it first"
            ) from None
        return fh

    def close(self) -> None:
        """Release the spool for another process."""
        self._lock_file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _path(self, number: int) -> Path:
        return self.dir / f"{number:012d}{_SUFFIX}"

    def _open(self) -> None:
        stats = self.dir / "stats.json"
        if stats.exists():
            try:
                self.dropped_points = int(json.loads(stats.read_text())["dropped_points"])
            except (ValueError, KeyError, OSError):
                log.warning("spool stats %s unreadable; the dropped count restarts at 0", stats)
        for path in sorted(self.dir.glob("*" + _SUFFIX)):
            try:
                number = int(path.stem)
            except ValueError:
                continue
            self._segments[number] = self._recover(path)
        cursor_file = self.dir / "cursor"
        if cursor_file.exists():
            try:
                raw = json.loads(cursor_file.read_text())
                self._cursor = Position(int(raw["segment"]), int(raw["offset"]))
            except (ValueError, KeyError, OSError):
                log.warning("spool cursor unreadable; replaying from the oldest segment")
        if self._segments:
            first = min(self._segments)
            if self._cursor.segment < first or self._cursor.segment not in self._segments:
                self._cursor = Position(first, 0)
        elif self._cursor.offset:
            # Everything was delivered and reclaimed; the next segment starts afresh (an old
            # cursor into a deleted segment would skip the start of a new one of that number).
            self._cursor = Position(self._cursor.segment + 1, 0)
        self.pending_points = sum(p for _, p, _ in self._records_from(self._cursor))
        if self.pending_points:
            log.info("spool %s holds %d points to replay", self.dir, self.pending_points)

    def _recover(self, path: Path) -> int:
        """Cut a segment after its last whole record; return its valid size."""
        data = path.read_bytes()
        offset = 0
        while offset + _HEADER.size <= len(data):
            magic, length, _points, crc = _HEADER.unpack_from(data, offset)
            end = offset + _HEADER.size + length
            if (
                magic != _MAGIC
                or end > len(data)
                or zlib.crc32(data[offset + _HEADER.size : end]) != crc
            ):
                break
            offset = end
        if offset != len(data):
            self.corrupt_records += 1
            log.warning("spool segment %s: torn record at byte %d cut off", path.name, offset)
            with path.open("r+b") as fh:
                fh.truncate(offset)
        return offset

    def _records_from(
        self, pos: Position, last_segment: int | None = None
    ) -> Iterator[tuple[Position, int, bytes]]:
        """(end position, points, body) of each record from pos on, lazily. Under the lock."""
        for number in sorted(n for n in self._segments if n >= pos.segment):
            if last_segment is not None and number > last_segment:
                return
            data = self._path(number).read_bytes()
            offset = pos.offset if number == pos.segment else 0
            while offset + _HEADER.size <= len(data):
                magic, length, points, crc = _HEADER.unpack_from(data, offset)
                start = offset + _HEADER.size
                end = start + length
                body = data[start:end]
                if magic != _MAGIC or end > len(data) or zlib.crc32(body) != crc:
                    # Recovery cut torn tails at start-up; this is damage since: skip the rest
                    # of the segment rather than send garbage.
                    self.corrupt_records += 1
                    log.error("spool segment %s damaged at byte %d; rest skipped", number, offset)
                    break
                offset = end
                yield Position(number, offset), points, body

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        with open_private(tmp, "w") as fh:
            json.dump({"segment": self._cursor.segment, "offset": self._cursor.offset}, fh)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        tmp.replace(self.dir / "cursor")
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        """Make a new file's name, or a rename, as durable as the data in it."""
        if not self.fsync:
            return
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _save_stats(self) -> None:
        tmp = self.dir / "stats.json.tmp"
        with open_private(tmp, "w") as fh:
            fh.write(json.dumps({"dropped_points": self.dropped_points}))
        tmp.replace(self.dir / "stats.json")

    # -- operations ----------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return sum(self._segments.values())

    def append(self, body: bytes, points: int) -> None:
        """Add a batch at the tail; durable when this returns (with fsync on)."""
        record = _HEADER.pack(_MAGIC, len(body), points, zlib.crc32(body)) + body
        with self._lock:
            new_segment = False
            if self._active is None or self._segments.get(self._active, 0) >= self.segment_bytes:
                self._active = max(self._segments, default=self._cursor.segment - 1) + 1
                self._segments[self._active] = 0
                new_segment = True
            path = self._path(self._active)
            size = self._segments[self._active]
            try:
                with open_private(path, "ab") as fh:
                    fh.write(record)
                    fh.flush()
                    if self.fsync:
                        os.fsync(fh.fileno())
            except OSError:
                # A half-written record (disk full) must not sit in front of later appends.
                with contextlib.suppress(OSError), path.open("r+b") as fh:
                    fh.truncate(size)
                raise
            if new_segment:
                self._fsync_dir()
            self._segments[self._active] += len(record)
            self.pending_points += points
            try:
                self._enforce_bound()
            except OSError as exc:  # the record is written; only the trimming failed
                log.error("spool %s: cannot trim to its bound: %s", self.dir, exc)

    def _enforce_bound(self) -> None:
        dropped = 0
        while self.total_bytes > self.max_bytes and len(self._segments) > 1:
            oldest = min(self._segments)
            start = self._cursor if self._cursor.segment == oldest else Position(oldest, 0)
            lost = sum(p for _, p, _ in self._records_from(start, last_segment=oldest))
            dropped += lost
            self._path(oldest).unlink(missing_ok=True)
            del self._segments[oldest]
            if self._cursor.segment <= oldest:
                self._cursor = Position(min(self._segments), 0)
                self._save_cursor()
        if dropped:
            self._drops += 1
            self.dropped_points += dropped
            self.pending_points -= dropped
            self._save_stats()
            if not self._episode_dropped:  # each episode is logged, not each drop
                log.warning(
                    "spool %s is full (%d bytes): dropping the oldest points until the "
                    "database takes them again (raise spool.max_bytes to keep more)",
                    self.dir,
                    self.max_bytes,
                )
            self._episode_dropped += dropped

    def peek(self, max_points: int, max_bytes: int = 1 << 62) -> Chunk | None:
        """The oldest records, joined, up to max_points and max_bytes (at least one record)."""
        with self._lock:
            body = bytearray()
            points = 0
            end = self._cursor
            for pos, n, data in self._records_from(self._cursor):
                if points and (points + n > max_points or len(body) + len(data) > max_bytes):
                    break
                body += data
                points += n
                end = pos
            if not points and not body:
                return None
            return Chunk(bytes(body), points, end, self._drops)

    def ack(self, chunk: Chunk) -> None:
        """The chunk reached the database: move past it and delete finished segments."""
        with self._lock:
            if chunk.drops != self._drops:
                # The bound dropped segments while this chunk was out: some of its points were
                # counted as dropped already. Move on only if it is still ahead, and recount.
                if (chunk.end.segment, chunk.end.offset) > (
                    self._cursor.segment,
                    self._cursor.offset,
                ):
                    self._cursor = chunk.end
                self._reclaim()
                self.pending_points = sum(p for _, p, _ in self._records_from(self._cursor))
                return
            self._cursor = chunk.end
            self.pending_points = max(0, self.pending_points - chunk.points)
            self._reclaim()

    def _end_full_episode(self) -> None:
        if self._episode_dropped and self.total_bytes < self.max_bytes // 2:
            log.warning(
                "spool %s has room again: %d points were dropped while it was full",
                self.dir,
                self._episode_dropped,
            )
            self._episode_dropped = 0

    def _reclaim(self) -> None:
        """Delete every segment the cursor has passed, the one it has just finished included,
        even the one open for appends: delivered data must not hold disk the next outage
        needs. Under the lock, so no append is between its size and its deletion. The new
        cursor is saved before any file goes: a crash in between leaves a segment to skip,
        never a cursor into a deleted one."""
        finished = [n for n in self._segments if n < self._cursor.segment]
        size = self._segments.get(self._cursor.segment)
        if size is not None and self._cursor.offset >= size:
            finished.append(self._cursor.segment)
            if self._active == self._cursor.segment:
                self._active = None
            self._cursor = Position(self._cursor.segment + 1, 0)
        self._save_cursor()
        for number in finished:
            self._path(number).unlink(missing_ok=True)
            del self._segments[number]
        self._end_full_episode()

    def __len__(self) -> int:
        return self.pending_points
