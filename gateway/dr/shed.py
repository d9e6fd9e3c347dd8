"""The load a demand-response event shed, measured on the AC meter (`ShedAccounts`).

Baseline: the mean energy the meter used in the event's window (same local time of day, same
length) on the last `days` similar days before the event's day: days the working calendar
treats alike (working days, 调休 make-up Saturdays among them, or days off), at most
`look_back_days` back, skipping days of other demand-response events and days whose readings
cover less than `min_coverage` of the window. With fewer than `min_days` such days the
baseline is unknown: the figures are NaN and `reason` says why; nothing is made up.

Energy comes from the meter's cumulative counter (`point`, default `energy_import_kwh`) as the
accounts count it (gateway/dr/baseline.py); a day without a single counter reading is
integrated from `power_point` (W) instead, if the meter stores it. Readings are read back from
the site's database as the gateway stored them (measurement = the device's kind, tags site and
device, a field per point): with InfluxQL (`InfluxReadings`: InfluxDB 1.x, 2.x through its v1
API) or VictoriaMetrics' export API (`VictoriaReadings`, metric `<kind>_<point>`), both over
gateway.report.query's GET. `ShedAccounts.for_site` picks the one the site's `influxdb:` names.

While an event runs its figure covers [start, now) (or up to the meter's newest reading when
that lags), and the baseline the same span of the similar days; it is complete `settle_s`
after the event's end, when the reading after the end has arrived. A figure is recomputed at
most every `refresh_s`, and no more once it is complete and known (or `final_after_s` after
the end: readings the database missed may still arrive from the gateway's spool till then).

The result is written as one point per event, a rules.model.Record the gateway publishes on
its bus (the InfluxDB sink writes it as it writes the accounts' `energy`):

    dr_shed,site=<site>,event=<event id>,meter=<device> baseline_kwh=..,actual_kwh=..,
        reduction_kwh=..,reduction_kw=..,baseline_days=<n>i,complete=<bool>,coverage=..,
        span_s=..[,reason="..."] <event start, ns>

(figures that are unknown are left out, `reason` says why). A later point of the same event
replaces the earlier one: same series, same timestamp.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import partial
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode

from accounts.counters import Tally
from core.types import Value
from gateway.config_load import LoadedSite
from gateway.dr.baseline import (
    DEFAULT_MAX_KWH_PER_HOUR,
    Reading,
    counter_tally,
    day_window,
    power_tally,
    similar_days,
)
from gateway.dr.contract import ShedFigure
from gateway.report.query import (
    InfluxQL,
    QueryError,
    Series,
    basic_auth,
    between,
    get,
    ident,
    literal,
    read_pool,
)
from gateway.site import InfluxV1
from rules.calendar import WorkCalendar
from rules.model import Record

log = logging.getLogger("guanjia.dr.shed")

MEASUREMENT = "dr_shed"
MAX_EVENTS = 200
"""Events remembered (the oldest are forgotten first): a few a year on most sites."""

Query = Callable[[str], Sequence[Series]]
"""One InfluxQL SELECT -> its series, times in epoch seconds (InfluxQL.query)."""


@runtime_checkable
class ReadingSource(Protocol):
    """One device's stored readings."""

    def read(self, point: str, start: float, end: float) -> list[Reading]:
        """The point's readings in [start, end] (epoch seconds), oldest first; raises
        QueryError (or OSError) when the database cannot answer."""
        ...


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class InfluxReadings:
    """Readings through InfluxQL: `query` is InfluxQL.query (or a callable of its shape)."""

    def __init__(self, query: Query, site: str, device: str, *, measurement: str = "meter"):
        self.query = query
        self.site = site
        self.device = device
        self.measurement = measurement

    def read(self, point: str, start: float, end: float) -> list[Reading]:
        q = (
            f"SELECT {ident(point)} FROM {ident(self.measurement)} WHERE "
            f"{ident('site')} = {literal(self.site)} AND "
            f"{ident('device')} = {literal(self.device)} AND "
            f"{between(math.floor(start), math.floor(end) + 1)}"
        )
        out = [
            (float(row[0]), float(row[1]))
            for series in self.query(q)
            for row in series.values
            if len(row) > 1 and _number(row[1])
        ]
        return sorted(out)


class VictoriaReadings:
    """Readings from VictoriaMetrics' `/api/v1/export`: the point `p` of a device of kind `k`
    is the metric `k_p`, labelled site and device."""

    def __init__(
        self,
        url: str,
        site: str,
        device: str,
        *,
        measurement: str = "meter",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.site = site
        self.device = device
        self.measurement = measurement
        self._headers = basic_auth(username, password)
        self._http = read_pool(timeout)

    def read(self, point: str, start: float, end: float) -> list[Reading]:
        def label(text: str) -> str:
            return text.replace("\\", "\\\\").replace('"', '\\"')

        match = (
            f'{{__name__="{label(f"{self.measurement}_{point}")}",'
            f'site="{label(self.site)}",device="{label(self.device)}"}}'
        )
        params = {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        url = f"{self.url}/api/v1/export?{urlencode(params)}"
        response = get(self._http, url, self._headers, "VictoriaMetrics", self.url)
        if response.status != 200:
            raise QueryError(
                f"VictoriaMetrics at {self.url} refused the export (HTTP {response.status}): "
                f"{response.data[:160]!r}"
            )
        out: list[Reading] = []
        for line in response.data.decode("utf-8").splitlines():
            if line.strip():
                series = json.loads(line)
                for ts_ms, value in zip(series["timestamps"], series["values"], strict=False):
                    if _number(value):
                        out.append((ts_ms / 1000.0, float(value)))
        return sorted(out)


def readings_for(loaded: LoadedSite, device: str) -> ReadingSource:
    """The site's database as a source of a device's readings; ValueError for a device the
    site does not have."""
    config = next((d for d in loaded.site.devices if d.id == device), None)
    if config is None:
        raise ValueError(f"{loaded.path}: no device {device!r} in the site file")
    site, kind = loaded.site.site.id, loaded.kind_of(config)
    db = loaded.site.influxdb
    if db is not None and db.server == "victoriametrics":
        if isinstance(db, InfluxV1):
            return VictoriaReadings(
                db.url,
                site,
                device,
                measurement=kind,
                username=db.username,
                password=loaded.secrets.get("password"),
            )
        return VictoriaReadings(db.url, site, device, measurement=kind)
    # To the millisecond: a meter polled every second or faster has readings within one second.
    query = partial(InfluxQL.for_site(loaded).query, epoch="ms")
    return InfluxReadings(query, site, device, measurement=kind)


@dataclass(frozen=True, slots=True)
class MeasuredShed(ShedFigure):
    """A ShedFigure with what the figure rests on. Unknown figures are NaN and `reason` (and
    `reason_zh`) say why; both are empty when every figure is known."""

    reason: str = ""
    reason_zh: str = ""
    coverage: float = 0.0  # share of [start, until) the event day's readings cover
    source: str = ""  # "counter" or "power": what the event day's energy came from

    @property
    def known(self) -> bool:
        return not self.reason


@dataclass
class _Event:
    id: str
    start: float
    end: float
    zones: tuple[str, ...]
    ended_at: float | None = None
    figure: MeasuredShed | None = None
    computed_at: float = -math.inf
    final: bool = False  # the figure will not change: no more queries
    # The similar days' readings over the whole window (they no longer change): day ->
    # (source, readings).
    days: dict[date, tuple[str, list[Reading]]] = field(default_factory=dict)

    @property
    def until(self) -> float:
        return self.end if self.ended_at is None else min(self.end, self.ended_at)


@dataclass
class _Stats:
    queries: int = 0
    query_failures: int = 0
    figures: int = 0
    unknown: int = 0


class ShedAccounts:
    """Baseline, actual energy and reduction of demand-response events on one AC meter."""

    def __init__(
        self,
        query: Query | ReadingSource,
        site: str,
        meter: str,
        calendar: WorkCalendar,
        *,
        tz: tzinfo | None = None,
        measurement: str = "meter",
        point: str = "energy_import_kwh",
        power_point: str | None = "active_power_total_w",
        days: int = 5,
        look_back_days: int = 30,
        min_days: int = 3,
        min_coverage: float = 0.9,
        max_gap_s: float = 900.0,
        max_kwh_per_hour: float = DEFAULT_MAX_KWH_PER_HOUR,
        settle_s: float = 120.0,
        refresh_s: float = 60.0,
        final_after_s: float = 6 * 3600.0,
        exclude_days: Iterable[date] = (),
    ) -> None:
        """`query`: InfluxQL against the site's database (InfluxQL.query), or the meter's
        readings from elsewhere (a ReadingSource: VictoriaReadings, readings_for); `site`,
        `meter`, `measurement`: the site id, the AC meter's device id and its kind, as the
        database tags them; `calendar`: the site's working calendar, whose zone is the site's
        unless `tz` says otherwise; `exclude_days`: days of past demand-response events (this
        service's own events are excluded too)."""
        if not 1 <= min_days <= days:
            raise ValueError(f"min_days must be 1..days ({days}), not {min_days}")
        self.source: ReadingSource = (
            query
            if isinstance(query, ReadingSource)
            else InfluxReadings(query, site, meter, measurement=measurement)
        )
        self.site = site
        self.meter = meter
        self.calendar = calendar
        self.tz: tzinfo = tz or calendar.tz
        self.point = point
        self.power_point = power_point
        self.days = days
        self.look_back_days = look_back_days
        self.min_days = min_days
        self.min_coverage = min_coverage
        self.max_gap_s = max_gap_s
        self.max_kwh_per_hour = max_kwh_per_hour
        self.settle_s = settle_s
        self.refresh_s = refresh_s
        self.final_after_s = final_after_s
        self.exclude_days = set(exclude_days)
        self.stats = _Stats()
        self._events: dict[str, _Event] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def for_site(
        cls, loaded: LoadedSite, meter: str, *, exclude_days: Iterable[date] = ()
    ) -> ShedAccounts:
        """The shed of events on `meter` of a loaded site: its database, calendar and zone."""
        site = loaded.site
        calendar = WorkCalendar.from_config(site.calendar, site.site.timezone, loaded.base_dir)
        return cls(
            readings_for(loaded, meter), site.site.id, meter, calendar, exclude_days=exclude_days
        )

    # -- events in -------------------------------------------------------------------------

    def event_started(
        self, event_id: str, start: float, end: float, zones: Sequence[str] = ()
    ) -> None:
        """An event's window [start, end), epoch seconds. Sent again (a changed event), the
        window is replaced and the figure computed anew."""
        if end <= start:
            raise ValueError(f"event {event_id}: end {end} is not after start {start}")
        known = self._events.get(event_id)
        if known is not None and (known.start, known.end) == (start, end):
            known.zones = tuple(zones)  # announced again: what was figured still holds
            return
        self._events.pop(event_id, None)
        self._events[event_id] = _Event(event_id, float(start), float(end), tuple(zones))
        while len(self._events) > MAX_EVENTS:
            del self._events[next(iter(self._events))]

    def event_ended(self, event_id: str, at: float) -> None:
        """The event ended at `at` (cancelled, or restored early); its window ends there."""
        event = self._events.get(event_id)
        if event is None:
            return
        until = event.until
        event.ended_at = float(at)
        if event.until != until:  # not the end it was figured to
            event.figure, event.computed_at, event.final = None, -math.inf, False

    # -- figures out -----------------------------------------------------------------------

    def cached(self, event_id: str) -> MeasuredShed | None:
        """The last figure computed for the event (a contract.ShedOf); None before the first."""
        event = self._events.get(event_id)
        return None if event is None else event.figure

    def is_final(self, event_id: str) -> bool:
        """The event's figure will not change any more (complete, and known or past
        final_after_s): its summary can go out."""
        event = self._events.get(event_id)
        return event is not None and event.final

    async def figure(self, event_id: str, now: float) -> MeasuredShed | None:
        """The event's figure at `now` (epoch seconds): None for an unknown event or one that
        has not begun; the last figure while the database cannot answer."""
        event = self._events.get(event_id)
        if event is None or now <= event.start or event.until <= event.start:
            return None
        cached = event.figure
        if cached is not None and (event.final or now - event.computed_at < self.refresh_s):
            return cached
        async with self._lock:
            try:
                figure = await asyncio.to_thread(self._compute, event, now)
            except (QueryError, OSError) as exc:
                self.stats.query_failures += 1
                log.warning("load shed of event %s: %s", event_id, exc)
                return event.figure
        event.figure, event.computed_at = figure, now
        # A complete figure is final, unless readings were missing: they may still come (the
        # gateway's spool replays what the database missed) until final_after_s.
        event.final = figure.complete and (figure.known or now >= event.until + self.final_after_s)
        self.stats.figures += 1
        if not math.isfinite(figure.baseline_kwh):
            self.stats.unknown += 1
        return figure

    def record(self, event_id: str) -> Record | None:
        """The event's `dr_shed` point (see the module docstring), None before a figure."""
        figure = self.cached(event_id)
        if figure is None:
            return None
        fields: dict[str, Value] = {
            name: value
            for name, value in (
                ("baseline_kwh", figure.baseline_kwh),
                ("actual_kwh", figure.actual_kwh),
                ("reduction_kwh", figure.reduction_kwh),
                ("reduction_kw", figure.reduction_kw),
            )
            if math.isfinite(value)
        }
        fields |= {
            "baseline_days": len(figure.baseline_days),
            "complete": figure.complete,
            "coverage": float(figure.coverage),
            "span_s": float(figure.until - figure.start),
        }
        # Always written: a later point of the event merges into the earlier one (same series
        # and time), and an old reason must not outlive the figure it explained.
        fields["reason"] = figure.reason
        return Record(
            MEASUREMENT,
            {"event": event_id, "meter": self.meter},
            fields,
            round(figure.start * 1e9),
        )

    def summary(self, event_id: str) -> tuple[str, str] | None:
        """One paragraph on a finished event, (Chinese, English); None until it is complete."""
        event = self._events.get(event_id)
        figure = None if event is None else event.figure
        if event is None or figure is None or not figure.complete:
            return None
        start = datetime.fromtimestamp(figure.start, self.tz)
        end = datetime.fromtimestamp(figure.until, self.tz)
        when = f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"
        zones_zh = f"（区域：{'、'.join(event.zones)}）" if event.zones else ""
        zones_en = f" (zones: {', '.join(event.zones)})" if event.zones else ""
        head_zh = f"需求响应事件 {event_id}，{when}{zones_zh}：空调电表 {self.meter}"
        head_en = f"Demand-response event {event_id}, {when}{zones_en}: AC meter {self.meter}"
        if not figure.known:
            known_zh = (
                f"实际用电 {figure.actual_kwh:.1f} kWh，"
                if math.isfinite(figure.actual_kwh)
                else ""
            )
            known_en = (
                f"used {figure.actual_kwh:.1f} kWh; " if math.isfinite(figure.actual_kwh) else ""
            )
            return (
                f"{head_zh}{known_zh}削减量无法计算：{figure.reason_zh}。",
                f"{head_en} {known_en}the load shed cannot be figured: {figure.reason}.",
            )
        share = (
            f"{100.0 * figure.reduction_kwh / figure.baseline_kwh:.0f}%"
            if figure.baseline_kwh > 0
            else "-"
        )
        n = len(figure.baseline_days)
        return (
            f"{head_zh}基线 {figure.baseline_kwh:.1f} kWh（前 {n} 个相似日同时段平均），"
            f"实际 {figure.actual_kwh:.1f} kWh，削减 {figure.reduction_kwh:.1f} kWh"
            f"（{share}），平均削减负荷 {figure.reduction_kw:.1f} kW。",
            f"{head_en} baseline {figure.baseline_kwh:.1f} kWh (the same window on the last "
            f"{n} similar days), actual {figure.actual_kwh:.1f} kWh, reduction "
            f"{figure.reduction_kwh:.1f} kWh ({share}), {figure.reduction_kw:.1f} kW on "
            "average.",
        )

    def health(self) -> dict[str, int]:
        s = self.stats
        return {
            "dr_shed_events": len(self._events),
            "dr_shed_queries": s.queries,
            "dr_shed_query_failures": s.query_failures,
            "dr_shed_figures": s.figures,
            "dr_shed_unknown_baselines": s.unknown,
        }

    # -- the computation (on a worker thread) ----------------------------------------------

    def _compute(self, event: _Event, now: float) -> MeasuredShed:
        start, end = event.start, event.until
        complete = now >= end + self.settle_s
        until = min(now, end)
        source, readings = self._read(start - self.max_gap_s, min(now, end + self.max_gap_s))
        newest = max((t for t, _ in readings), default=start)
        if not complete and newest < until:
            until = max(start, newest)  # the meter lags: figure up to its newest reading
        span = until - start
        if span <= 0:
            return self._unknown(
                event,
                until,
                complete,
                "no reading of the meter since the event began",
                "事件开始后电表尚无读数",
            )
        actual = self._tally(source, readings, start, until)
        if not readings or actual.coverage < self.min_coverage:
            return self._unknown(
                event,
                until,
                complete,
                f"the meter's readings cover {actual.coverage:.0%} of the event "
                f"(at least {self.min_coverage:.0%} needed)",
                f"电表读数仅覆盖事件时段的 {actual.coverage:.0%}（至少需 {self.min_coverage:.0%}）",
                source=source,
                coverage=actual.coverage,
            )
        found = self._baseline_days(event, span)
        if len(found) < self.min_days:
            return self._unknown(
                event,
                until,
                complete,
                f"only {len(found)} similar days with readings in the last "
                f"{self.look_back_days} days ({self.min_days} needed)",
                f"前 {self.look_back_days} 天内有读数的相似日仅 {len(found)} 天"
                f"（至少需 {self.min_days} 天）",
                actual=actual.amount,
                days=tuple(found),
                source=source,
                coverage=actual.coverage,
            )
        baseline = statistics.fmean(found.values())
        reduction = baseline - actual.amount
        return MeasuredShed(
            event_id=event.id,
            meter=self.meter,
            start=start,
            end=end,
            until=until,
            baseline_kwh=baseline,
            actual_kwh=actual.amount,
            reduction_kwh=reduction,
            reduction_kw=reduction / (span / 3600.0),
            baseline_days=tuple(d.isoformat() for d in found),
            complete=complete,
            coverage=actual.coverage,
            source=source,
        )

    def _unknown(
        self,
        event: _Event,
        until: float,
        complete: bool,
        reason: str,
        reason_zh: str,
        *,
        actual: float = math.nan,
        days: tuple[date, ...] = (),
        source: str = "",
        coverage: float = 0.0,
    ) -> MeasuredShed:
        return MeasuredShed(
            event_id=event.id,
            meter=self.meter,
            start=event.start,
            end=event.until,
            until=until,
            baseline_kwh=math.nan,
            actual_kwh=actual,
            reduction_kwh=math.nan,
            reduction_kw=math.nan,
            baseline_days=tuple(d.isoformat() for d in days),
            complete=complete,
            reason=reason,
            reason_zh=reason_zh,
            coverage=coverage,
            source=source,
        )

    def _baseline_days(self, event: _Event, span: float) -> dict[date, float]:
        """The energy of [start, start + span) on each similar day used, newest first."""
        day = datetime.fromtimestamp(event.start, self.tz).date()
        others = {
            datetime.fromtimestamp(e.start, self.tz).date()
            for e in self._events.values()
            if e is not event
        }
        found: dict[date, float] = {}
        candidates = similar_days(
            self.calendar,
            day,
            look_back=self.look_back_days,
            exclude=self.exclude_days | others,
        )
        for other in candidates:
            lo, hi = day_window(other, event.start, event.until - event.start, self.tz)
            kept = event.days.get(other)
            if kept is None:
                kept = event.days[other] = self._read(lo - self.max_gap_s, hi + self.max_gap_s)
            source, readings = kept
            tally = self._tally(source, readings, lo, lo + span)
            if readings and tally.coverage >= self.min_coverage:
                found[other] = tally.amount
                if len(found) == self.days:
                    break
        return found

    def _tally(self, source: str, readings: list[Reading], start: float, end: float) -> Tally:
        if source == "power":
            return power_tally(readings, start, end, max_gap_s=self.max_gap_s)
        return counter_tally(
            readings, start, end, max_gap_s=self.max_gap_s, max_per_hour=self.max_kwh_per_hour
        )

    def _read(self, start: float, end: float) -> tuple[str, list[Reading]]:
        """The meter's counter readings in [start, end]; its power readings where it has no
        counter reading there."""
        readings = self._points(self.point, start, end)
        if readings or self.power_point is None:
            return "counter", readings
        power = self._points(self.power_point, start, end)
        return ("power", power) if power else ("counter", readings)

    def _points(self, point: str, start: float, end: float) -> list[Reading]:
        self.stats.queries += 1
        return self.source.read(point, start, end)
