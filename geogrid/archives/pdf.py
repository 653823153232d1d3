"""The printable PDF of an archive unit: WeasyPrint with Noto Sans CJK embedded, a map of
the unit drawn as SVG, every resource a ``data:`` URI (the printing package's helpers)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import shapely.geometry

from geogrid.archives.data import Records
from geogrid.archives.workbook import SHEETS, cell_value
from geogrid.printing.pdf import FONT_FAMILY, data_uri, render_pdf
from geogrid.printing.svgmap import Layer, MapFrame, Style, svg_map

__all__ = ["archive_html", "archive_pdf"]

TEMPLATES = Path(__file__).parent / "templates"
MAP_W, MAP_H = 182.0, 110.0
#: The monospace CJK face of the record listings (Debian fonts-noto-cjk, like FONT_FAMILY).
MONO_FAMILY = "Noto Sans Mono CJK SC"
#: Widest column of a listing and widest line, in half-width columns (A4 at 7 pt).
MAX_COLUMN, LINE = 40, 150
#: Between two records on one listing line.
SPLIT = "  │  "
#: The columns each PDF section prints (a subset of the workbook's, to fit A4).
PDF_COLUMNS = {
    "住户": ("register_no", "head", "members", "group_no", "house_no", "natural_village"),
    "成员": ("register_no", "name", "relation", "sex", "birth", "id_number", "phone"),
    "走访": ("visited_on", "register_no", "worker", "people_met", "tags", "notes"),
    "事件": ("case_no", "category", "status_label", "reported_at", "description"),
}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
    )


def _map(rec: Records) -> str | None:
    """The unit's map as a ``data:`` SVG: the village's grids, the unit on top."""
    shapes = [(shapely.geometry.shape(g["geometry"]), g["name"]) for g in rec.grid_outlines]
    focus = shapely.geometry.shape(rec.outline) if rec.outline else None
    extent = [focus] if focus is not None else [s for s, _ in shapes]
    if not extent:
        return None
    frame = MapFrame.fit(extent, MAP_W, MAP_H)
    layers = [Layer(Style(fill="#eef3f8", stroke="#1f4e9c", width=0.3), shapes, label_size=2.6)]
    if focus is not None:
        layers.append(Layer(Style(fill="#1f4e9c", stroke="#0d2b5e", width=0.8, opacity=0.35),
                            [(focus, None)]))  # fmt: skip
    # the households as one shape (one SVG path, not one a household: WeasyPrint's time
    # grows with the nodes it draws), dots of 3 segments a quarter circle
    dots = shapely.points([(h["lon"], h["lat"]) for h in rec.households if h["lon"] is not None])
    if len(dots):
        points = [(shapely.union_all(shapely.buffer(dots, 0.00006, quad_segs=3)), None)]
        layers.append(Layer(Style(fill="#c62828", stroke="#c62828", width=0.1), points))
    svg = svg_map(frame, layers, north="北", units=("米", "千米"))
    return data_uri(svg.encode("utf-8"), "image/svg+xml")


def _short(value: Any, key: str) -> str:
    v = cell_value(value)
    if v is None:
        return ""
    v = str(v).replace("\n", " ")
    return v[:10] if key in ("reported_at", "due_at", "closed_at") else v


def _width(text: str) -> int:
    """Columns ``text`` takes in a monospace CJK font (wide characters take two).

    >>> _width("R001 张三")
    9
    """
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


@lru_cache(maxsize=4096)
def _char_width(c: str) -> int:
    return 2 if unicodedata.east_asian_width(c) in "WF" else 1


def _fit(text: str, width: int) -> str:
    """``text`` cut (with …) or padded to ``width`` columns."""
    used = _width(text)
    if used > width:
        used, n = 0, 0
        for c in text:
            if used + _char_width(c) > width - 1:
                break
            used, n = used + _char_width(c), n + 1
        text, used = text[:n] + "…", used + 1
    return text + " " * (width - used)


def _listing(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> str:
    """A plain-text table: a header line, a rule and the records, columns aligned for a
    monospace CJK font. Long values are cut at :data:`MAX_COLUMN` columns (the workbook
    keeps them whole). Records narrow enough go two to a line (read left to right, the
    header repeated over each half): WeasyPrint's time grows with the lines it lays out
    (~0.7 ms each, ~20× less than a table row), and the households' and members' listings,
    most of a box, are half as long."""
    cells = [[_short(r.get(k), k) for k, _ in columns] for r in rows]
    widths = [
        min(MAX_COLUMN, max([_width(h)] + [_width(c[i]) for c in cells]))
        for i, (_, h) in enumerate(columns)
    ]
    one = sum(widths) + 2 * (len(widths) - 1)
    per = 2 if 2 * one + _width(SPLIT) <= LINE and len(cells) > 1 else 1

    def line(values: list[str]) -> str:
        return "  ".join(_fit(v, w) for v, w in zip(values, widths, strict=True))

    records = [line(c) for c in cells]
    head = line([h for _, h in columns])
    lines = [
        SPLIT.join([head] * per).rstrip(),
        "─" * min(LINE, per * one + (per - 1) * _width(SPLIT)),
    ]
    lines += [SPLIT.join(records[i : i + per]).rstrip() for i in range(0, len(records), per)]
    return "\n".join(lines)


def archive_html(rec: Records, *, by: str | None = None, now: dt.datetime | None = None) -> str:
    """The archive's HTML (what :func:`archive_pdf` prints)."""
    sections = []
    for name, (attr, columns) in SHEETS.items():
        keep = [(k, h) for k, h in columns if k in PDF_COLUMNS[name]]
        rows = getattr(rec, attr)
        sections.append({"title": name, "count": len(rows), "text": _listing(keep, rows)})
    return _env().get_template("archive.html").render(
        font=FONT_FAMILY, mono=MONO_FAMILY, unit=rec.unit, rec=rec, team=rec.team,
        sections=sections, map_svg=_map(rec), map_width=MAP_W, map_height=MAP_H, by=by,
        generated=(now or dt.datetime.now().astimezone()).strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip


def archive_pdf(rec: Records, *, by: str | None = None, now: dt.datetime | None = None) -> bytes:
    """The archive as a printable A4 PDF (Chinese text in Noto Sans CJK, embedded)."""
    return render_pdf(archive_html(rec, by=by, now=now))
