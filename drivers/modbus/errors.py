"""What can go wrong on a Modbus request, as exceptions the poller can count by kind."""

from __future__ import annotations

from collections.abc import Callable

EXCEPTION_NAMES = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "device_failure",
    5: "acknowledge",
    6: "device_busy",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_no_response",
}


class ModbusError(Exception):
    """Base of all request failures. ``reason`` is a short counter key."""

    reason = "error"
    # The device did not answer at all: count toward marking it offline.
    silent = False


class ModbusTimeout(ModbusError):
    reason = "timeout"
    silent = True


class ModbusConnectionError(ModbusError):
    reason = "connection"
    silent = True


class ModbusFrameError(ModbusError):
    """A response that cannot be a valid answer: short, wrong length, bad CRC, wrong function."""

    reason = "bad_frame"


class ModbusExceptionResponse(ModbusError):
    """The device answered with a Modbus exception code."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        name = EXCEPTION_NAMES.get(code, f"code_{code}")
        super().__init__(f"exception {code} ({name}) to function {function}")
        self.reason = f"exception_{name}"
        # A gateway saying its slave did not answer means the device is silent.
        self.silent = code == 11


class ModbusWrongUnit(ModbusFrameError):
    """A TCP answer to our transaction from another unit than the one asked: not used."""

    reason = "wrong_unit"


class ModbusWrongProtocol(ModbusFrameError):
    """A TCP answer to our transaction whose MBAP protocol id is not 0 (Modbus): not used."""

    reason = "wrong_protocol_id"


class SerialPortError(ModbusConnectionError):
    """The serial port cannot be opened; ``reason`` says why (missing, permission, busy)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


ProblemSink = Callable[[str, str], None]
"""Told of a problem on the wire that failed no request: (reason, message)."""
