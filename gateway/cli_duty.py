"""The duty commands of the CLI: who is on duty (`guanjia roster`) and a console password's
hash for the site file (`guanjia console-password`)."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo


def cmd_roster(args: argparse.Namespace) -> int:
    """Who is on duty at a time (default now), which shift and why, and the escalation chain."""
    from gateway.config_load import load_site
    from gateway.notify.roster import Roster, describe_duty
    from rules.calendar import WorkCalendar

    loaded = load_site(Path(args.site), resolve_secrets=False, need_broker=False)
    if loaded.roster is None:
        print(f"{args.site}: no duty roster (add notify: {{roster: ...}})", file=sys.stderr)
        return 2
    site = loaded.site
    zone = ZoneInfo(site.site.timezone)
    calendar = WorkCalendar.from_config(site.calendar, site.site.timezone, loaded.base_dir)
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(
                f"--at {args.at!r}: give a time like 2026-10-10T22:30 (site time)",
                file=sys.stderr,
            )
            return 2
        at = at.replace(tzinfo=zone) if at.tzinfo is None else at.astimezone(zone)
    else:
        at = datetime.now(zone)
    print(describe_duty(Roster(loaded.roster, calendar).on_duty(at)))
    return 0


def cmd_console_password(args: argparse.Namespace) -> int:
    """Read a password (twice, not echoed; or one line from stdin) and print its hash."""
    from gateway.console.passwords import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != first:
            print("the two entries differ; nothing written", file=sys.stderr)
            return 1
    else:
        first = sys.stdin.readline().rstrip("\n")
    try:
        print(hash_password(first))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def add_duty_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("roster", help="who is on duty now (or --at a time), and why")
    p.add_argument("site")
    p.add_argument("--at", help="site time, e.g. 2026-10-10T22:30 (default: now)")
    p.set_defaults(func=cmd_roster)

    p = sub.add_parser(
        "console-password",
        help="print the password_hash of a console user (reads the password, not echoed)",
    )
    p.set_defaults(func=cmd_console_password)
