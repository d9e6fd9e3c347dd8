"""EV chargers in the monthly report and the yearly table, from a real InfluxDB 1.6 holding a
site's June and July 2026: a main meter and two chargers in the garage, their `energy`
periods (hour, day, month) in the accounts' schema; each charger's month checked against the
sums the test makes of the hours it wrote."""

from __future__ import annotations

import csv
import io
import random
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config_load import load_site
from gateway.report.model import MonthReport
from gateway.report.month import build_month
from gateway.report.query import InfluxQL
from gateway.report.sections import sections
from tests.servers import InfluxDB1Server
from tests.test_report_data import TZ

JUNE, JULY = date(2026, 6, 1), date(2026, 7, 1)
CHARGERS = ("ev-1", "ev-2")
SITE = """\
site: {{name: 市行政中心, id: city-hall, timezone: Asia/Shanghai, tags: {{building: main}}}}
influxdb: {{api: v1, url: "{url}", database: building}}
accounts:
  grid_region: east
  buildings:
    main: {{area_m2: 12000, headcount: 300}}
devices:
  - {{id: meter-main, profile: chint_dtsu666, tags: {{use: total}},
     modbus: {{transport: tcp, host: 127.0.0.1, port: 1, unit: 1}}}}
  - {{id: ev-1, profile: abb_terra_ac, tags: {{building: garage}},
     modbus: {{transport: tcp, host: 127.0.0.1, port: 2, unit: 1}}}}
  - {{id: ev-2, profile: abb_terra_ac, tags: {{building: garage}},
     modbus: {{transport: tcp, host: 127.0.0.1, port: 2, unit: 2}}}}
"""
approx = pytest.approx
PDFTOTEXT = shutil.which("pdftotext")


@dataclass
class Written:
    lines: list[str] = field(default_factory=list)
    # device -> month -> kWh, summed from the hours written
    monthly: dict[str, dict[date, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


def _line(
    device: str, kind: str, building: str, flow: str, period: str, t: datetime, kwh: float
) -> str:
    tags = f"building={building},carrier=electricity,device={device},flow={flow},kind={kind}"
    if device == "meter-main":
        tags += ",use=total"
    return (
        f"energy,{tags},period={period},site=city-hall amount={kwh!r},kgce={kwh * 0.1229!r},"
        f'co2_kg={kwh * 0.55!r},coverage=1.0,factor_set="cn-2023/east" '
        f"{int(t.timestamp())}000000000"
    )


def build(seed: int = 7) -> Written:
    """Hours of June and July; ev-1 charges working days 08:00-18:00, ev-2 from 10 June on
    and every evening; the main meter counts the building and both chargers."""
    rng = random.Random(seed)
    w = Written()
    places = {
        "meter-main": ("meter", "main", "import"),
        "ev-1": ("ev_charger", "garage", "charging"),
    }
    places["ev-2"] = ("ev_charger", "garage", "charging")
    days: dict[tuple[str, date], float] = defaultdict(float)
    t = datetime(2026, 6, 1, tzinfo=TZ)
    while t < datetime(2026, 8, 1, tzinfo=TZ):
        amounts = {
            "ev-1": round(rng.uniform(3, 7), 3) if t.weekday() < 5 and 8 <= t.hour < 18 else 0.0,
            "ev-2": round(rng.uniform(5, 11), 3)
            if t.hour >= 18 and t >= datetime(2026, 6, 10, tzinfo=TZ)
            else 0.0,
        }
        amounts["meter-main"] = round(30 + amounts["ev-1"] + amounts["ev-2"], 3)
        for device, kwh in amounts.items():
            kind, building, flow = places[device]
            w.lines.append(_line(device, kind, building, flow, "hour", t, kwh))
            days[(device, t.date())] += kwh
            w.monthly[device][t.date().replace(day=1)] += kwh
        t += timedelta(hours=1)
    months: dict[tuple[str, date], float] = defaultdict(float)
    for (device, day), kwh in days.items():
        kind, building, flow = places[device]
        start = datetime(day.year, day.month, day.day, tzinfo=TZ)
        w.lines.append(_line(device, kind, building, flow, "day", start, kwh))
        months[(device, day.replace(day=1))] += kwh
    for (device, first), kwh in months.items():
        kind, building, flow = places[device]
        start = datetime(first.year, first.month, 1, tzinfo=TZ)
        w.lines.append(_line(device, kind, building, flow, "month", start, kwh))
    return w


@pytest.fixture(scope="module")
def written() -> Written:
    return build()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, written: Written) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("chargers")
    with InfluxDB1Server(base / "influx") as server:
        server.create_database("building")
        for i in range(0, len(written.lines), 10_000):
            server.write(written.lines[i : i + 10_000], "building")
        path = base / "site.yaml"
        path.write_text(SITE.format(url=server.url), encoding="utf-8")
        yield path


def _month(site: Path, building: str | None = None) -> MonthReport:
    loaded = load_site(site, need_broker=False)
    ql = InfluxQL.for_site(loaded)
    try:
        return build_month(
            loaded, ql, JULY, building, now=datetime(2026, 9, 1, tzinfo=TZ).timestamp()
        )
    finally:
        ql.close()


def test_each_charger_in_the_month_against_the_month_before(site: Path, written: Written) -> None:
    report = _month(site)
    assert [(c.device, c.building) for c in report.chargers] == [(d, "garage") for d in CHARGERS]
    for charger in report.chargers:
        assert charger.kwh == approx(written.monthly[charger.device][JULY])
        assert charger.last_month_kwh == approx(written.monthly[charger.device][JUNE])
    july = sum(written.monthly[d][JULY] for d in CHARGERS)
    june = sum(written.monthly[d][JUNE] for d in CHARGERS)
    assert report.charging_kwh == approx(july)
    assert report.charging_last_month_kwh == approx(june)
    # The chargers draw through the main meter: the month's electricity is the meter's alone.
    assert report.total_kwh == approx(written.monthly["meter-main"][JULY])
    [zh] = [s for s in sections(report, "zh") if s.key == "chargers"]
    assert zh.title == "电动汽车充电桩"
    assert zh.header == ["充电桩", "建筑", "本月", "上月", "变化"]
    ev1 = written.monthly["ev-1"]
    assert zh.rows[0] == [
        "ev-1",
        "garage",
        f"{ev1[JULY]:,.0f} kWh",
        f"{ev1[JUNE]:,.0f} kWh",
        f"{100 * (ev1[JULY] - ev1[JUNE]) / ev1[JUNE]:+.1f} %",
    ]
    assert zh.rows[-1][0] == "合计"
    assert zh.rows[-1][2:4] == [f"{july:,.0f} kWh", f"{june:,.0f} kWh"]
    [en] = [s for s in sections(report, "en") if s.key == "chargers"]
    assert (en.title, en.header[0], en.rows[-1][0]) == ("EV chargers", "Charger", "Total")


def test_a_building_without_chargers_has_no_charger_section(site: Path) -> None:
    report = _month(site, "main")
    assert report.chargers == []
    assert "chargers" not in {s.key for s in sections(report, "zh")}


def test_html_pdf_and_year_table_show_the_chargers(
    site: Path, written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html = tmp_path / "r.html"
    assert main(["report", str(site), "--month", "2026-07", "--out", str(html)]) == 0
    text = html.read_text(encoding="utf-8")
    assert '<section id="chargers"><h2>电动汽车充电桩</h2>' in text
    assert '<table class="chargers">' in text
    assert '<td class="w">ev-2</td>' in text
    main_only = tmp_path / "main.html"
    assert (
        main(
            [
                "report",
                str(site),
                "--month",
                "2026-07",
                "--building",
                "main",
                "--out",
                str(main_only),
            ]
        )
        == 0
    )
    assert 'id="chargers"' not in main_only.read_text(encoding="utf-8")
    if PDFTOTEXT is not None:
        pdf = tmp_path / "r.pdf"
        assert (
            main(["report", str(site), "--month", "2026-07", "--format", "pdf", "--out", str(pdf)])
            == 0
        )
        shown = subprocess.run(
            [PDFTOTEXT, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
        ).stdout
        assert "电动汽车充电桩" in shown
        assert f"{written.monthly['ev-2'][JULY]:,.0f} kWh" in shown
    table = tmp_path / "t.csv"
    assert main(["report", str(site), "--year", "2026", "--table", "csv", "--out", str(table)]) == 0
    rows = list(csv.reader(io.StringIO(table.read_bytes().decode("utf-8-sig"))))
    [ev] = [r for r in rows if r and r[0] == "电动汽车充电量（已计入电力）"]
    charged = sum(written.monthly[d][m] for d in CHARGERS for m in (JUNE, JULY))
    assert float(ev[2]) == approx(charged, abs=0.01)
    capsys.readouterr()
