"""`guanjia report SITE --month 2026-07 [--building B] [--format html|pdf] [--lang zh|en]
[--out FILE]` and `guanjia report SITE --year 2026 --table csv|xlsx [--out FILE]`."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config_errors import ConfigError, Problem
from gateway.config_load import LoadedSite, load_site
from gateway.report.query import InfluxQL, QueryError


def _month(text: str) -> date:
    match = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not match or not 1 <= int(match[2]) <= 12:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: write YYYY-MM, e.g. 2026-07")
    return date(int(match[1]), int(match[2]), 1)


def _year(text: str) -> int:
    if not re.fullmatch(r"\d{4}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a year: write YYYY, e.g. 2026")
    return int(text)


def add_report_command(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="the monthly energy report (HTML or PDF) or the yearly statistics table",
    )
    p.add_argument("site")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--month", type=_month, help="the month to report, YYYY-MM")
    which.add_argument("--year", type=_year, help="the year of the statistics table, YYYY")
    p.add_argument("--building", help="one building (its `building` tag); default the site")
    p.add_argument("--format", choices=["html", "pdf"], default="html", help="report format")
    p.add_argument("--table", choices=["csv", "xlsx"], help="with --year: the table's format")
    p.add_argument("--lang", choices=["zh", "en"], default="zh", help="language (default zh)")
    p.add_argument("--out", help="output file (default: report-SITE-PERIOD.EXT here)")
    p.set_defaults(func=cmd_report)


def _check_building(loaded: LoadedSite, building: str | None) -> None:
    """A building the site does not know is one line before anything connects."""
    if building is None:
        return
    accounts = loaded.site.accounts
    known = set(accounts.buildings if accounts else ())
    known |= {d.tags["building"] for d in loaded.site.devices if "building" in d.tags}
    if "building" in loaded.site.site.tags:
        known.add(loaded.site.site.tags["building"])
    if building not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError(
            [
                Problem(
                    str(loaded.path),
                    None,
                    "accounts.buildings",
                    f"--building {building!r}: the site has no such building (known: "
                    f"{listed}); name one of them, or describe it under accounts.buildings",
                )
            ]
        )


def cmd_report(args: argparse.Namespace) -> int:
    if args.year is not None and args.table is None:
        print(
            "guanjia report: --year makes the statistics table: add --table csv or xlsx",
            file=sys.stderr,
        )
        return 2
    if args.month is not None and args.table is not None:
        print(
            "guanjia report: --table goes with --year (the monthly report is --format html or pdf)",
            file=sys.stderr,
        )
        return 2
    loaded = load_site(Path(args.site), need_broker=False)
    _check_building(loaded, args.building)
    ql = InfluxQL.for_site(loaded)
    tail = f"-{args.building}" if args.building else ""
    try:
        if args.month is not None:
            data, ext = _month_report(loaded, ql, args)
            period = args.month.strftime("%Y-%m")
        else:
            data, ext = _year_table(loaded, ql, args)
            period = str(args.year)
    except QueryError as exc:
        print(f"guanjia report: {exc}", file=sys.stderr)
        return 1
    finally:
        ql.close()
    out = Path(args.out or f"report-{loaded.site.site.id}-{period}{tail}.{ext}")
    out.write_bytes(data)
    print(f"wrote {out}")
    return 0


def _month_report(loaded: LoadedSite, ql: InfluxQL, args: argparse.Namespace) -> tuple[bytes, str]:
    from gateway.report import charts, html, pdf
    from gateway.report.month import build_month

    report = build_month(loaded, ql, args.month, args.building)
    drawn = charts.charts(report, args.lang)
    if charts.cjk_font() is None and args.lang == "zh":
        print(f"guanjia report: {charts.font_warning()}", file=sys.stderr)
    generated = datetime.now(ZoneInfo(loaded.site.site.timezone))
    if args.format == "pdf":
        return pdf.render(report, drawn, args.lang, generated), "pdf"
    return html.render(report, drawn, args.lang, generated).encode("utf-8"), "html"


def _year_table(loaded: LoadedSite, ql: InfluxQL, args: argparse.Namespace) -> tuple[bytes, str]:
    from gateway.report.table import build_year, to_csv, to_xlsx

    table = build_year(loaded, ql, args.year, args.building)
    if args.table == "xlsx":
        return to_xlsx(table, args.lang), "xlsx"
    return to_csv(table, args.lang), "csv"
