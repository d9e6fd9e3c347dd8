"""The console's part of the site file (`console:`), off unless enabled."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config_types import Duration, Host
from core.config_types import Secret as SecretRef
from gateway.console.passwords import parse_hash

Role = Literal["duty", "leader", "admin"]
Scope = Literal["read", "ack", "shelve"]

_ID = r"^[a-z0-9][a-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsoleUser(_Strict):
    """A person who may log in to the console."""

    id: str = Field(pattern=_ID, max_length=64, description="Login name, e.g. `zhang-wei`.")
    name: str = Field(min_length=1, description="Name shown on pages, e.g. 张伟.")
    role: Role = Field(
        description="`duty` sees and acknowledges; `leader` also shelves; `admin` also sees "
        "the console's own figures."
    )
    password_hash: str = Field(
        description="`scrypt$n=...` from `guanjia console-password`; never the password."
    )

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        parse_hash(value)
        return value


class ApiClient(_Strict):
    """A program that uses the JSON API with a bearer token."""

    name: str = Field(pattern=_ID, max_length=64, description="Client name, e.g. `dingtalk-bot`.")
    token: SecretRef = Field(description="Bearer token reference; 32+ random characters.")
    scopes: list[Scope] = Field(
        min_length=1,
        description="`read` (alarms, history, devices), `ack`, `shelve`.",
    )


class ConsoleTls(_Strict):
    """HTTPS: the console's certificate and key (PEM), relative to the site file."""

    cert_file: str = Field(min_length=1, description="Certificate chain (PEM).")
    key_file: str = Field(min_length=1, description="Private key (PEM).")


class LoginLimits(_Strict):
    """How failed logins slow further attempts."""

    free_user: int = Field(default=5, ge=1, le=100, description="Free failures per user name.")
    free_address: int = Field(
        default=20, ge=1, le=1000, description="Free failures per client address."
    )
    base_delay: Duration = Field(
        default=1.0, gt=0, description="Lock after the first failure past the free ones."
    )
    max_delay: Duration = Field(default=900.0, gt=0, description="The doubling stops here.")
    forget_after: Duration = Field(
        default=3600.0, gt=0, description="Counters of a name or address quiet this long reset."
    )


class ConsoleConfig(_Strict):
    """The duty console: alarm pages and a JSON API over HTTP(S)."""

    enabled: bool = Field(default=False, description="Serve the console.")
    host: Host = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port (0: any free one).")
    tls: ConsoleTls | None = Field(
        default=None, description="HTTPS; without it, serve only on a trusted network."
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/\s]+$",
        description="How phones reach the console, e.g. https://10.0.8.5:8443: the start of "
        "signed links in notifications.",
    )
    link_secret: SecretRef | None = Field(
        default=None,
        description="Key of signed acknowledgement links (16+ random bytes); none: no links.",
    )
    link_ttl: Duration = Field(
        default=3600.0, gt=0, le=7 * 86400, description="Default lifetime of a signed link."
    )
    session_lifetime: Duration = Field(
        default=12 * 3600.0, gt=0, description="A login lasts at most this (a duty shift)."
    )
    session_idle: Duration = Field(
        default=1800.0, gt=0, description="A login unused this long ends."
    )
    max_sessions: int = Field(
        default=1000, ge=1, description="Bound of the session table; the oldest go first."
    )
    login: LoginLimits = Field(default_factory=LoginLimits, description="Brute-force limits.")
    users: list[ConsoleUser] = Field(default_factory=list, description="People who log in.")
    api_clients: list[ApiClient] = Field(
        default_factory=list, description="Programs using the JSON API."
    )

    @model_validator(mode="after")
    def _unique(self) -> ConsoleConfig:
        for what, ids in (
            ("users", [u.id for u in self.users]),
            ("api_clients", [c.name for c in self.api_clients]),
        ):
            seen: set[str] = set()
            for i in ids:
                if i in seen:
                    raise ValueError(f"{what}: {i!r} appears twice; ids are unique")
                seen.add(i)
        return self
