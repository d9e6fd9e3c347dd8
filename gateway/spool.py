"""A crash-safe, size-bounded FIFO of line-protocol batches on local disk.

Layout: numbered segment files of records, a `cursor` file (segment and offset of the oldest
unsent record) and `stats.json` (points dropped over the bound, ever). A record is a header
(magic, body length, point count, CRC-32) and the body. Appends are fsynced before they are
acknowledged; a record torn by a crash fails its CRC on open and the segment is cut there.
Replay is at-least-once: a crash between sending and moving the cursor resends a batch, which
InfluxDB absorbs (same series and timestamp overwrite).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dropped_points = 0
        self.corrupt_records = 0
        self.pending_points = 0
        self._segments: dict[int, int] = {}  # number -> size in bytes
        self._cursor = Position(0, 0)
        self._active: int | None = None  # segment open for appends
        self._open()

    # -- state on disk -------------------------------------------------------------------

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
                _magic, length, points, _crc = _HEADER.unpack_from(data, offset)
                start = offset + _HEADER.size
                offset = start + length
                yield Position(number, offset), points, data[start:offset]

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        with tmp.open("w") as fh:
            json.dump({"segment": self._cursor.segment, "offset": self._cursor.offset}, fh)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        tmp.replace(self.dir / "cursor")

    def _save_stats(self) -> None:
        tmp = self.dir / "stats.json.tmp"
        tmp.write_text(json.dumps({"dropped_points": self.dropped_points}))
        tmp.replace(self.dir / "stats.json")

    # -- operations ----------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return sum(self._segments.values())

    def append(self, body: bytes, points: int) -> None:
        """Add a batch at the tail; durable when this returns (with fsync on)."""
        record = _HEADER.pack(_MAGIC, len(body), points, zlib.crc32(body)) + body
        with self._lock:
            if self._active is None or self._segments.get(self._active, 0) >= self.segment_bytes:
                self._active = max(self._segments, default=self._cursor.segment - 1) + 1
                self._segments[self._active] = 0
            path = self._path(self._active)
            with path.open("ab") as fh:
                fh.write(record)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            self._segments[self._active] += len(record)
            self.pending_points += points
            self._enforce_bound()

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
            self.dropped_points += dropped
            self.pending_points -= dropped
            self._save_stats()
            log.warning(
                "spool over its bound of %d bytes: dropped the oldest %d points (%d in all)",
                self.max_bytes,
                dropped,
                self.dropped_points,
            )

    def peek(self, max_points: int) -> Chunk | None:
        """The oldest records, joined, up to max_points (at least one record)."""
        with self._lock:
            body = bytearray()
            points = 0
            end = self._cursor
            for pos, n, data in self._records_from(self._cursor):
                if points and points + n > max_points:
                    break
                body += data
                points += n
                end = pos
            return Chunk(bytes(body), points, end) if points or body else None

    def ack(self, chunk: Chunk) -> None:
        """The chunk reached the database: move past it and delete finished segments."""
        with self._lock:
            self._cursor = chunk.end
            self.pending_points = max(0, self.pending_points - chunk.points)
            for number in [n for n in self._segments if n < chunk.end.segment]:
                self._path(number).unlink(missing_ok=True)
                del self._segments[number]
            size = self._segments.get(chunk.end.segment)
            if size is not None and chunk.end.offset >= size and chunk.end.segment != self._active:
                self._path(chunk.end.segment).unlink(missing_ok=True)
                del self._segments[chunk.end.segment]
                self._cursor = Position(chunk.end.segment + 1, 0)
            self._save_cursor()

    def __len__(self) -> int:
        return self.pending_points
