"""The report as a PDF, drawn by matplotlib's PdfPages: the charts are matplotlib figures
already, and tables drawn with it share their CJK font, so the PDF needs no second layout
engine (reportlab, WeasyPrint and their fonts and native libraries) on an edge box.

Pages: the tables, flowed down A4 pages, then one page per chart."""

from __future__ import annotations

import io
from datetime import datetime

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from gateway.report.charts import Chart
from gateway.report.model import MonthReport
from gateway.report.sections import Section, is_figure, sections, title
from gateway.report.texts import Lang, word

A4 = (8.27, 11.69)  # inches, portrait
MARGIN = 0.6
ROW = 0.24  # a table row's height, inches
HEADING = 0.45
FONT = 8.5


def _save(pdf: PdfPages, figure: Figure) -> None:
    pdf.savefig(figure)  # type: ignore[no-untyped-call]  # unannotated in matplotlib


def _height(section: Section) -> float:
    rows = len(section.rows) + (1 if section.header else 0)
    return HEADING + rows * ROW + (0.3 if section.note else 0.0) + 0.15


class _Pages:
    """A4 pages filled from the top; a section that does not fit starts the next page."""

    def __init__(self, pdf: PdfPages, heading: str) -> None:
        self.pdf = pdf
        self.heading = heading
        self.figure: Figure | None = None
        self.y = 0.0  # inches from the top of the page

    def _new(self) -> Figure:
        self.flush()
        self.figure = Figure(figsize=A4)
        self.figure.text(MARGIN / A4[0], 1 - 0.45 / A4[1], self.heading, fontsize=13, weight="bold")
        self.y = 0.9
        return self.figure

    def flush(self) -> None:
        if self.figure is not None:
            _save(self.pdf, self.figure)
            self.figure = None

    def add(self, section: Section) -> None:
        need = _height(section)
        usable = A4[1] - MARGIN
        figure = self.figure
        if figure is None or self.y + min(need, usable - 0.9) > usable:
            figure = self._new()
        width, height = A4
        figure.text(
            MARGIN / width,
            1 - (self.y + 0.25) / height,
            section.title,
            fontsize=11,
            weight="bold",
            color="#3a7dc9",
        )
        self.y += HEADING
        rows = section.rows
        while rows:
            room = max(int((usable - self.y) / ROW) - (1 if section.header else 0), 1)
            chunk, rows = rows[:room], rows[room:]
            self._table(figure, section, chunk)
            if rows:  # the rest on the next page, under the same heading
                figure = self._new()
        if section.note:
            figure.text(
                MARGIN / width,
                1 - (self.y + 0.18) / height,
                section.note,
                fontsize=FONT,
                color="#555555",
            )
            self.y += 0.3
        self.y += 0.15

    def _table(self, figure: Figure, section: Section, rows: list[list[str]]) -> None:
        width, height = A4
        lines = len(rows) + (1 if section.header else 0)
        self.y += lines * ROW
        ax = figure.add_axes(
            (MARGIN / width, 1 - self.y / height, 1 - 2 * MARGIN / width, lines * ROW / height)
        )
        ax.axis("off")
        table = ax.table(
            cellText=rows,
            colLabels=section.header or None,
            cellLoc="right",
            loc="upper center",
            bbox=Bbox.from_bounds(0.0, 0.0, 1.0, 1.0),
        )
        table.auto_set_font_size(False)
        table.set_fontsize(FONT)
        for (row, col), cell in table.get_celld().items():
            cell.set_edgecolor("#cccccc")
            if col == 0 or not is_figure(cell.get_text().get_text()):
                cell.get_text().set_horizontalalignment("left")
            if section.header and row == 0:
                cell.set_facecolor("#eef3fa")


def render(report: MonthReport, charts: list[Chart], lang: Lang, generated: datetime) -> bytes:
    buffer = io.BytesIO()
    heading = title(report, lang)
    with PdfPages(buffer, metadata={"Title": heading, "Creator": "Guanjia"}) as pdf:
        pages = _Pages(pdf, heading)
        for section in sections(report, lang):
            pages.add(section)
        stamp = f"{word('generated', lang)} {generated.isoformat(timespec='minutes')} · Guanjia"
        if pages.figure is not None:
            pages.figure.text(MARGIN / A4[0], 0.3 / A4[1], stamp, fontsize=7, color="#777777")
        pages.flush()
        for chart in charts:
            _save(pdf, chart.figure)
    return buffer.getvalue()
