"""The monthly report and the yearly table from a real InfluxDB 1.6 holding a simulated month
(tests/test_report_data.py: the accounts' `energy` periods, AC readings, write-backs, alarms),
checked against the figures the test computes on its own; the PDF rendered to PNG by
poppler's pdftoppm, the HTML opened in headless Chromium, the CSV and XLSX read back."""

from __future__ import annotations

import csv
import io
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config_load import load_site
from gateway.report.model import MonthReport
from gateway.report.month import build_month
from gateway.report.query import InfluxQL
from tests.servers import InfluxDB1Server, free_port
from tests.test_report_data import (
    AREA,
    BASELINE,
    CO2,
    ENFORCED,
    HEADCOUNT,
    KGCE,
    PV_KWP,
    QUOTA_KWH,
    REFUSED,
    TZ,
    Month,
    build,
    site_yaml,
)

ROOT = Path(__file__).resolve().parent.parent
JULY, JUNE, JULY_2025 = date(2026, 7, 1), date(2026, 6, 1), date(2025, 7, 1)
SUBS = {
    "lighting_sockets": ["meter-light"],
    "hvac": ["meter-ac"],
    "power": ["meter-lift"],
    "special": ["meter-srv", "meter-ups"],
}
PDFTOPPM = shutil.which("pdftoppm")
approx = pytest.approx


@pytest.fixture(scope="module")
def data() -> Month:
    return build()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, data: Month) -> Iterator[Path]:
    """A site file whose database holds the simulated months."""
    base = tmp_path_factory.mktemp("report")
    with InfluxDB1Server(base / "influx") as server:
        server.create_database("building")
        for i in range(0, len(data.lines), 10_000):
            server.write(data.lines[i : i + 10_000], "building")
        path = base / "site.yaml"
        path.write_text(site_yaml(server.url), encoding="utf-8")
        yield path


def month_of(data: Month, device: str, flow: str, month: date) -> float:
    return data.monthly[(device, flow)][month]


def categories(data: Month, month: date) -> dict[str, float]:
    split = {
        use: sum(month_of(data, d, "import", month) for d in devices)
        for use, devices in SUBS.items()
    }
    split["unmetered"] = month_of(data, "meter-main", "import", month) - sum(split.values())
    return split


@pytest.fixture(scope="module")
def report(site: Path) -> MonthReport:
    loaded = load_site(site, need_broker=False)
    ql = InfluxQL.for_site(loaded)
    try:
        # As seen on 1 December: July and the year to its end are complete.
        return build_month(loaded, ql, JULY, now=datetime(2026, 12, 1, tzinfo=TZ).timestamp())
    finally:
        ql.close()


def test_month_consumption_by_category_against_last_month_and_last_year(
    report: MonthReport, data: Month
) -> None:
    total = month_of(data, "meter-main", "import", JULY)
    assert report.total_kwh == approx(total)
    assert report.total_last_month_kwh == approx(month_of(data, "meter-main", "import", JUNE))
    assert report.total_last_year_kwh == approx(month_of(data, "meter-main", "import", JULY_2025))
    expected, june, last_year = (
        categories(data, JULY),
        categories(data, JUNE),
        categories(data, JULY_2025),
    )
    got = {c.use: c for c in report.categories}
    assert set(got) == set(expected)
    for use, kwh in expected.items():
        assert got[use].kwh == approx(kwh), use
        assert got[use].last_month_kwh == approx(june[use]), use
        assert got[use].last_year_kwh == approx(last_year[use]), use
    # The days add up to the month, category by category, the main meters' excess too.
    assert len(report.days) == 31
    for use, kwh in expected.items():
        assert sum(report.daily_kwh[use]) == approx(kwh), use
    assert report.daily_kwh["hvac"][0] == approx(data.july_daily["meter-ac"][date(2026, 7, 1)])
    assert [c.device for c in report.consumers[:2]] == ["meter-ac", "meter-light"]
    assert report.consumers[0].kwh == approx(month_of(data, "meter-ac", "import", JULY))
    assert report.after_hours_kwh == approx(data.july_after_hours_kwh)
    assert report.area_m2 == AREA
    assert report.headcount == HEADCOUNT
    assert report.kwh_per_m2 == approx(total / AREA)


def test_month_carbon_pv_water_pue_and_coverage(report: MonthReport, data: Month) -> None:
    total = month_of(data, "meter-main", "import", JULY)
    water = month_of(data, "water-main", "consumption", JULY)
    assert report.co2_kg["electricity"] == approx(total * CO2["electricity"])
    assert report.kgce["electricity"] == approx(total * KGCE["electricity"])
    assert report.co2_kg.get("water", 0.0) == 0.0
    assert report.factor_sets == ["cn-2023/east"]
    assert report.coverage == approx(1.0)
    generation = month_of(data, "pv-roof", "generation", JULY)
    export = month_of(data, "meter-main", "export", JULY)
    assert report.pv is not None
    assert report.pv.generation_kwh == approx(generation)
    assert report.pv.export_kwh == approx(export)
    assert report.pv.self_share == approx((generation - export) / generation)
    assert report.pv.yield_kwh_per_kwp == approx(generation / PV_KWP)
    assert report.pv.avoided_co2_kg == approx(generation * CO2["electricity"])
    assert report.water is not None
    assert report.water.m3 == approx(water)
    assert report.water.last_month_m3 == approx(month_of(data, "water-main", "consumption", JUNE))
    assert report.water.per_person_m3 == approx(water / HEADCOUNT)
    [room] = report.pue
    assert room.room == "srv"
    assert room.pue == approx(
        month_of(data, "meter-srv", "import", JULY) / month_of(data, "meter-ups", "import", JULY)
    )


def test_month_quota_pace_ac_compliance_and_alarms(report: MonthReport, data: Month) -> None:
    [quota] = report.quotas
    ytd = sum(month_of(data, "meter-main", "import", date(2026, m, 1)) for m in range(1, 8))
    days_so_far = (date(2026, 8, 1) - date(2026, 1, 1)).days
    assert quota.rule == "quota-year"
    assert quota.month_kwh == approx(month_of(data, "meter-main", "import", JULY))
    assert quota.month_limit_kwh == approx(QUOTA_KWH * 31 / 365)
    assert quota.year_to_date_kwh == approx(ytd)
    assert quota.year_limit_kwh == QUOTA_KWH
    assert quota.projected_year_kwh == approx(ytd * 365 / days_so_far)
    # ac-srv sits in an exempt zone: neither its hours nor its write-back count.
    assert report.ac.units == 2
    assert (report.ac.unit_hours, report.ac.compliant_hours) == (
        data.unit_hours,
        data.compliant_hours,
    )
    assert report.ac.unit_hours > report.ac.compliant_hours > 0
    assert (report.ac.enforcement_writes, report.ac.refused_writes) == (ENFORCED, REFUSED)
    seen = [(a.alarm_id, a.state, a.raised is None) for a in report.alarms]
    assert seen == [
        ("ac.ac-302", "closed", True),  # raised in June, closed on 3 July
        ("doors.door-archive", "acknowledged", False),
        ("meters.meter-lift", "closed", False),
    ]
    assert [a.open for a in report.alarms] == [False, True, False]


def _report(site: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["report", str(site), *args])
    out = capsys.readouterr()
    return code, out.out + out.err


def nonwhite(png: Path) -> float:
    """The share of a page's pixels that are not (near) white."""
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    return 1 - sum(histogram[245:]) / sum(histogram)


@pytest.mark.skipif(PDFTOPPM is None, reason="needs poppler-utils (apt-get install poppler-utils)")
def test_pdf_has_its_tables_in_chinese_and_every_chart_on_a_page(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.pdf"
    code, said = _report(
        site, "--month", "2026-07", "--format", "pdf", "--out", str(out), capsys=capsys
    )
    assert code == 0, said
    assert out.read_bytes().startswith(b"%PDF")
    subprocess.run(
        [str(PDFTOPPM), "-r", "40", "-png", str(out), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"), key=lambda p: int(p.stem.split("-")[1]))
    assert len(pages) >= 4  # the tables, then the three charts
    for page in pages[-3:]:
        assert nonwhite(page) > 0.15, f"{page.name} is blank or has an empty chart"
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    for words in ("能源月报", "照明插座", "空调", "特殊用电", "未分项", "定额执行", "本月告警"):
        assert words in text, words
    total = f"{month_of_total(site):,.0f} kWh"
    assert total in text


def month_of_total(site: Path) -> float:
    loaded = load_site(site, need_broker=False)
    ql = InfluxQL.for_site(loaded)
    try:
        series = ql.query(
            "SELECT sum(amount) FROM energy WHERE period = 'day' AND flow = 'import' AND "
            "\"use\" = 'total' AND time >= '2026-06-30T16:00:00Z' AND time < '2026-07-31T16:00:00Z'"
        )
    finally:
        ql.close()
    return float(series[0].values[0][1])


def test_html_opens_in_chromium_with_its_tables_and_charts(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_console_browser import CHROMEDRIVER, CHROMIUM, chromium

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.common.by import By

    out = tmp_path / "report.html"
    code, said = _report(site, "--month", "2026-07", "--out", str(out), capsys=capsys)
    assert code == 0, said
    html = out.read_text(encoding="utf-8")
    assert "http" not in html.replace("http-equiv", "")  # nothing loaded from elsewhere
    seen: dict[str, object] = {}
    with chromium(tmp_path / "profile", seen) as browser:
        browser.get(out.as_uri())
        assert "能源月报" in browser.title
        ids = {e.get_attribute("id") for e in browser.find_elements(By.TAG_NAME, "section")}
        assert {
            "summary",
            "categories",
            "quota",
            "consumers",
            "ac",
            "pv",
            "water",
            "pue",
            "alarms",
            "daily",
        } <= ids
        rows = browser.find_elements(By.CSS_SELECTOR, "table.categories tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == [
            "照明插座",
            "空调",
            "动力",
            "特殊用电",
            "未分项",
            "合计",
        ]
        assert len(browser.find_elements(By.CSS_SELECTOR, "table.daily tbody tr")) == 31
        images = browser.find_elements(By.TAG_NAME, "img")
        assert {i.get_attribute("id") for i in images} == {
            "chart-daily",
            "chart-share",
            "chart-compare",
        }
        for image in images:
            width = browser.execute_script("return arguments[0].naturalWidth", image)
            assert width > 300, image.get_attribute("id")
        # An alarm text is text, never markup.
        cells = browser.find_elements(By.CSS_SELECTOR, "table.alarms td")
        assert any(c.text.endswith("档案室门被强行打开 <b>") for c in cells)
        assert not browser.find_elements(By.CSS_SELECTOR, "table.alarms b")
    assert seen["driver_stopped"]


def test_english_report(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report-en.html"
    code, said = _report(
        site,
        "--month",
        "2026-07",
        "--lang",
        "en",
        "--building",
        "main",
        "--out",
        str(out),
        capsys=capsys,
    )
    assert code == 0, said
    html = out.read_text(encoding="utf-8")
    assert "energy report, July 2026" in html
    assert "Lighting and sockets" in html
    assert "照明插座" not in html


def test_year_table_as_csv_and_xlsx(
    site: Path, data: Month, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    electricity = sum(month_of(data, "meter-main", "import", date(2026, m, 1)) for m in range(1, 8))
    water = sum(month_of(data, "water-main", "consumption", date(2026, m, 1)) for m in range(1, 8))
    kgce = electricity * KGCE["electricity"]
    csv_path, xlsx_path = tmp_path / "t.csv", tmp_path / "t.xlsx"
    assert (
        _report(site, "--year", "2026", "--table", "csv", "--out", str(csv_path), capsys=capsys)[0]
        == 0
    )
    raw = csv_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert (
        _report(site, "--year", "2026", "--table", "xlsx", "--out", str(xlsx_path), capsys=capsys)[
            0
        ]
        == 0
    )
    from openpyxl import load_workbook

    sheet = load_workbook(xlsx_path).active
    assert sheet is not None
    cells = [[c for c in row] for row in sheet.iter_rows(values_only=True)]
    for table in (rows, cells):
        by_name = {str(r[0]): r for r in table if r}
        assert "2026年" in str(table[0][0])
        assert float(by_name["电力"][2]) == approx(electricity, abs=0.01)
        assert float(by_name["电力"][3]) == approx(kgce, abs=0.01)
        assert float(by_name["水"][2]) == approx(water, abs=0.01)
        assert by_name["天然气"][2] == "未计量"
        assert float(by_name["建筑面积"][1]) == AREA
        assert float(by_name["单位建筑面积能耗"][1]) == approx(kgce / AREA, abs=1e-3)
        assert float(by_name["人均综合能耗"][1]) == approx(kgce / HEADCOUNT, abs=1e-3)
        assert float(by_name["人均用水量"][1]) == approx(water / HEADCOUNT, abs=1e-3)


def test_readme_report_commands_run(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands of README.md's "Monthly report", on the test's site file."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Monthly report", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^\.venv/bin/guanjia (report .*)$", section, re.M)
    assert len(commands) >= 3, "README.md lost its report commands"
    monkeypatch.chdir(tmp_path)
    shutil.copy(site, tmp_path / "site.yaml")
    for command in commands:
        argv = shlex.split(command)
        assert main(argv) == 0, capsys.readouterr()
        written = capsys.readouterr().out.strip().removeprefix("wrote ")
        assert (tmp_path / written).stat().st_size > 500, command


def test_mistakes_are_one_line_before_anything_connects(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, said = _report(site, "--month", "2026-07", "--building", "annex", capsys=capsys)
    assert code == 1
    assert said.strip().count("\n") == 0
    assert f"{site}: accounts.buildings: --building 'annex'" in said
    assert "main" in said
    bare = tmp_path / "no-db.yaml"
    bare.write_text(
        re.sub(r"^influxdb:.*\n", "", site.read_text(encoding="utf-8"), flags=re.M),
        encoding="utf-8",
    )
    code, said = _report(bare, "--month", "2026-07", capsys=capsys)
    assert code == 1
    assert said.strip().count("\n") == 0
    assert f"{bare}: influxdb: the report reads the site's database" in said
    away = tmp_path / "away.yaml"
    away.write_text(
        re.sub(
            r"url: \"[^\"]+\"",
            f'url: "http://127.0.0.1:{free_port()}"',
            site.read_text(encoding="utf-8"),
        ),
        encoding="utf-8",
    )
    code, said = _report(away, "--month", "2026-07", capsys=capsys)
    assert code == 1
    assert said.strip().count("\n") == 0
    assert "cannot reach the database" in said
    code, said = _report(site, "--year", "2026", capsys=capsys)
    assert code == 2
    assert "--table csv or xlsx" in said


def test_a_whole_year_against_gbt51161_and_the_five_year_targets(
    site: Path, data: Month, capsys: pytest.CaptureFixture[str]
) -> None:
    """2025 is whole: its electricity intensity against the office table's row of the
    building (class B, government, hot summer cold winter) and each indicator against the
    2020 baseline's straight line to the 14th plan's 2025 targets."""
    from gateway.report.table import build_year

    factors = ROOT / "config" / "factors"
    standard = yaml.safe_load((factors / "gbt51161-2016.yaml").read_text(encoding="utf-8"))
    [row] = [
        r
        for r in standard["office_non_heating"]
        if (r["building_class"], r["owner"]) == ("B", "government")
        and "hot_summer_cold_winter" in r["zones"]
    ]
    plan = yaml.safe_load((factors / "fyp14-public-institutions.yaml").read_text(encoding="utf-8"))
    kgce_per_kwh = yaml.safe_load((factors / "cn-2023.yaml").read_text(encoding="utf-8"))[
        "carriers"
    ]["electricity"]["kgce"]["value"]
    electricity = sum(
        month_of(data, "meter-main", "import", date(2025, m, 1)) for m in range(1, 13)
    )
    water = sum(month_of(data, "water-main", "consumption", date(2025, m, 1)) for m in range(1, 13))
    loaded = load_site(site, need_broker=False)
    ql = InfluxQL.for_site(loaded)
    try:
        table = build_year(loaded, ql, 2025)
    finally:
        ql.close()
    assert table.months == 12
    [(name, limit)] = table.limits
    assert name == "main"
    assert limit.measured == approx(electricity / AREA)
    assert (limit.guide, limit.constraint) == (row["guide"], row["constraint"])
    assert limit.verdict == ("guide" if electricity / AREA <= row["guide"] else "constraint")
    assert limit.verified is False  # the table is flagged unverified in its file
    now = {
        "energy_per_m2": electricity * KGCE["electricity"] / AREA,
        "energy_per_person": electricity * KGCE["electricity"] / HEADCOUNT,
        "water_per_person": water / HEADCOUNT,
        "co2_per_m2": electricity * CO2["electricity"] / AREA,
    }
    base = {
        "energy_per_m2": BASELINE["electricity_kwh"] * kgce_per_kwh / AREA,
        "energy_per_person": BASELINE["electricity_kwh"] * kgce_per_kwh / HEADCOUNT,
        "water_per_person": BASELINE["water_m3"] / HEADCOUNT,
        "co2_per_m2": BASELINE["co2_t"] * 1000 / AREA,
    }
    paces = {p.indicator: p for _, p in table.targets}
    assert set(paces) == set(now)
    for indicator, value in now.items():
        p = paces[indicator]
        change = (value - base[indicator]) / base[indicator]
        assert p.now == approx(value), indicator
        assert p.baseline == approx(base[indicator]), indicator
        assert p.allowed == approx(plan["targets"][indicator])  # 2025: the whole target
        assert p.on_track == (change <= plan["targets"][indicator]), indicator
    # Both formats carry the comparison; a year not yet whole says why it has none.
    code, said = _report(
        site, "--year", "2025", "--table", "csv", "--out", str(site.parent / "y.csv"), capsys=capsys
    )
    assert code == 0, said
    text = (site.parent / "y.csv").read_text(encoding="utf-8-sig")
    assert "引导值" in text
    assert "单位建筑面积能耗（kgce/m²）" in text
    code, said = _report(
        site, "--year", "2026", "--table", "csv", "--out", str(site.parent / "z.csv"), capsys=capsys
    )
    assert code == 0, said
    assert "全年数据不全（7/12 个月）" in (site.parent / "z.csv").read_text(encoding="utf-8-sig")


def test_without_a_cjk_font_the_charts_are_in_english_and_the_command_says_why(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.report import charts

    monkeypatch.setattr(charts, "CJK_FONTS", (tmp_path / "no-such-font.ttc",))
    out = tmp_path / "r.html"
    code, said = _report(site, "--month", "2026-07", "--out", str(out), capsys=capsys)
    assert code == 0
    assert "apt-get install fonts-wqy-zenhei" in said
    html = out.read_text(encoding="utf-8")
    assert 'alt="Daily electricity by category"' in html  # the chart, in English
    assert "<h2>分项用电</h2>" in html  # the page itself keeps its language
