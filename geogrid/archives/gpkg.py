"""The GeoPackage of an archive unit: its map data in CGCS2000 (EPSG:4490).

Layers: ``outline`` (the grid or group; a household's grid), ``grids`` (the village's
grids), ``households`` (points: register number, house number, size, group, grid — no
names or phones, whatever the archive's masking) and ``cases`` (points: number, category,
status, dates). Geometries are stored in EPSG:4326, which CGCS2000 matches to centimetres:
the transform is a relabelling, done by pyproj all the same (one transformer a process:
building one takes ~50 ms, four a box cost a town export seconds). SQLite's syncs are off
while writing (``OGR_SQLITE_SYNCHRONOUS``): a GeoPackage is a file written once, whose
hash the manifest records, and four fsyncs a layer tripled its time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from geogrid.archives.data import Records

__all__ = ["CRS", "LAYERS", "write_gpkg"]

#: CGCS2000 geographic.
CRS = 4490
LAYERS = ("outline", "grids", "households", "cases")
_HOUSEHOLD_FIELDS = ("register_no", "house_no", "members", "group_no", "grid_code", "precision")
_CASE_FIELDS = ("case_no", "category", "status", "reported_at", "closed_at", "grid_code")


@lru_cache(maxsize=1)
def _to_cgcs2000() -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(4326, CRS, always_xy=True)


@lru_cache(maxsize=1)
def _no_sync() -> None:
    import pyogrio

    pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF"})


def _frame(rows: list[dict[str, Any]], geometry: list[Any]) -> Any:
    import geopandas as gpd
    import numpy as np
    import shapely

    tr = _to_cgcs2000()

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack((x, y))

    return gpd.GeoDataFrame(rows, geometry=shapely.transform(geometry, move), crs=CRS)


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
    _no_sync()
    for name, frame in layers.items():
        frame.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
    return list(layers)
