"""How the site file describes a Modbus device's connection."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.config_types import Duration, Host
from drivers.modbus.profile import Function


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: int = Field(default=1, ge=0, le=255, description="Modbus unit (slave) id.")
    base: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Added to every profile address (e.g. a CoolMasterNet unit's VA×16).",
    )
    timeout: Duration = Field(default=1.0, gt=0, description="How long to wait for each answer.")
    retries: int = Field(default=1, ge=0, le=5, description="Retries of a request that timed out.")
    max_registers: int | None = Field(
        default=None, ge=1, le=125, description="Registers per request; defaults to the profile's."
    )
    turnaround_ms: float | None = Field(
        default=None, ge=0, description="Device answer delay used to plan requests."
    )
    max_writes_per_s: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Writes the path (TCP endpoint, serial line or serial server) accepts per "
        "second, e.g. 5 for a CoolMasterNet or VRF gateway: writes to the path's devices are "
        "spaced at least 1/this apart, reads are not limited. Every device on one path gives "
        "the same value (or none: unlimited).",
    )
    function_overrides: dict[str, Function] = Field(
        default_factory=dict,
        description="Read a table of the profile from another (`{input: holding}`) or one "
        "point from another table (`{voltage_l1_v: holding}`), where this device's model or "
        "firmware differs from the profile's source; a point's own entry wins.",
    )


class TcpConnection(_Common):
    """Modbus TCP (MBAP framing) to the device or to a TCP gateway."""

    transport: Literal["tcp"] = Field(description="`tcp`")
    host: Host = Field(description="Device or gateway address.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port.")


class RtuOverTcpConnection(_Common):
    """RTU frames tunnelled through a TCP serial server (a 'transparent' RS-485 gateway)."""

    transport: Literal["rtu_over_tcp"] = Field(description="`rtu_over_tcp`")
    host: Host = Field(description="Serial server address.")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port of the serial server.")
    baudrate: int = Field(
        default=9600, ge=300, le=921600, description="Baud rate of the RS-485 line behind it."
    )


class RtuConnection(_Common):
    """RTU on a local serial port (RS-485 adapter)."""

    transport: Literal["rtu"] = Field(description="`rtu`")
    port: str = Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0.")
    baudrate: int = Field(default=9600, ge=300, le=921600, description="Baud rate.")
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")
    parity: Literal["N", "E", "O"] = Field(default="N", description="Parity: N, E or O.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits


ModbusConnection = Annotated[
    TcpConnection | RtuOverTcpConnection | RtuConnection, Field(discriminator="transport")
]
