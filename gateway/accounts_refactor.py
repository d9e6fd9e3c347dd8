"""Recompute the stored accounts with the site's current factor set (`guanjia accounts
refactor`): every hour, day and month period of the `energy` measurement whose standard coal or
CO₂ was figured with another set (its `factor_set`, or figures that differ from what the
current set gives) is written again with the same amount and coverage, the current set's kgce
and co2_kg and its label. Nothing else about a period changes.

InfluxDB (1.x, and 2.x through its v1 API) is read with InfluxQL; a period written again at
its own timestamp replaces it. VictoriaMetrics (the site's `influxdb.server`) answers no
InfluxQL and keeps no text (factor_set is stored as 0), so it is read through
`/api/v1/export` and a period whose figures differ is written again the way the accounts
revise a period there: a millisecond after its newest sample, the revision counted in the
accounts store, so the gateway's next revision of it comes later still.

The gateway must be stopped meanwhile (its spool lock says whether it runs) and its spool
empty: a period it rewrote, or a spooled figure sent after this run, would bring an old
figure back.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from accounts.config import DEFAULT_COUNTERS, AccountsConfig, CounterSpec
from accounts.factors import FactorSet
from accounts.store import AccountsStore, Changes
from gateway.accounts_service import MAX_REVISION, MEASUREMENT
from gateway.catalog import DeviceCatalog
from gateway.config_load import LoadedSite
from gateway.influx_writer import Transport, WriteError, advice
from gateway.lineproto import format_field, series_prefix
from gateway.report.query import InfluxQL, QueryError, basic_auth, between, get, literal, read_pool
from gateway.site import InfluxV1

PERIOD_KINDS = ("hour", "day", "month")
BATCH_LINES = 5000
_FIGURES = ("amount", "kgce", "co2_kg", "coverage")


class RefactorError(Exception):
    """The run cannot go on: one line saying why and what to do."""


@dataclass(frozen=True, slots=True)
class StoredPeriod:
    """One period of one counter as the database holds it (its newest figure)."""

    tags: Mapping[str, str]  # every tag of its series, `period` among them
    start: int  # epoch seconds
    revision: int  # ms after `start` of its newest sample (VictoriaMetrics); 0 elsewhere
    amount: float
    kgce: float
    co2_kg: float
    coverage: float | None
    factor_set: str | None  # None: the database keeps no text (VictoriaMetrics)


class PeriodSource(Protocol):
    def first(self) -> float | None:
        """The earliest period start of the site's accounts (epoch seconds), None: none."""
        ...

    def periods(self, start: float, end: float) -> list[StoredPeriod]:
        """The periods that start in [start, end)."""
        ...

    def close(self) -> None: ...


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class InfluxSource:
    """The `energy` periods of one site through InfluxQL."""

    def __init__(self, ql: InfluxQL, site_id: str) -> None:
        self.ql = ql
        self.site = f"site = {literal(site_id)}"

    def first(self) -> float | None:
        series = self.ql.query(f"SELECT first(amount) FROM {MEASUREMENT} WHERE {self.site}")
        times = [row[0] for s in series for row in s.values if row and row[0] is not None]
        return float(min(times)) if times else None

    def periods(self, start: float, end: float) -> list[StoredPeriod]:
        q = (
            f"SELECT amount, kgce, co2_kg, coverage, factor_set FROM {MEASUREMENT} "
            f"WHERE {self.site} AND {between(start, end)} GROUP BY *"
        )
        out = []
        for s in self.ql.query(q):
            tags = {k: v for k, v in s.tags.items() if v}
            for row in s.rows():
                amount = _float(row.get("amount"))
                if amount is None or tags.get("period") not in PERIOD_KINDS:
                    continue
                out.append(
                    StoredPeriod(
                        tags,
                        int(row["time"]),
                        0,
                        amount,
                        _float(row.get("kgce")) or 0.0,
                        _float(row.get("co2_kg")) or 0.0,
                        _float(row.get("coverage")),
                        str(row.get("factor_set") or ""),
                    )
                )
        return out

    def close(self) -> None:
        self.ql.close()


class VictoriaSource:
    """The `energy` periods of one site from VictoriaMetrics' `/api/v1/export`: each field is a
    metric `energy_<field>`, each sample of a period at its start plus its revision in ms; the
    newest sample is the period's figure."""

    def __init__(
        self,
        url: str,
        site_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        drop_labels: Sequence[str] = (),
        timeout: float = 120.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.site_id = site_id
        # A v1 write's `?db=` becomes a label, which the write back adds again.
        self.drop = {"__name__", *drop_labels}
        self._headers = basic_auth(username, password)
        self._http = read_pool(timeout)

    def _export(self, match: str, start: float | None, end: float | None) -> list[dict[str, Any]]:
        params: dict[str, str] = {"match[]": match}
        if start is not None:
            params["start"] = f"{start:.3f}"
        if end is not None:
            params["end"] = f"{end:.3f}"
        url = f"{self.url}/api/v1/export?{urlencode(params)}"
        response = get(self._http, url, self._headers, "VictoriaMetrics", self.url)
        if response.status != 200:
            raise QueryError(
                f"VictoriaMetrics at {self.url} refused the export (HTTP {response.status}): "
                f"{response.data[:160]!r}"
            )
        text = response.data.decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _site(self) -> str:
        return f'site="{_label(self.site_id)}"'

    def first(self) -> float | None:
        # Day periods are few and come first: a day's period starts before its first hour.
        series = self._export(
            f'{{__name__="{MEASUREMENT}_amount",{self._site()},period="day"}}', None, None
        )
        times = [t for s in series for t in s.get("timestamps", [])]
        return min(times) // 1000 if times else None

    def periods(self, start: float, end: float) -> list[StoredPeriod]:
        names = "|".join(_FIGURES)
        match = f'{{__name__=~"{MEASUREMENT}_({names})",{self._site()}}}'
        # A period's samples lie within the first second from its start: the next period's
        # are not in [start, end - 1 ms].
        series = self._export(match, start, end - 0.001)
        # (tags, start) -> field -> (newest ms offset, value)
        newest: dict[tuple[tuple[tuple[str, str], ...], int], dict[str, tuple[int, float]]] = {}
        for s in series:
            labels = s.get("metric", {})
            name = str(labels.get("__name__", "")).removeprefix(f"{MEASUREMENT}_")
            tags = tuple(sorted((k, str(v)) for k, v in labels.items() if k not in self.drop))
            for ts_ms, value in zip(s.get("timestamps", []), s.get("values", []), strict=False):
                period_start, offset = divmod(int(ts_ms), 1000)
                figures = newest.setdefault((tags, period_start), {})
                if name not in figures or offset >= figures[name][0]:
                    figures[name] = (offset, float(value))
        out = []
        for (tags, period_start), figures in newest.items():
            amount = figures.get("amount")
            kinds = dict(tags).get("period")
            if amount is None or kinds not in PERIOD_KINDS or not start <= period_start < end:
                continue
            out.append(
                StoredPeriod(
                    dict(tags),
                    period_start,
                    max(offset for offset, _ in figures.values()),
                    amount[1],
                    figures.get("kgce", (0, 0.0))[1],
                    figures.get("co2_kg", (0, 0.0))[1],
                    figures["coverage"][1] if "coverage" in figures else None,
                    None,
                )
            )
        return out

    def close(self) -> None:
        self._http.clear()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True, slots=True)
class Counted:
    """What a stored series counts: its unit, and its counter's name in the accounts store
    (None: the site no longer has the device)."""

    unit: str
    key: str | None


def counters_of(loaded: LoadedSite) -> dict[tuple[str, str, str], Counted]:
    """(device, carrier, flow) -> the counter, as the accounts runtime finds them."""
    accounts = loaded.site.accounts or AccountsConfig()
    out: dict[tuple[str, str, str], Counted] = {}
    for device in DeviceCatalog.build(loaded).devices.values():
        specs = {**DEFAULT_COUNTERS.get(device.kind, {}), **accounts.counters}
        for point, spec in specs.items():
            if point in device.points:
                out[(device.id, spec.carrier, spec.flow)] = Counted(
                    spec.unit, f"{device.id}/{point}"
                )
    return out


def _any_unit(accounts: AccountsConfig, carrier: str, flow: str) -> str | None:
    """The unit of a removed device's counter: the one all counters of its carrier and flow
    count in, if they agree."""
    specs: list[CounterSpec] = [s for kind in DEFAULT_COUNTERS.values() for s in kind.values()]
    specs += accounts.counters.values()
    units = {s.unit for s in specs if (s.carrier, s.flow) == (carrier, flow)}
    return units.pop() if len(units) == 1 else None


@dataclass
class Outcome:
    read: int = 0
    rewritten: Counter[str] = field(default_factory=Counter)  # by period kind
    unknown: set[str] = field(default_factory=set)  # devices whose unit is not known
    unknown_periods: int = 0
    no_revision_left: int = 0

    @property
    def changed(self) -> int:
        return sum(self.rewritten.values())


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


class Refactor:
    """Reads each month's periods, writes again those figured with another factor set."""

    def __init__(
        self,
        loaded: LoadedSite,
        factors: FactorSet,
        source: PeriodSource,
        transport: Transport | None,
        *,
        store: AccountsStore | None = None,
        stamp_revisions: bool = False,
    ) -> None:
        self.accounts = loaded.site.accounts or AccountsConfig()
        self.tz = ZoneInfo(loaded.site.site.timezone)
        self.factors = factors
        self.region = self.accounts.grid_region
        self.label = factors.label(self.region)
        self.source = source
        self.transport = transport  # None: count only (a dry run)
        self.store = store
        self.stamp_revisions = stamp_revisions
        self.counters = counters_of(loaded)
        self._revisions: dict[tuple[str, str, float], int] = {}
        if store is not None:
            for key, stored in store.load().items():
                for (kind, start), rev in stored.revisions.items():
                    self._revisions[(key, kind, start)] = rev

    def first_month(self) -> date | None:
        first = self.source.first()
        if first is None:
            return None
        return datetime.fromtimestamp(first, self.tz).date().replace(day=1)

    def run(self, months: Sequence[date]) -> Outcome:
        outcome = Outcome()
        for month in months:
            start = datetime(month.year, month.month, 1, tzinfo=self.tz)
            following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
            end = datetime(following.year, following.month, 1, tzinfo=self.tz)
            self._month(start.timestamp(), end.timestamp(), outcome)
        return outcome

    def _month(self, start: float, end: float, outcome: Outcome) -> None:
        lines: list[str] = []
        kinds: list[str] = []
        revisions: dict[tuple[str, str, float], int] = {}
        for p in self.source.periods(start, end):
            outcome.read += 1
            tags = p.tags
            device, carrier, flow = (tags.get(k, "") for k in ("device", "carrier", "flow"))
            counted = self.counters.get((device, carrier, flow))
            if counted is None:
                unit = _any_unit(self.accounts, carrier, flow)
                if unit is None:
                    outcome.unknown.add(device)
                    outcome.unknown_periods += 1
                    continue
                counted = Counted(unit, None)
            year = datetime.fromtimestamp(p.start, self.tz).year
            kgce = p.amount * self.factors.kgce_per(carrier, counted.unit)
            co2 = p.amount * self.factors.co2_kg_per(carrier, counted.unit, year, self.region)
            if p.factor_set in (None, self.label) and _same(kgce, p.kgce) and _same(co2, p.co2_kg):
                continue
            kind = tags["period"]
            ts = p.start * 1_000_000_000
            if self.stamp_revisions:
                stored = self._revisions.get((counted.key or "", kind, float(p.start)), 0)
                revision = max(p.revision, stored) + 1
                if revision > MAX_REVISION:
                    outcome.no_revision_left += 1
                    continue
                ts += revision * 1_000_000
                if counted.key is not None:
                    revisions[(counted.key, kind, float(p.start))] = revision
            fields: dict[str, float | str] = {"amount": p.amount, "kgce": kgce, "co2_kg": co2}
            if p.coverage is not None:
                fields["coverage"] = p.coverage
            fields["factor_set"] = self.label
            body = ",".join(f"{k}={format_field(v)}" for k, v in fields.items())
            lines.append(f"{series_prefix(MEASUREMENT, tags)} {body} {ts}")
            kinds.append(kind)
        if self.transport is not None:
            for i in range(0, len(lines), BATCH_LINES):
                chunk = lines[i : i + BATCH_LINES]
                try:
                    self.transport.send(("\n".join(chunk) + "\n").encode("utf-8"))
                except WriteError as exc:
                    raise RefactorError(
                        f"the database refused the rewrite ({exc}): {advice(exc)}; "
                        f"{outcome.changed + i} periods were rewritten before, run it again "
                        "once it takes data"
                    ) from None
            if self.store is not None and revisions:
                self.store.save(Changes(marks={}, revisions=revisions))
                self._revisions.update(revisions)
        outcome.rewritten.update(kinds)


def months_between(first: date, last: date) -> list[date]:
    out = []
    index, stop = first.year * 12 + first.month - 1, last.year * 12 + last.month - 1
    while index <= stop:
        out.append(date(index // 12, index % 12 + 1, 1))
        index += 1
    return out


def source_for(loaded: LoadedSite) -> PeriodSource:
    """The site's database as a source of stored periods."""
    db = loaded.site.influxdb
    if db is not None and db.server == "victoriametrics":
        if isinstance(db, InfluxV1):
            return VictoriaSource(
                db.url,
                loaded.site.site.id,
                username=db.username,
                password=loaded.secrets.get("password"),
                drop_labels=("db",),
            )
        return VictoriaSource(db.url, loaded.site.site.id)
    return InfluxSource(InfluxQL.for_site(loaded), loaded.site.site.id)
