"""Tests for the deterministic sample generator :mod:`geogrid.sample` (no database)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from geogrid.cli import build_app
from geogrid.coords import gcj02_to_wgs84, haversine_m
from geogrid.errors import InvalidInput
from geogrid.sample import SampleTown, generate_county, generate_town
from geogrid.sample.names import cn_number

SEED = 7
FILES = (
    "boundaries.gpkg",
    "groups.gpkg",
    "households.xlsx",
    "households.csv",
    "households_utf8.csv",
    "cadres.csv",
    "cases.csv",
    "key_units.csv",
    "inspection_points.csv",
    "truth/households.gpkg",
    "truth/groups.gpkg",
)
REGISTER_HEADER = [
    "序号", "村", "组", "户号", "户主姓名", "联系电话",
    "家庭人口", "家庭住址", "经度", "纬度", "坐标系",
]  # fmt: skip


def _digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES}


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> SampleTown:
    return generate_town(SEED, tmp_path_factory.mktemp("town"))


@pytest.fixture(scope="module")
def villages(town: SampleTown) -> gpd.GeoDataFrame:
    return gpd.read_file(town.boundaries, layer="villages")


@pytest.fixture(scope="module")
def town_layer(town: SampleTown) -> gpd.GeoDataFrame:
    return gpd.read_file(town.boundaries, layer="town")


@pytest.fixture(scope="module")
def truth(town: SampleTown) -> gpd.GeoDataFrame:
    return gpd.read_file(town.truth_households, layer="households")


@pytest.fixture(scope="module")
def register(town: SampleTown) -> pd.DataFrame:
    return pd.read_csv(town.households_csv, encoding="gbk", dtype=str, keep_default_na=False)


def _metric(gdf: gpd.GeoDataFrame) -> gpd.GeoSeries:
    return gdf.geometry.to_crs(4547)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(town: SampleTown, tmp_path: Path) -> None:
    again = generate_town(SEED, tmp_path)
    assert _digests(town.out) == _digests(again.out)
    assert again.village_codes == town.village_codes


def test_different_seed_different_files(town: SampleTown, tmp_path: Path) -> None:
    other = generate_town(SEED + 1, tmp_path, formats=("csv",))
    assert other.households_xlsx is None
    assert not (tmp_path / "households.xlsx").exists()
    mine, theirs = _digests(town.out), {}
    for name in FILES:
        if name != "households.xlsx":
            theirs[name] = hashlib.sha256((other.out / name).read_bytes()).hexdigest()
            assert theirs[name] != mine[name], name


def test_every_file_written(town: SampleTown) -> None:
    for name in FILES:
        assert (town.out / name).is_file(), name
    assert town.households_xlsx == town.out / "households.xlsx"


# --------------------------------------------------------------------------- boundaries


def test_codes_and_names(
    town: SampleTown, villages: gpd.GeoDataFrame, town_layer: gpd.GeoDataFrame
) -> None:
    assert len(town_layer) == 1
    row = town_layer.iloc[0]
    assert row["code"] == town.town_code == "420117105000"
    assert row["county_code"] == "420117"
    assert row["name"].endswith("镇")
    assert villages.crs.to_epsg() == 4326
    assert 10 <= len(villages) <= 14
    assert villages["code"].str.fullmatch(r"\d{12}").all()
    assert villages["code"].str.startswith("420117105").all()
    assert villages["code"].is_unique
    assert villages["name"].is_unique
    assert (villages["town_code"] == town.town_code).all()
    assert villages["name"].str.endswith(("村", "社区")).all()
    assert 1 <= villages["name"].str.endswith("社区").sum() <= 2
    assert set(villages.geom_type) == {"MultiPolygon"}
    assert tuple(villages["code"]) == town.village_codes


def test_town_area_and_location(town_layer: gpd.GeoDataFrame) -> None:
    area_km2 = _metric(town_layer).area.sum() / 1e6
    assert 80 <= area_km2 <= 150
    c = town_layer.geometry.iloc[0].centroid
    assert 113.8 < c.x < 114.8
    assert 30.0 < c.y < 30.8


def test_villages_tile_the_town(villages: gpd.GeoDataFrame, town_layer: gpd.GeoDataFrame) -> None:
    geoms = villages.geometry.to_numpy()
    assert shapely.coverage_is_valid(geoms)
    vm = _metric(villages)
    tm = _metric(town_layer).iloc[0]
    union = shapely.union_all(vm.to_numpy())
    assert union.symmetric_difference(tm).area < 1.0  # m², i.e. identical
    # no overlaps: areas add up
    assert abs(vm.area.sum() - tm.area) < 1.0
    assert all(g.is_valid for g in geoms)


def test_one_village_with_a_reservoir_hole(
    town: SampleTown, villages: gpd.GeoDataFrame, town_layer: gpd.GeoDataFrame
) -> None:
    holes = {
        code: sum(len(p.interiors) for p in geom.geoms)
        for code, geom in zip(villages["code"], villages.geometry, strict=True)
    }
    assert holes[town.hole_village_code] >= 1
    t = town_layer.geometry.iloc[0]
    assert sum(len(p.interiors) for p in t.geoms) >= 1  # the reservoir is a hole of the town
    hole_area = sum(
        shapely.Polygon(r).area
        for p in _metric(villages[villages["code"] == town.hole_village_code]).iloc[0].geoms
        for r in p.interiors
    )
    assert 20_000 < hole_area < 2_000_000  # m²


def test_one_multipart_village(town: SampleTown, villages: gpd.GeoDataFrame) -> None:
    parts = dict(
        zip(villages["code"], shapely.get_num_geometries(villages.geometry.to_numpy()), strict=True)
    )
    assert parts[town.multipart_village_code] == 2
    assert sum(1 for n in parts.values() if n > 1) == 1
    geom = _metric(villages[villages["code"] == town.multipart_village_code]).iloc[0]
    assert min(p.area for p in geom.geoms) > 0.1 * geom.area  # a real second part, not a crumb


def test_group_polygons_tile_their_villages(town: SampleTown, villages: gpd.GeoDataFrame) -> None:
    groups = gpd.read_file(town.groups, layer="groups")
    assert list(groups.columns) == ["village_code", "group_no", "name", "geometry"]
    assert groups["group_no"].dtype.kind == "i"
    coded = sorted(groups["village_code"].unique())
    assert coded == list(town.grouped_village_codes)
    assert 0.2 <= len(coded) / len(villages) <= 0.5
    assert town.multipart_village_code in coded
    vm = _metric(villages).set_axis(villages["code"])
    gm = _metric(groups)
    for code in coded:
        mine = groups["village_code"] == code
        assert sorted(groups.loc[mine, "group_no"]) == list(range(1, mine.sum() + 1))
        assert shapely.coverage_is_valid(groups.geometry[mine].to_numpy())
        union = shapely.union_all(gm[mine].to_numpy())
        assert union.symmetric_difference(vm[code]).area < 1.0
        assert abs(gm[mine].area.sum() - vm[code].area) < 1.0


# --------------------------------------------------------------------------- households


def test_household_and_group_counts(truth: gpd.GeoDataFrame) -> None:
    assert 8_000 <= len(truth) <= 12_000
    sizes = truth.groupby(["village_code", "group_no"]).size()
    assert (sizes.between(15, 90).mean()) >= 0.9
    assert 2 <= (sizes > 200).sum() <= 4
    assert sizes.min() >= 10
    # group numbers run 1..n in every village
    for _, g in truth.groupby("village_code"):
        assert sorted(g["group_no"].unique()) == list(range(1, g["group_no"].max() + 1))


def test_households_strictly_inside_their_village(
    truth: gpd.GeoDataFrame, villages: gpd.GeoDataFrame
) -> None:
    joined = truth.merge(
        pd.DataFrame({"village_code": villages["code"], "vgeom": villages.geometry.to_numpy()}),
        on="village_code",
        how="left",
    )
    assert joined["vgeom"].notna().all()
    assert shapely.contains_properly(joined["vgeom"].to_numpy(), truth.geometry.to_numpy()).all()


def test_households_inside_their_group_polygon(town: SampleTown, truth: gpd.GeoDataFrame) -> None:
    groups = gpd.read_file(town.truth_groups, layer="groups")
    key = groups.set_index(["village_code", "group_no"]).geometry
    polys = key.loc[list(zip(truth["village_code"], truth["group_no"], strict=True))].to_numpy()
    assert shapely.contains_properly(polys, truth.geometry.to_numpy()).all()


def test_groups_are_spatially_coherent(truth: gpd.GeoDataFrame) -> None:
    pts = truth.to_crs(4547)
    xy = shapely.get_coordinates(pts.geometry.to_numpy())
    pts = pts.assign(x=xy[:, 0], y=xy[:, 1])
    spread = pts.groupby(["village_code", "group_no"])[["x", "y"]].std()
    assert (np.hypot(spread["x"], spread["y"]).median()) < 600


def test_natural_villages(truth: gpd.GeoDataFrame) -> None:
    per_village = truth.groupby("village_code")["natural_village"].nunique()
    assert (per_village >= 3).all()
    assert truth["natural_village"].str.fullmatch(r".家.").mean() > 0.95


# --------------------------------------------------------------------------- register


def test_register_layout(town: SampleTown, register: pd.DataFrame, truth: gpd.GeoDataFrame) -> None:
    assert list(register.columns) == REGISTER_HEADER
    assert len(register) == len(truth)
    utf8 = pd.read_csv(
        town.households_utf8_csv, encoding="utf-8-sig", dtype=str, keep_default_na=False
    )
    pd.testing.assert_frame_equal(register, utf8)
    raw = town.households_utf8_csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with pytest.raises(UnicodeDecodeError):
        town.households_csv.read_bytes().decode("utf-8")


def test_register_numbers_unique_within_village(
    register: pd.DataFrame, villages: gpd.GeoDataFrame
) -> None:
    assert not register.duplicated(["村", "户号"]).any()
    assert register["户号"].str.fullmatch(r"\d{4}|20\d\d-\d{4}").all()
    assert set(register["村"]) == set(villages["name"])


def test_register_values(register: pd.DataFrame) -> None:
    pop = register["家庭人口"].astype(int)
    assert pop.between(1, 8).all()
    assert 2.3 < pop.mean() < 3.6
    phones = register.loc[register["联系电话"] != "", "联系电话"]
    assert phones.str.fullmatch(r"1[358]\d{9}").all()
    assert register["户主姓名"].str.len().between(2, 3).all()
    group = register["组"]
    assert group.str.fullmatch(r"\d+").any()
    assert group.str.contains("队").any()
    assert group.str.fullmatch(r"第\d+组").any()
    assert group.str.contains("村民小组").any()
    addr = register["家庭住址"]
    for marker in ("廿", "两", "３", "队", "社", "村民小组", " ", "，"):
        assert addr.str.contains(marker, regex=False).any(), marker
    assert addr.str.contains(cn_number(3) + "组").any()


def test_coordinate_mix(register: pd.DataFrame, truth: gpd.GeoDataFrame) -> None:
    crs = register["坐标系"]
    share = crs.value_counts(normalize=True)
    assert set(crs.unique()) == {"WGS84", "GCJ02", "CGCS2000", ""}
    assert 0.52 < share["WGS84"] < 0.68
    assert 0.10 < share["GCJ02"] < 0.20
    assert 0.06 < share["CGCS2000"] < 0.14
    assert 0.10 < share[""] < 0.20
    blank = crs == ""
    assert (register.loc[blank, "经度"] == "").all()
    assert (register.loc[~blank, "经度"] != "").all()

    lon = pd.to_numeric(register["经度"], errors="coerce").to_numpy().copy()
    lat = pd.to_numeric(register["纬度"], errors="coerce").to_numpy().copy()
    zero = (lon == 0) & (lat == 0)
    assert 1 <= zero.sum() <= 2
    swapped = (lon > 20) & (lon < 40) & (lat > 100)
    assert 2 <= swapped.sum() <= 0.004 * len(register) + 2
    # the rest, once converted, is within a few metres of the truth
    tx = truth.geometry.x.to_numpy()
    ty = truth.geometry.y.to_numpy()
    ok = ~blank.to_numpy() & ~zero & ~swapped
    gcj = (crs == "GCJ02").to_numpy() & ok
    lon[gcj], lat[gcj] = gcj02_to_wgs84(lon[gcj], lat[gcj])
    err = haversine_m(lon[ok], lat[ok], tx[ok], ty[ok])
    assert np.percentile(err, 99) < 10
    raw_gcj = pd.to_numeric(register.loc[gcj, "经度"]).to_numpy()
    assert np.median(haversine_m(raw_gcj, lat[gcj], tx[gcj], ty[gcj])) > 100


def test_excel_matches_csv(town: SampleTown, register: pd.DataFrame) -> None:
    from openpyxl import load_workbook

    assert town.households_xlsx is not None
    wb = load_workbook(town.households_xlsx, read_only=True)
    assert wb.sheetnames[0] == "户籍登记"
    rows = list(wb["户籍登记"].iter_rows(values_only=True))
    assert list(rows[0]) == REGISTER_HEADER
    assert len(rows) - 1 == len(register)
    first = rows[1]
    assert str(first[3]) == register.iloc[0]["户号"]  # kept as text (leading zeros)
    assert str(first[2]) == register.iloc[0]["组"]


# --------------------------------------------------------------------------- other files


def test_cadres(town: SampleTown, truth: gpd.GeoDataFrame) -> None:
    cadres = pd.read_csv(town.cadres, dtype={"village_code": str})
    assert list(cadres.columns) == ["village_code", "village_name", "cadres"]
    assert cadres["cadres"].between(3, 7).all()
    ratio = truth.groupby("village_code").size() / cadres.set_index("village_code")["cadres"]
    assert ratio.between(100, 200).mean() >= 0.7


def test_cases(town: SampleTown, town_layer: gpd.GeoDataFrame) -> None:
    cases = pd.read_csv(town.cases)
    assert list(cases.columns) == [
        "case_id",
        "category",
        "reported_at",
        "lon",
        "lat",
        "description",
        "status",
    ]
    assert 3_000 <= len(cases) <= 6_000
    assert cases["case_id"].is_unique
    t = pd.to_datetime(cases["reported_at"])
    assert cases["reported_at"].str.endswith("+08:00").all()
    local = t.dt.tz_convert("Asia/Shanghai")
    assert local.min() >= pd.Timestamp("2025-01-01", tz="Asia/Shanghai")
    assert local.max() < pd.Timestamp("2026-01-01", tz="Asia/Shanghai")
    assert {"矛盾纠纷", "安全隐患", "环境卫生", "消防隐患"} <= set(cases["category"])
    pts = shapely.points(cases["lon"].to_numpy(), cases["lat"].to_numpy())
    assert shapely.contains(town_layer.geometry.iloc[0], pts).all()
    # seasonality: sanitation peaks in summer, fire hazards in winter
    month = local.dt.month
    env = cases[cases["category"] == "环境卫生"].groupby(month).size()
    assert env.loc[[6, 7, 8]].mean() > env.loc[[2, 3, 10, 11]].mean()
    fire = cases[cases["category"] == "消防隐患"].groupby(month).size()
    assert fire.loc[[12, 1, 2]].mean() > fire.loc[[5, 6, 8, 9, 10]].mean()
    # weekly cycle: fewer reports on Sundays
    dow = local.dt.day_of_week.value_counts()
    assert dow[6] < dow[1]
    # spatial clustering: nearest-neighbour distances much shorter than for uniform points
    xy = shapely.get_coordinates(gpd.GeoSeries(pts, crs=4326).to_crs(4547).to_numpy())
    area = _metric(town_layer).area.iloc[0]
    uniform_nn = 0.5 * np.sqrt(area / len(xy))  # expected NN distance, Poisson process
    nn = cKDTree(xy).query(xy, k=2)[0][:, 1]
    assert np.median(nn) < 0.5 * uniform_nn
    assert not cases["description"].str.contains(r"1[358]\d{9}").any()


def test_key_units_and_inspection_points(town: SampleTown, town_layer: gpd.GeoDataFrame) -> None:
    units = pd.read_csv(town.key_units)
    assert list(units.columns) == ["unit_id", "name", "type", "risk_level", "lon", "lat", "address"]
    assert 20 <= len(units) <= 60
    assert {"学校", "加油站", "养老院", "卫生院", "工厂", "集贸市场"} <= set(units["type"])
    assert units["risk_level"].between(1, 3).all()
    assert units["unit_id"].is_unique
    points = pd.read_csv(town.inspection_points)
    assert list(points.columns) == ["point_id", "name", "lon", "lat", "schedule", "last_inspected"]
    assert 80 <= len(points) <= 120
    assert set(points["schedule"]) == {"monthly", "quarterly"}
    assert pd.to_datetime(points["last_inspected"]).dt.year.eq(2025).all()
    poly = town_layer.geometry.iloc[0]
    for df in (units, points):
        assert shapely.contains(
            poly, shapely.points(df["lon"].to_numpy(), df["lat"].to_numpy())
        ).all()


# --------------------------------------------------------------------------- county and CLI


def test_small_county(tmp_path: Path) -> None:
    county = generate_county(3, tmp_path, villages=26, households=20_000, formats=("csv",))
    towns = gpd.read_file(county.boundaries, layer="town")
    vills = gpd.read_file(county.boundaries, layer="villages")
    assert len(towns) == len(county.town_codes) == 2
    assert len(vills) == 26
    assert shapely.coverage_is_valid(vills.geometry.to_numpy())
    assert shapely.coverage_is_valid(towns.geometry.to_numpy())
    for code, geom in zip(towns["code"], _metric(towns), strict=True):
        mine = _metric(vills[vills["town_code"] == code])
        assert shapely.union_all(mine.to_numpy()).symmetric_difference(geom).area < 1.0
    assert 17_000 <= county.n_households <= 21_000
    assert vills["code"].str[:9].isin(towns["code"].str[:9]).all()


def test_county_rejects_silly_sizes(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        generate_county(1, tmp_path, villages=0)
    with pytest.raises(InvalidInput):
        generate_town(1, tmp_path, formats=("pdf",))


def test_cli_sample_town(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_app(), ["sample", "town", "--seed", "11", "--out", str(tmp_path), "--no-xlsx"]
    )
    assert result.exit_code == 0, result.output
    assert "households" in result.output
    assert (tmp_path / "households.csv").is_file()
    assert not (tmp_path / "households.xlsx").exists()
