"""The HTTP event-stream driver at run time (drivers/contract.py DriverRuntime).

One EventStream per device address and user (drivers/http_events/stream.py), all on one
aiohttp session whose connector has no connection limit (every stream holds its connection for
good). Events become Samples on the event loop and go straight to the bus; every now and then
the streams are judged, and a silent or broken one makes its devices offline (`available`).
Devices report, they are not written: every command is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import aiohttp

from core.once import ProblemCounter
from core.types import Command, CommandResult
from drivers.contract import DeviceEntry, DeviceStatus, RuntimeContext
from drivers.http_events.config import HttpEventsConnection, StreamKey, stream_key
from drivers.http_events.mapper import EventMapper, MapperStats
from drivers.http_events.profile import HttpEventsProfile
from drivers.http_events.push import PushListener, PushMember
from drivers.http_events.stream import DOWN_GRACE, EventStream, Member

log = logging.getLogger("guanjia.http_events")


class HttpEventsDriver:
    name = "http_events"

    def __init__(self, ctx: RuntimeContext) -> None:
        self.emit = ctx.emit
        local = ZoneInfo(ctx.timezone)
        self.problem_log = ProblemCounter(log)
        groups: dict[StreamKey, list[DeviceEntry]] = {}
        pushing: dict[tuple[str, int], list[PushMember]] = {}
        for entry in ctx.devices:
            push = entry.connection.push
            if push is not None:
                member = self._push_member(entry, local, ctx)
                pushing.setdefault((push.bind, push.port), []).append(member)
                continue
            groups.setdefault(stream_key(entry.connection), []).append(entry)
        self.listeners = [
            PushListener(
                bind, port, members, self.emit, max_part=ctx.max_payload, problems=self.problem_log
            )
            for (bind, port), members in pushing.items()
        ]
        self.mappers: list[EventMapper] = [m.mapper for p in self.listeners for m in p.members]
        self.streams: list[EventStream] = []
        for entries in groups.values():
            members = [self._member(e, local) for e in entries]
            self.mappers.extend(m.mapper for m in members)
            password = ctx.secret(entries[0].id, "password")
            self.streams.append(self._stream(entries, members, ctx.max_payload, password))
        allowances = [s.allowance or DOWN_GRACE for s in self.streams]
        self.judge_every = min([ctx.heartbeat_check, *(a / 3 for a in allowances)])
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _member(self, entry: DeviceEntry, local: ZoneInfo) -> Member:
        conn: HttpEventsConnection = entry.connection
        stats = MapperStats(problems=self.problem_log)
        mapper = EventMapper(
            entry.id, entry.profile, local, channels=conn.channels, points=entry.points, stats=stats
        )
        return Member(entry.id, mapper)

    def _push_member(self, entry: DeviceEntry, local: ZoneInfo, ctx: RuntimeContext) -> PushMember:
        conn: HttpEventsConnection = entry.connection
        assert conn.push is not None
        member = PushMember(
            entry.id,
            self._member(entry, local).mapper,
            conn.host,
            conn.push.device_id,
            conn.username,
        )
        if conn.password is not None:
            member.password = ctx.secret(entry.id, "password")
            if member.password is None:
                # No post can authenticate without it: the device is refused, and says why.
                member.last_error = "http_events.password: the secret was not given"
        return member

    def _stream(
        self,
        entries: Sequence[DeviceEntry],
        members: list[Member],
        max_part: int,
        password: str | None,
    ) -> EventStream:
        conn: HttpEventsConnection = entries[0].connection
        profiles: list[HttpEventsProfile] = [e.profile for e in entries]
        # The gateway resolves the password when it loads the site (a missing one fails the
        # check); a runtime built from a site loaded without its secrets has none to give.
        error = "" if password is not None else "http_events.password: the secret was not given"
        keepalives = [
            k for p in profiles if (k := p.keepalive) is not None and k.interval is not None
        ]
        codes = sorted({c for p in profiles for c in p.codes})
        return EventStream(
            conn,
            profiles[0].protocol,
            password,
            members,
            self.emit,
            max_part=max_part,
            problems=self.problem_log,
            codes=["All"] if "All" in codes else codes,
            keepalive=min(k.interval or 0.0 for k in keepalives) if keepalives else None,
            allowance=min(k.allowance or 0.0 for k in keepalives) if keepalives else None,
            setup_error=error,
            catch_up=any(p.catch_up is not None for p in profiles),
        )

    def start(self) -> None:
        # No pooling: a stream holds its connection until it ends, and a device that has
        # answered a 401 often closes the connection anyway.
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )
        session = self.session
        self._tasks = [
            asyncio.create_task(s.run(session), name=f"http-events {s.base}") for s in self.streams
        ]
        self._tasks.append(asyncio.create_task(self._judge(), name="http-events-judge"))
        self._tasks += [
            asyncio.create_task(p.start(), name=f"http-events {p.name}") for p in self.listeners
        ]

    async def stop(self) -> None:
        """Every event read has been emitted already (emitting happens as it is read)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for listener in self.listeners:
            await listener.stop()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _judge(self) -> None:
        while True:
            await asyncio.sleep(self.judge_every)
            for stream in self.streams:
                stream.judge()

    def can_write(self, _device: str) -> bool:
        return False

    async def write(self, command: Command) -> CommandResult:
        return CommandResult(
            command, False, None, f"{command.device!r} reports events over HTTP; it is not written"
        )

    def statuses(self) -> list[DeviceStatus]:
        out: list[DeviceStatus] = []
        for s in self.streams:
            errors = s.stats.failures + s.stats.disconnects + s.stats.undecodable
            for m in s.members:
                out.append(
                    DeviceStatus(
                        m.device,
                        self.name,
                        m.online,
                        m.online is True,
                        "stream",
                        m.mapper.stats.events,
                        errors + m.mapper.stats.bad_values,
                        s.last_error,
                    )
                )
        for p in self.listeners:
            for pm in p.members:
                out.append(
                    DeviceStatus(
                        pm.device,
                        self.name,
                        pm.online,
                        pm.online is True,
                        "push",
                        pm.mapper.stats.events,
                        pm.mapper.stats.bad_values,
                        pm.last_error,
                    )
                )
        return out

    def health(self) -> dict[str, int]:
        streams = [s.stats for s in self.streams]
        pushes = [p.stats for p in self.listeners]
        parsers = [s.parser for s in streams] + [p.parser for p in pushes]
        mappers = [m.stats for m in self.mappers]
        return {
            "http_events_streams": len(self.streams),
            "http_events_streaming": sum(s.connected for s in self.streams),
            "http_events_connects": sum(s.connects for s in streams),
            "http_events_connect_failures": sum(s.failures for s in streams),
            "http_events_disconnects": sum(s.disconnects for s in streams),
            "http_events_silent": sum(s.silent for s in streams),
            "http_events_auth_refused": sum(s.auth_refused for s in streams),
            "http_events_parts": sum(s.parts for s in streams),
            "http_events_events": sum(s.events for s in streams),
            "http_events_keepalives": sum(s.keepalives for s in streams),
            "http_events_undecodable": sum(s.undecodable for s in streams),
            "http_events_catch_ups": sum(s.catch_ups for s in streams),
            "http_events_caught_up": sum(s.caught_up for s in streams),
            "http_events_catch_up_failures": sum(s.catch_up_failures for s in streams),
            "http_events_parts_oversized": sum(p.oversized for p in parsers),
            "http_events_parts_skipped": sum(p.skipped for p in parsers),
            "http_events_parts_truncated": sum(p.truncated for p in parsers),
            "http_events_garbage": sum(p.garbage for p in parsers),
            "http_events_bad_headers": sum(p.bad_headers for p in parsers),
            "http_events_length_mismatch": sum(p.length_mismatch for p in parsers),
            "http_events_samples": sum(m.samples for m in mappers),
            "http_events_duplicates": sum(m.duplicates for m in mappers),
            "http_events_unmatched": sum(m.unmatched for m in mappers),
            "http_events_filtered": sum(m.filtered for m in mappers),
            "http_events_bad_values": sum(m.bad_values for m in mappers),
            "http_events_clock_refused": sum(m.clock_refused for m in mappers),
            "http_events_problems_folded": self.problem_log.counts.get(ProblemCounter.OVERFLOW, 0),
            "http_events_push_listeners": len(self.listeners),
            "http_events_push_posts": sum(p.posts for p in pushes),
            "http_events_push_accepted": sum(p.accepted for p in pushes),
            "http_events_push_unknown_senders": sum(p.unknown_senders for p in pushes),
            "http_events_push_auth_refused": sum(p.auth_refused for p in pushes),
            "http_events_push_bad_bodies": sum(p.bad_bodies for p in pushes),
            "http_events_push_events": sum(p.events for p in pushes),
            "http_events_push_keepalives": sum(p.keepalives for p in pushes),
        }

    def problems(self) -> list[str]:
        """A stream without a password, refused, or down past its allowance, one line each."""
        now = time.monotonic()
        out = []
        for s in self.streams:
            down = not s.connected and not s.alive(now)
            if s.setup_error or s.refused or (down and s.last_error):
                devices = ", ".join(m.device for m in s.members)
                out.append(f"{devices} ({s.base}): {s.last_error}")
        for p in self.listeners:
            if p.error:
                devices = ", ".join(m.device for m in p.members)
                out.append(f"{devices} ({p.name}): {p.error}")
            else:
                out += [f"{m.device} ({p.name}): {m.last_error}" for m in p.members if m.last_error]
        return out
