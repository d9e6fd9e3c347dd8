"""DL/T 645-2007 frames and values, both ways: what the driver sends and reads, and what the
simulated meter reads and sends.

A frame is ``68 A0..A5 68 C L DATA CS 16``: the meter address in six bytes of BCD, low byte
first (``000000000161`` travels as ``61 01 00 00 00 00``); the control code C (D7 set in a
meter's answer, D6 set in an error answer, D5 set when follow-up frames hold the rest, D4..D0
the function: 11H read data, 12H read follow-up data, 13H read address); L data bytes, each
sent plus 33H; a checksum, the sum modulo 256 of every byte from the first 68H to the last data
byte; 16H. A master sends up to four FEH before a frame to wake the meter's receiver, and many
meters put them before their answers too.

A read names a data identifier (DI3 DI2 DI1 DI0, sent DI0 first) and the meter answers with the
identifier and its data items, each a fixed number of BCD digits (the standard's format, e.g.
``XXXXXX.XX`` kWh in four bytes), low byte first. Where a quantity has a direction (current,
power, power factor; the combined energy) the top bit of the highest byte is its sign. A meter
that has nothing to say answers D1H with one error byte whose bits say why.

Why not the ``dlt645`` package on PyPI (3.2.0, read from its wheel): its value decoding takes
the top bit as a sign for every value, so an unsigned forward-energy register above 799999.99
kWh reads negative (999999.99 decodes as -199999.99); it accepts nibbles above 9 as digits, so
a meter's FFFFH "not available" fill becomes -715151.5 instead of a refusal; it answers a
failed read with ``None`` and a log line, so an error answer, a timeout and a garbled frame
look alike to the caller; it drops answers with follow-up frames (B1H: "unknown control
code"); its client blocks (pyserial, ``time.sleep`` between retries) where the gateway must not
block its event loop, and takes the first complete frame on the line as the answer, whatever
identifier it carries (a late answer to an earlier read comes back as this one's value, an
RS-485 adapter's echo of the request fails the read); and it brings loguru, whose default
handler it removes process-wide. The subset a poller needs is small; this module is it, with
the standard's checks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

START = 0x68
END = 0x16
WAKEUP = 0xFE
OFFSET = 0x33

READ_DATA = 0x11
READ_FOLLOW = 0x12
READ_ADDRESS = 0x13

ANSWER = 0x80  # D7: sent by the meter
ERROR = 0x40  # D6: the meter refuses
FOLLOWS = 0x20  # D5: follow-up frames hold the rest
FUNCTION = 0x1F

BROADCAST = "AAAAAAAAAAAA"  # the read-address request's address: every meter on the line
MAX_DATA = 200  # the standard's largest data field of a read answer
MAX_WAKEUP = 4

# The error byte of an error answer, by bit (DL/T 645-2007 7.3, "错误信息字").
ERROR_BITS = {
    0: ("other", "other error"),
    1: ("no_data", "no requested data"),
    2: ("unauthorized", "password wrong or not authorised"),
    3: ("baud_fixed", "baud rate cannot be changed"),
    4: ("year_zones", "too many year time zones"),
    5: ("day_periods", "too many day periods"),
    6: ("tariffs", "too many tariffs"),
}

_POW10: tuple[int, ...] = tuple(10**n for n in range(17))
_ADDRESS = re.compile(r"^[0-9]{12}$")
_FORMAT = re.compile(r"^(X+)(?:\.(X+))?$")


class Dlt645Error(Exception):
    """Base of every failed exchange. ``reason`` is a short counter key; ``silent`` says the
    meter did not answer at all (what marks it offline)."""

    reason = "error"
    silent = False


class Dlt645Timeout(Dlt645Error):
    reason = "timeout"
    silent = True


class Dlt645ConnectionError(Dlt645Error):
    reason = "connection"
    silent = True


class SerialPortError(Dlt645ConnectionError):
    """The serial port does not open; ``reason`` says why (missing, permission, other)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class FrameError(Dlt645Error):
    """Bytes that are no valid frame, or a frame that is no valid answer; ``reason`` names the
    check that failed (``truncated``, ``bad_checksum``, ``not_bcd``, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ErrorAnswer(Dlt645Error):
    """The meter answered with its error byte: it is there, but will not give this item."""

    def __init__(self, code: int, di: int | None = None) -> None:
        self.code = code
        self.names = error_names(code)
        what = f" to DI {di:08X}" if di is not None else ""
        super().__init__(f"the meter answered error 0x{code:02X} ({error_text(code)}){what}")
        self.reason = "error_" + "+".join(self.names)


def error_names(code: int) -> list[str]:
    names = [ERROR_BITS[bit][0] for bit in sorted(ERROR_BITS) if code >> bit & 1]
    return names or ["unknown"]


def error_text(code: int) -> str:
    texts = [ERROR_BITS[bit][1] for bit in sorted(ERROR_BITS) if code >> bit & 1]
    return ", ".join(texts) or "no reason given"


# -- addresses and identifiers --------------------------------------------------------------


def address_bytes(address: str) -> bytes:
    """A meter address as printed (12 digits, or the broadcast AA..AA) as it travels: low
    byte first."""
    if address != BROADCAST and not _ADDRESS.match(address):
        raise ValueError(f"{address!r} is not a 12-digit meter address")
    return bytes.fromhex(address)[::-1]


def address_text(raw: bytes) -> str:
    """The address field of a frame as printed (high digits first); AA and other non-digit
    bytes stay visible as hex."""
    return raw[::-1].hex().upper()


def di_text(di: int) -> str:
    return f"{di:08X}"


# -- frames ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One checked frame: its address as printed, control code and data with the offset
    removed."""

    address: str
    control: int
    data: bytes

    @property
    def from_meter(self) -> bool:
        return bool(self.control & ANSWER)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR)

    @property
    def follows(self) -> bool:
        return bool(self.control & FOLLOWS)

    @property
    def function(self) -> int:
        return self.control & FUNCTION


def encode_frame(address: str, control: int, data: bytes = b"", wakeup: int = 0) -> bytes:
    """A frame as it goes on the wire, after ``wakeup`` FEH bytes."""
    if not 0 <= wakeup <= MAX_WAKEUP:
        raise ValueError(f"{wakeup} wake-up bytes; the standard allows 0 to {MAX_WAKEUP}")
    if len(data) > 255:
        raise ValueError(f"{len(data)} data bytes; a frame carries at most 255")
    body = (
        bytes([START])
        + address_bytes(address)
        + bytes([START, control, len(data)])
        + bytes((b + OFFSET) & 0xFF for b in data)
    )
    return bytes([WAKEUP]) * wakeup + body + bytes([sum(body) & 0xFF, END])


def _frame_at(buf: bytes | bytearray, i: int) -> Frame | FrameError | None:
    """The frame starting at ``buf[i]`` (a 68H): the frame, why it is none, or None while
    too few bytes have come to tell."""
    if len(buf) - i < 10:
        if len(buf) - i >= 8 and buf[i + 7] != START:
            return FrameError("no_second_start", "no 68H after the address")
        return None
    if buf[i + 7] != START:
        return FrameError("no_second_start", "no 68H after the address")
    length = buf[i + 9]
    end = i + 12 + length
    if len(buf) < end:
        return None
    checksum = sum(buf[i : end - 2]) & 0xFF
    if buf[end - 2] != checksum:
        return FrameError(
            "bad_checksum", f"checksum {buf[end - 2]:02X}H, the bytes add up to {checksum:02X}H"
        )
    if buf[end - 1] != END:
        return FrameError("bad_end", f"the frame ends in {buf[end - 1]:02X}H, not 16H")
    return Frame(
        address_text(bytes(buf[i + 1 : i + 7])),
        buf[i + 8],
        bytes((b - OFFSET) & 0xFF for b in buf[i + 10 : end - 2]),
    )


def frame_size(buf: bytes | bytearray, i: int) -> int:
    """Bytes of the frame starting at ``buf[i]``, which _frame_at found whole."""
    return 12 + buf[i + 9]


def decode_frame(raw: bytes) -> Frame:
    """Exactly one frame, after any wake-up bytes; FrameError says what is wrong."""
    i = 0
    while i < len(raw) and raw[i] == WAKEUP:
        i += 1
    if i == len(raw):
        raise FrameError("truncated", "no bytes after the wake-up bytes")
    if raw[i] != START:
        raise FrameError("no_start", f"a frame starts with 68H, not {raw[i]:02X}H")
    found = _frame_at(raw, i)
    if found is None:
        need = 12 + raw[i + 9] if len(raw) - i >= 10 else 12
        raise FrameError("truncated", f"{len(raw) - i} bytes, the frame needs {need}")
    if isinstance(found, FrameError):
        raise found
    extra = len(raw) - i - frame_size(raw, i)
    if extra:
        raise FrameError("trailing", f"{extra} bytes after the end of the frame")
    return found


class FrameReader:
    """Frames out of a byte stream: a serial line or a serial server's TCP connection.

    Wake-up bytes are dropped; anything else that starts no valid frame is skipped and noted,
    once per stretch skipped, by reason (``junk``, ``bad_checksum``, ...). A frame whose length
    byte promises more than has come is waited for, unless a complete valid frame starts later
    in the buffer: noise with a 68H in it must not swallow the answer behind it.
    """

    MAX_BUFFER = 4096  # a read answer is at most 216 bytes; more is a babbling line

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.problems: Counter[str] = Counter()  # stretches of bytes skipped, by reason
        self.messages: dict[str, str] = {}  # the last of each reason, in words

    def _skip(self, count: int, reason: str, message: str) -> None:
        skipped = self.buffer[:count]
        del self.buffer[:count]
        if len(skipped) > skipped.count(WAKEUP) or reason != "junk":
            self.problems[reason] += 1
            self.messages[reason] = message

    def clear(self) -> None:
        """Before a request: whatever waits is junk or the tail of a late answer."""
        self._skip(len(self.buffer), "junk", f"{len(self.buffer)} stray bytes before a request")

    def feed(self, data: bytes) -> list[Frame]:
        buf = self.buffer
        buf += data
        frames: list[Frame] = []
        while buf:
            start = buf.find(START)
            if start < 0:
                self._skip(len(buf), "junk", f"{len(buf)} bytes that start no frame")
                break
            if start:
                self._skip(start, "junk", f"{start} bytes that start no frame")
            found = _frame_at(buf, 0)
            if isinstance(found, Frame):
                del buf[: frame_size(buf, 0)]
                frames.append(found)
            elif isinstance(found, FrameError):
                self._skip(_next_candidate(buf), found.reason, f"{found}: skipped")
            else:
                later = _complete_after(buf)
                if later is not None:
                    self._skip(later, "junk", f"{later} bytes before a frame (one cut short)")
                elif len(buf) > self.MAX_BUFFER:
                    self._skip(len(buf), "junk", f"{len(buf)} bytes without a whole frame")
                else:
                    break
        return frames


def _next_candidate(buf: bytearray) -> int:
    """Where, after the failed frame at 0, a frame may start: the next 68H that is not
    itself a failed frame (or the end)."""
    i = buf.find(START, 1)
    while i > 0:
        if not isinstance(_frame_at(buf, i), FrameError):
            return i
        i = buf.find(START, i + 1)
    return len(buf)


def _complete_after(buf: bytearray) -> int | None:
    """Where a complete valid frame starts after the incomplete one at 0, if anywhere."""
    i = buf.find(START, 1)
    while i > 0:
        if isinstance(_frame_at(buf, i), Frame):
            return i
        i = buf.find(START, i + 1)
    return None


# -- requests and answers -------------------------------------------------------------------


def read_request(address: str, di: int, wakeup: int = MAX_WAKEUP) -> bytes:
    return encode_frame(address, READ_DATA, di.to_bytes(4, "little"), wakeup)


def read_follow_request(address: str, di: int, seq: int, wakeup: int = MAX_WAKEUP) -> bytes:
    return encode_frame(address, READ_FOLLOW, di.to_bytes(4, "little") + bytes([seq]), wakeup)


def read_address_request(wakeup: int = MAX_WAKEUP) -> bytes:
    return encode_frame(BROADCAST, READ_ADDRESS, b"", wakeup)


def answers(frame: Frame, address: str, function: int) -> bool:
    """Whether ``frame`` is the meter's answer (normal or error) to our ``function`` request
    for ``address`` (any address for the broadcast)."""
    return (
        frame.from_meter
        and frame.function == function
        and (address == BROADCAST or frame.address == address)
    )


def read_answer(frame: Frame, di: int, follow_seq: int | None = None) -> bytes:
    """The data items of an answer to a read of ``di`` (or to its follow-up ``follow_seq``);
    raises ErrorAnswer or FrameError. The caller sees ``frame.follows`` for more."""
    if frame.is_error:
        if len(frame.data) != 1:
            raise FrameError("bad_length", f"an error answer with {len(frame.data)} data bytes")
        raise ErrorAnswer(frame.data[0], di)
    data = frame.data
    if len(data) < 4:
        raise FrameError("bad_length", f"an answer with {len(data)} data bytes, no identifier")
    got = int.from_bytes(data[:4], "little")
    if got != di:
        raise FrameError("wrong_di", f"an answer for DI {got:08X} to a read of {di:08X}")
    if follow_seq is None:
        return data[4:]
    if len(data) < 5 or data[-1] != follow_seq & 0xFF:
        raise FrameError(
            "wrong_seq", f"a follow-up answer without sequence number {follow_seq & 0xFF}"
        )
    return data[4:-1]


def address_answer(frame: Frame) -> str:
    """The address a meter gives in answer to the broadcast read-address request."""
    if frame.is_error:
        raise ErrorAnswer(frame.data[0] if frame.data else 0)
    if len(frame.data) != 6:
        raise FrameError("bad_length", f"an address answer with {len(frame.data)} data bytes")
    address = address_text(frame.data)
    if not _ADDRESS.match(address):
        raise FrameError("not_bcd", f"the meter gave the address {address}, not 12 digits")
    return address


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Format:
    """A numeric data format of the standard, e.g. ``XXXXXX.XX``: digits and decimals."""

    text: str
    digits: int
    decimals: int

    @property
    def size(self) -> int:
        """Bytes on the wire: two BCD digits each."""
        return self.digits // 2


def parse_format(text: str) -> Format:
    """``XXX.X`` -> 4 digits, 1 decimal; ValueError naming the fix otherwise."""
    match = _FORMAT.match(text)
    if match is None:
        raise ValueError(
            f"'{text}' is not a numeric DL/T 645 format: write X for each digit and a point "
            "where the decimals start, as the standard's tables do (XXXXXX.XX, XXX.X)"
        )
    decimals = len(match.group(2) or "")
    digits = len(match.group(1)) + decimals
    if digits % 2:
        raise ValueError(
            f"'{text}' has {digits} digits; values travel as whole bytes of two BCD digits, "
            "so a format has an even number of X"
        )
    if digits > 16:
        raise ValueError(f"'{text}' has {digits} digits; at most 16 (8 bytes) are supported")
    return Format(text, digits, decimals)


def decode_bcd(data: bytes, fmt: Format, signed: bool = False) -> float:
    """A value from its bytes as they come in an answer (offset removed, low byte first).

    ``signed``: the top bit of the highest byte is the sign (set: negative). A nibble above 9
    (a meter's FFH "not available" fill, line noise) raises FrameError ``not_bcd``."""
    return decode_bcd_count(data, fmt, signed) / _POW10[fmt.decimals]


def decode_bcd_count(data: bytes, fmt: Format, signed: bool = False) -> int:
    """As decode_bcd, in units of the format's last digit (230.1 V in XXX.X: 2301): scaling
    that integer rounds once, where scaling the decoded float would round twice."""
    if len(data) != fmt.size:
        raise FrameError("bad_length", f"{len(data)} bytes for format {fmt.text}")
    negative = False
    number = 0
    for index in range(len(data) - 1, -1, -1):
        byte = data[index]
        if signed and index == len(data) - 1:
            negative = bool(byte & 0x80)
            byte &= 0x7F
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise FrameError(
                "not_bcd", f"{data[::-1].hex().upper()} is not BCD for format {fmt.text}"
            )
        number = number * 100 + high * 10 + low
    return -number if negative else number


def encode_bcd(value: float, fmt: Format, signed: bool = False) -> bytes:
    """A value as a meter sends it (before the offset): rounded to the format's decimals."""
    number = round(abs(value) * _POW10[fmt.decimals])
    top = _POW10[fmt.digits - 1] * (8 if signed else 10)  # the sign takes the top bit
    if number >= top:
        raise ValueError(f"{value} does not fit format {fmt.text}{' (signed)' if signed else ''}")
    digits = f"{number:0{fmt.digits}d}"
    out = bytearray(bytes.fromhex(digits)[::-1])
    if signed and value < 0 and number:
        out[-1] |= 0x80
    return bytes(out)
