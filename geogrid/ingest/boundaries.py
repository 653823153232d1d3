"""Load admin boundaries (town, village) and villager-group polygons into PostGIS.

Geometries are validated and repaired (``make_valid``, polygon parts only, slivers
dropped), converted to EPSG:4326, and villages that overlap each other are refused with
the list of offending pairs. Writes are one transaction per file (upsert by code).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Connection, Engine, text

from geogrid.errors import InvalidInput

Level = Literal["town", "village", "group"]

#: Headers recognised for each field, by level (lower-cased, spaces removed).
_FIELDS: dict[str, tuple[str, ...]] = {
    "code": ("code", "区划代码", "代码", "编码", "行政区划代码", "统计用区划代码", "village_code"),
    "name": ("name", "名称", "村名", "镇名", "行政区名称"),
    "parent_code": ("town_code", "parent_code", "上级代码", "所属镇代码", "county_code"),
    "county_name": ("county_name", "县名", "区县"),
    "village_code": ("village_code", "村代码", "所属村代码", "村编码"),
    "group_no": ("group_no", "组号", "组", "村民小组", "小组编号"),
}

#: Parts smaller than this (m²) after repair are slivers and are dropped.
SLIVER_AREA_M2 = 1.0
#: Overlap between two villages larger than this (m²) is refused.
OVERLAP_TOLERANCE_M2 = 1.0


@dataclass
class BoundaryReport:
    """What an import did."""

    level: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    repaired: list[str] = field(default_factory=list)


def _find(columns: list[str], key: str) -> str | None:
    wanted = _FIELDS[key]
    norm = {re.sub(r"\s+", "", c).lower(): c for c in columns}
    for cand in wanted:
        if cand.lower() in norm:
            return norm[cand.lower()]
    return None


def read_boundaries(
    path: Path, *, layer: str | None = None, crs: str | None = None
) -> gpd.GeoDataFrame:
    """Read a boundary file (GeoPackage, Shapefile, GeoJSON) into EPSG:4326.

    Raises
    ------
    InvalidInput
        When the file has no CRS and none is given, or cannot be read.
    """
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio raises several unrelated types
        raise InvalidInput(f"cannot read {path}: {exc}") from None
    if gdf.crs is None:
        if crs is None:
            raise InvalidInput(f"{path} has no coordinate reference system; pass --crs")
        gdf = gdf.set_crs(crs)
    elif crs is not None and gdf.crs != gpd.GeoSeries(crs=crs).crs:
        raise InvalidInput(f"{path} declares {gdf.crs.to_string()} but --crs says {crs}")
    return gdf.to_crs(4326)


def repair_polygons(geoms: gpd.GeoSeries) -> tuple[gpd.GeoSeries, list[int]]:
    """Valid MultiPolygons: ``make_valid``, polygon parts only, slivers dropped.

    Returns the repaired series and the positions that needed repair.

    >>> from shapely import Polygon
    >>> bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    >>> out, fixed = repair_polygons(gpd.GeoSeries([bowtie], crs=4326))
    >>> out.iloc[0].geom_type, fixed
    ('MultiPolygon', [0])
    """
    arr = geoms.values.to_numpy() if hasattr(geoms.values, "to_numpy") else np.asarray(geoms)
    invalid = ~shapely.is_valid(arr)
    fixed = shapely.make_valid(arr)
    metric = gpd.GeoSeries(fixed, crs=geoms.crs).to_crs(geoms.estimate_utm_crs())
    out = []
    repaired = [int(i) for i in np.flatnonzero(invalid)]
    for i, (geom, mgeom) in enumerate(zip(fixed, metric.values, strict=True)):
        parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
        mparts = [p for p in shapely.get_parts(mgeom) if p.geom_type in ("Polygon", "MultiPolygon")]
        keep = [p for p, m in zip(parts, mparts, strict=False) if m.area >= SLIVER_AREA_M2]
        if len(keep) != len(parts) and i not in repaired:
            repaired.append(i)
        polys = shapely.get_parts(shapely.union_all(keep)) if keep else []
        out.append(shapely.MultiPolygon(list(polys)) if len(polys) else None)
    return gpd.GeoSeries(out, index=geoms.index, crs=geoms.crs), sorted(repaired)


def overlapping_pairs(gdf: gpd.GeoDataFrame, key: str) -> list[tuple[str, str, float]]:
    """Pairs of features that overlap by more than :data:`OVERLAP_TOLERANCE_M2`."""
    metric = gdf.to_crs(gdf.estimate_utm_crs())
    tree = shapely.STRtree(metric.geometry.values)
    left, right = tree.query(metric.geometry.values, predicate="intersects")
    pairs = []
    for a, b in zip(left, right, strict=True):
        if a >= b:
            continue
        area = metric.geometry.iloc[a].intersection(metric.geometry.iloc[b]).area
        if area > OVERLAP_TOLERANCE_M2:
            pairs.append((str(gdf[key].iloc[a]), str(gdf[key].iloc[b]), round(float(area), 1)))
    return pairs


def import_boundaries(
    engine: Engine,
    path: Path,
    *,
    level: Level,
    layer: str | None = None,
    crs: str | None = None,
    parent_code: str | None = None,
) -> BoundaryReport:
    """Validate, repair and upsert one boundary file at ``level``.

    Parameters
    ----------
    engine
        The PostGIS store.
    path
        GeoPackage, Shapefile or GeoJSON.
    level
        ``town`` or ``village`` (admin areas) or ``group`` (villager-group polygons).
    layer
        Layer name inside a multi-layer file; default: the layer named after the level
        (``town``, ``villages``, ``groups``) when present, else the first.
    parent_code
        For villages without a parent column: the town code they belong to.
    """
    if layer is None:
        import pyogrio

        names = [str(n) for n in pyogrio.list_layers(path)[:, 0]]
        preferred = {"town": "town", "village": "villages", "group": "groups"}[level]
        layer = preferred if preferred in names else names[0]
    gdf = read_boundaries(path, layer=layer, crs=crs)
    report = BoundaryReport(level=level, read=len(gdf))
    cols = list(gdf.columns)
    if level == "group":
        vcol, ncol = _find(cols, "village_code"), _find(cols, "group_no")
        if vcol is None or ncol is None:
            raise InvalidInput(
                f"{path}: group polygons need a village code and a group number column "
                f"(found {', '.join(c for c in cols if c != 'geometry')})"
            )
    else:
        code_col = _find(cols, "code")
        if code_col is None or _find(cols, "name") is None:
            raise InvalidInput(
                f"{path}: {level} boundaries need a code and a name column "
                f"(found {', '.join(c for c in cols if c != 'geometry')})"
            )
        bad = [c for c in gdf[code_col].astype(str) if not re.fullmatch(r"\d{12}", c)]
        if bad:
            raise InvalidInput(
                f"{path}: {level} codes must be 12-digit official codes; bad: {bad[:5]}"
            )
        dup = gdf[code_col].astype(str)
        dup = sorted(set(dup[dup.duplicated()]))
        if dup:
            raise InvalidInput(f"{path}: duplicate {level} codes: {dup[:10]}")
    geoms, repaired = repair_polygons(gdf.geometry)
    gdf = gdf.set_geometry(geoms)
    empty = gdf.geometry.isna()
    if empty.any():
        rows = [int(i) + 1 for i in np.flatnonzero(empty.to_numpy())]
        raise InvalidInput(f"{path}: features with no usable polygon at rows {rows[:10]}")
    report.repaired = [f"row {i + 1}" for i in repaired]
    if level == "village":
        pairs = overlapping_pairs(gdf, str(code_col))
        if pairs:
            listed = "; ".join(f"{a} × {b} ({m} m²)" for a, b, m in pairs[:20])
            raise InvalidInput(f"{path}: villages overlap: {listed}", detail={"pairs": pairs})
    with engine.begin() as conn:
        _check_parents(conn, gdf, level, path, cols, parent_code)
        if level == "group":
            for row in gdf.itertuples(index=False):
                res = conn.execute(
                    text(
                        "INSERT INTO villager_groups (village_code, group_no, name, geom, "
                        "territory_source) VALUES (:v, :n, :name, "
                        "ST_GeomFromWKB(:g, 4326), 'supplied') "
                        "ON CONFLICT (village_code, group_no) DO UPDATE SET name = "
                        "EXCLUDED.name, geom = EXCLUDED.geom, territory_source = 'supplied', "
                        "updated_at = now() WHERE (villager_groups.name, villager_groups.geom, "
                        "villager_groups.territory_source) IS DISTINCT FROM "
                        "(EXCLUDED.name, EXCLUDED.geom, 'supplied') RETURNING (xmax = 0)"
                    ),
                    {
                        "v": str(getattr(row, str(vcol))),
                        "n": int(getattr(row, str(ncol))),
                        "name": getattr(row, "name", None),
                        "g": row.geometry.wkb,
                    },
                )
                _count(report, res.scalar())
            return report
        ncol_name = _find(cols, "name")
        pcol = _find(cols, "parent_code")
        county_name_col = _find(cols, "county_name")
        for row in gdf.itertuples(index=False):
            code = str(getattr(row, str(code_col)))
            parent: str | None
            if level == "town":
                parent = code[:6]
                county_name = getattr(row, county_name_col) if county_name_col else None
                conn.execute(
                    text(
                        "INSERT INTO admin_areas (code, level, name) VALUES (:c, 'county', :n) "
                        "ON CONFLICT (code) DO UPDATE SET name = COALESCE(:n2, admin_areas.name)"
                    ),
                    {"c": parent, "n": county_name or parent, "n2": county_name},
                )
            else:
                parent = str(getattr(row, pcol)) if pcol else (parent_code or code[:9] + "000")
            res = conn.execute(
                text(
                    "INSERT INTO admin_areas (code, level, name, parent_code, geom) "
                    "VALUES (:c, :lvl, :n, :p, ST_GeomFromWKB(:g, 4326)) "
                    "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, level = "
                    "EXCLUDED.level, parent_code = EXCLUDED.parent_code, geom = EXCLUDED.geom, "
                    "updated_at = now() WHERE (admin_areas.name, admin_areas.level, "
                    "admin_areas.parent_code, admin_areas.geom) IS DISTINCT FROM "
                    "(EXCLUDED.name, EXCLUDED.level, EXCLUDED.parent_code, EXCLUDED.geom) "
                    "RETURNING (xmax = 0)"
                ),
                {
                    "c": code,
                    "lvl": level,
                    "n": str(getattr(row, str(ncol_name))),
                    "p": parent,
                    "g": row.geometry.wkb,
                },
            )
            _count(report, res.scalar())
    return report


def _check_parents(
    conn: Connection,
    gdf: gpd.GeoDataFrame,
    level: str,
    path: Path,
    cols: list[str],
    parent_code: str | None,
) -> None:
    """Refuse rows whose parent (town of a village, village of a group) is not loaded."""
    if level == "town":
        return
    if level == "group":
        wanted = set(gdf[str(_find(cols, "village_code"))].astype(str))
        kind = "village"
    else:
        pcol = _find(cols, "parent_code")
        if pcol:
            wanted = set(gdf[pcol].astype(str))
        elif parent_code:
            wanted = {parent_code}
        else:
            wanted = {str(c)[:9] + "000" for c in gdf[str(_find(cols, "code"))]}
        kind = "town"
    known = set(
        conn.execute(
            text("SELECT code FROM admin_areas WHERE level = :k AND code = ANY(:c)"),
            {"k": kind, "c": sorted(wanted)},
        ).scalars()
    )
    missing = sorted(wanted - known)
    if missing:
        raise InvalidInput(
            f"{path}: unknown {kind} codes {missing[:10]}; import the {kind} boundaries first"
        )


def _count(report: BoundaryReport, inserted: bool | None) -> None:
    """``RETURNING (xmax = 0)``: true inserted, false updated, no row: unchanged."""
    if inserted is None:
        report.unchanged += 1
    elif inserted:
        report.inserted += 1
    else:
        report.updated += 1
