"""The accounts runtime: hourly, daily and monthly amounts of every counter, kept by the running
gateway and written back as the `energy` measurement (issue 11).

Samples reach it through its own bounded inbox on the bus, off the pollers' path, and only the
counter points are looked at: accounts.config.DEFAULT_COUNTERS by the device's kind, plus the
site's `accounts.counters`, where the device has them. Each counter feeds an
accounts.counters.CounterTrack; as the clock passes a period's end (plus `grace`, for the
reading after it to arrive) the period is written: a rules.model.Record of measurement
`energy` on the bus, which the InfluxDB sink encodes like any Record (gateway/lineproto.py
`record_line`). Late readings that change a period already written mark it, and the next
settle writes it again, same series and timestamp: InfluxDB keeps the last. VictoriaMetrics
keeps every sample of a timestamp, so where the site's `influxdb.server` says it is one, the
n-th rewrite of a period is stamped n ms after its start (up to MAX_REVISION; the revision
counts are in the store): its newest sample is the figure (`last_over_time`). Marks, day
totals and how far each counter was written live in accounts.store, on its own thread.

Entry points (for the gateway and for tests that drive it without real time):

- `AccountsService(loaded, catalog, bus, store_path=..., clock=...)`: loads the store.
- `start()` / `await stop()`: the inbox and tick tasks; `stop` takes what is queued, settles
  and saves, then closes the store.
- `take(samples)`: feed Samples directly (what the inbox task does with each batch).
- `settle(now)`: write every period that ended before `now - grace` and rewrite the ones late
  data changed; returns the Records it published.
- `await save()`: make the marks, day totals and write frontiers durable.
- `health()`: the `accounts_*` counters.

The `energy` point: tags site, building, floor, zone, use (where the device has them), device,
kind, carrier, flow, period (hour|day|month); fields amount (kWh, m3 or GJ), kgce, co2_kg,
coverage (0..1), factor_set; timestamp: the period's start at local boundaries (site zone).
kgce and co2_kg are amount times the factor of the counter's carrier, whatever its flow (PV
generation's co2_kg is what the grid would have emitted for it); netting is the report's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from accounts.config import DEFAULT_COUNTERS, AccountsConfig, CounterSpec
from accounts.counters import (
    PERIODS,
    Added,
    AddResult,
    CounterTrack,
    Event,
    Limits,
    Mark,
    Periods,
    Swap,
    Tally,
)
from accounts.factors import load_factors
from accounts.store import AccountsStore, Changes, StoreThread
from core.types import Sample
from gateway.bus import Bus, Inbox, Overflow
from gateway.catalog import DeviceCatalog
from gateway.config_load import LoadedSite, site_relative
from rules.model import Record

log = logging.getLogger("guanjia.accounts")

MEASUREMENT = "energy"
# A period's rewrites on VictoriaMetrics move it by a millisecond each, within its first second.
MAX_REVISION = 999
PLACE_TAGS = ("building", "floor", "zone", "use")

# The most a counter can count in an hour when the site does not say: a large compound's
# intake (20 MW), a DN150 water main, a district-heat substation.
DEFAULT_MAX_PER_HOUR = {"kWh": 20_000.0, "m3": 1_000.0, "GJ": 100.0}

# Accounts are not urgent: one batch of readings a second keeps the wake-ups (and the CPU per
# reading, bench/bench_accounts.py) low; a reading waits at most that much longer.
INBOX_PACE = 1.0


class FactorSource(Protocol):
    """What the accounts need of a factor set (accounts.factors.FactorSet has it)."""

    def label(self, region: str) -> str: ...

    def kgce_per(self, carrier: str, unit: str) -> float: ...

    def co2_kg_per(self, carrier: str, unit: str, year: int, region: str) -> float: ...


@dataclass
class _Counter:
    key: str  # device/point, the store's name for it
    spec: CounterSpec
    track: CounterTrack
    tags: dict[str, str]
    written: dict[str, float]  # period kind -> periods starting before this were written
    days: dict[float, Tally]
    dirty: set[tuple[str, float]] = field(default_factory=set)
    days_changed: dict[float, Tally] = field(default_factory=dict)
    written_changed: set[str] = field(default_factory=set)
    due: float = -math.inf  # nothing new to write before the clock passes this (an hour's end)
    revisions: dict[tuple[str, float], int] = field(default_factory=dict)  # rewrites by period
    revisions_changed: set[tuple[str, float]] = field(default_factory=set)


@dataclass
class AccountsHealth:
    readings: int = 0
    periods_written: int = 0
    recomputed: int = 0
    resets: int = 0
    swaps: int = 0
    implausible_jumps: int = 0
    late_readings: int = 0
    late_ignored: int = 0  # older than anything kept (keep_days), or already covered
    store_errors: int = 0


class AccountsService:
    """Counter readings in, `energy` Records out; see the module docstring."""

    def __init__(
        self,
        loaded: LoadedSite,
        catalog: DeviceCatalog,
        bus: Bus,
        *,
        store_path: Path | None = None,
        factors: FactorSource | None = None,
        clock: Callable[[], float] = time.time,
        tick: float = 10.0,
        grace: float = 120.0,
        max_gap_s: float = 900.0,
        inbox_bound: int = 50_000,
        inbox_pace: float = INBOX_PACE,
    ) -> None:
        site = loaded.site
        accounts = site.accounts or AccountsConfig()
        self.accounts = accounts
        self.bus = bus
        self.clock = clock
        self.tick_interval = tick
        self.grace = grace
        self.periods = Periods(site.site.timezone)
        self.factors: FactorSource = factors or load_factors(accounts.factors, loaded.base_dir)
        self.factor_label = self.factors.label(accounts.grid_region)
        self.stats = AccountsHealth()
        # VictoriaMetrics keeps every sample of a timestamp (and its deduplication the first or
        # the largest, not the last): there a period written again moves 1 ms per revision, and
        # the newest sample of a period is its figure.
        target = site.influxdb
        self.stamp_revisions = target is not None and target.server == "victoriametrics"
        path = store_path or site_relative(loaded.base_dir, accounts.store)
        store = AccountsStore(path)
        stored = store.load()
        self.store = StoreThread(store)
        swaps: dict[str, list[Swap]] = {}
        for s in accounts.swaps:
            swaps.setdefault(f"{s.device}/{s.point}", []).append(
                Swap(s.at.timestamp(), s.new_start, s.old_final)
            )
        # device -> point -> counter: the hot path looks a Sample's device up once.
        self.counted: dict[str, dict[str, _Counter]] = {}
        for device in catalog.devices.values():
            specs = {**DEFAULT_COUNTERS.get(device.kind, {}), **accounts.counters}
            for point, spec in specs.items():
                if point not in device.points:
                    continue
                key = f"{device.id}/{point}"
                kept = stored.get(key)
                limits = Limits(
                    max_per_hour=spec.max_per_hour or DEFAULT_MAX_PER_HOUR[spec.unit],
                    max_gap_s=max_gap_s,
                    rollover=spec.rollover,
                )
                tags = {k: device.tags[k] for k in PLACE_TAGS if device.tags.get(k)}
                tags.update(
                    device=device.id, kind=device.kind, carrier=spec.carrier, flow=spec.flow
                )
                self.counted.setdefault(device.id, {})[point] = _Counter(
                    key,
                    spec,
                    CounterTrack(
                        limits, self.periods, kept.marks if kept else (), swaps.get(key, ())
                    ),
                    tags,
                    dict(kept.written) if kept else {},
                    dict(kept.days) if kept else {},
                    revisions=dict(kept.revisions) if kept else {},
                )
        self.counters = [c for points in self.counted.values() for c in points.values()]
        self._co2: dict[tuple[str, str, int], float] = {}
        self.inbox: Inbox[Sample] = bus.inbox(
            Sample,
            name="accounts",
            bound=inbox_bound,
            overflow=Overflow.DROP_OLDEST,
            pace=inbox_pace,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._pruned_at = -math.inf

    def health(self) -> dict[str, int]:
        s = self.stats
        return {
            "accounts_counters": len(self.counters),
            "accounts_readings": s.readings,
            "accounts_periods_written": s.periods_written,
            "accounts_recomputed": s.recomputed,
            "accounts_resets": s.resets,
            "accounts_swaps": s.swaps,
            "accounts_implausible_jumps": s.implausible_jumps,
            "accounts_late_readings": s.late_readings,
            "accounts_late_ignored": s.late_ignored,
            "accounts_store_errors": s.store_errors,
            "accounts_store_commits": self.store.commits,
        }

    # -- readings in -----------------------------------------------------------------------

    def take(self, samples: Sequence[Sample]) -> None:
        counted = self.counted
        stats = self.stats
        for sample in samples:
            points = counted.get(sample.device)
            if points is None:
                continue
            values = sample.values
            for point, counter in points.items():
                value = values.get(point)
                if value is None or isinstance(value, bool | str) or not math.isfinite(value):
                    continue
                stats.readings += 1
                result = counter.track.add(sample.ts / 1e9, float(value))
                if result.event is not None or result.added is not Added.IN_ORDER:
                    self._note(result)
                changed = result.changed
                if changed is not None and changed[0] < counter.written.get("hour", -math.inf):
                    self._mark_dirty(counter, changed)

    def _note(self, result: AddResult) -> None:
        stats = self.stats
        if result.event in (Event.RESET, Event.ROLLOVER):
            stats.resets += 1
        elif result.event in (Event.SWAP, Event.DECLARED_SWAP):
            stats.swaps += 1
        elif result.event is Event.JUMP:
            stats.implausible_jumps += 1
        if result.added is Added.LATE:
            stats.late_readings += 1
        elif result.added in (Added.TOO_OLD, Added.COVERED):
            stats.late_readings += 1
            stats.late_ignored += 1

    def _mark_dirty(self, counter: _Counter, changed: tuple[float, float]) -> None:
        lo, hi = changed
        for kind in PERIODS:
            until = counter.written.get(kind)
            if until is None or lo >= until:
                continue
            for start in self.periods.starts(lo, min(hi, until - 1e-6), kind):
                counter.dirty.add((kind, start))

    # -- periods out -----------------------------------------------------------------------

    def settle(self, now: float) -> list[Record]:
        """Write the periods that ended before `now - grace`, and again those late data
        changed; publish them on the bus."""
        horizon = now - self.grace
        out: list[Record] = []
        for counter in self.counters:
            out.extend(self._settle(counter, horizon))
        publish = self.bus.publish
        for record in out:
            publish(record)
        return out

    def _settle(self, counter: _Counter, horizon: float) -> list[Record]:
        if horizon < counter.due and not counter.dirty:
            return []  # most ticks of most counters: mid-hour, no late data
        track = counter.track
        first, last = track.first_t, track.last_t
        if first is None or last is None:
            return []
        periods = self.periods
        out = []
        dirty, counter.dirty = counter.dirty, set()
        for kind in PERIODS:  # hours, then the days, then the months that add them up
            for dirty_kind, start in sorted(dirty):
                if dirty_kind == kind and start < counter.written.get(kind, -math.inf):
                    out.append(
                        self._period(counter, kind, start, self._revise(counter, kind, start))
                    )
                    self.stats.recomputed += 1
                    if kind == "day":  # its month adds the days up again
                        month = periods.floor(start, "month")
                        if month < counter.written.get("month", -math.inf):
                            dirty.add(("month", month))
            start = counter.written.get(kind, periods.floor(first, kind))
            begun = start
            while start < last:
                end = periods.next(start, kind)
                if end > horizon:
                    break
                out.append(self._period(counter, kind, start))
                start = end
            if start != begun or kind not in counter.written:
                counter.written[kind] = start
                counter.written_changed.add(kind)
        counter.due = periods.next(counter.written["hour"], "hour")
        self.stats.periods_written += len(out)
        return out

    def _revise(self, counter: _Counter, kind: str, start: float) -> int:
        """Count one more writing of a period already written; its revision number."""
        key = (kind, start)
        rev = counter.revisions[key] = counter.revisions.get(key, 0) + 1
        counter.revisions_changed.add(key)
        return rev

    def _period(self, counter: _Counter, kind: str, start: float, revision: int = 0) -> Record:
        end = self.periods.next(start, kind)
        if kind == "month":
            days = [t for s, t in counter.days.items() if start <= s < end]
            tally = Tally(sum(t.amount for t in days), sum(t.covered for t in days), end - start)
        else:
            tally = counter.track.tally(start, end)
            if kind == "day":
                counter.days[start] = counter.days_changed[start] = tally
        spec = counter.spec
        year = datetime.fromtimestamp(start, self.periods.tz).year
        co2_key = (spec.carrier, spec.unit, year)
        co2_per = self._co2.get(co2_key)
        if co2_per is None:
            region = self.accounts.grid_region
            co2_per = self._co2[co2_key] = self.factors.co2_kg_per(
                spec.carrier, spec.unit, year, region
            )
        amount = float(tally.amount)
        return Record(
            MEASUREMENT,
            {**counter.tags, "period": kind},
            {
                "amount": amount,
                "kgce": amount * self.factors.kgce_per(spec.carrier, spec.unit),
                "co2_kg": amount * co2_per,
                "coverage": float(tally.coverage),
                "factor_set": self.factor_label,
            },
            round(start) * 1_000_000_000
            + (min(revision, MAX_REVISION) * 1_000_000 if self.stamp_revisions else 0),
        )

    # -- the store -------------------------------------------------------------------------

    def changes(self) -> Changes:
        """What changed since the last call, for the store."""
        marks: dict[str, Mapping[float, Mark | None]] = {}
        days: dict[str, Mapping[float, Tally]] = {}
        written: dict[tuple[str, str], float] = {}
        revisions: dict[tuple[str, str, float], int] = {}
        for c in self.counters:
            if c.track.changes:
                marks[c.key] = c.track.take_changes()
            if c.days_changed:
                days[c.key], c.days_changed = c.days_changed, {}
            for kind in c.written_changed:
                written[(c.key, kind)] = c.written[kind]
            c.written_changed = set()
            for kind, start in c.revisions_changed:
                revisions[(c.key, kind, start)] = c.revisions[(kind, start)]
            c.revisions_changed = set()
        return Changes(marks, days, written, revisions)

    async def save(self) -> None:
        changes = self.changes()
        if not (changes.marks or changes.days or changes.written or changes.revisions):
            return
        try:
            await asyncio.wrap_future(self.store.save(changes))
        except Exception as exc:  # a full disk: the readings go on, the marks wait
            self.stats.store_errors += 1
            log.error("accounts store: cannot save (%r); a restart now would leave a gap", exc)

    async def prune(self, now: float) -> None:
        """Forget marks older than keep_days, day totals older than a year and a month."""
        keep = self.accounts.keep_days * 86400.0
        for c in self.counters:
            c.track.prune(now - keep)
            for start in [s for s in c.days if s < now - 400 * 86400.0]:
                del c.days[start]
            for key in [k for k in c.revisions if k[1] < now - 400 * 86400.0]:
                del c.revisions[key]
        try:
            await asyncio.wrap_future(
                self.store.call(lambda s: s.prune(now - keep, now - 400 * 86400.0))
            )
        except Exception as exc:
            self.stats.store_errors += 1
            log.error("accounts store: cannot prune (%r)", exc)

    # -- the runtime -----------------------------------------------------------------------

    def start(self) -> None:
        self.store.start()
        self._tasks = [
            asyncio.create_task(self._consume(), name="accounts"),
            asyncio.create_task(self._ticks(), name="accounts-tick"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            self.take(self.inbox.drain())
            self.settle(self.clock())
        except Exception:
            log.exception("accounts: the last readings failed")
        await self.save()
        await asyncio.to_thread(self.store.stop)

    async def _consume(self) -> None:
        inbox = self.inbox
        while True:
            waiter = inbox.ready()
            if waiter is not None:
                await waiter
                continue
            try:
                self.take(inbox.take(10_000))
            except Exception:  # one bad reading must not stop the accounts
                log.exception("accounts: taking readings failed")

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                now = self.clock()
                self.settle(now)
                await self.save()
                if now - self._pruned_at >= 3600.0:
                    self._pruned_at = now
                    await self.prune(now)
            except Exception:
                log.exception("accounts tick failed")
