"""The `energy` measurement as the accounts write it, read back for the report.

Schema: tags site, building, floor, zone, device, use, kind, carrier, flow, period; fields
amount, kgce, co2_kg, coverage, factor_set; timestamp the period's start (local boundaries).
A main meter (`use: total`) counts what its sub-meters count again: a carrier's total is its
main meters' when it has any, every meter's otherwise (pick_main)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.report.model import CATEGORIES, OTHER, TOTAL_USE
from gateway.report.query import InfluxQL, Series, between, ident, literal


@dataclass(frozen=True, slots=True)
class Row:
    """One period of one counter (or a sum of them over some tags)."""

    t: int  # epoch seconds: the period's start
    device: str
    use: str
    kind: str
    building: str
    floor: str
    zone: str
    carrier: str
    flow: str
    amount: float
    kgce: float
    co2_kg: float
    coverage: float | None
    factor_set: str


_TAGS = ("device", "use", "kind", "building", "floor", "zone", "carrier", "flow")


def _where(period: str, start: datetime, end: datetime, building: str | None) -> str:
    where = (
        f"{ident('period')} = {literal(period)} AND {between(start.timestamp(), end.timestamp())}"
    )
    if building is not None:
        where += f" AND {ident('building')} = {literal(building)}"
    return where


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def rows(
    ql: InfluxQL, period: str, start: datetime, end: datetime, building: str | None
) -> list[Row]:
    """Every stored period of [start, end), one row per counter and period."""
    q = (
        "SELECT amount, kgce, co2_kg, coverage, factor_set FROM energy "
        f"WHERE {_where(period, start, end, building)} GROUP BY *"
    )
    return _rows(ql.query(q))


def sums(
    ql: InfluxQL, period: str, start: datetime, end: datetime, building: str | None
) -> list[Row]:
    """[start, end) summed per counter: one row each, timed at the first period."""
    q = (
        "SELECT sum(amount) AS amount, sum(kgce) AS kgce, sum(co2_kg) AS co2_kg, "
        "mean(coverage) AS coverage FROM energy "
        f"WHERE {_where(period, start, end, building)} GROUP BY "
        + ", ".join(ident(t) for t in _TAGS)
    )
    return _rows(ql.query(q))


def _rows(series: Iterable[Series]) -> list[Row]:
    out: list[Row] = []
    for s in series:
        tags = s.tags
        device, use, kind, building, floor, zone, carrier, flow = (tags.get(k, "") for k in _TAGS)
        for row in s.rows():
            coverage = row.get("coverage")
            out.append(
                Row(
                    t=int(row["time"]),
                    device=device,
                    use=use,
                    kind=kind,
                    building=building,
                    floor=floor,
                    zone=zone,
                    carrier=carrier,
                    flow=flow,
                    amount=_number(row.get("amount")),
                    kgce=_number(row.get("kgce")),
                    co2_kg=_number(row.get("co2_kg")),
                    coverage=float(coverage) if isinstance(coverage, int | float) else None,
                    factor_set=str(row.get("factor_set") or ""),
                )
            )
    return out


def of(rows_: Iterable[Row], carrier: str, *flows: str) -> list[Row]:
    return [r for r in rows_ if r.carrier == carrier and r.flow in flows]


def pick_main(rows_: Sequence[Row]) -> list[Row]:
    """The rows whose sum is the carrier's total: the main meters' when there are any."""
    main = [r for r in rows_ if r.use == TOTAL_USE]
    return main if main else list(rows_)


def sub_meters(rows_: Iterable[Row]) -> list[Row]:
    return [r for r in rows_ if r.use != TOTAL_USE]


def category(use: str) -> str:
    return use if use in CATEGORIES else OTHER


def total(rows_: Iterable[Row]) -> float:
    return sum(r.amount for r in rows_)
