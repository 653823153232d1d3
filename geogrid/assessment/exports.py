"""Exports of indicators and round results: Excel (XlsxWriter) and a printable PDF report
(WeasyPrint, the Noto Sans CJK font embedded and subset, nothing fetched but ``data:``).

Rates are written as fractions with a percentage format in Excel and as percentages with
one decimal in the PDF; a value whose denominator was 0 is an empty cell (Excel) or "—"
(PDF), never 0. Each file ends with the formulas of the indicators it shows.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any, Final

import jinja2

from geogrid.assessment.indicators import INDICATORS, Indicator
from geogrid.printing.pdf import FONT_FAMILY, render_pdf

__all__ = ["indicators_pdf", "indicators_xlsx", "round_pdf", "round_xlsx"]

LEVEL_NAMES: Final = {
    "town": "镇（街道）",
    "village": "村（社区）",
    "grid": "网格",
    "staff": "人员",
}
KIND_NAMES: Final = {"monthly": "月度", "quarterly": "季度", "yearly": "年终"}
#: the PDF report's page (A3 landscape: twenty indicator columns fit)
TEMPLATE: Final = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
@page { size: A3 landscape; margin: 12mm 12mm 14mm;
        @bottom-right { content: "第 " counter(page) " 页 / 共 " counter(pages) " 页";
                        font-family: "{{ font }}", sans-serif; font-size: 8pt; color: #607d8b; } }
body { font-family: "{{ font }}", sans-serif; color: #1d2327; font-size: 8pt; margin: 0; }
h1 { font-size: 16pt; margin: 0 0 2mm; }
.meta { color: #455a64; margin-bottom: 4mm; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 0.2mm solid #b0bec5; padding: 1mm 1.2mm; }
th { background: #e8f5e9; font-weight: bold; }
td.num { text-align: right; white-space: nowrap; }
td:nth-child(-n+3) { white-space: nowrap; }
td.null { color: #90a4ae; text-align: center; }
tr { break-inside: avoid; }
thead { display: table-header-group; }
.grade { font-weight: bold; }
h2 { font-size: 11pt; margin: 6mm 0 2mm; }
.formulas td:first-child { white-space: nowrap; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<div class="meta">{{ meta | join("　·　") }}</div>
<table>
<thead><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}
<tr>{% for cell in row %}
{% if cell is none %}<td class="null">—</td>
{% elif cell is number %}<td class="num">{{ cell }}</td>
{% else %}<td>{{ cell }}</td>{% endif %}
{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% if not rows %}<p>所选范围内没有数据。</p>{% endif %}
<h2>{{ notes_title }}</h2>
<table class="formulas">
<tbody>
{% for name, text in notes %}<tr><td>{{ name }}</td><td>{{ text }}</td></tr>{% endfor %}
</tbody>
</table>
</body>
</html>
"""


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE)


def _label(ind: Indicator) -> str:
    return f"{ind.name}（{ind.unit}）"


def _shown(ind: Indicator, value: Any) -> Any:
    """A value as the PDF shows it: rates in percent with one decimal."""
    if value is None:
        return None
    return round(float(value) * 100, 1) if ind.unit == "%" else value


def _pdf(title: str, meta: list[str], header: list[str], rows: list[list[Any]],
         notes: list[tuple[str, str]]) -> bytes:  # fmt: skip
    html = _template().render(
        font=FONT_FAMILY, title=title, meta=meta, header=header, rows=rows,
        notes_title="指标说明", notes=notes,
    )  # fmt: skip
    return render_pdf(html)


def _notes(keys: list[str] | None = None) -> list[tuple[str, str]]:
    return [(i.name, i.formula) for i in INDICATORS if keys is None or i.key in keys]


class _Book:
    """An XlsxWriter workbook in memory with the formats the exports use."""

    def __init__(self) -> None:
        import xlsxwriter

        self.buf = io.BytesIO()
        self.wb = xlsxwriter.Workbook(self.buf, {"in_memory": True})
        self.head = self.wb.add_format({"bold": True, "bg_color": "#E8F5E9", "border": 1,
                                        "text_wrap": True, "valign": "top"})  # fmt: skip
        self.pct = self.wb.add_format({"num_format": "0.0%"})
        self.num = self.wb.add_format({"num_format": "0.##"})

    def sheet(self, name: str, header: list[str]) -> Any:
        ws = self.wb.add_worksheet(name)
        ws.write_row(0, 0, header, self.head)
        ws.freeze_panes(1, 2)
        ws.set_column(0, 1, 18)
        ws.set_column(2, len(header), 11)
        return ws

    def notes(self, keys: list[str] | None = None) -> None:
        ws = self.wb.add_worksheet("指标说明")
        ws.write_row(0, 0, ["指标", "键", "单位", "计算公式"], self.head)
        ws.set_column(0, 0, 18)
        ws.set_column(1, 1, 24)
        ws.set_column(3, 3, 100)
        row = 1
        for i in INDICATORS:
            if keys is None or i.key in keys:
                ws.write_row(row, 0, [i.name, i.key, i.unit, i.formula])
                row += 1

    def value(self, ws: Any, row: int, col: int, ind: Indicator | None, value: Any) -> None:
        if value is None:
            ws.write_blank(row, col, None)
        elif ind is not None and ind.unit == "%":
            ws.write_number(row, col, float(value), self.pct)
        elif isinstance(value, int | float):
            ws.write_number(row, col, float(value), self.num)
        else:
            ws.write_string(row, col, str(value))

    def close(self) -> bytes:
        self.wb.close()
        return self.buf.getvalue()


def _period(table: dict[str, Any]) -> str:
    p = table["period"]
    return f"{p['from']} 至 {p['to']}"


def indicators_xlsx(table: dict[str, Any], level: str) -> bytes:
    """The indicator table (``/api/assessment/indicators``' answer) as a workbook."""
    book = _Book()
    header = ["代码", LEVEL_NAMES.get(level, level), "户数", *(_label(i) for i in INDICATORS)]
    ws = book.sheet("考核指标", header)
    for r, row in enumerate(table["rows"], start=1):
        ws.write_string(r, 0, str(row["code"]))
        ws.write_string(r, 1, str(row["name"]))
        book.value(ws, r, 2, None, row["households"])
        for c, ind in enumerate(INDICATORS, start=3):
            book.value(ws, r, c, ind, row[ind.key])
    ws.write_string(len(table["rows"]) + 2, 0, f"统计期间：{_period(table)}")
    book.notes()
    return book.close()


def indicators_pdf(table: dict[str, Any], level: str, area: str) -> bytes:
    """The indicator table as a printable report."""
    header = ["代码", LEVEL_NAMES.get(level, level), "户数", *(_label(i) for i in INDICATORS)]
    rows = [
        [row["code"], row["name"], row["households"],
         *(_shown(i, row[i.key]) for i in INDICATORS)]
        for row in table["rows"]
    ]  # fmt: skip
    meta = [
        f"统计期间：{_period(table)}", f"范围：{area or '全部'}",
        f"层级：{LEVEL_NAMES.get(level, level)}", "比率以百分数表示，“—”表示分母为 0",
    ]  # fmt: skip
    return _pdf("网格化服务管理考核指标", meta, header, rows, _notes())


def _round_header(res: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    items = res["scheme"]["items"]
    head = ["排名", "代码", "名称", "综合得分", "等级", "较上期"]
    head += [f"{i['name']}（权重 {float(i['weight']):g}）" for i in items]
    return head, items


def _round_rows(res: dict[str, Any], items: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [x["rank"], x["target_code"], x["name"], x["score"], x["grade"], x.get("change"),
         *(x["item_scores"].get(i["key"]) for i in items)]
        for x in res["results"]
    ]  # fmt: skip


def _round_title(res: dict[str, Any]) -> str:
    r = res["round"]
    return f"{r['scheme_name']} · {r['label']} {KIND_NAMES.get(r['kind'], r['kind'])}考核结果"


def _round_meta(res: dict[str, Any]) -> list[str]:
    r = res["round"]
    t = res["scheme"]["thresholds"]
    status = "已发布" if r["status"] == "published" else "草稿（未发布，数据可能变化）"
    grades = "，".join(f"{g} ≥ {float(t[g]):g}" for g in ("A", "B", "C", "D")) + "，其余 E"
    return [f"考核期间：{r['period_start']} 至 {r['period_end']}", status, f"等级：{grades}"]


def round_xlsx(res: dict[str, Any]) -> bytes:
    """A round's results (``rounds.ranking``' answer) as a workbook: results, then the
    indicator values of every target, then the formulas."""
    book = _Book()
    head, items = _round_header(res)
    ws = book.sheet("考核结果", head)
    for r, row in enumerate(_round_rows(res, items), start=1):
        for c, value in enumerate(row):
            book.value(ws, r, c, None, value)
    ws.write_string(len(res["results"]) + 2, 0, "；".join([_round_title(res), *_round_meta(res)]))
    vs = book.sheet("指标值", ["代码", "名称", *(_label(i) for i in INDICATORS)])
    for r, x in enumerate(res["results"], start=1):
        vs.write_string(r, 0, x["target_code"])
        vs.write_string(r, 1, x["name"])
        for c, ind in enumerate(INDICATORS, start=2):
            book.value(vs, r, c, ind, x["values"].get(ind.key))
    book.notes()
    return book.close()


def round_pdf(res: dict[str, Any]) -> bytes:
    """A round's results as a printable report with the scheme's items and grades."""
    head, items = _round_header(res)
    keys = [i["key"] for i in items]
    return _pdf(_round_title(res), _round_meta(res), head, _round_rows(res, items), _notes(keys))
