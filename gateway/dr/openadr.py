"""An OpenADR 2.0b VEN on openleadr's OpenADRClient: events from a VTN into the
demand-response rules, optIn or optOut back with the rules' answer, the load shed reported
when the VTN asks for it.

Registration: query registration, then create party registration (openleadr's `run`); a
failure (VTN unreachable, refusing, a bad signature) is retried with a doubling wait from
`reconnect_min` to `reconnect_max`. Once registered, openleadr polls at the VTN's requested
frequency (or `poll_interval`) and answers the VTN's re-registration requests itself. The
venID and registrationID the VTN hands out are kept in `state_file`; the venID is offered
again at the next start (openleadr registers anew each start, so the registrationID kept is
for the operator). TLS is the VEN's own aiohttp session (openleadr's loads a CA file only
together with a client certificate); openleadr signs messages with cert and key and checks
the VTN's signature against `vtn_fingerprint`.

Events: one event becomes one `DemandResponseEvent` (id: the VTN's eventID, source
"openadr"): start and end from its active period, strategy and offset from the highest
SIMPLE level among its intervals (`levels`), zones from the resourceIDs (or groupIDs) it
targets (`resource_zones`). Status cancelled becomes a `DemandResponseCancel`. The sink's
answer decides the reply: "accepted" (or "cancelled", or a cancel of an event the rules do not
know) opts in, anything else opts out. A higher modificationNumber hands the event again (the
rules replace it); when the rules refuse the new version, or it no longer maps, the old one is
cancelled too, as the VEN no longer takes part. A repeated delivery (same or older
modificationNumber) gets the earlier answer and is not handed again. A test event
(testEvent) is answered optIn and not handed to the rules. Opted out: events with no SIMPLE
signal, a level not in `levels`, only unknown target resources, or no end (duration 0: an
open-ended event; the rules need an end).

Report: one TELEMETRY_USAGE report (`report`) with up to three data points on the AC load
(resource `report.resource_id`): reduction (powerReal, kW, r_id "reduction"), baseline and
actual (energyReal, kWh, r_ids "baseline" and "actual"), from the load-shed accounting's
`ShedFigure`. When the VTN asks for it (in oadrRegisteredReport, or later oadrCreateReport),
openleadr calls back at the granularity the VTN chose, and each report carries one interval
per event taken: dtstart the event's start, the figures so far; an event leaves the report
once its complete figures were sent (or a day after its end). A report with no interval
(no event taken, no figures yet) is not sent: openleadr's own VTN fails on one.

What openleadr (0.5.36) cannot express, or does its own way:
- A report interval carries no eventID: the VTN tells events apart by the interval's dtstart
  (the event's start). Nor can it mark figures as provisional (`ShedFigure.complete`), or
  give an interval its duration in the report mode used here ("full").
- A report that fails to reach the VTN is not sent again (openleadr's queue drops it).
- Per-interval SIMPLE levels (level 1 for an hour, then 3) cannot be followed: the rules'
  event has one strategy for its window, so the highest level applies throughout. Other
  signals (LOAD_CONTROL, prices), signal-level targets, ramp-up and randomised starts are
  not mapped.
- openleadr answers a repeated delivery of a cancelled event it already confirmed with a
  KeyError that opts out of every event in that message; the VEN gives openleadr its answer
  back before each delivery is handled (`_before_events`) so that does not happen.
- It sets its logger to INFO (every report and event in full); the VEN sets it to WARNING
  when it finds it so, and logs what it does with each event itself.
- Its errors reach us only as log records: `openleadr_errors` counts the ERROR records of
  the "openleadr" logger (shared by every openleadr client and server in the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import os
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from openleadr import OpenADRClient, enums, objects, utils

from core.secret_refs import resolve_secret
from gateway.dr.contract import DrInput, DrSink, ShedFigure, ShedOf
from gateway.dr.openadr_config import OpenAdrConfig, ReportValue
from rules.model import DemandResponseCancel, DemandResponseEvent

log = logging.getLogger(__name__)

SOURCE = "openadr"
OPT_IN = "optIn"
OPT_OUT = "optOut"
SIMPLE = ("SIMPLE", "simple")
MAX_SEEN = 1000  # event ids remembered for repeated deliveries
MAX_TRACKED = 256  # events reported on at once
STALE_REPORT_S = 86400.0  # an event ended this long ago is reported no more, complete or not
REPORT_QUEUE = 64  # reports waiting for the VTN

COUNTERS = (
    "registered",  # 1 while registered with the VTN
    "registrations",
    "registration_failures",
    "events_received",  # every delivery openleadr hands over, repeats included
    "events_modified",
    "events_cancelled",
    "test_events",  # marked testEvent: answered, not handed to the rules
    "duplicates",
    "opted_in",
    "opted_out",
    "refused",  # the rules refused the event
    "unmapped",  # the event asked for what the mapping does not cover
    "reports_sent",  # acknowledged by the VTN
    "reports_unknown",  # a figure left out of a report because it is not known (NaN)
    "reports_skipped",  # nothing to report (no event taken, no figures yet): not sent
    "reports_dropped",  # the oldest waiting report, when REPORT_QUEUE were waiting
    "errors",  # the sink, the load-shed accounting or the state file failed
    "openleadr_errors",  # errors openleadr logged (connection failures, bad messages)
)

_REPORT_POINTS: dict[ReportValue, tuple[Any, str, str, str]] = {
    # value -> (measurement, unit, reading type, report type)
    "reduction": (enums.MEASUREMENTS.REAL_POWER, "W", "Derived", "deltaDemand"),
    "baseline": (enums.MEASUREMENTS.ENERGY_REAL, "Wh", "Estimated", "baseline"),
    "actual": (enums.MEASUREMENTS.ENERGY_REAL, "Wh", "Direct Read", "usage"),
}


@dataclass(frozen=True, slots=True)
class Unmapped:
    """An event the mapping cannot turn into a rules input, and why."""

    reason: str


def map_event(
    event: Mapping[str, Any], config: OpenAdrConfig
) -> DemandResponseEvent | DemandResponseCancel | Unmapped:
    """An openleadr event dict (not completed) -> the rules input it asks for."""
    descriptor = event["event_descriptor"]
    event_id = str(descriptor["event_id"])
    if descriptor.get("event_status") == "cancelled":
        return DemandResponseCancel(event_id)
    period = event.get("active_period") or {}
    start, duration = period.get("dtstart"), period.get("duration")
    if not isinstance(start, datetime) or not isinstance(duration, timedelta):
        return Unmapped("no active period")
    if duration <= timedelta(0):
        return Unmapped("no end (duration 0): the rules need one")
    level = simple_level(event)
    if level is None:
        return Unmapped("no SIMPLE signal")
    if level <= 0:
        return Unmapped(f"SIMPLE level {level}: normal operation, nothing asked")
    action = config.levels.get(level)
    if action is None:
        return Unmapped(f"SIMPLE level {level} has no entry in levels")
    zones = target_zones(event, config.resource_zones)
    if isinstance(zones, Unmapped):
        return zones
    try:
        return DemandResponseEvent(
            id=event_id,
            start=start,
            end=start + duration,
            offset=action.offset_c,
            strategy=action.strategy,
            zones=zones,
            source=SOURCE,
        )
    except ValueError as exc:
        return Unmapped(str(exc))


def simple_level(event: Mapping[str, Any]) -> int | None:
    """The highest level of the event's SIMPLE signals over all their intervals."""
    signals = event.get("event_signals") or []
    if isinstance(signals, Mapping):  # openleadr passes either shape
        signals = signals.get("event_signals") or []
    levels = [
        round(float(interval["signal_payload"]))
        for signal in signals
        if signal.get("signal_name") in SIMPLE
        for interval in signal.get("intervals") or []
        if interval.get("signal_payload") is not None
    ]
    return max(levels) if levels else None


def target_zones(
    event: Mapping[str, Any], resource_zones: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...] | Unmapped:
    """Zone globs of the resources the event targets; () when it targets none (every unit)."""
    by_type = event.get("targets_by_type") or {}
    resources = [str(r) for key in ("resource_id", "group_id") for r in by_type.get(key) or []]
    if not resources:
        return ()
    known = [r for r in resources if r in resource_zones]
    if not known:
        return Unmapped(f"targets {', '.join(resources)}, none of them in resource_zones")
    if len(known) < len(resources):
        unknown = [r for r in resources if r not in resource_zones]
        log.warning("OpenADR event targets unknown resources %s; taking the others", unknown)
    zones: list[str] = []
    for resource in known:
        zones.extend(g for g in resource_zones[resource] if g not in zones)
    return tuple(zones)


@dataclass(slots=True)
class _Seen:
    modification: int
    opt: str
    taken: bool  # the rules hold the event now


@dataclass(slots=True)
class _Tracked:
    start: datetime
    end: datetime
    final_sent: set[str]  # r_ids the complete figures were sent for


class _ReportQueue(asyncio.Queue[Any]):
    """openleadr's queue of reports to send, bounded (the oldest dropped when full: a newer
    report has the newer figures) and without the empty ones: its own VTN fails on a report
    without intervals (KeyError 'intervals', HTTP 500), and it says nothing."""

    def __init__(self, counters: dict[str, int]) -> None:
        super().__init__(REPORT_QUEUE)
        self.counters = counters

    async def put(self, item: Any) -> None:
        if not getattr(item, "intervals", None):
            self.counters["reports_skipped"] += 1
            return
        if self.full():
            self.get_nowait()
            self.counters["reports_dropped"] += 1
        self.put_nowait(item)


class _ErrorCount(logging.Handler):
    def __init__(self, counters: dict[str, int]) -> None:
        super().__init__(logging.ERROR)
        self.counters = counters

    def emit(self, record: logging.LogRecord) -> None:
        self.counters["openleadr_errors"] += 1


class OpenAdrVen:
    """The VEN: `await start()` returns at once (registration runs in the background, retried
    until it succeeds); `await stop()` ends it. `health()` has every counter."""

    def __init__(
        self,
        config: OpenAdrConfig,
        sink: DrSink,
        shed_of: ShedOf | None = None,
        *,
        base_dir: Path = Path("."),
    ) -> None:
        self.config = config
        self.sink = sink
        self.shed_of = shed_of
        self.base_dir = base_dir
        self.registered = asyncio.Event()
        self.ven_id: str | None = config.ven_id
        self.registration_id: str | None = None
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()
        self._asked_r_ids: set[str] = set()
        self._client: Any = None  # openleadr.OpenADRClient, untyped
        self._passphrase: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._error_count = _ErrorCount(self._counters)

    def health(self) -> dict[str, int]:
        return dict(self._counters)

    def _path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the state file and the TLS files (a missing one raises ValueError naming it),
        then register and poll in the background."""
        if self._task is not None:
            raise RuntimeError("the OpenADR VEN is running already")
        self._passphrase = (
            resolve_secret(self.config.key_passphrase, self.base_dir)
            if self.config.key_passphrase
            else None
        )
        await asyncio.to_thread(self._check_files)
        self._ssl = await asyncio.to_thread(self._ssl_context)
        if self.config.ven_id is None and self.config.state_file is not None:
            state = await asyncio.to_thread(self._read_state)
            self.ven_id = state.get("ven_id") or None
        library = logging.getLogger("openleadr")
        if library.level == logging.INFO:  # what openleadr sets: a line per poll and report
            library.setLevel(logging.WARNING)
        library.addHandler(self._error_count)
        self._task = asyncio.create_task(self._connect(), name="openadr-ven")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.stop()
        self.registered.clear()
        self._counters["registered"] = 0
        logging.getLogger("openleadr").removeHandler(self._error_count)

    async def _connect(self) -> None:
        delay = self.config.reconnect_min
        while True:
            client: Any = None
            try:
                client = await asyncio.to_thread(self._new_client)
                client.client_session = self._session()
                self._client = client
                await client.run()
            except Exception:
                self._counters["errors"] += 1
                log.exception("OpenADR registration with %s failed", self.config.vtn_url)
            if client is not None and client.registration_id:
                break
            self._counters["registration_failures"] += 1
            self._client = None
            session = client.client_session if client is not None else None
            if session is not None and not session.closed:
                await client.stop()
            log.warning(
                "OpenADR VTN %s did not register this VEN; retrying in %gs",
                self.config.vtn_url,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max)
        self.ven_id, self.registration_id = client.ven_id, client.registration_id
        self._counters["registrations"] += 1
        self._counters["registered"] = 1
        log.info("OpenADR VEN registered: venID %s, registration %s", *self._ids())
        if self.config.poll_interval is not None:
            for job in client.scheduler.get_jobs():
                if job.func == client._poll:
                    job.reschedule("interval", seconds=self.config.poll_interval)
        if self.config.state_file is not None:
            try:
                await asyncio.to_thread(self._write_state)
            except OSError as exc:
                self._counters["errors"] += 1
                log.error(
                    "cannot keep the OpenADR registration in %s: %s", self.config.state_file, exc
                )
        self.registered.set()

    def _ids(self) -> tuple[str | None, str | None]:
        return self.ven_id, self.registration_id

    def _new_client(self) -> Any:
        signing = self.config.cert is not None and self.config.key is not None
        cert = str(self._path(self.config.cert)) if self.config.cert else None
        key = str(self._path(self.config.key)) if self.config.key else None
        client = OpenADRClient(
            ven_name=self.config.ven_name,
            vtn_url=self.config.vtn_url,
            cert=cert if signing else None,
            key=key if signing else None,
            passphrase=self._passphrase,
            vtn_fingerprint=self.config.vtn_fingerprint,
            show_fingerprint=False,
            ven_id=self.ven_id,
            check_hostname=self.config.check_hostname,
        )
        if cert is not None:
            fingerprint = utils.certificate_fingerprint(Path(cert).read_text(encoding="ascii"))
            log.info(
                "OpenADR VEN certificate fingerprint %s (the VTN operator needs it)", fingerprint
            )
        client.pending_reports = _ReportQueue(self._counters)
        client.add_handler("on_event", self._on_event)
        client.add_handler("on_update_event", self._on_event)
        client.add_hook("after_parse_xml", partial(self._after_parse, client))
        if self.config.report is not None and self.shed_of is not None:
            self._add_reports(client)
        return client

    def _check_files(self) -> None:
        for key in ("cert", "key", "ca_file"):
            path = getattr(self.config, key)
            if path is None:
                continue
            try:
                self._path(path).read_bytes()
            except OSError as exc:
                raise ValueError(
                    f"OpenADR {key} {self._path(path)}: {exc.strerror}; check the path"
                ) from None

    def _ssl_context(self) -> ssl.SSLContext | None:
        """The TLS settings of every request, ours rather than openleadr's (which loads a CA
        file only together with a client certificate)."""
        if not self.config.vtn_url.startswith("https:"):
            return None
        ca = self._path(self.config.ca_file) if self.config.ca_file else None
        try:
            context = ssl.create_default_context(cafile=str(ca) if ca else None)
            context.check_hostname = self.config.check_hostname
            if self.config.cert is not None and self.config.key is not None:
                context.load_cert_chain(
                    self._path(self.config.cert), self._path(self.config.key), self._passphrase
                )
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"OpenADR TLS files: {exc}; check cert, key and ca_file") from None
        return context

    def _session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
        connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl else None
        return aiohttp.ClientSession(
            headers={"content-type": "application/xml"}, timeout=timeout, connector=connector
        )

    def _read_state(self) -> dict[str, str]:
        assert self.config.state_file is not None
        path = self._path(self.config.state_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"OpenADR state file {path}: {exc}; remove it to register anew"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(f"OpenADR state file {path} is not a JSON object; remove it")
        return {k: str(v) for k, v in data.items() if v is not None}

    def _write_state(self) -> None:
        assert self.config.state_file is not None
        path = self._path(self.config.state_file)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(
            json.dumps({"ven_id": self.ven_id, "registration_id": self.registration_id}),
            encoding="utf-8",
        )
        os.replace(tmp, path)

    # --- events ----------------------------------------------------------------------------

    async def _on_event(self, event: Any) -> str:
        return self.handle_event(event)

    def handle_event(self, event: Mapping[str, Any]) -> str:
        """One delivered event (an openleadr event dict) -> "optIn" or "optOut"."""
        self._counters["events_received"] += 1
        try:
            descriptor = event["event_descriptor"]
            event_id = str(descriptor["event_id"])
            modification = int(descriptor.get("modification_number") or 0)
            status = str(descriptor.get("event_status") or "")
        except (KeyError, TypeError, ValueError) as exc:
            self._counters["errors"] += 1
            log.error("OpenADR event without a usable descriptor (%s); opting out", exc)
            return self._opt(OPT_OUT)
        seen = self._seen.get(event_id)
        if seen is not None and modification <= seen.modification:
            self._counters["duplicates"] += 1
            return seen.opt
        if seen is not None:
            self._counters["events_modified"] += 1
        was_taken = seen is not None and seen.taken
        if status == "completed":  # over: nothing for the rules
            return self._remember(event_id, modification, OPT_IN, taken=False)
        if descriptor.get("test_event") not in (None, False, "false"):
            # a test of the VTN's path to the VEN: answered, the units left alone
            self._counters["test_events"] += 1
            return self._remember(event_id, modification, OPT_IN, taken=False)
        try:
            mapped = map_event(event, self.config)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            mapped = Unmapped(f"malformed event ({exc.__class__.__name__}: {exc})")
        if isinstance(mapped, Unmapped):
            self._counters["unmapped"] += 1
            log.warning("OpenADR event %s opted out: %s", event_id, mapped.reason)
            if was_taken:
                self._hand(DemandResponseCancel(event_id))
                self._tracked.pop(event_id, None)
            return self._remember(event_id, modification, OPT_OUT, taken=False)
        if isinstance(mapped, DemandResponseCancel):
            self._counters["events_cancelled"] += 1
            answer = self._hand(mapped)
            tracked = self._tracked.get(event_id)
            if tracked is not None and tracked.start > datetime.now(UTC):
                del self._tracked[event_id]  # cancelled before it began: no load to report
            ok = answer is not None and not answer.startswith("refused")
            return self._remember(event_id, modification, OPT_IN if ok else OPT_OUT, taken=False)
        answer = self._hand(mapped)
        if answer == "accepted":
            log.info("OpenADR event %s taken: %s", event_id, mapped)
            self._track(mapped)
            return self._remember(event_id, modification, OPT_IN, taken=True)
        if answer is not None and answer.startswith("refused"):
            self._counters["refused"] += 1
        log.warning("OpenADR event %s opted out: the rules answered %s", event_id, answer)
        if was_taken:  # the rules hold the earlier version; the VEN takes part in none
            self._hand(DemandResponseCancel(event_id))
            self._tracked.pop(event_id, None)
        return self._remember(event_id, modification, OPT_OUT, taken=False)

    def _hand(self, item: DrInput) -> str | None:
        try:
            return self.sink(item)
        except Exception:
            self._counters["errors"] += 1
            log.exception("the demand-response sink failed on %s", item)
            return None

    def _opt(self, opt: str) -> str:
        self._counters["opted_in" if opt == OPT_IN else "opted_out"] += 1
        return opt

    def _remember(self, event_id: str, modification: int, opt: str, *, taken: bool) -> str:
        self._seen[event_id] = _Seen(modification, opt, taken)
        self._seen.move_to_end(event_id)
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)
        return self._opt(opt)

    async def _after_parse(self, client: Any, message_type: str, payload: Any) -> None:
        if message_type == "oadrUpdatedReport":
            self._counters["reports_sent"] += 1
        elif message_type == "oadrDistributeEvent":
            self._before_events(client, payload)

    def _before_events(self, client: Any, payload: Any) -> None:
        """openleadr forgets its answer to an event once it is cancelled, then fails (and opts
        out of the whole message) when the VTN sends that cancelled event again: give it our
        answer back first."""
        for event in payload.get("events") or []:
            descriptor = event.get("event_descriptor") or {}
            event_id = str(descriptor.get("event_id"))
            seen = self._seen.get(event_id)
            if seen is not None and event_id not in client.responded_events:
                client.responded_events[event_id] = seen.opt

    # --- reports ---------------------------------------------------------------------------

    def _add_reports(self, client: Any) -> None:
        report = self.config.report
        assert report is not None
        sampling = objects.SamplingRate(
            min_period=timedelta(seconds=report.min_sampling),
            max_period=timedelta(seconds=report.max_sampling),
            on_change=False,
        )
        for value in report.values:
            measurement, unit, reading_type, report_type = _REPORT_POINTS[value]
            client.add_report(
                callback=partial(self._report_values, value),
                resource_id=report.resource_id,
                # a copy: openleadr sets the scale on the measurement it is given
                measurement=copy.copy(measurement),
                unit=unit,
                scale="k",
                data_collection_mode="full",
                report_specifier_id=report.report_specifier_id,
                r_id=value,
                report_name="TELEMETRY_USAGE",
                reading_type=reading_type,
                report_type=report_type,
                report_duration=timedelta(seconds=report.max_sampling),
                sampling_rate=sampling,
            )

    def _track(self, event: DemandResponseEvent) -> None:
        self._tracked[event.id] = _Tracked(event.start, event.end, set())
        self._tracked.move_to_end(event.id)
        while len(self._tracked) > MAX_TRACKED:
            self._tracked.popitem(last=False)

    def _report_values(
        self,
        value: ReportValue,
        date_from: datetime,
        date_to: datetime,
        sampling_interval: timedelta,
    ) -> list[tuple[datetime, float]]:
        """openleadr's report callback for one data point: (event start, figure) per event."""
        assert self.shed_of is not None
        self._asked_r_ids.add(value)
        now = datetime.now(UTC)
        out: list[tuple[datetime, float]] = []
        for event_id, tracked in list(self._tracked.items()):
            if (now - tracked.end).total_seconds() > STALE_REPORT_S:
                del self._tracked[event_id]
                continue
            try:
                figure = self.shed_of(event_id)
            except Exception:
                self._counters["errors"] += 1
                log.exception("the load-shed accounting failed on event %s", event_id)
                continue
            if figure is None:
                continue
            number = _figure_value(figure, value)
            if not math.isfinite(number):
                # Not known (no baseline yet, too few similar days): OpenADR has no "unknown",
                # and a VTN refuses a NaN with the whole report.
                self._counters["reports_unknown"] += 1
                continue
            out.append((tracked.start, number))
            if figure.complete:
                tracked.final_sent.add(value)
                if tracked.final_sent >= self._asked_r_ids:
                    del self._tracked[event_id]
        return out


def _figure_value(figure: ShedFigure, value: ReportValue) -> float:
    if value == "reduction":
        return figure.reduction_kw
    return figure.baseline_kwh if value == "baseline" else figure.actual_kwh
