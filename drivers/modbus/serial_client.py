"""Modbus RTU on a local serial port (RS-485), through pymodbus's serial client."""

from __future__ import annotations

import asyncio
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
        self._client = AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            timeout=timeout,  # the longest device timeout on the line; each call also has its own
            retries=0,  # the poller owns retries, so they are counted in one place
            reconnect_delay=0,  # and reconnects, for the same reason
        )

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> None:
        if not await self._client.connect():
            raise ModbusConnectionError(f"cannot open serial port {self.port}")

    def close(self) -> None:
        self._client.close()

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
        self, unit: int, function: int, address: int, count: int, timeout: float
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
        self, unit: int, function: int, address: int, count: int, timeout: float
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


__all__ = ["ModbusError", "SerialClient"]
