"""What Grafana sends to InfluxDB for a dashboard of config/grafana/dashboards/: every panel's,
template variable's and annotation's InfluxQL with the macros filled in as Grafana fills them.

- `$timeFilter` (and `$__timeFilter`): `time >= <from>ms and time <= <to>ms`, the dashboard's
  range or the panel's own (`timeFrom`: "now/d" is today so far, "24h" the last 24 hours;
  `timeShift` moves both ends back);
- `$__interval` / `$interval`: the range over about 1000 points, rounded to one of Grafana's
  steps, no finer than the datasource's 10 s; `$__interval_ms` in milliseconds;
- `$__from` / `$__to`: the range's ends in epoch milliseconds;
- template variables (`$site`, `${site}`, `[[site]]`): a multi-value variable with "All" inside
  `/^$site$/` becomes its `allValue` (`.*`), or its values regex-escaped and joined as
  `(a|b)`, or one value regex-escaped, as Grafana's InfluxDB datasource formats them.

Times in `now/d` and the like are rounded in the site's time zone (the dashboards follow the
browser's, which on site is China's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "config" / "grafana" / "dashboards"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "M": None, "y": None}
# Grafana's interval steps (kbn.roundInterval, coarsened), seconds.
_STEPS = (1, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400)
MIN_INTERVAL = 10  # the InfluxDB datasource's default minimum
MAX_POINTS = 1000  # about a panel's width in pixels


def dashboards() -> dict[str, dict[str, Any]]:
    """The shipped dashboards by file name."""
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(DASHBOARD_DIR.glob("*.json"))
    }


# -- time ---------------------------------------------------------------------------------


def _start_of(t: datetime, unit: str) -> datetime:
    t = t.replace(microsecond=0)
    if unit == "s":
        return t
    t = t.replace(second=0)
    if unit == "m":
        return t
    t = t.replace(minute=0)
    if unit == "h":
        return t
    t = t.replace(hour=0)
    if unit == "d":
        return t
    if unit == "w":
        return t - timedelta(days=t.weekday())
    t = t.replace(day=1)
    if unit == "M":
        return t
    return t.replace(month=1)


def _add(t: datetime, amount: int, unit: str) -> datetime:
    if unit == "M":
        months = t.year * 12 + t.month - 1 + amount
        return t.replace(year=months // 12, month=months % 12 + 1)
    if unit == "y":
        return t.replace(year=t.year + amount)
    seconds = _UNITS[unit]
    assert seconds is not None
    return t + timedelta(seconds=amount * seconds)


def parse_time(expr: str, now: datetime) -> datetime:
    """Grafana's date math: `now`, `now-6h`, `now/d`, `now-1d/d`, `now-1M/M`."""
    match = re.fullmatch(r"now((?:[+-]\d+[smhdwMy])*)(?:/([smhdwMy]))?", expr)
    if match is None:
        raise ValueError(f"not date math Grafana understands here: {expr!r}")
    t = now
    for sign, amount, unit in re.findall(r"([+-])(\d+)([smhdwMy])", match[1]):
        t = _add(t, int(amount) * (1 if sign == "+" else -1), unit)
    if match[2]:
        t = _start_of(t, match[2])
    return t


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def panel_range(dashboard: Mapping[str, Any], panel: Mapping[str, Any], now: datetime) -> TimeRange:
    """The range a panel queries: the dashboard's, or the panel's relative time and shift
    (Grafana's applyPanelTimeOverrides: a `timeFrom` of "now/d" is "today so far", one without
    `now` is counted back from now)."""
    time_from = panel.get("timeFrom")
    if time_from:
        expr = time_from if time_from.startswith("now") else f"now-{time_from}"
        rng = TimeRange(parse_time(expr, now), now)
    else:
        span = dashboard["time"]
        rng = TimeRange(parse_time(span["from"], now), parse_time(span["to"], now))
    shift = panel.get("timeShift")
    if shift:
        match = re.fullmatch(r"(\d+)([smhdwMy])", shift)
        assert match, f"timeShift {shift!r}"
        amount, unit = -int(match[1]), match[2]
        rng = TimeRange(_add(rng.start, amount, unit), _add(rng.end, amount, unit))
    return rng


def interval_seconds(rng: TimeRange) -> int:
    wanted = max(rng.seconds / MAX_POINTS, MIN_INTERVAL)
    return next((s for s in _STEPS if s >= wanted), _STEPS[-1])


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- variables ----------------------------------------------------------------------------

ALL = object()  # the "All" choice of a variable

# Grafana's escapeRegex (@grafana/data), what a multi-value or All-able variable's values get
# in an InfluxQL regex.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|[\]{}/]")


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m[0], value)


def format_variable(variable: Mapping[str, Any], choice: object) -> str:
    """A template variable's text in a query for a choice: ALL, a list of values, one value."""
    if choice is ALL:
        all_value = variable.get("allValue")
        if all_value:
            return str(all_value)
        choice = [o["value"] for o in variable.get("options", [])]
    if isinstance(choice, list):
        escaped = [regex_escape(str(v)) for v in choice]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    assert isinstance(choice, str)
    return regex_escape(choice) if variable.get("multi") or variable.get("includeAll") else choice


def fill(
    query: str,
    values: Mapping[str, str],
    rng: TimeRange | None = None,
) -> str:
    """A query with its macros and variables replaced (`values`: the formatted variables)."""
    if rng is not None:
        start_ms = int(rng.start.timestamp() * 1000)
        end_ms = int(rng.end.timestamp() * 1000)
        step = interval_seconds(rng)
        time_filter = f"time >= {start_ms}ms and time <= {end_ms}ms"
        macros = {
            "__timeFilter": time_filter,
            "timeFilter": time_filter,
            "__interval_ms": str(step * 1000),
            "__interval": _duration(step),
            "interval": _duration(step),
            "__from": str(start_ms),
            "__to": str(end_ms),
        }
    else:
        macros = {}
    names = {**macros, **values}

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name not in names:
            raise KeyError(f"{name!r} is neither a macro nor a variable: {query}")
        return names[name]

    # Longest names first: `$__interval_ms` before `$__interval`.
    pattern = (
        r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$("
        + "|".join(sorted(map(re.escape, names), key=len, reverse=True))
        + r")\b"
    )
    if not names:
        return query
    filled = re.sub(pattern, replace, query)
    left = re.search(r"\$\w+|\[\[\w+\]\]", filled)
    assert left is None, f"{left[0] if left else ''} left unfilled in {filled}"
    return filled


# -- what a dashboard asks ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PanelQuery:
    where: str  # "panel 3 (当前总功率) A", "annotation 告警"
    query: str
    range: TimeRange
    table: bool  # resultFormat table: rows may carry only tags and text


def panel_queries(dashboard: Mapping[str, Any], now: datetime) -> Iterator[PanelQuery]:
    for panel in dashboard["panels"]:
        rng = panel_range(dashboard, panel, now)
        for t in panel.get("targets", []):
            where = f"panel {panel['id']} ({panel['title']}) {t['refId']}"
            yield PanelQuery(where, t["query"], rng, t.get("resultFormat") == "table")
    default = TimeRange(
        parse_time(dashboard["time"]["from"], now), parse_time(dashboard["time"]["to"], now)
    )
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("builtIn"):
            continue
        query = a.get("target", {}).get("query") or a["query"]
        yield PanelQuery(f"annotation {a['name']}", query, default, True)


def query_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


MODES = ("all", "listed", "single")


def resolve_variables(
    dashboard: Mapping[str, Any],
    run: Callable[[str], list[list[Any]]],
    mode: str,
    pick: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Each query variable's values (its query run with the variables before it as chosen,
    in dashboard order, as Grafana refreshes chained variables) and its text in queries for a
    choice: `all` ("All": the allValue), `listed` (every value picked: `(a|b)`), `single` (the
    first value of each, but All for a variable `pick` names with the value "All"). `pick`
    may name one value of a variable instead. Returns (texts, values), by variable name."""
    assert mode in MODES, mode
    pick = pick or {}
    texts: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for variable in query_variables(dashboard):
        name = variable["name"]
        rows = run(fill(variable["query"], texts))
        found = sorted({str(r[-1]) for r in rows})
        values[name] = found
        assert found, f"variable {name} has no values: {variable['query']}"
        choice: object = ALL if mode == "all" else found if mode == "listed" else found[0]
        if name in pick:
            assert pick[name] == "All" or pick[name] in found, (name, pick[name], found)
            choice = ALL if pick[name] == "All" else pick[name]
        texts[name] = format_variable(variable, choice)
    return texts, values
