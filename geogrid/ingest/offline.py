"""Read a household register for partitioning from files alone (no database).

``geogrid partition --households FILE`` takes the same files as ``geogrid import
households`` and reads them through the same code: :func:`~geogrid.ingest.readers.read_register`
(formats, encodings, header row, ``--map``), :func:`~geogrid.ingest.load.prepare_parallel`
(village by code or name, group from its column or the address, coordinates in any
supported CRS converted to EPSG:4326, swapped/out-of-county points, duplicates) — the
villages it resolves against come from the villages file instead of the store.

Rows without coordinates are placed as the importer places them (an address point of the
same file, then the group's polygon); a row the file cannot place otherwise goes to the
point of its group's most central located household, else inside its village polygon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geogrid import coords
from geogrid.errors import InvalidInput
from geogrid.ingest.geocode import Gazetteer, geocode
from geogrid.ingest.load import (
    VillageIndex,
    file_address_points,
    prepare_parallel,
    register_coordinates,
    town_name_variants,
    village_name_variants,
)
from geogrid.ingest.readers import read_register

__all__ = ["FileRegister", "read_households_file", "village_index"]


@dataclass
class FileRegister:
    """Households read from a file, ready for :func:`partition.partition_plan`.

    Attributes
    ----------
    households
        ``register_no, village_code, group_no, population, precision`` and a Point
        (EPSG:4326) per household.
    rejects
        Rejected rows under the file's own headers with ``source_row`` and ``reason``.
    description
        One line on what was read (format, encoding, header row, columns).
    """

    households: gpd.GeoDataFrame
    rejects: pd.DataFrame
    description: str


def village_index(
    villages: gpd.GeoDataFrame,
    groups: gpd.GeoDataFrame | None = None,
    towns: gpd.GeoDataFrame | None = None,
) -> VillageIndex:
    """A :class:`~geogrid.ingest.load.VillageIndex` built from village polygons.

    Parameters
    ----------
    villages
        ``code`` (12 digits), optional ``name`` and ``parent_code``/``town_code``.
    groups
        Optional group polygons (``village_code, group_no``): the villages' known groups.
    towns
        Optional town polygons (``code``, ``name``) naming the villages' towns.
    """
    v = villages.to_crs(4326)
    codes = v["code"].astype(str).tolist()
    names = (v["name"] if "name" in v.columns else v["code"]).astype(str).tolist()
    parent = next((c for c in ("parent_code", "town_code") if c in v.columns), None)
    town_of = {
        c: (str(v[parent].iloc[i]) if parent else c[:9] + "000") for i, c in enumerate(codes)
    }
    town_names: dict[str, str] = {}
    if towns is not None and "code" in towns.columns and "name" in towns.columns:
        town_names = dict(zip(towns["code"].astype(str), towns["name"].astype(str), strict=True))
    by_name: dict[str, set[str]] = {}
    for code, name in zip(codes, names, strict=True):
        for variant in village_name_variants(name):
            by_name.setdefault(variant, set()).add(code)
    town_by_name: dict[str, str] = {}
    for tcode, tname in town_names.items():
        for variant in town_name_variants(tname):
            town_by_name.setdefault(variant, tcode)
    polygons = dict(zip(codes, v.geometry, strict=True))
    county = shapely.union_all(np.asarray(list(polygons.values()), dtype=object))
    shapely.prepare(county)
    known: dict[str, frozenset[int]] = {}
    if groups is not None and len(groups):
        g = groups.dropna(subset=["group_no"])
        for code, nos in g.groupby(g["village_code"].astype(str))["group_no"]:
            known[str(code)] = frozenset(int(x) for x in nos)
    return VillageIndex(
        codes=frozenset(codes),
        by_name={k: tuple(sorted(s)) for k, s in by_name.items()},
        town_of=town_of,
        town_by_name=town_by_name,
        names={c: (town_names.get(town_of[c], ""), n) for c, n in zip(codes, names, strict=True)},
        polygons=polygons,
        county=county,
        groups=known,
    )


def _locate_villages(raw: pd.DataFrame, index: VillageIndex) -> pd.DataFrame:
    """Rows naming no village get the code of the village polygon holding their point."""
    if {"village", "village_code"} & set(raw.columns) or not {"lon", "lat"} <= set(raw.columns):
        return raw
    lon = pd.to_numeric(raw["lon"], errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(raw["lat"], errors="coerce").to_numpy(dtype=float)
    codes = np.full(len(raw), None, dtype=object)
    ok = ~(np.isnan(lon) | np.isnan(lat))
    for code, poly in index.polygons.items():
        hit = ok & (codes == None)  # noqa: E711 - elementwise on an object array
        if hit.any():
            inside = shapely.contains_xy(poly, lon[hit], lat[hit])
            codes[np.flatnonzero(hit)[inside]] = code
    return raw.assign(village_code=codes)


def _place_missing(good: pd.DataFrame, groups: Mapping[tuple[str, int], BaseGeometry]) -> None:
    """Place rows without coordinates in place (see the module docstring)."""
    todo = good["lon"].isna()
    good["precision"] = pd.Series("exact", index=good.index, dtype=object).where(~todo, None)
    if not todo.any():
        return
    own = file_address_points(good.assign(geocode_precision=good["precision"]))
    gaz = Gazetteer(
        dict(zip(own["address_norm"], zip(own["lon"], own["lat"], strict=True), strict=True)),
        groups,
        {},
    )
    placed = geocode(good.loc[todo], gaz)
    hit = placed["precision"] != "failed"
    idx = placed.index[hit]
    good.loc[idx, ["lon", "lat"]] = placed.loc[hit, ["lon", "lat"]].to_numpy()
    good.loc[idx, "precision"] = placed.loc[hit, "precision"].to_numpy()
    located = good[good["lon"].notna()]
    centre: dict[tuple[str, int], tuple[float, float]] = {}
    for (v, g), frame in located.groupby(["village_code", "group_no"]):
        xy = frame[["lon", "lat"]].to_numpy(dtype=float)
        medoid = xy[np.argmin(((xy - xy.mean(axis=0)) ** 2).sum(axis=1))]
        centre[(str(v), int(float(str(g))))] = (float(medoid[0]), float(medoid[1]))
    for i in good.index[good["lon"].isna()]:
        key = (str(good.at[i, "village_code"]), int(float(str(good.at[i, "group_no"]))))
        if key in centre:
            good.at[i, "lon"], good.at[i, "lat"] = centre[key]
            good.at[i, "precision"] = "group-centre"


def read_households_file(
    path: Path,
    villages: gpd.GeoDataFrame,
    groups: gpd.GeoDataFrame | None = None,
    *,
    towns: gpd.GeoDataFrame | None = None,
    crs: str = "wgs84",
    column_map: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    layer: str | int | None = None,
    encoding: str | None = None,
    new_groups: bool = True,
) -> FileRegister:
    """Read a household register file for the partitioner, as the importer reads it.

    Parameters
    ----------
    path
        CSV (UTF-8, GBK …), Excel, GeoPackage, Shapefile (GBK or UTF-8), GeoJSON.
    villages, groups, towns
        The villages (and optional group polygons and towns) the rows may name.
    crs
        Coordinate system of rows that name none: ``wgs84``, ``cgcs2000``, ``gcj02``,
        ``bd09``.
    column_map, sheet, layer, encoding
        As for ``geogrid import households`` (``--map`` and friends).
    new_groups
        Accept group numbers the group polygons do not know (they get a derived territory).

    Returns
    -------
    FileRegister

    Raises
    ------
    geogrid.errors.InvalidInput
        An unreadable file, no recognisable header, a ``--map`` naming no column, an
        unknown CRS, or a file in which no row is usable.
    """
    default_crs = coords.normalize_crs(crs)
    reg = read_register(path, sheet=sheet, encoding=encoding, column_map=column_map, layer=layer)
    index = village_index(villages, groups, towns)
    raw = _locate_villages(register_coordinates(reg), index)
    good, rejects = prepare_parallel(raw, index, default_crs=default_crs, new_groups=new_groups)
    polys: dict[tuple[str, int], BaseGeometry] = {}
    if groups is not None and len(groups):
        g4326 = groups.to_crs(4326).dropna(subset=["group_no"])
        rows = zip(g4326["village_code"], g4326["group_no"], g4326.geometry, strict=True)
        for v, n, geom in rows:
            key = (str(v), int(n))
            polys[key] = geom if key not in polys else shapely.union(polys[key], geom)
    _place_missing(good, polys)
    lost = good["lon"].isna()
    if lost.any():
        extra = raw.loc[good.index[lost]].copy()
        extra.insert(0, "reason", "no coordinates: cannot be placed from this file")
        rejects = pd.concat([rejects, extra])
        good = good[~lost]
    originals = reg.originals(rejects.index)
    originals.insert(1, "reason", rejects["reason"].to_numpy())
    if not len(good):
        first = originals["reason"].iloc[0] if len(originals) else "the file has no rows"
        raise InvalidInput(f"{path}: no usable household row; first reason: {first}")
    households = gpd.GeoDataFrame(
        {
            "register_no": good["register_no"].astype(str).to_numpy(),
            "village_code": good["village_code"].astype(str).to_numpy(),
            "group_no": good["group_no"].astype("int64").to_numpy(),
            "population": good["members"].astype("int64").to_numpy(),
            "precision": good["precision"].to_numpy(),
        },
        geometry=gpd.points_from_xy(good["lon"], good["lat"]),
        crs=4326,
    )
    return FileRegister(households, originals.sort_values("source_row"), reg.describe())
