"""How the site file describes a DL/T 645 meter's connection: its line and its address."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from core.config_types import Duration, Host
from drivers.dlt645.codec import BROADCAST, MAX_WAKEUP

_ADDRESS = re.compile(r"^[0-9]{12}$")


def _address(value: Any) -> Any:
    if isinstance(value, int | float):  # bool too
        raise ValueError(
            'write the meter address in quotes, as its 12 digits: address: "000000000161" '
            "(unquoted, YAML reads it as a number: the leading zeros are lost, and digits "
            "0-7 after a leading 0 are even read as octal)"
        )
    if isinstance(value, str) and not _ADDRESS.match(value):
        if value.upper() == BROADCAST:
            raise ValueError(
                "AAAAAAAAAAAA is the broadcast address; give the meter's own, or "
                "`discover: true` on a line with this meter alone"
            )
        if value.isdigit() and len(value) < 12:
            raise ValueError(
                f"'{value}' has {len(value)} digits; a DL/T 645 address has 12, padded with "
                f'zeros in front: "{value.zfill(12)}" (check the nameplate)'
            )
        raise ValueError(
            f"'{value}' is not a meter address: 12 digits as on the nameplate, e.g. "
            '"000000000161"'
        )
    return value


MeterAddress = Annotated[
    str,
    BeforeValidator(_address),
    Field(
        pattern=r"^[0-9]{12}$",
        description='The meter address, 12 digits in quotes as on the nameplate: "000000000161".',
    ),
]


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: MeterAddress | None = None
    discover: bool = Field(
        default=False,
        description="Ask the line for the address (broadcast read-address): only on a line "
        "with this one meter; instead of `address`.",
    )
    timeout: Duration = Field(
        default=1.0,
        gt=0,
        description="How long to wait for each answer, after the request is sent (meters "
        "answer within 500 ms by the standard).",
    )
    retries: int = Field(default=1, ge=0, le=5, description="Retries of a request that timed out.")
    wakeup: int = Field(
        default=4,
        ge=0,
        le=MAX_WAKEUP,
        description="FEH bytes sent before each request to wake the meter's receiver.",
    )

    @model_validator(mode="after")
    def _one_address(self) -> _Common:
        if self.address is None and not self.discover:
            raise ValueError(
                'give the meter\'s `address: "..."` (12 digits, on its nameplate), or '
                "`discover: true` when it is alone on its line"
            )
        if self.address is not None and self.discover:
            raise ValueError("give either `address` or `discover: true`, not both")
        return self


class RtuConnection(_Common):
    """A meter on a local serial port (an RS-485 adapter)."""

    transport: Literal["rtu"] = Field(description="`rtu`")
    port: str = Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0.")
    baudrate: int = Field(
        default=2400, ge=300, le=115200, description="Baud rate (2400 is the standard's default)."
    )
    bytesize: Literal[7, 8] = Field(default=8, description="Data bits.")
    parity: Literal["N", "E", "O"] = Field(default="E", description="Parity: E (the standard's).")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")

    @property
    def bits_per_char(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits


class TcpConnection(_Common):
    """A meter behind a transparent serial server: DL/T 645 frames over TCP as on the line."""

    transport: Literal["tcp"] = Field(description="`tcp`")
    host: Host = Field(description="Serial server address.")
    port: int = Field(ge=1, le=65535, description="TCP port of the serial server's RS-485 port.")
    baudrate: int = Field(
        default=2400,
        ge=300,
        le=115200,
        description="Baud rate of the RS-485 line behind the server: the time its bytes take "
        "on that line is added to `timeout`.",
    )

    @property
    def bits_per_char(self) -> int:
        return 11  # the standard's 8E1 on the line behind the server


Dlt645Connection = Annotated[RtuConnection | TcpConnection, Field(discriminator="transport")]
