"""``geogrid partition --households FILE`` reads registers as ``geogrid import households``
does: every format, header recognition, ``--map``, coordinates in any supported CRS; a
bad file is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from geogrid import coords
from geogrid.cli import build_app, main
from partition.synthetic import random_town


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two synthetic villages and their register under Chinese headers (WGS84 points)."""
    out = tmp_path_factory.mktemp("inputs")
    v, hh = random_town(np.random.default_rng(3), 2, n_groups=6)
    v.to_file(out / "villages.gpkg", layer="villages")
    lon, lat = hh.geometry.x.to_numpy(), hh.geometry.y.to_numpy()
    register = pd.DataFrame(
        {
            "户号": hh["register_no"],
            "村": v.set_index("code").loc[hh["village_code"], "name"].to_numpy(),
            "组": [f"{g}组" for g in hh["group_no"]],
            "家庭人口": hh["population"],
            "经度": lon,
            "纬度": lat,
        }
    )
    return {"dir": out, "villages": out / "villages.gpkg", "register": register, "n": len(hh)}


def _run(town: dict[str, object], households: Path, tmp_path: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "grids.gpkg"
    result = CliRunner().invoke(
        build_app(),
        [
            "partition", "--households", str(households), "--villages", str(town["villages"]),
            "--jobs", "1", "-o", str(out), "--json", str(tmp_path / "r.json"),
            "--accept-imbalance", *extra,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert {v["rule"] for v in rep["violation_details"]} <= {"band", "k"}
    return rep


def _key(rep: dict) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return sorted((g["code"], g["households"]) for g in rep["grids"])


def test_csv_gbk_with_gcj02_coordinates_matches_the_wgs84_register(town, tmp_path: Path):  # type: ignore[no-untyped-def]
    reg: pd.DataFrame = town["register"]
    wgs = tmp_path / "wgs84.csv"
    reg.to_csv(wgs, index=False, encoding="utf-8-sig")
    x, y = coords.convert(reg["经度"].to_numpy(), reg["纬度"].to_numpy(), "wgs84", "gcj02")
    gcj = tmp_path / "gcj02.csv"
    reg.assign(经度=np.round(x, 7), 纬度=np.round(y, 7)).to_csv(gcj, index=False, encoding="gbk")
    a = _run(town, wgs, tmp_path / "a")
    b = _run(town, gcj, tmp_path / "b", "--crs", "gcj02")
    assert a["totals"]["households"] == b["totals"]["households"] == town["n"]
    assert _key(a) == _key(b)
    # a 坐标系 column names the system row by row, as the importer reads it
    mixed = tmp_path / "mixed.csv"
    reg.assign(经度=np.round(x, 7), 纬度=np.round(y, 7), 坐标系="GCJ02").to_csv(
        mixed, index=False, encoding="gbk"
    )
    assert _key(_run(town, mixed, tmp_path / "c")) == _key(a)


def test_excel_with_title_rows_geojson_shapefile_and_geopackage(town, tmp_path: Path):  # type: ignore[no-untyped-def]
    reg: pd.DataFrame = town["register"]
    xlsx = tmp_path / "register.xlsx"
    with pd.ExcelWriter(xlsx) as writer:
        pd.DataFrame([["某镇户籍登记表"]]).to_excel(writer, index=False, header=False)
        reg.to_excel(writer, index=False, startrow=2)
    points = gpd.GeoDataFrame(
        reg.drop(columns=["经度", "纬度"]),
        geometry=gpd.points_from_xy(reg["经度"], reg["纬度"]),
        crs=4326,
    )
    geojson = tmp_path / "register.geojson"
    points.to_file(geojson, driver="GeoJSON")
    shp = tmp_path / "register.shp"
    points.to_crs(4490).to_file(shp, encoding="gbk", engine="pyogrio")
    shp.with_suffix(".cpg").unlink(missing_ok=True)  # GBK without .cpg, as often found
    gpkg = tmp_path / "register.gpkg"  # odd headers named with --map
    points.rename(columns={"户号": "HH_CODE", "组": "小组名称"}).to_file(gpkg, layer="hh")
    base = _key(_run(town, xlsx, tmp_path / "x"))
    assert _key(_run(town, geojson, tmp_path / "j")) == base
    assert _key(_run(town, shp, tmp_path / "s")) == base
    mapped = _run(
        town, gpkg, tmp_path / "g", "--map", "HH_CODE=register_no", "--map", "小组名称=group"
    )
    assert _key(mapped) == base
    assert sum(n for _, n in base) == town["n"]


def test_rows_the_importer_rejects_go_to_the_reject_file(town, tmp_path: Path):  # type: ignore[no-untyped-def]
    reg: pd.DataFrame = town["register"].copy()
    reg.loc[0, "经度"], reg.loc[0, "纬度"] = reg.loc[0, "纬度"], reg.loc[0, "经度"]  # swapped
    reg.loc[1, "村"] = "不存在村"
    reg.loc[2, "户号"] = reg.loc[3, "户号"]  # duplicate in file
    path = tmp_path / "register.csv"
    reg.to_csv(path, index=False, encoding="utf-8-sig")
    rep = _run(town, path, tmp_path / "r")
    assert rep["totals"]["rejected_rows"] == 3
    rejects = pd.read_csv(tmp_path / "register.csv.rejects.csv", encoding="utf-8-sig", dtype=str)
    assert rejects["source_row"].tolist() == ["2", "3", "5"]
    assert rejects["reason"].str.split(":").str[0].tolist() == [
        "coordinates swapped",
        "unknown village '不存在村'",
        "duplicate in file",
    ]
    assert rep["totals"]["households"] == town["n"] - 3


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        ("名称,备注\nx,y\n", [], "no recognisable header"),
        ("户号,村,组\n1,村001,1组\n", ["--map", "门牌=address"], "--map names column '门牌'"),
        ("户号,村,组\n1,村001,1组\n", ["--map", "户号=nonsense"], "unknown field 'nonsense'"),
        ("户号,村,组\n1,村001,1组\n", ["--crs", "epsg:99999x"], "epsg:99999x"),
        ("户号,村,组\n1,不存在村,1组\n", [], "no usable household row"),
    ],
)
def test_a_bad_file_is_one_clear_line(town, tmp_path: Path, capsys, content, args, says):  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "partition",
                "--households",
                str(path),
                "--villages",
                str(town["villages"]),
                "-o",
                str(tmp_path / "g.gpkg"),
                *args,
            ]
        )
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err and err.strip().startswith("error:")
    assert not (tmp_path / "g.gpkg").exists()


def test_a_village_file_without_codes_is_one_clear_line(town, tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    bad = tmp_path / "v.gpkg"
    gpd.read_file(town["villages"]).drop(columns="code").to_file(bad, layer="villages")
    path = tmp_path / "r.csv"
    town["register"].to_csv(path, index=False)
    with pytest.raises(SystemExit):
        main(["partition", "--households", str(path), "--villages", str(bad), "-o", "x.gpkg"])
    err = capsys.readouterr().err
    assert "lacks the column 'code'" in err and "Traceback" not in err
