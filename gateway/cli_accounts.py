"""The accounts commands of the CLI: `guanjia accounts refactor SITE [--from YYYY-MM]
[--to YYYY-MM] [--dry-run]` recomputes the stored standard coal and CO₂ with the site's
current factor set (gateway/accounts_refactor.py)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.config_errors import ConfigError, Problem
from gateway.report.cli import _month as month_argument


def cmd_refactor(args: argparse.Namespace) -> int:
    from accounts.factors import FactorError, load_factors
    from accounts.store import AccountsStore
    from gateway.accounts_refactor import (
        Refactor,
        RefactorError,
        months_between,
        source_for,
    )
    from gateway.accounts_service import MAX_REVISION
    from gateway.config_load import load_site, site_relative
    from gateway.report.query import QueryError
    from gateway.service import make_transport
    from gateway.spool import Spool, SpoolBusy

    said = "guanjia accounts refactor"
    loaded = load_site(Path(args.site), need_broker=False)
    site, path = loaded.site, str(loaded.path)
    if site.accounts is None:
        raise ConfigError(
            [Problem(path, None, "accounts", "the site keeps no accounts: nothing to recompute")]
        )
    if site.influxdb is None:
        raise ConfigError(
            [
                Problem(
                    path,
                    None,
                    "influxdb",
                    "the accounts are read from the site's database, and this site names "
                    "none: add an `influxdb:` section",
                )
            ]
        )
    if args.first and args.last and args.first > args.last:
        print(f"{said}: --from {args.first:%Y-%m} is after --to {args.last:%Y-%m}", file=sys.stderr)
        return 2
    factors = load_factors(site.accounts.factors, loaded.base_dir)
    try:
        spool = Spool(loaded.spool_dir(), site.spool.max_bytes)
    except SpoolBusy:
        print(
            f"{said}: the gateway is running (spool {loaded.spool_dir()} is in use): stop it "
            "first, or a period it writes meanwhile could be overwritten with an old figure",
            file=sys.stderr,
        )
        return 1
    try:
        if len(spool):
            waiting = "1 point waits" if len(spool) == 1 else f"{len(spool)} points wait"
            print(
                f"{said}: {waiting} in the spool {spool.dir}: send them first "
                f"(guanjia replay {args.site}), or figures sent after this run would replace "
                "the recomputed ones",
                file=sys.stderr,
            )
            return 1
        victoria = site.influxdb.server == "victoriametrics"
        writing = not args.dry_run
        store = (
            AccountsStore(site_relative(loaded.base_dir, site.accounts.store))
            if victoria and writing
            else None
        )
        source = source_for(loaded)
        transport = make_transport(loaded) if writing else None
        try:
            job = Refactor(
                loaded, factors, source, transport, store=store, stamp_revisions=victoria
            )
            first = args.first or job.first_month()
            if first is None:
                print(f"{args.site}: the database holds no accounts of {site.site.id}")
                return 0
            last = args.last or datetime.now(ZoneInfo(site.site.timezone)).date().replace(day=1)
            outcome = job.run(months_between(first, last))
        except (QueryError, RefactorError, FactorError) as exc:
            print(f"{said}: {exc}", file=sys.stderr)
            return 1
        finally:
            source.close()
            if transport is not None:
                transport.close()
            if store is not None:
                store.close()
    finally:
        spool.close()
    kinds = ", ".join(f"{outcome.rewritten[k]} {k}" for k in ("hour", "day", "month"))
    print(
        f"{args.site}: {first:%Y-%m} to {last:%Y-%m}, factor set {job.label}: "
        f"{outcome.changed} periods {'rewritten' if writing else 'to rewrite'} ({kinds}) "
        f"of {outcome.read} read"
    )
    if outcome.unknown:
        print(
            f"{args.site}: {outcome.unknown_periods} periods left as they were: the site no "
            f"longer has {', '.join(sorted(outcome.unknown))}, so their unit is not known; "
            "name the counter under accounts.counters and run it again",
            file=sys.stderr,
        )
    if outcome.no_revision_left:
        print(
            f"{args.site}: {outcome.no_revision_left} periods left as they were: written "
            f"{MAX_REVISION} times already, VictoriaMetrics has no later stamp for them",
            file=sys.stderr,
        )
    return 1 if outcome.unknown or outcome.no_revision_left else 0


def add_accounts_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("accounts", help="the energy accounts the database holds")
    commands = p.add_subparsers(dest="accounts_command", required=True)
    r = commands.add_parser(
        "refactor",
        help="recompute the stored standard coal and CO₂ with the site's current factor set",
    )
    r.add_argument("site")
    r.add_argument(
        "--from",
        dest="first",
        type=month_argument,
        help="the first month, YYYY-MM (default: the first the accounts hold)",
    )
    r.add_argument(
        "--to", dest="last", type=month_argument, help="the last month, YYYY-MM (default: this one)"
    )
    r.add_argument(
        "--dry-run", action="store_true", help="count the periods to rewrite; write nothing"
    )
    r.set_defaults(func=cmd_refactor)
