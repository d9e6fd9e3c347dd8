"""Modbus RTU on a local serial port (RS-485), through pymodbus's serial client."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import struct
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from drivers.modbus.errors import (
    ModbusConnectionError,
    ModbusError,
    ModbusExceptionResponse,
    ModbusFrameError,
    ModbusTimeout,
    ProblemSink,
    SerialPortError,
)


class SerialClient:
    """Same interface as StreamClient; the link owner serialises requests on the line."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        bytesize: int,
        parity: str,
        stopbits: int,
        timeout: float,
    ) -> None:
        self.port = port
        self._settings: dict[str, Any] = {
            "framer": FramerType.RTU,
            "baudrate": baudrate,
            "bytesize": bytesize,
            "parity": parity,
            "stopbits": stopbits,
            "timeout": timeout,  # the longest device timeout on the line; each call has its own
            "retries": 0,  # the poller owns retries, so they are counted in one place
            "reconnect_delay": 0,  # and reconnects, for the same reason
        }
        # Made on first use: pymodbus wants a running event loop, and `guanjia check` builds
        # the driver (to count its requests) without one.
        self._pymodbus: AsyncModbusSerialClient | None = None

    @property
    def _client(self) -> AsyncModbusSerialClient:
        if self._pymodbus is None:
            self._pymodbus = AsyncModbusSerialClient(self.port, **self._settings)
        return self._pymodbus

    @property
    def connected(self) -> bool:
        return self._pymodbus is not None and bool(self._pymodbus.connected)

    async def connect(self) -> None:
        if not await self._client.connect():
            raise open_problem(self.port)

    def close(self) -> None:
        if self._pymodbus is not None:
            self._pymodbus.close()

    async def _call(self, timeout: float, function: int, make: Callable[[], Any]) -> Any:
        # pymodbus checks the connection when the request is built, so build it after connecting.
        if not self.connected:
            await self.connect()
        try:
            response = await asyncio.wait_for(make(), timeout)
        except TimeoutError:
            raise ModbusTimeout(f"no answer on {self.port} within {timeout:g} s") from None
        except ConnectionException as exc:
            raise ModbusConnectionError(str(exc)) from exc
        except ModbusIOException as exc:
            raise ModbusTimeout(str(exc)) from exc
        except ModbusException as exc:
            raise ModbusFrameError(str(exc)) from exc
        if response.isError():
            raise ModbusExceptionResponse(function, int(getattr(response, "exception_code", 0)))
        return response

    async def read(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,  # pymodbus frames the line and keeps its own counts
    ) -> list[int] | list[bool]:
        c = self._client
        calls = {
            1: c.read_coils,
            2: c.read_discrete_inputs,
            3: c.read_holding_registers,
            4: c.read_input_registers,
        }
        response = await self._call(
            timeout, function, lambda: calls[function](address, count=count, device_id=unit)
        )
        if function in (1, 2):
            bits: list[bool] = list(response.bits[:count])
            return bits
        registers: list[int] = list(response.registers)
        if len(registers) != count:
            raise ModbusFrameError(f"{len(registers)} registers, expected {count}")
        return registers

    async def read_raw(
        self,
        unit: int,
        function: int,
        address: int,
        count: int,
        timeout: float,
        problems: ProblemSink | None = None,
    ) -> bytes:
        registers = await self.read(unit, function, address, count, timeout)
        return struct.pack(f">{count}H", *registers)

    async def write_registers(
        self, unit: int, address: int, values: list[int], timeout: float
    ) -> None:
        c = self._client
        if len(values) == 1:
            await self._call(
                timeout, 6, lambda: c.write_register(address, values[0], device_id=unit)
            )
        else:
            await self._call(
                timeout, 16, lambda: c.write_registers(address, values, device_id=unit)
            )

    async def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        await self._call(
            timeout, 5, lambda: self._client.write_coil(address, value, device_id=unit)
        )


def open_problem(port: str) -> SerialPortError:
    """Why a serial port does not open, with what to do about it (pymodbus only says False)."""
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return SerialPortError(
            f"serial port {port} does not exist: check the device path in the site file "
            "(`ls -l /dev/serial/by-id/` names the adapters that are plugged in; a by-id path "
            "survives re-plugging) and that the adapter is connected",
            "serial_port_missing",
        )
    except PermissionError:
        return SerialPortError(
            f"no permission to open serial port {port}: add the gateway's user to the port's "
            f"group (`sudo usermod -aG {_group_of(port)} {_user()}`), then log in again or "
            "restart the service",
            "serial_port_permission",
        )
    except OSError as exc:
        return SerialPortError(
            f"cannot open serial port {port}: {exc.strerror or exc}", "serial_port_error"
        )
    os.close(fd)
    return SerialPortError(
        f"cannot open serial port {port} as a serial line: is it a serial device, and is no "
        "other program (ModemManager, a second gateway) holding it?",
        "serial_port_error",
    )


def _group_of(port: str) -> str:
    try:
        return grp.getgrgid(os.stat(port).st_gid).gr_name
    except (OSError, KeyError):
        return "dialout"


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


__all__ = ["ModbusError", "SerialClient", "open_problem"]
