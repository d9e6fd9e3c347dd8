"""InfluxQL over HTTP: InfluxDB 1.x's `/query`, which InfluxDB 2.x answers too through its v1
compatibility API (the bucket mapped to a database by a DBRP mapping, a token for auth).

urllib3 (already there under influxdb-client) rather than influxdb-client's Flux API: the
report's queries are InfluxQL, which every server the gateway writes to answers."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import urllib3

from gateway.config_errors import ConfigError, Problem
from gateway.config_load import LoadedSite
from gateway.site import InfluxV1, InfluxV2


class QueryError(Exception):
    """The database could not answer: one line saying why and what to do."""


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an InfluxQL answer: its tags and rows (time in epoch seconds first)."""

    tags: Mapping[str, str]
    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


def literal(text: str) -> str:
    """A string literal of InfluxQL (tag values in WHERE)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ident(name: str) -> str:
    """A quoted identifier (measurement, tag or field name)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def between(start: float, end: float) -> str:
    """`time` in [start, end), epoch seconds."""
    return f"time >= {int(start)}s AND time < {int(end)}s"


def get(
    http: urllib3.PoolManager, url: str, headers: Mapping[str, str], server: str, base: str
) -> urllib3.BaseHTTPResponse:
    """One GET; a connection that fails is a QueryError that says what to check."""
    try:
        return http.request("GET", url, headers=dict(headers))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise QueryError(
            f"cannot reach {server} at {base} ({exc.__class__.__name__}): is it running, and is "
            "the site file's influxdb.url right?"
        ) from None


def basic_auth(username: str | None, password: str | None) -> dict[str, str]:
    """The Authorization header of HTTP basic auth ({} without a user name)."""
    if not username:
        return {}
    basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
    return {"Authorization": f"Basic {basic}"}


def read_pool(timeout: float) -> urllib3.PoolManager:
    """One connection for the reads of one client: no retries (get() says what failed)."""
    return urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout), retries=False, maxsize=1)


class InfluxQL:
    """A read-only InfluxQL client of one database."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        else:
            self._headers.update(basic_auth(username, password))
        self._http = read_pool(timeout)

    @classmethod
    def for_site(cls, loaded: LoadedSite) -> InfluxQL:
        """The site's database; a site without one is a configuration problem."""
        db = loaded.site.influxdb
        if isinstance(db, InfluxV1):
            return cls(
                db.url,
                db.database,
                retention_policy=db.retention_policy,
                username=db.username,
                password=loaded.secrets.get("password"),
            )
        if isinstance(db, InfluxV2):
            # InfluxQL on 2.x: the bucket's DBRP mapping names it as a database (by default
            # the bucket's own name), and the token authorises.
            return cls(db.url, db.bucket, token=loaded.secrets.get("token"))
        raise ConfigError(
            [
                Problem(
                    str(loaded.path),
                    None,
                    "influxdb",
                    "the report reads the site's database, and this site names none: add an "
                    "`influxdb:` section (api: v1 or v2, url, database or bucket)",
                )
            ]
        )

    def query(self, q: str, *, epoch: Literal["s", "ms"] = "s") -> list[Series]:
        """Run one SELECT; every series of its answer, times as epoch seconds (whole seconds,
        or with `epoch="ms"` to the millisecond: readings a second apart or closer)."""
        params = {"db": self.database, "q": q, "epoch": epoch}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        url = f"{self.url}/query?{urlencode(params)}"
        response = get(self._http, url, self._headers, "the database", self.url)
        if response.status in (401, 403):
            raise QueryError(
                f"the database at {self.url} refused the query (HTTP {response.status}): "
                "check the site's user and password (v1) or token (v2) and its read permission"
            )
        try:
            answer: dict[str, Any] = json.loads(response.data)
        except ValueError:
            raise QueryError(
                f"the database at {self.url} answered HTTP {response.status} with no JSON: "
                f"{response.data[:120]!r}"
            ) from None
        errors = [r["error"] for r in answer.get("results", []) if "error" in r]
        if "error" in answer:
            errors.append(answer["error"])
        if errors or response.status >= 300:
            hint = ""
            if any("database not found" in str(e) for e in errors):
                hint = (
                    f": create database {self.database!r} (v1), or map the bucket to it with "
                    "a DBRP mapping (v2: influx v1 dbrp create)"
                )
            raise QueryError(f"the database refused a query ({'; '.join(errors)}){hint}")
        out: list[Series] = []
        for result in answer.get("results", []):
            for s in result.get("series", []):
                values = s.get("values", [])
                if epoch == "ms":
                    values = [[row[0] / 1000.0, *row[1:]] for row in values]
                out.append(Series(s.get("tags") or {}, list(s["columns"]), values))
        return out

    def close(self) -> None:
        self._http.clear()
