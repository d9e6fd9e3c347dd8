"""The `guanjia` command: check, schema, read, run, demo, alarms, ack, replay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from drivers.modbus.driver import ModbusDevice, poll_plans
from drivers.registry import DRIVERS
from gateway.alarm_store import AlarmStore
from gateway.cli_accounts import add_accounts_commands
from gateway.cli_duty import add_duty_commands
from gateway.config_errors import ConfigError
from gateway.config_load import LoadedSite, load_site
from gateway.grafana_push import add_grafana_command
from gateway.influx_writer import Transport, V1Transport, V2Transport, Writer
from gateway.log_format import LOG_FORMATS, LogFormat, formatter
from gateway.report.cli import add_report_command
from gateway.scan import add_scan_command
from gateway.service import Gateway, install_signal_handlers
from gateway.spool import Spool, SpoolBusy

log = logging.getLogger("guanjia")


def _setup_logging(verbose: bool, quiet: bool = False, log_format: LogFormat = "text") -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    # pymodbus logs every failed request itself; our counters already say it once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


# Commands that talk to no MQTT broker: they load a site whose MQTT devices have none yet (the
# demo's, whose broker `guanjia demo` brings). Every other command, `run` first, needs one.
NO_BROKER_COMMANDS = frozenset({"read", "replay", "alarms", "ack"})
_command: str | None = None  # the command main() runs


def _load(path: str, resolve_secrets: bool = True) -> LoadedSite:
    return load_site(
        Path(path),
        resolve_secrets=resolve_secrets,
        need_broker=_command not in NO_BROKER_COMMANDS,
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Each site file on its own; several files of one site (a site split across gateways
    by line) then against each other (gateway/fleet.py)."""
    if len(args.site) == 1:
        _check_one(args.site[0])
        return 0
    loaded = []
    for name in args.site:
        try:
            loaded.append(_check_one(name))
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
    if len(loaded) < len(args.site):
        return 1
    from gateway.fleet import split_site_problems

    conflicts = split_site_problems(loaded)
    for conflict in conflicts:
        print(conflict, file=sys.stderr)
    if conflicts:
        return 1
    print(
        f"{len(loaded)} site files: no device, serial line, Modbus TCP device or rule owned twice"
    )
    return 0


def _check_one(name: str) -> LoadedSite:
    from gateway.config_load import needs_embedded_broker
    from gateway.site import BrokerConfig, MqttConfig

    path = Path(name)
    mqtt = None
    if needs_embedded_broker(path):
        print(
            f"{name}: MQTT devices and no broker: `guanjia demo` brings one; "
            "`guanjia run` needs an `mqtt: {brokers: [...]}` section"
        )
        mqtt = MqttConfig(brokers=[BrokerConfig(name="site", host="127.0.0.1")])
    loaded = load_site(path, mqtt=mqtt)
    # The plans only: a driver would open serial ports, which needs a running event loop
    # (and check connects to nothing).
    requests = sum(len(p.requests) for p in poll_plans(_modbus_devices(loaded)))
    gateway = f" (gateway {loaded.site.site.gateway})" if loaded.site.site.gateway else ""
    print(
        f"{name}: ok — site {loaded.site.site.id}{gateway}, {len(loaded.site.devices)} "
        f"devices, {len(loaded.profiles)} profiles, {requests} Modbus requests per poll cycle"
    )
    if loaded.site.rules or loaded.roster is not None:  # office hours, duty shifts
        warning = _calendar_warning(loaded)
        if warning:
            print(f"{name}: {warning}")
    from gateway.rule_points import missing_rule_points, unwritable_rule_points

    for warning in [
        *loaded.warnings,
        *missing_rule_points(loaded),
        *unwritable_rule_points(loaded),
    ]:
        print(f"{name}: warning: {warning}")
    return loaded


def _modbus_devices(loaded: LoadedSite) -> list[ModbusDevice]:
    """The site's polled Modbus devices, for the commands that plan or read them."""
    return [
        ModbusDevice(e.id, e.profile, e.connection, e.poll, e.points)
        for e in loaded.driver_devices("modbus")
    ]


def _calendar_warning(loaded: LoadedSite) -> str | None:
    """The site's working calendar (its year files too) as of today in the site's zone."""
    from zoneinfo import ZoneInfo

    from rules.calendar import WorkCalendar

    site = loaded.site
    calendar = WorkCalendar.from_config(site.calendar, site.site.timezone, loaded.base_dir)
    return calendar.coverage_warning(datetime.now(ZoneInfo(site.site.timezone)).date())


def cmd_schema(args: argparse.Namespace) -> int:
    if args.rules:
        from rules.registry import KINDS

        schemas = {kind: cls.Params.model_json_schema() for kind, cls in sorted(KINDS.items())}
        print(json.dumps(schemas, indent=2, ensure_ascii=False))
        return 0
    if args.profile:
        model = DRIVERS[args.profile].profile_model
        print(json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False))
        return 0
    from gateway.schema import site_schema

    print(json.dumps(site_schema(), indent=2, ensure_ascii=False))
    return 0


def cmd_read(args: argparse.Namespace) -> int:
    from gateway.cli_read import read_device

    return asyncio.run(read_device(_load(args.site), args.device, args.json, args.wait))


async def _run(
    loaded: LoadedSite,
    view: bool,
    duration: float | None,
    transport: Transport | None = None,
    spool: str | None = None,
    rules_clock: Callable[[], datetime] | None = None,
    reload: Callable[[], LoadedSite] | None = None,
) -> None:
    """Run until SIGTERM, SIGINT or `duration`. SIGHUP reloads the site file through
    `reload`: a file that does not validate is reported and the gateway goes on with the
    one it has; a good one replaces the running gateway (the old one flushes or spools
    everything first)."""
    stop, hangup = asyncio.Event(), asyncio.Event()
    install_signal_handlers(stop, hangup)
    if duration:
        asyncio.get_running_loop().call_later(duration, stop.set)
    previous: LoadedSite | None = None  # the site that ran before a reload
    while True:
        try:
            gateway = Gateway(
                loaded,
                transport=transport,
                spool_dir=Path(spool) if spool else None,
                rules_clock=rules_clock,
            )
        except Exception:
            if previous is None:
                raise
            # The new site validated but does not start (a path gone since): back to the
            # one that ran, rather than no gateway at all.
            log.exception("the reloaded site file does not start; running the previous one")
            loaded, previous = previous, None
            continue
        view_task = None
        if view:
            from gateway.view import show

            view_task = asyncio.create_task(show(gateway))
        try:
            await gateway.start()
            following = await _next_site(stop, hangup, reload)
        finally:
            if view_task is not None:
                view_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await view_task
            await gateway.stop()
        if following is None:
            return
        previous, loaded, transport = loaded, following, None
        log.info("site file reloaded: the gateway starts again on it")


async def _next_site(
    stop: asyncio.Event, hangup: asyncio.Event, reload: Callable[[], LoadedSite] | None
) -> LoadedSite | None:
    """Wait for the end (None) or for a SIGHUP with a site file that validates."""
    while True:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(hangup.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if stop.is_set():
            return None
        hangup.clear()
        if reload is None:
            log.warning("SIGHUP: this command does not reload its site file; still running")
            continue
        try:
            return await asyncio.to_thread(reload)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("site file not reloaded, still running on the previous one: %s", problem)


def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(
        _run(
            _load(args.site),
            args.view,
            args.duration,
            spool=args.spool,
            reload=lambda: _load(args.site),
        )
    )
    return 0


def _override_transport(args: argparse.Namespace) -> Transport | None:
    """A database named on the command line (demo, replay) instead of the site file's."""
    if args.influx:
        token = os.environ.get(args.token_env) if args.token_env else None
        return V2Transport(args.influx, args.org, args.bucket, token, 10.0)
    if args.influx_v1:
        password = os.environ.get(args.password_env) if args.password_env else None
        return V1Transport(args.influx_v1, args.database, None, args.username, password, 10.0)
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import DemoError, DemoOptions, run_demo, shipped_demo_site

    async def run_gateway(loaded: LoadedSite, rules_clock: Callable[[], datetime]) -> None:
        transport = _override_transport(args)
        await _run(loaded, not args.no_view, args.duration, transport, args.spool, rules_clock)

    start = datetime.fromisoformat(args.start) if args.start else None
    options = DemoOptions(
        site=Path(args.site) if args.site else shipped_demo_site(),
        speed=args.speed,
        start=start,
        scenario=not args.no_scenario,
        alarm_store=args.alarm_store,
    )
    try:
        asyncio.run(run_demo(options, run_gateway))
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Send a spool's points to a database, then exit."""
    if args.site:
        loaded = _load(args.site)
        spool_dir = Path(args.spool) if args.spool else loaded.spool_dir()
        max_bytes = loaded.site.spool.max_bytes
        transport = _override_transport(args)
        if transport is None:
            from gateway.service import make_transport

            transport = make_transport(loaded)
    else:
        if not args.spool:
            raise SystemExit("guanjia replay: give a site file or --spool DIR")
        spool_dir, max_bytes, transport = Path(args.spool), 1 << 40, _override_transport(args)
    if transport is None:
        raise SystemExit("guanjia replay: no database: use --influx URL or --influx-v1 URL")
    spool = Spool(spool_dir, max_bytes)
    if args.dead_letter:
        return _replay_dead_letters(spool, transport)
    total = len(spool)
    writer = Writer(transport, spool)
    writer.start()

    last = -1
    while len(spool) and writer.stats.points_rejected + writer.stats.points_replayed < total:
        time.sleep(0.2)
        if writer.stats.database_up is False and last == len(spool):
            print(f"database unavailable; {len(spool)} points still spooled", file=sys.stderr)
            writer.stop()
            spool.close()
            return 1
        last = len(spool)
    writer.stop()
    spool.close()
    print(
        f"replayed {writer.stats.points_replayed} of {total} points from {spool_dir}"
        f" ({writer.stats.points_rejected} refused by the database"
        + (
            f", kept in {writer.dead_letters.path}: fix the cause, then "
            "`guanjia replay --dead-letter`)"
            if writer.stats.points_rejected
            else ")"
        )
    )
    return 0


def _replay_dead_letters(spool: Spool, transport: Transport) -> int:
    """Send the dead-letter file again; what the database still refuses stays in it."""
    from gateway.dead_letter import DeadLetters, replay
    from gateway.influx_writer import send_or_split

    try:
        dead = DeadLetters(spool.dir, 1 << 40)
        total = dead.lines
        result = replay(
            dead, lambda body, lines, refused: send_or_split(transport.send, body, lines, refused)
        )
    finally:
        transport.close()
        spool.close()
    print(
        f"dead letters: sent {result.sent} of {total} lines from {dead.path}; "
        f"{result.refused} refused again, {result.left} not tried (database unavailable)"
    )
    if result.refused:
        first = dead.read()[0]
        print(f"still refused, e.g.: {first.reason}", file=sys.stderr)
    return 0 if not (result.refused or result.left) else 1


def _alarm_store(loaded: LoadedSite) -> AlarmStore:
    path = Path(loaded.site.alarms.store)
    return AlarmStore(path if path.is_absolute() else loaded.base_dir / path)


def cmd_alarms(args: argparse.Namespace) -> int:
    """Open alarms, newest first, with their texts in both languages."""
    from zoneinfo import ZoneInfo

    from gateway.alarm_service import device_infos
    from rules.catalog import Catalog
    from rules.texts import AlarmTexts

    loaded = _load(args.site, resolve_secrets=False)
    store = _alarm_store(loaded)
    catalog = Catalog.load().with_overrides(loaded.site.alarms.grades)
    # The gateway's own renderer, so the list reads as the log, MQTT and the live view do.
    texts = AlarmTexts(catalog, {d.id: d for d in device_infos(loaded)})
    try:
        alarms = sorted(store.open_alarms(), key=lambda a: a.raised_at, reverse=True)
    finally:
        store.close()
    if not alarms:
        print("no open alarms")
        return 0
    tz = ZoneInfo(loaded.site.site.timezone)
    for a in alarms:
        when = datetime.fromtimestamp(a.raised_at, tz).strftime("%Y-%m-%d %H:%M:%S")
        zh, en = texts.render(a)
        print(f"{a.id:<32} {a.grade:<6} {a.state:<12} {when}  {zh if args.lang == 'zh' else en}")
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    """Ask the running gateway to acknowledge an alarm, and wait for its answer."""
    loaded = _load(args.site, resolve_secrets=False)
    store = _alarm_store(loaded)
    request = store.ack_request(args.alarm, args.by or os.environ.get("USER", "cli"), args.note)
    deadline = time.monotonic() + args.wait
    try:
        while time.monotonic() < deadline:
            status = store.ack_status(request)
            if status is not None and status.result is not None:
                print(f"{args.alarm}: {status.result}")
                return 0 if status.result in ("acked", "already acknowledged") else 1
            time.sleep(0.2)
    finally:
        store.close()
    print(f"{args.alarm}: the gateway has not answered; it will when it runs", file=sys.stderr)
    return 2


def _add_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--influx", metavar="URL", help="InfluxDB v2 write API base URL")
    p.add_argument("--org", default="guanjia", help="v2 organisation")
    p.add_argument("--bucket", default="building", help="v2 bucket")
    p.add_argument("--token-env", metavar="VAR", help="environment variable holding the token")
    p.add_argument("--influx-v1", metavar="URL", help="InfluxDB 1.x base URL")
    p.add_argument("--database", default="building", help="v1 database")
    p.add_argument("--username", help="v1 user")
    p.add_argument("--password-env", metavar="VAR", help="environment variable with v1 password")


def _add_log_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="json: one JSON object per line (time, level, logger, message, extra fields)",
    )


def cmd_data_dir(args: argparse.Namespace) -> int:
    from core.data_dir import data_dir

    print(data_dir())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guanjia", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a site file and its profiles; connect to nothing")
    p.add_argument(
        "site",
        nargs="+",
        help="site file; several files of one site split across gateways are also checked "
        "against each other (no device, serial line or Modbus TCP device owned twice)",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("schema", help="print the JSON Schema of site files (or profiles)")
    p.add_argument(
        "--profile",
        nargs="?",
        const="modbus",
        choices=list(DRIVERS),
        help=f"the profile schema of a driver instead ({', '.join(DRIVERS)})",
    )
    p.add_argument("--rules", action="store_true", help="parameters of every rule kind")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("read", help="poll one device once and print its decoded values")
    p.add_argument("site")
    p.add_argument("device")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--wait",
        type=float,
        default=15.0,
        help="seconds to wait for a DL/T 645 meter's or an event stream's first values",
    )
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("run", help="run the gateway for a site")
    p.add_argument("site")
    p.add_argument("--view", action="store_true", help="live terminal view")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--spool", help="spool directory (default: the site file's)")
    _add_log_format(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run against the built-in virtual building")
    p.add_argument("--site", help="site file of the virtual building (default: the shipped one)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated clock speed-up")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--no-view", action="store_true", help="log instead of the live view")
    p.add_argument("--spool", help="spool directory (default: the site file's)")
    p.add_argument(
        "--start",
        default="2026-07-14T07:58",
        help="simulated start, local time (default: a July Tuesday before office hours)",
    )
    p.add_argument("--no-scenario", action="store_true", help="no scripted misbehaviour")
    p.add_argument("--alarm-store", help="alarm database (default: the site file's)")
    _add_db_args(p)
    _add_log_format(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "data-dir", help="print the folder of the shipped profiles, dashboards and examples"
    )
    p.set_defaults(func=cmd_data_dir)

    p = sub.add_parser("alarms", help="list open alarms")
    p.add_argument("site")
    p.add_argument("--lang", choices=["zh", "en"], default="zh", help="text language")
    p.set_defaults(func=cmd_alarms)

    p = sub.add_parser("ack", help="acknowledge an alarm (through the running gateway)")
    p.add_argument("site")
    p.add_argument("alarm", help="alarm id, as `guanjia alarms` lists it")
    p.add_argument("--by", help="who acknowledges (default: $USER)")
    p.add_argument("--note", default="", help="a note for the record")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the answer")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("replay", help="send spooled points to a database, then exit")
    p.add_argument("site", nargs="?", help="site file (its spool and database)")
    p.add_argument("--spool", help="spool directory (default: the site's)")
    p.add_argument(
        "--dead-letter",
        action="store_true",
        help="send the lines the database refused (dead-letter.lp in the spool) again, "
        "after the cause is fixed; what is refused again stays, with the new reason",
    )
    _add_db_args(p)
    p.set_defaults(func=cmd_replay)
    add_duty_commands(sub)
    add_scan_command(sub)
    add_report_command(sub)
    add_grafana_command(sub)
    add_accounts_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    global _command
    args = build_parser().parse_args(argv)
    _command = args.command
    quiet = args.command == "demo" and not args.no_view
    quiet = quiet or args.command in (
        "check",
        "schema",
        "read",
        "alarms",
        "ack",
        "roster",
        "console-password",
        "scan",
        "report",
        "grafana",
        "accounts",
    )
    _setup_logging(args.verbose, quiet=quiet, log_format=getattr(args, "log_format", "text"))
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except SpoolBusy as exc:  # `replay` beside a running gateway, a second `run`
        print(f"guanjia {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
