"""An incremental parser of the endless multipart bodies event streams send.

A Hikvision alertStream (`multipart/mixed; boundary=boundary`) and a Dahua eventManager attach
(`multipart/x-mixed-replace; boundary=myboundary`) never end: the parser is fed the bytes as
they come and hands back each part as soon as it is whole. A part with a `Content-Length` is
whole when that many bytes have arrived, so an event is not held back until the next heartbeat
opens the following part; a part without one ends at the next boundary.

Devices are not strict about RFC 2046, so neither is the parser: a boundary line is
`--<boundary>` at the start of a line (with or without the CRLF before it), newlines between
parts are keep-alives, a part may come without headers (its first line is not a header), and a
`Content-Length` that overruns the next boundary is ignored for that part (counted).

Memory is bounded: a part larger than `max_part` is refused (counted) and its bytes are
dropped until the next boundary; headers are bounded by `max_headers`; bytes outside any part
(garbage) are dropped, counted once per run, and the parser waits for the next boundary. Parts
of a skipped type (pictures that access controllers attach to their events) are dropped the
same way without being counted as problems.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_SEEK = 0  # outside any part: waiting for a boundary line
_DELIM = 1  # a boundary was seen: waiting for the end of its line
_HEADERS = 2  # reading a part's headers
_BODY = 3  # reading a part's body
_DROP = 4  # dropping a part (too large, or a skipped type) until the next boundary

_WHITESPACE = b" \t\r\n"
_TOKEN = re.compile(rb"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # a header name (RFC 9110 token)


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the stream: its headers (names in lower case) and its body."""

    headers: Mapping[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass
class PartStats:
    """What the parser refused or repaired, for the health counters."""

    parts: int = 0
    oversized: int = 0  # parts over the size limit: refused, dropped to the next boundary
    skipped: int = 0  # parts of a skipped type (pictures)
    garbage: int = 0  # runs of bytes outside any part
    bad_headers: int = 0  # header blocks over the limit or not text
    length_mismatch: int = 0  # a Content-Length that ran past the next boundary
    truncated: int = 0  # parts cut off by the end of the stream

    def add(self, other: PartStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def boundary_of(content_type: str) -> str | None:
    """The boundary of a `multipart/...; boundary=...` content type, None if it names none."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip().strip('"')
            # Some firmwares write the delimiter itself (`boundary=--myboundary`).
            return value.removeprefix("--") or None
    return None


@dataclass
class MultipartParser:
    """Feed it bytes, get whole parts back. One parser per connection (`reset` for a new one)."""

    boundary: str
    max_part: int = 256 * 1024
    max_headers: int = 8 * 1024
    skip_types: Sequence[str] = ("image/",)
    stats: PartStats = field(default_factory=PartStats)

    def __post_init__(self) -> None:
        self._delim = b"--" + self.boundary.encode("latin-1")
        self._line_delim = b"\n" + self._delim
        self._buf = bytearray()
        self._state = _SEEK
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._length: int | None = None
        self._scanned = 0  # bytes of the buffer already searched for a boundary
        self._in_garbage = False

    def reset(self) -> None:
        """A new connection: whatever the old one left unfinished is lost (counted)."""
        if self._state in (_HEADERS, _BODY):
            self.stats.truncated += 1
        self._buf.clear()
        self._state = _SEEK
        self._headers = {}
        self._length = None
        self._scanned = 0
        self._in_garbage = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Part]:
        """The parts that `data` completes (often none, sometimes several)."""
        self._buf += data
        parts: list[Part] = []
        while True:
            state = self._state
            if state == _SEEK:
                progressed = self._seek()
            elif state == _DELIM:
                progressed = self._delim_line()
            elif state == _HEADERS:
                progressed = self._header_lines()
            elif state == _BODY:
                progressed = self._body(parts)
            else:
                progressed = self._drop()
            if not progressed:
                return parts

    # --- states ------------------------------------------------------------------------

    def _boundary_at(self, start: int) -> int:
        """Where the next boundary line starts (the `--`), from `start`; -1 if none yet."""
        buf = self._buf
        if start == 0 and buf.startswith(self._delim):
            return 0
        found = buf.find(self._line_delim, max(start - 1, 0))
        return found + 1 if found >= 0 else -1

    def _seek(self) -> bool:
        buf = self._buf
        # Outside a part a boundary counts wherever it is: after garbage with no newline too.
        at = buf.find(self._delim)
        if at < 0:
            # Keep only what could be the start of a boundary split across two reads.
            keep = len(self._delim)
            if len(buf) > keep:
                self._garbage(bytes(buf[:-keep]))
                del buf[:-keep]
            return False
        if at:
            self._garbage(bytes(buf[:at]))
        del buf[: at + len(self._delim)]
        self._in_garbage = False
        self._state = _DELIM
        return True

    def _garbage(self, data: bytes) -> None:
        """Bytes outside any part: newlines are keep-alives, anything else is counted once
        per run (a run ends at the next boundary)."""
        if not self._in_garbage and data.strip(_WHITESPACE):
            self._in_garbage = True
            self.stats.garbage += 1

    def _delim_line(self) -> bool:
        buf = self._buf
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > self.max_headers:
                self.stats.bad_headers += 1
                self._resync()
                return True
            return False
        rest = bytes(buf[:end]).strip()
        del buf[: end + 1]
        if rest.startswith(b"--"):  # the closing delimiter: a new body may follow
            self._state = _SEEK
            return True
        self._headers = {}
        self._header_bytes = 0
        self._length = None
        self._state = _HEADERS
        return True

    def _header_lines(self) -> bool:
        """The part's headers, every whole line there is, consumed at once at the end."""
        buf = self._buf
        at = 0
        headers = self._headers
        while True:
            end = buf.find(b"\n", at)
            if end < 0:
                break
            line = bytes(buf[at:end]).rstrip(b"\r")
            if not line:
                del buf[: end + 1]
                return self._start_body()
            name, colon, value = line.partition(b":")
            name = name.rstrip()
            if not colon or not _TOKEN.match(name):
                # Not a header: a part without headers, whose body starts on this line.
                del buf[:at]
                return self._start_body()
            self._header_bytes += end + 1 - at
            if self._header_bytes > self.max_headers:
                self.stats.bad_headers += 1
                self._resync()
                return True
            headers[name.decode("ascii").lower()] = value.strip().decode("latin-1")
            at = end + 1
        del buf[:at]
        return self._headers_wait()

    def _headers_wait(self) -> bool:
        """Headers not whole yet: wait, unless they are already over the limit."""
        if len(self._buf) + self._header_bytes > self.max_headers:
            self.stats.bad_headers += 1
            self._resync()
            return True
        return False

    def _start_body(self) -> bool:
        headers = self._headers
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind and any(kind.startswith(t) for t in self.skip_types):
            self.stats.skipped += 1
            self._state = _DROP
            self._scanned = 0
            return True
        length = headers.get("content-length", "").strip()
        self._length = int(length) if length.isdigit() and len(length) < 12 else None
        if self._length is not None and self._length > self.max_part:
            self.stats.oversized += 1
            self._state = _DROP
            self._scanned = 0
            return True
        self._state = _BODY
        self._scanned = 0
        return True

    def _body(self, parts: list[Part]) -> bool:
        buf = self._buf
        length = self._length
        at = self._boundary_at(self._scanned)
        if length is not None and (at < 0 or at >= length):
            # The part is whole once its declared length is here: no wait for the next one.
            if len(buf) >= length:
                parts.append(self._part(bytes(buf[:length])))
                del buf[:length]
                self._state = _SEEK
                return True
            self._scanned = max(len(buf) - len(self._line_delim), 0)
            return False
        if at < 0:
            if len(buf) > self.max_part:
                self.stats.oversized += 1
                self._resync()
                return True
            self._scanned = max(len(buf) - len(self._line_delim), 0)
            return False
        if length is not None:  # a boundary inside the declared length: the length was wrong
            self.stats.length_mismatch += 1
        # The line break before the boundary is the boundary's, and newlines after the body
        # are keep-alives: neither is the part's.
        body = bytes(buf[:at]).rstrip(b"\r\n")
        del buf[:at]
        parts.append(self._part(body))
        self._state = _SEEK
        return True

    def _part(self, body: bytes) -> Part:
        self.stats.parts += 1
        return Part(self._headers, body)

    def _drop(self) -> bool:
        buf = self._buf
        at = self._boundary_at(self._scanned)
        if at < 0:
            keep = len(self._line_delim)
            if len(buf) > keep:
                del buf[:-keep]
            self._scanned = 0
            return False
        del buf[:at]
        self._state = _SEEK
        return True

    def _resync(self) -> None:
        """Give up on the part at hand: drop bytes until the next boundary."""
        self._state = _DROP
        self._scanned = 0
