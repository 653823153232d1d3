"""A plan's basic grids as a GeoPackage, CSV or Excel file, with names, not bare codes.

Every export has one row per basic grid: code, name, village name, households, population,
deviation from the target, band class (within / near the edge / outside, the colours of
the pages), lock, member groups, the staff at its posts and the flags in words. Texts come
from the caller's message catalogue (``geogrid.i18n.messages(lang)``), so every export
speaks the page's language.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import shapely
from sqlalchemy import Connection, text

__all__ = ["EXPORT_FIELDS", "band_class", "export_frame", "to_csv", "to_gpkg", "to_xlsx"]

#: Export columns: field name (GeoPackage) → message key of its header (CSV, Excel).
EXPORT_FIELDS: dict[str, str] = {
    "code": "planner.col.code",
    "name": "planner.col.name",
    "village": "planner.col.village",
    "households": "planner.col.households",
    "population": "planner.col.population",
    "deviation": "planner.col.deviation",
    "band": "planner.col.band",
    "locked": "planner.col.locked",
    "groups": "planner.col.groups",
    "staff": "planner.col.staff",
    "flags": "planner.col.flags",
}

#: Band colours, the same on every page (CONTRACTS.md).
BAND_COLOURS = {"within": "#2e7d32", "near": "#f9a825", "outside": "#c62828"}

_SQL = """
SELECT g.code, g.name, v.name AS village, g.households, g.population, g.locked,
       g.metrics->'groups' AS groups, g.metrics->'flags' AS flags,
       ST_AsBinary(g.geom) AS wkb,
       COALESCE((SELECT json_agg(json_build_object('role', a.role, 'post', a.post, 'name', s.name)
                                 ORDER BY array_position(ARRAY['leader','guide','info_officer'],
                                                         a.role::text), a.post)
                   FROM staff_assignments a JOIN staff s ON s.id = a.staff_id
                  WHERE a.grid_id = g.id), '[]'::json) AS staff
  FROM grids g LEFT JOIN grids v ON v.plan_id = g.plan_id AND v.level = 2
                                 AND v.code = g.village_code
 WHERE g.plan_id = :p AND g.level = 3
 ORDER BY g.code
"""


def _msg(messages: Mapping[str, str], key: str, **kw: Any) -> str:
    """``messages[key]`` with ``{name}`` placeholders filled (the key itself if unknown)."""
    text_ = messages.get(key, key)
    for k, v in kw.items():
        text_ = text_.replace("{" + k + "}", str(v))
    return text_


def band_class(households: int, lo: int, hi: int) -> Literal["within", "near", "outside"]:
    """Within the band, near its edge (within 10% of min or max), or outside it.

    >>> [band_class(h, 100, 200) for h in (99, 100, 109, 150, 181, 200, 201)]
    ['outside', 'near', 'near', 'within', 'near', 'near', 'outside']
    """
    if households < lo or households > hi:
        return "outside"
    if households <= lo * 1.1 or households >= hi * 0.9:
        return "near"
    return "within"


def export_frame(
    conn: Connection, plan_id: int, messages: Mapping[str, str]
) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """The plan's basic grids as an export table, and the plan's header.

    Parameters
    ----------
    messages
        ``{key: text}`` in the export's language (``planner.*`` and ``common.*`` keys).

    Returns
    -------
    frame : GeoDataFrame
        Columns :data:`EXPORT_FIELDS` and the geometry (EPSG:4326).
    header : dict
        ``name``, ``status``, ``min``, ``max``, ``target`` of the plan.

    Raises
    ------
    geogrid.errors.NotFound
        Unknown plan.
    """
    from geogrid.plans import get_plan

    info = get_plan(conn, plan_id)
    lo = int(info.params.get("min", 100))
    hi = int(info.params.get("max", 200))
    target = int(info.params.get("target", 150))

    def msg(key: str, **kw: Any) -> str:
        return _msg(messages, key, **kw)

    rows = []
    geoms = []
    for r in conn.execute(text(_SQL), {"p": plan_id}):
        staff = "; ".join(
            f"{msg('common.role.' + s['role'])}{msg('common.post.' + s['post'])} {s['name']}"
            for s in r.staff or []
        )
        rows.append(
            {
                "code": r.code,
                "name": r.name or r.code,
                "village": r.village or r.code[:12],
                "households": int(r.households),
                "population": int(r.population),
                "deviation": int(r.households) - target,
                "band": msg("planner.band." + band_class(int(r.households), lo, hi)),
                "locked": msg("common.yes") if r.locked else msg("common.no"),
                "groups": msg("planner.groups_list", groups="、".join(r.groups or [])),
                "staff": staff,
                "flags": "、".join(msg("planner.flag." + f) for f in r.flags or []),
            }
        )
        geoms.append(shapely.from_wkb(bytes(r.wkb)) if r.wkb is not None else None)
    frame = gpd.GeoDataFrame(rows, columns=list(EXPORT_FIELDS), geometry=geoms, crs=4326)
    header = {"name": info.name, "status": info.status, "min": lo, "max": hi, "target": target}
    return frame, header


def to_csv(frame: gpd.GeoDataFrame, messages: Mapping[str, str]) -> bytes:
    """UTF-8 CSV with a byte-order mark (Excel opens it in the right encoding)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([messages.get(k, k) for k in EXPORT_FIELDS.values()])
    for row in frame[list(EXPORT_FIELDS)].itertuples(index=False):
        w.writerow(list(row))
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_gpkg(frame: gpd.GeoDataFrame, header: Mapping[str, Any]) -> bytes:
    """A GeoPackage with one layer ``grids`` (EPSG:4326) holding the export table."""
    with tempfile.TemporaryDirectory(prefix="geogrid-export-") as tmp:
        path = Path(tmp) / "plan.gpkg"
        frame.to_file(path, layer="grids", driver="GPKG", engine="pyogrio")
        return path.read_bytes()


def to_xlsx(
    frame: gpd.GeoDataFrame, header: Mapping[str, Any], messages: Mapping[str, str]
) -> bytes:
    """An Excel workbook: title, band legend, then one row per grid coloured by its band."""
    import xlsxwriter

    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    sheet = book.add_worksheet(messages.get("planner.export.sheet", "grids")[:31])
    bold = book.add_format({"bold": True})
    title = book.add_format({"bold": True, "font_size": 14})
    fills = {k: book.add_format({"bg_color": c, "font_color": "#ffffff"})
             for k, c in BAND_COLOURS.items()}  # fmt: skip

    def msg(key: str, **kw: Any) -> str:
        return _msg(messages, key, **kw)

    sheet.write(0, 0, msg("planner.export.title", name=header["name"]), title)
    sheet.write(1, 0, msg("common.band.range", min=header["min"], max=header["max"]))
    for i, band in enumerate(("within", "near", "outside")):
        sheet.write(2, i, msg("planner.band." + band), fills[band])
    heads = [messages.get(k, k) for k in EXPORT_FIELDS.values()]
    sheet.write_row(4, 0, heads, bold)
    band_col = list(EXPORT_FIELDS).index("band")
    for n, row in enumerate(frame[list(EXPORT_FIELDS)].itertuples(index=False)):
        values = list(row)
        sheet.write_row(5 + n, 0, values)
        hh = int(values[list(EXPORT_FIELDS).index("households")])
        sheet.write(5 + n, band_col, values[band_col],
                    fills[band_class(hh, int(header["min"]), int(header["max"]))])  # fmt: skip
    sheet.autofilter(4, 0, 4 + len(frame), len(heads) - 1)
    sheet.freeze_panes(5, 2)
    sheet.set_column(0, 0, 17)
    sheet.set_column(1, 2, 18)
    sheet.set_column(3, len(heads) - 1, 12)
    book.close()
    return buf.getvalue()
