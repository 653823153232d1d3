"""Public entry points: :func:`generate_town` and :func:`generate_county`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from geogrid.errors import InvalidInput
from geogrid.sample import names as nm
from geogrid.sample.events import build_cases, build_inspection_points, build_key_units
from geogrid.sample.people import build_people
from geogrid.sample.register import build_register
from geogrid.sample.world import METRIC_CRS, World, WorldParams, build_world
from geogrid.sample.writers import write_csv, write_gpkg, write_xlsx

__all__ = [
    "FORMATS",
    "SampleCounty",
    "SampleFiles",
    "SampleTown",
    "generate_county",
    "generate_town",
]

log = logging.getLogger(__name__)

#: Register formats that can be written (CSV is always written; ``xlsx`` is optional).
FORMATS = ("xlsx", "csv")

#: Explanatory sheet of households.xlsx.
_NOTES = (
    ("说明", "本表为演示用虚构数据，由 geogrid 样例生成器生成，不含任何真实个人信息。"),
    (
        "坐标系",
        "WGS84：GPS 采集；GCJ02：手机地图（火星坐标）；CGCS2000：国家2000坐标；空：未采集。",
    ),
    ("户号", "户号在本村内唯一，不同村之间可能重复。"),
    ("组", "村民小组，填写形式不统一（如 3、三组、第3组、3队）。"),
)


@dataclass(frozen=True)
class SampleFiles:
    """Paths of the generated files and counts of what they hold."""

    out: Path
    boundaries: Path
    groups: Path
    households_xlsx: Path | None
    households_csv: Path
    households_utf8_csv: Path
    cadres: Path
    cases: Path
    key_units: Path
    inspection_points: Path
    truth_households: Path
    truth_groups: Path
    members: Path
    special: Path
    county_code: str
    county_name: str
    village_codes: tuple[str, ...]
    grouped_village_codes: tuple[str, ...]
    n_households: int
    n_groups: int
    n_cases: int
    n_key_units: int
    n_inspection_points: int
    n_members: int
    n_special: int
    seconds: float

    def summary(self) -> dict[str, str | int]:
        """Counts for a summary table."""
        return {
            "villages": len(self.village_codes),
            "villages with group polygons": len(self.grouped_village_codes),
            "villager groups": self.n_groups,
            "households": self.n_households,
            "cases": self.n_cases,
            "key units": self.n_key_units,
            "inspection points": self.n_inspection_points,
            "household members": self.n_members,
            "special population": self.n_special,
        }


@dataclass(frozen=True)
class SampleTown(SampleFiles):
    """A generated town (:func:`generate_town`)."""

    town_code: str
    town_name: str
    hole_village_code: str
    multipart_village_code: str


@dataclass(frozen=True)
class SampleCounty(SampleFiles):
    """A generated county of several towns (:func:`generate_county`)."""

    town_codes: tuple[str, ...]


Step = Callable[[str], None]


def generate_town(
    seed: int,
    out: Path | str,
    *,
    formats: Sequence[str] = FORMATS,
    step: Step | None = None,
) -> SampleTown:
    """Generate a deterministic sample township (镇) with 10-14 villages, ~10k households.

    Parameters
    ----------
    seed
        Seed of the :func:`numpy.random.default_rng` generator; the same seed gives
        byte-identical files.
    out
        Output folder (created if needed); files there with the same names are replaced.
    formats
        Register formats: ``("xlsx", "csv")`` (default) or ``("csv",)`` to skip Excel.
    step
        Optional callback receiving a short description of each stage (for progress).

    Returns
    -------
    SampleTown
        Paths of the files written plus the codes of the town and its villages.

    Notes
    -----
    Files written in ``out`` (all coordinates EPSG:4326 except where the register says):
    ``boundaries.gpkg`` (layers ``town``, ``villages``), ``groups.gpkg`` (layer ``groups``,
    about a third of the villages), ``households.xlsx`` / ``households.csv`` (GBK) /
    ``households_utf8.csv`` (UTF-8 with BOM), ``cadres.csv``, ``cases.csv``,
    ``key_units.csv``, ``inspection_points.csv``, synthetic people in ``members.csv`` and
    ``special.csv`` (:mod:`geogrid.sample.people`) and ground truth in ``truth/``
    (``households.gpkg``, ``groups.gpkg``).
    """
    rng = np.random.default_rng(seed)
    params = WorldParams(
        villages_per_town=(int(rng.integers(10, 15)),),
        households_per_town=(int(rng.integers(9400, 11400)),),
    )
    files, world = _generate(rng, params, Path(out), formats, step)
    town = world.towns[0]
    by_index = {v.index: v.code for v in world.villages}
    return SampleTown(
        **{f.name: getattr(files, f.name) for f in fields(SampleFiles)},
        town_code=town.code,
        town_name=town.name,
        hole_village_code=by_index.get(town.hole_village, "")
        if town.hole_village is not None
        else "",
        multipart_village_code=(
            by_index[town.multipart_village] if town.multipart_village is not None else ""
        ),
    )


def generate_county(
    seed: int,
    out: Path | str,
    villages: int = 250,
    households: int = 300_000,
    *,
    formats: Sequence[str] = ("csv",),
    step: Step | None = None,
) -> SampleCounty:
    """Generate a deterministic sample county: several towns built like :func:`generate_town`.

    Parameters
    ----------
    seed
        Seed of the random generator (same seed, same bytes).
    out
        Output folder; the same file set as :func:`generate_town`, with one ``town`` row
        per town in ``boundaries.gpkg``.
    villages
        Number of villages (about 12 per town).
    households
        Approximate number of households (a few percent are lost where a settlement
        would cross a village boundary).
    formats
        ``("csv",)`` (default: Excel adds ~30 s at 300k households) or ``("xlsx", "csv")``.
    step
        Optional progress callback.
    """
    if villages < 1 or households < villages * 50:
        raise InvalidInput(
            "a county needs at least one village and 50 households per village",
            detail={"villages": villages, "households": households},
        )
    rng = np.random.default_rng(seed)
    n_towns = max(1, round(villages / 12))
    if n_towns > len(nm.TOWN_NAMES):
        raise InvalidInput(f"at most {len(nm.TOWN_NAMES) * 12} villages are supported")
    vpt = np.full(n_towns, villages // n_towns)
    vpt[: villages % n_towns] += 1
    weights = vpt * rng.uniform(0.9, 1.1, n_towns)
    hpt = np.floor(weights / weights.sum() * households * 1.03).astype(int)
    params = WorldParams(
        villages_per_town=tuple(int(v) for v in vpt),
        households_per_town=tuple(int(h) for h in hpt),
        spacing=100.0,
        first_town_no=101,
    )
    files, world = _generate(rng, params, Path(out), formats, step)
    return SampleCounty(
        **{f.name: getattr(files, f.name) for f in fields(SampleFiles)},
        town_codes=tuple(t.code for t in world.towns),
    )


# --------------------------------------------------------------------------- internals


def _to_wgs84() -> Transformer:
    return Transformer.from_crs(METRIC_CRS, 4326, always_xy=True)


def _lonlat(tr: Transformer, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = tr.transform(xy[:, 0], xy[:, 1])
    return np.asarray(lon), np.asarray(lat)


def _project(tr: Transformer, geoms: Sequence[shapely.Geometry]) -> np.ndarray:
    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    multi = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geoms]
    return np.asarray(shapely.transform(np.asarray(multi, dtype=object), fn))


def _generate(
    rng: np.random.Generator,
    params: WorldParams,
    out: Path,
    formats: Sequence[str],
    step: Step | None,
) -> tuple[SampleFiles, World]:
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise InvalidInput(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    say = step or (lambda _msg: None)
    t0 = time.perf_counter()
    world_rng, reg_rng, ev_rng = rng.spawn(3)
    world = build_world(world_rng, params, say)
    tr = _to_wgs84()
    out.mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)

    say("writing boundaries")
    mesh = world.mesh
    land = world.cell_village >= 0
    town_geoms = [
        mesh.union(np.flatnonzero((world.cell_town == t.index) & land)) for t in world.towns
    ]
    vil_sorted = sorted(world.villages, key=lambda v: v.code)
    vil_geoms = [mesh.union(v.cells) for v in vil_sorted]
    crs = "EPSG:4326"
    town_gdf = gpd.GeoDataFrame(
        {
            "code": [t.code for t in world.towns],
            "name": [t.name for t in world.towns],
            "county_code": params.county_code,
            "county_name": params.county_name,
        },
        geometry=_project(tr, town_geoms),
        crs=crs,
    )
    vil_gdf = gpd.GeoDataFrame(
        {
            "code": [v.code for v in vil_sorted],
            "name": [v.name for v in vil_sorted],
            "town_code": [world.towns[v.town].code for v in vil_sorted],
        },
        geometry=_project(tr, vil_geoms),
        crs=crs,
    )
    town_gdf = town_gdf.sort_values("code", ignore_index=True)
    write_gpkg(out / "boundaries.gpkg", [("town", town_gdf), ("villages", vil_gdf)])

    say("writing villager groups")
    rows, geoms = [], []
    hh_counts = np.bincount(
        world.hh_village * 1000 + world.hh_group, minlength=len(world.villages) * 1000
    )
    for v in vil_sorted:
        g_of = world.cell_group[v.cells]
        for k in range(1, v.n_groups + 1):
            rows.append(
                {
                    "village_code": v.code,
                    "group_no": k,
                    "name": f"{nm.cn_number(k)}组",
                    "households": int(hh_counts[v.index * 1000 + k]),
                }
            )
            geoms.append(mesh.union(v.cells[g_of == k]))
    groups_all = gpd.GeoDataFrame(rows, geometry=_project(tr, geoms), crs=crs)
    groups_all["group_no"] = groups_all["group_no"].astype("int32")
    grouped = _choose_grouped(world_rng, world)
    write_gpkg(out / "truth" / "groups.gpkg", [("groups", groups_all)])
    sel = groups_all[groups_all["village_code"].isin(grouped)].drop(columns=["households"])
    write_gpkg(out / "groups.gpkg", [("groups", sel.reset_index(drop=True))])

    say("writing the household register")
    lon, lat = _lonlat(tr, world.hh_xy)
    register, truth = build_register(reg_rng, world, lon, lat)
    truth_gdf = gpd.GeoDataFrame(
        truth.drop(columns=["lon", "lat"]),
        geometry=shapely.points(truth["lon"].to_numpy(), truth["lat"].to_numpy()),
        crs=crs,
    )
    truth_gdf["group_no"] = truth_gdf["group_no"].astype("int32")
    write_gpkg(out / "truth" / "households.gpkg", [("households", truth_gdf)])
    csv_reg = register.copy()
    for col in ("经度", "纬度"):
        csv_reg[col] = [("" if np.isnan(x) else f"{x:.6f}") for x in register[col].to_numpy()]
    write_csv(out / "households.csv", csv_reg, encoding="gbk", crlf=True)
    write_csv(out / "households_utf8.csv", csv_reg, encoding="utf-8-sig", crlf=True)
    xlsx_path: Path | None = None
    if "xlsx" in formats:
        say("writing households.xlsx")
        xlsx_path = out / "households.xlsx"
        write_xlsx(
            xlsx_path,
            [
                ("户籍登记", tuple(register.columns), _xlsx_rows(register)),
                ("说明", ("项目", "内容"), _NOTES),
            ],
            widths={"户籍登记": (7, 12, 12, 11, 10, 13, 9, 44, 12, 11, 9), "说明": (10, 80)},
        )
    else:
        (out / "households.xlsx").unlink(missing_ok=True)

    say("writing household members and special population")
    members, special = build_people(rng.spawn(1)[0], register, params.county_code)
    write_csv(out / "members.csv", members, encoding="utf-8-sig", crlf=True)
    write_csv(out / "special.csv", special, encoding="utf-8-sig", crlf=True)

    say("writing cadres, key units, inspection points and cases")
    cadres = pd.DataFrame(
        {
            "village_code": [v.code for v in vil_sorted],
            "village_name": [v.name for v in vil_sorted],
            "cadres": [int(np.clip(np.ceil(v.n_households / 185), 3, 7)) for v in vil_sorted],
        }
    )
    write_csv(out / "cadres.csv", cadres)
    units = build_key_units(ev_rng, world)
    points = build_inspection_points(ev_rng, world, units)
    cases = build_cases(ev_rng, world, units)
    for df in (units, points, cases):
        lo, la = _lonlat(tr, df[["x", "y"]].to_numpy())
        df["lon"] = np.round(lo, 6)
        df["lat"] = np.round(la, 6)
    write_csv(
        out / "key_units.csv",
        units[["unit_id", "name", "type", "risk_level", "lon", "lat", "address"]],
    )
    write_csv(
        out / "inspection_points.csv",
        points[["point_id", "name", "lon", "lat", "schedule", "last_inspected"]],
    )
    write_csv(
        out / "cases.csv",
        cases[["case_id", "category", "reported_at", "lon", "lat", "description", "status"]],
    )
    seconds = time.perf_counter() - t0
    log.info("sample generated in %.1f s: %d households", seconds, len(truth))
    files = SampleFiles(
        out=out,
        boundaries=out / "boundaries.gpkg",
        groups=out / "groups.gpkg",
        households_xlsx=xlsx_path,
        households_csv=out / "households.csv",
        households_utf8_csv=out / "households_utf8.csv",
        cadres=out / "cadres.csv",
        cases=out / "cases.csv",
        key_units=out / "key_units.csv",
        inspection_points=out / "inspection_points.csv",
        truth_households=out / "truth" / "households.gpkg",
        truth_groups=out / "truth" / "groups.gpkg",
        members=out / "members.csv",
        special=out / "special.csv",
        county_code=params.county_code,
        county_name=params.county_name,
        village_codes=tuple(v.code for v in vil_sorted),
        grouped_village_codes=tuple(sorted(grouped)),
        n_households=len(truth),
        n_groups=len(groups_all),
        n_cases=len(cases),
        n_key_units=len(units),
        n_inspection_points=len(points),
        n_members=len(members),
        n_special=len(special),
        seconds=seconds,
    )
    return files, world


def _choose_grouped(rng: np.random.Generator, world: World) -> list[str]:
    """About a third of the villages get planner-supplied group polygons.

    The two-part village and the reservoir village are always among them.
    """
    chosen: set[int] = set()
    for town in world.towns:
        special = {v for v in (town.multipart_village, town.hole_village) if v is not None}
        others = [v for v in town.villages if v not in special]
        k = max(0, round(len(town.villages) / 3) - len(special))
        chosen |= special | {int(v) for v in rng.choice(others, size=k, replace=False)}
    return sorted(world.villages[v].code for v in chosen)


def _xlsx_rows(register: pd.DataFrame) -> list[list[object]]:
    rows: list[list[object]] = []
    pos = {name: i for i, name in enumerate(register.columns)}
    seq, group, members = pos["序号"], pos["组"], pos["家庭人口"]
    for rec in register.itertuples(index=False, name=None):
        row = list(rec)
        row[seq] = int(row[seq])
        if isinstance(row[group], str) and row[group].isdigit():
            row[group] = int(row[group])  # clerks type a bare group number as a number
        row[members] = int(row[members])
        for j in (pos["经度"], pos["纬度"]):
            row[j] = None if np.isnan(row[j]) else float(row[j])
        rows.append(row)
    return rows
