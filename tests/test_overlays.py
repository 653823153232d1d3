"""Overlay import (cases, key units, inspection points) and grid assignment."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from geogrid import store
from geogrid.overlays import assign_grids, import_overlay


@pytest.fixture
def town_engine(town_url: str):  # type: ignore[no-untyped-def]
    eng = store.make_engine(town_url)
    try:
        yield eng
    finally:
        eng.dispose()


def make_active_plan(conn: Connection, villages: int | None = None) -> dict[str, str]:
    """An active plan of the sample town: one level-3 grid per village (its polygon).

    Returns ``{village code: grid code}``.
    """
    town = conn.execute(text("SELECT code FROM admin_areas WHERE level = 'town'")).scalar_one()
    plan_id = conn.execute(
        text(
            "INSERT INTO plans (town_code, name, status, activated_at) "
            "VALUES (:t, 'test plan', 'active', now()) RETURNING id"
        ),
        {"t": town},
    ).scalar_one()
    codes = conn.execute(
        text("SELECT code FROM admin_areas WHERE level = 'village' ORDER BY code LIMIT :n"),
        {"n": villages},
    ).scalars()
    out: dict[str, str] = {}
    for code in codes:
        grid = code + "001"
        conn.execute(
            text(
                "INSERT INTO grids (plan_id, code, level, village_code, geom, households) "
                "SELECT :p, :g, 3, code, geom, 0 FROM admin_areas WHERE code = :v"
            ),
            {"p": plan_id, "g": grid, "v": code},
        )
        out[code] = grid
    return out


def _counts(engine: Engine, table: str) -> tuple[int, int, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT count(*), count(village_code), count(grid_code) FROM {table}")
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def _stamps(engine: Engine, table: str, key: str) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(conn.execute(text(f"SELECT {key}, updated_at FROM {table}")).all())  # type: ignore[arg-type]


def test_sample_town_overlays_load_and_reimport_changes_nothing(
    town_engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    expected = {
        "key_units": (sample_town.key_units, sample_town.n_key_units, "unit_no"),
        "inspection_points": (
            sample_town.inspection_points,
            sample_town.n_inspection_points,
            "point_no",
        ),
        "cases": (sample_town.cases, sample_town.n_cases, "case_no"),
    }
    for kind, (path, n, _) in expected.items():
        report = import_overlay(
            town_engine, path, kind, rejects_path=tmp_path / f"{kind}.rejects.csv"
        )  # type: ignore[arg-type]
        assert (report.read, report.inserted, report.updated, report.rejected) == (n, n, 0, 0)
        assert report.in_grid == 0  # no active plan yet
        assert _counts(town_engine, kind) == (n, n, 0)
    with town_engine.connect() as conn:
        linked = conn.execute(text("SELECT count(key_unit_id) FROM inspection_points")).scalar_one()
        assert linked == sample_town.n_key_units  # points at key units link to them
        first = conn.execute(
            text(
                "SELECT category, reported_at, ST_X(geom), ST_Y(geom), status FROM cases "
                "WHERE case_no = 'C2025000001'"
            )
        ).one()
        versions = dict(conn.execute(text("SELECT layer, version FROM layer_versions_now")).all())
    stated = pd.read_csv(sample_town.cases, dtype=str).set_index("case_id").loc["C2025000001"]
    assert first[0] == "消防隐患" and first[4] == stated["status"]
    assert first[1].isoformat() == "2025-01-01T00:49:33+00:00"
    assert (round(first[2], 6), round(first[3], 6)) == (114.308826, 30.402208)

    stamps = {kind: _stamps(town_engine, kind, key) for kind, (_, _, key) in expected.items()}
    for kind, (path, n, key) in expected.items():
        again = import_overlay(town_engine, path, kind, rejects_path=tmp_path / "r.csv")  # type: ignore[arg-type]
        assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, n, 0)
        assert _stamps(town_engine, kind, key) == stamps[kind]
    with town_engine.connect() as conn:
        after = dict(conn.execute(text("SELECT layer, version FROM layer_versions_now")).all())
    assert after == versions  # a no-op re-import leaves tile caches valid


def test_corrected_file_updates_only_the_corrected_rows(
    town_engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import_overlay(town_engine, sample_town.key_units, "key_units", rejects_path=tmp_path / "r")
    before = _stamps(town_engine, "key_units", "unit_no")
    df = pd.read_csv(sample_town.key_units, dtype=str)
    df.loc[0, "risk_level"] = "高" if df.loc[0, "risk_level"] != "3" else "低"
    df.loc[1, "lon"] = f"{float(df.loc[1, 'lon']) + 0.0001:.6f}"
    df.loc[2, "risk_level"] = {"1": "低", "2": "中", "3": "高"}[df.loc[2, "risk_level"]]  # same
    fixed = tmp_path / "key_units_fixed.csv"
    df.to_csv(fixed, index=False, encoding="gbk")
    report = import_overlay(town_engine, fixed, "key_units")
    assert (report.inserted, report.updated, report.rejected) == (0, 2, 0)
    assert report.unchanged == len(df) - 2
    after = _stamps(town_engine, "key_units", "unit_no")
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {df.loc[0, "unit_id"], df.loc[1, "unit_id"]}
    assert not fixed.with_name(fixed.name + ".rejects.csv").exists()


def test_reject_file_has_every_bad_row_with_reason_and_original_values(
    town_engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    good = pd.read_csv(sample_town.cases, dtype=str).head(3)
    lon, lat = good.loc[0, "lon"], good.loc[0, "lat"]
    rows = [
        ["C1", "环境卫生", "2025-03-01 08:00", lon, lat, "好的一行", ""],  # row 2
        ["", "环境卫生", "2025-03-01 08:00", lon, lat, "缺编号", ""],  # 3 missing id
        ["C3", "", "2025-03-01 08:00", lon, lat, "缺类别", ""],  # 4 missing category
        ["C4", "其他", "昨天下午", lon, lat, "时间错误", ""],  # 5 unparseable time
        ["C5", "其他", "2025/3/1 8:05", "东经114", lat, "坐标错误", ""],  # 6 bad coordinates
        ["C6", "其他", "2025-03-01", "116.40", "39.90", "北京", ""],  # 7 outside county
        ["C7", "其他", "2025-03-01", lat, lon, "经纬度颠倒", ""],  # 8 swapped
        ["C1", "其他", "2025-03-02", lon, lat, "重复", ""],  # 9 duplicate in file
        ["C9", "其他", "2025-03-02", lon, lat, "未知坐标系", "火星"],  # 10 unknown crs
        ["C10", "其他", "2025年3月2日 9:30", lon, lat, "中文日期", "WGS84"],  # 11 good
    ]
    src = tmp_path / "cases_gbk.csv"
    pd.DataFrame(
        rows, columns=["事件编号", "事件类型", "上报时间", "经度", "纬度", "描述", "坐标系"]
    ).to_csv(src, index=False, encoding="gbk")
    report = import_overlay(town_engine, src, "cases")
    assert report.encoding == "gb18030"
    assert (report.inserted, report.rejected) == (2, 8)
    rejects = pd.read_csv(
        report.rejects_file, dtype=str, encoding="utf-8-sig", keep_default_na=False
    )
    assert list(rejects.columns[:2]) == ["source_row", "reason"]
    assert list(rejects.columns[2:]) == [
        "事件编号",
        "事件类型",
        "上报时间",
        "经度",
        "纬度",
        "描述",
        "坐标系",
    ]
    why = dict(
        zip(rejects["source_row"].astype(int), rejects["reason"].str.split(":").str[0], strict=True)
    )
    assert why == {
        3: "missing id",
        4: "missing category",
        5: "unparseable time",
        6: "bad coordinates",
        7: "outside county",
        8: "coordinates swapped",
        9: "duplicate in file",
        10: "unknown coordinate system",
    }
    assert "row 2" in rejects.loc[rejects["source_row"] == "9", "reason"].item()
    row5 = rejects.loc[rejects["source_row"] == "5"].iloc[0]
    assert (row5["事件编号"], row5["上报时间"], row5["描述"]) == ("C4", "昨天下午", "时间错误")
    with town_engine.connect() as conn:
        t = conn.execute(text("SELECT reported_at FROM cases WHERE case_no = 'C10'")).scalar_one()
    assert t.isoformat() == "2025-03-02T01:30:00+00:00"  # local time (UTC+8) without offset


def test_key_units_and_points_chinese_values_gcj02_and_xlsx_rejects(
    town_engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from geogrid import coords

    base = pd.read_csv(sample_town.key_units, dtype=str).head(2)
    gx, gy = coords.convert(float(base.loc[0, "lon"]), float(base.loc[0, "lat"]), "wgs84", "gcj02")
    units = pd.DataFrame(
        {
            "单位编号": ["K1", "K2", "K3"],
            "单位名称": ["甲小学", "乙加油站", "丙厂"],
            "类型": ["学校", "加油站", "工厂"],
            "风险等级": ["高", "中风险", "五级"],  # K3 bad risk level
            "地址": ["一号", "二号", "三号"],
            "经度": [gx, base.loc[1, "lon"], base.loc[1, "lon"]],
            "纬度": [gy, base.loc[1, "lat"], base.loc[1, "lat"]],
            "坐标系": ["gcj02", "", ""],
        }
    )
    path = tmp_path / "units.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame([["重点单位台账"]]).to_excel(xl, index=False, header=False, startrow=0)
        units.to_excel(xl, index=False, startrow=2)
    report = import_overlay(town_engine, path, "key_units")
    assert (report.inserted, report.rejected) == (2, 1)
    rejects = pd.read_csv(report.rejects_file, dtype=str, encoding="utf-8-sig")
    assert rejects["source_row"].tolist() == ["6"]  # title row, blank row, header on row 3
    assert rejects["reason"].str.startswith("bad risk level").all()
    with town_engine.connect() as conn:
        k1 = conn.execute(
            text("SELECT risk_level, ST_X(geom), ST_Y(geom) FROM key_units WHERE unit_no='K1'")
        ).one()
    assert k1[0] == 3
    assert (
        abs(k1[1] - float(base.loc[0, "lon"])) < 1e-6
        and abs(k1[2] - float(base.loc[0, "lat"])) < 1e-6
    )

    points = pd.DataFrame(
        {
            "检查点编号": ["P1", "P2", "P3", "P4"],
            "名称": ["甲小学", "乙", "丙", "丁"],
            "检查周期": ["每月", "每季度", "每天", "每年"],
            "最近检查": ["2025/6/30", "", "2025-06-01", "去年"],
            "单位编号": ["K2", "", "", ""],
            "lon": [base.loc[0, "lon"]] * 4,
            "lat": [base.loc[0, "lat"]] * 4,
        }
    )
    ppath = tmp_path / "points.csv"
    points.to_csv(ppath, index=False, encoding="utf-8-sig")
    rep = import_overlay(town_engine, ppath, "inspection_points", rejects_path=tmp_path / "p.csv")
    assert (rep.inserted, rep.rejected) == (2, 2)
    why = (
        pd.read_csv(tmp_path / "p.csv", dtype=str, encoding="utf-8-sig")["reason"]
        .str.split(":")
        .str[0]
    )
    assert why.tolist() == ["bad schedule", "bad date"]
    with town_engine.connect() as conn:
        got = conn.execute(
            text(
                "SELECT p.point_no, p.schedule, p.last_inspected::text, k.unit_no "
                "FROM inspection_points p LEFT JOIN key_units k ON k.id = p.key_unit_id "
                "ORDER BY 1"
            )
        ).all()
    assert [tuple(r) for r in got] == [
        ("P1", "monthly", "2025-06-30", "K2"),
        ("P2", "quarterly", None, None),
    ]


def test_grid_assignment_on_import_and_after_activation(
    town_engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import_overlay(town_engine, sample_town.key_units, "key_units", rejects_path=tmp_path / "r")
    assert _counts(town_engine, "key_units")[2] == 0
    with town_engine.begin() as conn:
        grids = make_active_plan(conn)
        changed = assign_grids(conn)
    assert changed["key_units"] == sample_town.n_key_units
    with town_engine.connect() as conn:
        pairs = conn.execute(text("SELECT village_code, grid_code FROM key_units")).all()
        inside = conn.execute(
            text(
                "SELECT count(*) FROM key_units k JOIN grids g ON g.code = k.grid_code "
                "WHERE ST_Intersects(g.geom, k.geom)"
            )
        ).scalar_one()
    assert all(g == grids[v] for v, g in pairs)
    assert inside == len(pairs)
    with town_engine.begin() as conn:
        version = conn.execute(
            text("SELECT version FROM layer_versions WHERE layer = 'key_units'")
        ).scalar_one()
        assert assign_grids(conn)["key_units"] == 0  # nothing moved
        assert (
            version
            == conn.execute(
                text("SELECT version FROM layer_versions WHERE layer = 'key_units'")
            ).scalar_one()
        )
    # import with an active plan: placed at once
    report = import_overlay(
        town_engine, sample_town.inspection_points, "inspection_points", rejects_path=tmp_path / "p"
    )
    assert report.in_grid == sample_town.n_inspection_points
    # plan archived: assign_grids for the town clears the codes
    with town_engine.begin() as conn:
        conn.execute(text("UPDATE plans SET status = 'archived'"))
        town = conn.execute(text("SELECT code FROM admin_areas WHERE level='town'")).scalar_one()
        changed = assign_grids(conn, town)
    assert changed["inspection_points"] == sample_town.n_inspection_points
    assert _counts(town_engine, "inspection_points")[2] == 0


def test_cli_import_cases_prints_summary(
    town_url: str, sample_town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from geogrid.cli import build_app

    monkeypatch.setenv("GEOGRID_DATABASE_URL", town_url)
    monkeypatch.setenv("GEOGRID_HOME", str(tmp_path / "home"))
    src = tmp_path / "c.csv"
    df = pd.read_csv(sample_town.cases, dtype=str).head(50)
    df.rename(columns={"case_id": "编码"}).to_csv(src, index=False)
    result = CliRunner().invoke(
        build_app(), ["import", "cases", str(src), "--map", "编码=case_no"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "inserted" in result.output and "50" in result.output


def test_geopackage_points_without_coordinate_columns(
    town_engine: Engine, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import geopandas as gpd

    df = pd.read_csv(sample_town.inspection_points, dtype=str)
    gdf = gpd.GeoDataFrame(
        df.drop(columns=["lon", "lat"]).rename(
            columns={"point_id": "检查点编号", "schedule": "检查周期"}
        ),
        geometry=gpd.points_from_xy(df["lon"].astype(float), df["lat"].astype(float)),
        crs=4326,
    ).to_crs(3857)  # a projected layer: read back to EPSG:4326
    path = tmp_path / "points.gpkg"
    gdf.to_file(path, layer="消防检查点")
    report = import_overlay(town_engine, path, "inspection_points")
    assert (report.inserted, report.rejected) == (len(df), 0)
    with town_engine.connect() as conn:
        x, y = conn.execute(
            text("SELECT ST_X(geom), ST_Y(geom) FROM inspection_points WHERE point_no = :p"),
            {"p": df.loc[0, "point_id"]},
        ).one()
    assert abs(x - float(df.loc[0, "lon"])) < 1e-6 and abs(y - float(df.loc[0, "lat"])) < 1e-6
