"""The report's charts as PNG images: matplotlib Figures drawn by the Agg canvas, never pyplot
(no display on an edge box, and no global figure list to leak).

Chinese labels need a CJK font: Debian's fonts-wqy-zenhei, found by its path. Without it the
charts are labelled in English and `font_warning()` says what to install."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure

from gateway.report.model import MonthReport
from gateway.report.texts import Lang, word

CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),  # Debian: fonts-wqy-zenhei
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # fonts-wqy-microhei
)
COLOURS = {
    "lighting_sockets": "#f2b134",
    "hvac": "#3a7dc9",
    "power": "#6aa84f",
    "special": "#a64d79",
    "other": "#999999",
    "unmetered": "#cccccc",
}
DPI = 110


def cjk_font() -> str | None:
    """The family name of the first CJK font installed (registered with matplotlib)."""
    for path in CJK_FONTS:
        if path.exists():
            font_manager.fontManager.addfont(str(path))
            return font_manager.FontProperties(fname=str(path)).get_name()
    return None


def font_warning() -> str:
    paths = ", ".join(str(p) for p in CJK_FONTS)
    return (
        f"no CJK font at {paths}: the charts are labelled in English; "
        "install Debian's fonts-wqy-zenhei (apt-get install fonts-wqy-zenhei) for Chinese"
    )


def chart_lang(lang: Lang) -> Lang:
    """The language the charts can be labelled in: Chinese only with a CJK font."""
    family = cjk_font()
    if family is not None:
        # WenQuanYi Zen Hei has one weight: matplotlib would warn at every bold title.
        logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
        matplotlib.rcParams["font.family"] = [family, "DejaVu Sans"]
        # The PDF embeds the TrueType glyphs (Type 42), which keeps Chinese text selectable.
        matplotlib.rcParams["pdf.fonttype"] = 42
        return lang
    return "en"  # the caller says why (font_warning), once


@dataclass(frozen=True, slots=True)
class Chart:
    key: str  # daily | share | compare
    title: str
    figure: Figure

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()


def _figure() -> Figure:
    return Figure(figsize=(9, 4.8), layout="constrained")


def daily(report: MonthReport, lang: Lang) -> Chart:
    """Bars of each day's electricity, stacked by category."""
    fig = _figure()
    ax = fig.add_subplot()
    bottom = [0.0] * len(report.days)
    labels = [str(d.day) for d in report.days]
    for use, values in report.daily_kwh.items():
        if not any(values):
            continue
        ax.bar(labels, values, bottom=bottom, label=word(use, lang), color=COLOURS.get(use))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("kWh")
    ax.set_xlabel(word("day", lang))
    ax.legend(loc="upper right", fontsize=8)
    title = word("daily", lang)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return Chart("daily", title, fig)


def share(report: MonthReport, lang: Lang) -> Chart:
    """The month's electricity by category, as a pie."""
    fig = _figure()
    ax = fig.add_subplot()
    parts = [c for c in report.categories if c.kwh > 0]
    if parts:
        ax.pie(
            [c.kwh for c in parts],
            labels=[word(c.use, lang) for c in parts],
            colors=[COLOURS.get(c.use, "#777777") for c in parts],
            autopct="%1.1f%%",
            startangle=90,
            counterclock=False,
        )
    else:
        ax.text(0.5, 0.5, word("none", lang), ha="center", va="center")
    title = word("share_chart", lang)
    ax.set_title(title)
    ax.axis("equal")
    return Chart("share", title, fig)


def compare(report: MonthReport, lang: Lang) -> Chart:
    """Each category this month, last month and in the same month last year."""
    fig = _figure()
    ax = fig.add_subplot()
    names = [word(c.use, lang) for c in report.categories]
    width = 0.27
    series = (
        ("this_month", [c.kwh for c in report.categories], "#3a7dc9"),
        ("last_month", [c.last_month_kwh or 0.0 for c in report.categories], "#9fc5e8"),
        ("last_year", [c.last_year_kwh or 0.0 for c in report.categories], "#b7b7b7"),
    )
    for i, (key, values, colour) in enumerate(series):
        xs = [x + (i - 1) * width for x in range(len(names))]
        ax.bar(xs, values, width, label=word(key, lang), color=colour)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("kWh")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    title = word("compare_chart", lang)
    ax.set_title(title)
    return Chart("compare", title, fig)


def charts(report: MonthReport, lang: Lang) -> list[Chart]:
    """Every chart of the report, labelled in `lang` where the fonts allow."""
    shown = chart_lang(lang)
    return [daily(report, shown), share(report, shown), compare(report, shown)]
