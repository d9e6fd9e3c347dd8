"""A live terminal view of the gateway: devices, latest values, poll timing, spool depth."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from typing import TextIO

from core.types import Value
from drivers.contract import DeviceStatus
from gateway.service import Gateway

_KEY_POINTS = 4  # values shown per device row
_OFFLINE_SHOWN = 5  # offline devices named with their reason above the table
# What a person looks at first, when a device has it; otherwise its first points.
_PREFERRED = (
    "active_power_total_w",
    "active_power_w",
    "energy_import_kwh",
    "daily_yield_energy_kwh",
    "energy_total_wh",
    "on_off",
    "mode",
    "setpoint_degc",
    "room_temperature_degc",
    "voltage_l1_v",
    "frequency_hz",
)


def _fmt(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def _problems(gateway: Gateway, statuses: list[DeviceStatus]) -> list[str]:
    """What needs a person, one line each: the view is where an operator looks first."""
    out = []
    writer = gateway.writer
    if writer.stats.database_up is False and writer.stats.last_error:
        out.append(f"! database: {writer.stats.last_error}")
    if gateway.brokers is not None:
        for broker in gateway.brokers.status():
            if not broker["connected"] and broker["last_error"]:
                out.append(
                    f"! MQTT broker {broker['name']} ({broker['host']}:{broker['port']}): "
                    f"{broker['last_error']}"
                )
    for runtime in gateway.drivers.values():
        out += [f"! {problem}" for problem in runtime.problems()]
    offline = [(s.device, s.last_error) for s in statuses if s.online is False]
    for device, error in offline[:_OFFLINE_SHOWN]:
        out.append(f"! {device} offline: {error}" if error else f"! {device} offline")
    if len(offline) > _OFFLINE_SHOWN:
        out.append(f"! and {len(offline) - _OFFLINE_SHOWN} more devices offline")
    calendar = gateway.calendar_warning()
    if calendar is not None:
        out.append(f"! {calendar}")
    oldest = gateway.notifier.health().get("outbox_oldest_s", 0) if gateway.notifier else 0
    if oldest > 600:
        out.append(
            f"! a notification has waited {oldest / 60:.0f} min in the outbox: a channel is "
            "down or refusing (see the log and notify_*_failed in health)"
        )
    if writer.dead_letters.lines:
        out.append(
            f"! {writer.dead_letters.lines} refused lines in {writer.dead_letters.path}: "
            "fix the cause, then `guanjia replay --dead-letter`"
        )
    return out


def _shown(gateway: Gateway, device: str) -> str:
    """A device's key values, coded ones in words, with units."""
    values = gateway.latest_values.get(device)
    if not values:
        return ""
    entry = gateway.catalog.devices.get(device)
    points = entry.points if entry is not None else {}
    names = [n for n in _PREFERRED if n in values] or list(values)
    parts = []
    for name in names[:_KEY_POINTS]:
        value, meta = values[name], points.get(name)
        if meta is None:
            parts.append(f"{name}={_fmt(value)}")
        else:
            parts.append(f"{name}={meta.label(value) or _fmt(value) + meta.unit}")
    return "  ".join(parts)


def render(gateway: Gateway, width: int = 120) -> str:
    h = gateway.health()
    statuses = gateway.statuses()
    errors = sum(s.errors for s in statuses)
    db = {True: "up", False: "DOWN", None: "none" if not gateway.writer.transport else "?"}
    lines = [
        f"Guanjia · {gateway.loaded.site.site.name} ({gateway.loaded.site.site.id})"
        f"   uptime {h['uptime_s']:.0f}s   devices {h['devices_online']}/{h['devices']} online",
        f"database {db[h.get('database_up')]}   written {h['points_written']}"
        f"   spool {h['spool_points']} points / {h['spool_bytes'] // 1024} KiB"
        f"   dropped {h['spool_dropped_points']}   device errors {errors}",
        f"refused by the database {h['points_rejected']}"
        f"   dead letters {h['dead_letter_points']}   lost {h['points_lost']}",
        *_problems(gateway, statuses),
        "",
        f"{'device':<18} {'state':<8} {'poll ms':>8} {'count':>6} {'err':>4}  latest values",
        "-" * min(width, 120),
    ]
    for s in statuses:
        state = {True: "online", False: "OFFLINE", None: "…"}[s.online]
        row = (
            f"{s.device:<18} {state:<8} {s.timing:>8} {s.count:>6} "
            f"{s.errors:>4}  {_shown(gateway, s.device)}"
        )
        lines.append(row[:width])
    if gateway.notifier is not None:
        lines.append(
            f"notifications: {h.get('notify_enqueued', 0)} queued, outbox "
            f"{h.get('outbox_depth', 0)} waiting (oldest {h.get('outbox_oldest_s', 0):.0f}s), "
            f"{h.get('notify_failures', 0)} failed sends, {h.get('outbox_dead', 0)} dead, "
            f"{h.get('notify_held', 0)} held for the digest"
        )
    if "modbus_writes" in h:
        lines.append(
            f"writes: {h['modbus_writes']} ({h.get('modbus_writes_confirmed', 0)} confirmed by "
            f"reading back, {h.get('modbus_writes_rejected_by_readback', 0)} kept another value, "
            f"{h.get('modbus_writes_failed', 0)} failed), waited for the write rate "
            f"{h.get('modbus_write_rate_waits', 0)} times"
            + (
                f"; rule commands waiting {h.get('rule_commands_queued', 0)}, refused "
                f"{h.get('rule_commands_refused', 0)}"
                if gateway.alarms is not None
                else ""
            )
        )
    if gateway.dr is not None:
        lines.append(
            f"demand response: {h.get('dr_events_taken', 0)} events taken, "
            f"{h.get('dr_events_open', 0)} open, {h.get('dr_events_refused', 0)} refused, "
            f"{h.get('dr_summaries', 0)} load-shed summaries"
            + (
                f"; webhook {h.get('dr_webhook_accepted', 0)} accepted of "
                f"{h.get('dr_webhook_requests', 0)}, {h.get('dr_webhook_unauthorized', 0)} "
                "unauthorized"
                if gateway.dr.webhook is not None
                else ""
            )
            + (
                f"; OpenADR {'registered' if h.get('openadr_registered') else 'NOT registered'}, "
                f"opted in {h.get('openadr_opted_in', 0)} / out {h.get('openadr_opted_out', 0)}, "
                f"reports {h.get('openadr_reports_sent', 0)}"
                if gateway.dr.ven is not None
                else ""
            )
        )
    if gateway.console is not None:
        lines.append(
            f"duty console: {gateway.console.url}   sessions {h.get('console_sessions', 0)}"
            f"   logins {h.get('console_logins', 0)} / failed {h.get('console_login_failures', 0)}"
        )
    if gateway.alarms is not None:
        alarms = sorted(gateway.alarms.book.open_alarms(), key=lambda a: -a.raised_at)
        lines += ["", f"alarms: {len(alarms)} open", "-" * min(width, 120)]
        for alarm in alarms[:10]:
            zh, en = gateway.alarms.texts(alarm)
            lines.append(f"{alarm.grade:<6} {alarm.state:<12} {zh} | {en}"[:width])
    lines.append("")
    lines.append("Ctrl-C stops the gateway (everything in memory is written or spooled).")
    return "\n".join(lines)


async def show(gateway: Gateway, out: TextIO = sys.stdout, every: float = 1.0) -> None:
    interactive = out.isatty()
    last_plain = 0.0
    while True:
        width = shutil.get_terminal_size((120, 40)).columns
        if interactive:
            out.write("\033[H\033[J" + render(gateway, width) + "\n")
            out.flush()
        elif time.monotonic() - last_plain >= 10:  # in a log file, a snapshot now and then
            out.write(render(gateway, width) + "\n\n")
            out.flush()
            last_plain = time.monotonic()
        await asyncio.sleep(every)
