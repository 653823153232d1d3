"""The Excel workbook of an archive unit (XlsxWriter): one sheet per kind of record."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from geogrid.archives.data import Records

__all__ = ["SHEETS", "cell_value", "workbook_bytes", "write_table"]

#: sheet name → (record list attribute, [(column key, header)])
SHEETS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "住户": ("households", [
        ("register_no", "户号"), ("head", "户主"), ("members", "人口"), ("group_no", "组"),
        ("house_no", "门牌号"), ("natural_village", "自然村"),
        ("grid_code", "网格编码"), ("precision", "定位精度"), ("lon", "经度"), ("lat", "纬度"),
    ]),
    "成员": ("members", [
        ("register_no", "户号"), ("name", "姓名"), ("relation", "与户主关系"), ("sex", "性别"),
        ("birth", "出生"), ("id_number", "公民身份号码"), ("phone", "联系电话"),
        ("residence", "居住状态"),
    ]),
    "走访": ("visits", [
        ("visited_on", "走访日期"), ("register_no", "户号"), ("worker", "走访人"),
        ("people_met", "接待人"), ("tags", "需求标签"), ("notes", "情况记录"),
        ("follow_up", "需跟进"), ("follow_up_due", "跟进期限"),
    ]),
    "事件": ("cases", [
        ("case_no", "事件编号"), ("category", "类别"), ("status_label", "状态"),
        ("reported_at", "上报时间"), ("due_at", "办理期限"), ("closed_at", "结案时间"),
        ("grid_code", "网格编码"), ("description", "描述"),
    ]),
}  # fmt: skip


def cell_value(value: Any) -> Any:
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return value


def write_table(
    book: Any, name: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]
) -> Any:
    """Add sheet ``name``: a bold header row, one row per record, a filter, frozen header."""
    sheet = book.add_worksheet(name)
    head = book.add_format({"bold": True, "bg_color": "#DDE6F2", "border": 1})
    widths = [max(6, len(h) * 2 + 2) for _, h in columns]
    for c, (_, header) in enumerate(columns):
        sheet.write_string(0, c, header, head)
    for r, row in enumerate(rows, start=1):
        for c, (key, _) in enumerate(columns):
            value = cell_value(row.get(key))
            if value is None:
                continue
            if isinstance(value, int | float):
                sheet.write_number(r, c, value)
            else:
                s = str(value)
                sheet.write_string(r, c, s)  # never a formula: text stays text
                widths[c] = min(60, max(widths[c], len(s) + 2))
    for c, w in enumerate(widths):
        sheet.set_column(c, c, w)
    sheet.freeze_panes(1, 0)
    if columns:
        sheet.autofilter(0, 0, max(len(rows), 1), len(columns) - 1)
    return sheet


def workbook_bytes(rec: Records) -> bytes:
    """The unit's workbook: 概况 (summary), then 住户, 成员, 走访, 事件 and, for a grid's
    box, 网格组织 (the team)."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False})
    u = rec.unit
    summary: list[dict[str, Any]] = [
        {"k": "档案类别", "v": u.title}, {"k": "名称", "v": u.name}, {"k": "编码", "v": u.code},
        {"k": "村", "v": u.village or u.village_code}, {"k": "镇", "v": u.town or ""},
        {"k": "户数", "v": len(rec.households)}, {"k": "人数", "v": len(rec.members)},
        {"k": "走访记录", "v": len(rec.visits)}, {"k": "事件", "v": len(rec.cases)},
        {"k": "个人信息", "v": "完整（已审计）" if rec.unmasked else "已脱敏"},
    ]  # fmt: skip
    write_table(book, "概况", [("k", "项目"), ("v", "内容")], summary)
    for name, (attr, columns) in SHEETS.items():
        write_table(book, name, columns, getattr(rec, attr))
    if rec.team is not None:
        t = rec.team
        rows = [
            {"part": p["role_label"], "name": p["name"], "title": f"{p['post']}岗",
             "phone": p["office_phone"]}
            for p in t["posts"]
        ] + [
            {"part": m["role_label"], "name": m["name"], "title": m["title"],
             "phone": m["office_phone"]}
            for m in t["members"]
        ]  # fmt: skip
        rows.append({"part": "党组织", "name": t["party_org"]["name"]})
        rows.append(
            {"part": "信息档案", "name": t["archive"]["no"], "title": t["archive"]["place"]}
        )
        if t["completeness"]:
            rows.append({"part": "五个一完整度", "name": f"{t['completeness']['parts']}/5"})
        cols = [
            ("part", "组成"),
            ("name", "姓名/名称"),
            ("title", "职务/说明"),
            ("phone", "办公电话"),
        ]
        write_table(book, "网格组织", cols, rows)
    book.close()
    return buf.getvalue()
