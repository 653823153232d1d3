"""The GeoPackage of an archive unit: its map data in CGCS2000 (EPSG:4490).

Layers: ``outline`` (the grid or group; a household's grid), ``grids`` (the village's
grids), ``households`` (points: register number, house number, size, group, grid — no
names or phones, whatever the archive's masking) and ``cases`` (points: number, category,
status, dates). Geometries are stored in EPSG:4326, which CGCS2000 matches to centimetres:
the transform is a relabelling, done by pyproj all the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geogrid.archives.data import Records

__all__ = ["CRS", "LAYERS", "write_gpkg"]

#: CGCS2000 geographic.
CRS = 4490
LAYERS = ("outline", "grids", "households", "cases")
_HOUSEHOLD_FIELDS = ("register_no", "house_no", "members", "group_no", "grid_code", "precision")
_CASE_FIELDS = ("case_no", "category", "status", "reported_at", "closed_at", "grid_code")


def _frame(rows: list[dict[str, Any]], geometry: list[Any]) -> Any:
    import geopandas as gpd

    return gpd.GeoDataFrame(rows, geometry=geometry, crs=4326).to_crs(CRS)


def write_gpkg(rec: Records, path: Path) -> list[str]:
    """Write the unit's layers to ``path``; returns the layers written (empty ones are
    skipped: a GeoPackage layer needs a geometry type)."""
    from shapely.geometry import Point, shape

    u = rec.unit
    layers: dict[str, Any] = {}
    if rec.outline:
        layers["outline"] = _frame(
            [{"kind": u.kind, "code": u.code, "name": u.name}], [shape(rec.outline)]
        )
    if rec.grid_outlines:
        layers["grids"] = _frame(
            [{"code": g["code"], "name": g["name"]} for g in rec.grid_outlines],
            [shape(g["geometry"]) for g in rec.grid_outlines],
        )
    hh = [h for h in rec.households if h["lon"] is not None]
    if hh:
        layers["households"] = _frame(
            [{k: h[k] for k in _HOUSEHOLD_FIELDS} for h in hh],
            [Point(h["lon"], h["lat"]) for h in hh],
        )
    cs = [c for c in rec.cases if c["lon"] is not None]
    if cs:
        layers["cases"] = _frame(
            [{k: c[k] for k in _CASE_FIELDS} for c in cs], [Point(c["lon"], c["lat"]) for c in cs]
        )
    if path.exists():
        path.unlink()
    for name, frame in layers.items():
        frame.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
    return list(layers)
