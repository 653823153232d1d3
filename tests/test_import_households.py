"""``geogrid import households`` on every register format of the sample town."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geogrid.cli import build_app


@pytest.fixture
def boundaries_url(db_url: str, town_db: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GEOGRID_DATABASE_URL", db_url)
    return db_url


def invoke(*args: str) -> str:
    result = CliRunner().invoke(build_app(), list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM households")).scalar_one())


def _gis_copy(sample_town, tmp_path: Path, driver: str, suffix: str, encoding: str | None) -> Path:  # type: ignore[no-untyped-def]
    """The register as a point layer, as a land office or phone app would export it."""
    df = pd.read_csv(sample_town.households_utf8_csv, dtype=str, encoding="utf-8-sig")
    df = df[df["坐标系"].isin(["WGS84", "CGCS2000"])].head(500)
    gdf = gpd.GeoDataFrame(
        df.drop(columns=["经度", "纬度", "坐标系"]),
        geometry=gpd.points_from_xy(df["经度"].astype(float), df["纬度"].astype(float)),
        crs=4326,
    )
    path = tmp_path / f"register{suffix}"
    kwargs = {"encoding": encoding} if encoding else {}
    gdf.to_file(path, driver=driver, engine="pyogrio", **kwargs)
    if suffix == ".shp":
        path.with_suffix(".cpg").unlink(missing_ok=True)  # GBK with no .cpg, as often found
    return path


@pytest.mark.parametrize("name", ["households.xlsx", "households.csv", "households_utf8.csv"])
def test_each_register_format_loads_the_same(
    boundaries_url: str, engine: Engine, sample_town, name: str
) -> None:  # type: ignore[no-untyped-def]
    out = invoke("import", "households", str(sample_town.out / name))
    n = _count(engine)
    assert n > 0.99 * sample_town.n_households
    assert "rejected" in out
    reject_file = sample_town.out / f"{name}.rejects.csv"
    rejects = pd.read_csv(reject_file, encoding="utf-8-sig", dtype=str)
    assert len(rejects) + n == sample_town.n_households
    assert list(rejects.columns[:3]) == ["source_row", "reason", "序号"]
    # a second run of the same file changes nothing
    again = invoke("import", "households", str(sample_town.out / name))
    assert "unchanged" in again
    assert _count(engine) == n


@pytest.mark.parametrize(
    ("driver", "suffix", "encoding"),
    [("GPKG", ".gpkg", None), ("ESRI Shapefile", ".shp", "GBK"), ("GeoJSON", ".geojson", None)],
)
def test_gis_formats(  # type: ignore[no-untyped-def]
    boundaries_url: str,
    engine: Engine,
    sample_town,
    tmp_path: Path,
    driver: str,
    suffix: str,
    encoding,
) -> None:
    path = _gis_copy(sample_town, tmp_path, driver, suffix, encoding)
    invoke("import", "households", str(path))
    assert _count(engine) == 500 - (
        len(pd.read_csv(str(path) + ".rejects.csv"))
        if Path(str(path) + ".rejects.csv").exists()
        else 0
    )
    with engine.connect() as conn:
        names = conn.execute(text("SELECT head_name FROM households LIMIT 5")).scalars().all()
    assert all(n and "\ufffd" not in n and any("\u4e00" <= c <= "\u9fff" for c in n) for n in names)


def test_map_override_and_bad_header(
    boundaries_url: str, engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    df = pd.read_csv(sample_town.households_utf8_csv, dtype=str, encoding="utf-8-sig").head(50)
    renamed = tmp_path / "odd.csv"
    df.rename(columns={"户号": "门牌编号X"}).to_csv(renamed, index=False, encoding="utf-8")
    invoke("import", "households", str(renamed), "--map", "门牌编号X=register_no")
    assert _count(engine) > 40
    bad = tmp_path / "bad.csv"
    bad.write_text("甲,乙,丙\n1,2,3\n", encoding="utf-8")
    result = CliRunner().invoke(build_app(), ["import", "households", str(bad)])
    assert result.exit_code != 0
    assert "bad.csv" in str(result.exception) or "bad.csv" in result.output


def test_points_file_feeds_house_precision(
    boundaries_url: str, engine: Engine, tmp_path: Path
) -> None:
    with engine.connect() as conn:
        code, vname, geom_xy = conn.execute(
            text(
                "SELECT code, name, ARRAY[ST_X(ST_PointOnSurface(geom)), "
                "ST_Y(ST_PointOnSurface(geom))] FROM admin_areas WHERE level = 'village' "
                "ORDER BY code LIMIT 1"
            )
        ).one()
    x, y = geom_xy
    points = tmp_path / "门牌.csv"
    points.write_text(
        f"地址,经度,纬度\n{vname}第二村民小组8号,{x},{y}\n{vname}二组,{x},{y}\n", encoding="gbk"
    )
    out = invoke("import", "address-points", str(points))
    assert "inserted 1" in out
    assert "rejected 1" in out  # no house number: not an address point
    register = tmp_path / "reg.csv"
    register.write_text(f"户号,村,组,家庭住址\nP1,{vname},2,{vname}2组８号\n", encoding="utf-8")
    invoke("import", "households", str(register))
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT geocode_precision, ST_X(geom), ST_Y(geom) FROM households "
                "WHERE register_no = 'P1' AND village_code = :c"
            ),
            {"c": code},
        ).one()
    assert row[0] == "house"
    assert row[1:] == pytest.approx((x, y))
