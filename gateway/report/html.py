"""The report as one self-contained HTML file: inline style, charts as PNG data URIs, every
text escaped (device ids and alarm texts come from the site and its devices)."""

from __future__ import annotations

import base64
from datetime import datetime
from html import escape

from gateway.report.charts import Chart
from gateway.report.model import MonthReport
from gateway.report.sections import Section, is_figure, sections, title
from gateway.report.texts import Lang, word

_STYLE = """
body{font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC","Microsoft YaHei",sans-serif;
margin:2em auto;max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #3a7dc9;padding-bottom:.3em}
h2{font-size:1.2em;margin-top:1.6em;color:#3a7dc9}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child,td.w{text-align:left}
th{background:#eef3fa}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#555;font-size:.9em}
"""


def _table(section: Section) -> str:
    parts = [f'<table class="{escape(section.key)}">']
    if section.header:
        heads = "".join(f"<th>{escape(h)}</th>" for h in section.header)
        parts.append(f"<thead><tr>{heads}</tr></thead>")
    parts.append("<tbody>")
    for row in section.rows:
        cells = (
            f"<td>{escape(c)}</td>" if is_figure(c) else f'<td class="w">{escape(c)}</td>'
            for c in row
        )
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _image(chart: Chart) -> str:
    data = base64.b64encode(chart.png()).decode("ascii")
    alt = escape(chart.title)
    return f'<img id="chart-{escape(chart.key)}" alt="{alt}" src="data:image/png;base64,{data}">'


def render(report: MonthReport, charts: list[Chart], lang: Lang, generated: datetime) -> str:
    by_key = {c.key: c for c in charts}
    head = escape(title(report, lang))
    body = [f"<h1>{head}</h1>"]
    for section in sections(report, lang):
        body.append(f'<section id="{escape(section.key)}"><h2>{escape(section.title)}</h2>')
        if section.rows:
            body.append(_table(section))
        if section.note:
            body.append(f'<p class="note">{escape(section.note)}</p>')
        chart = by_key.get(section.chart)
        if chart is not None:
            body.append(_image(chart))
        body.append("</section>")
    stamp = f"{word('generated', lang)} {generated.isoformat(timespec='minutes')} · Guanjia"
    body.append(f'<p class="note">{escape(stamp)}</p>')
    html_lang = "zh-CN" if lang == "zh" else "en"
    return (
        f'<!DOCTYPE html>\n<html lang="{html_lang}"><head><meta charset="utf-8">'
        f"<title>{head}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
