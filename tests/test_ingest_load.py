"""Household loading into a real PostGIS: conversion, geocoding, upsert, rejects."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from sqlalchemy import Engine, text

from geogrid.coords import haversine_m, wgs84_to_gcj02
from geogrid.ingest.load import import_frame

HEADERS = {
    "序号": "seq", "户号": "register_no", "户主姓名": "head_name", "联系电话": "phone",
    "家庭人口": "population", "家庭住址": "address", "村": "village", "组": "group",
    "经度": "lon", "纬度": "lat", "坐标系": "crs",
}  # fmt: skip


def register_frame(path) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    df = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    df = df.rename(columns=HEADERS)
    df["source_row"] = np.arange(2, len(df) + 2)
    return df


def truth_xy(truth: gpd.GeoDataFrame) -> np.ndarray:
    """(n, 2) true household coordinates (one point per household)."""
    xy = shapely.get_coordinates(truth.geometry.values)
    assert len(xy) == len(truth)
    return xy


def test_sample_register_loads_with_precision_and_rejects(town_db: Engine, sample_town) -> None:  # type: ignore[no-untyped-def]
    raw = register_frame(sample_town.households_utf8_csv)
    report, rejects = import_frame(town_db, raw)
    assert report.read == len(raw) == sample_town.n_households
    assert report.inserted + report.rejected == report.read
    assert report.rejected == len(rejects)
    assert 0 < report.rejected < 0.01 * report.read
    assert set(report.by_precision) >= {"exact", "group", "village"}
    assert set(rejects["reason"].str.split(":").str[0]) <= {
        "coordinates swapped", "bad coordinates", "outside county",
    }  # fmt: skip
    assert (rejects["source_row"] >= 2).all()
    with town_db.connect() as conn:
        # approximate points are inside their group / village, never stacked
        outside = conn.execute(
            text(
                "SELECT count(*) FROM households h JOIN admin_areas v ON v.code = h.village_code "
                "WHERE h.geocode_precision IN ('group', 'village') "
                "AND NOT ST_Within(h.geom, v.geom)"
            )
        ).scalar_one()
        assert outside == 0
        in_group = conn.execute(
            text(
                "SELECT count(*) FROM households h JOIN villager_groups g ON g.id = h.group_id "
                "WHERE h.geocode_precision = 'group' AND NOT ST_Within(h.geom, g.geom)"
            )
        ).scalar_one()
        assert in_group == 0
        stacked = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT geom FROM households WHERE geocode_precision "
                "IN ('group', 'village') GROUP BY geom HAVING count(*) > 1) s"
            )
        ).scalar_one()
        assert stacked == 0
        stored = pd.DataFrame(
            conn.execute(
                text(
                    "SELECT village_code, register_no, ST_X(geom) AS x, ST_Y(geom) AS y, "
                    "geocode_source FROM households WHERE geocode_precision = 'exact'"
                )
            ).all()
        )
    # converted coordinates (GCJ-02, CGCS2000, WGS84) agree with the true positions
    truth = gpd.read_file(sample_town.truth_households)
    truth["tx"], truth["ty"] = truth_xy(truth).T
    both = stored.merge(truth, on=["village_code", "register_no"])
    assert len(both) == len(stored)
    err = haversine_m(both["x"], both["y"], both["tx"], both["ty"])
    gcj = both["geocode_source"] == "register:gcj02"
    assert gcj.sum() > 100
    assert float(np.max(err[gcj.to_numpy()])) < 30  # GPS noise of the sample, not a GCJ offset
    raw_gcj_offset = haversine_m(*wgs84_to_gcj02(both["tx"], both["ty"]), both["tx"], both["ty"])
    assert float(np.median(raw_gcj_offset)) > 100  # the offset the conversion removed


def test_reimport_changes_nothing_and_corrections_update_only_those_rows(
    town_db: Engine, sample_town
) -> None:  # type: ignore[no-untyped-def]
    raw = register_frame(sample_town.households_utf8_csv)
    first, _ = import_frame(town_db, raw)
    with town_db.connect() as conn:
        before = conn.execute(text("SELECT max(updated_at) FROM households")).scalar_one()
    again, _ = import_frame(town_db, raw)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, first.inserted)
    with town_db.connect() as conn:
        assert conn.execute(text("SELECT max(updated_at) FROM households")).scalar_one() == before
    fixed = raw.copy()
    rows = fixed.index[fixed["lon"] != ""][:3]
    fixed.loc[rows, "population"] = "9"
    corrected, _ = import_frame(town_db, fixed)
    assert (corrected.inserted, corrected.updated) == (0, 3)
    assert corrected.unchanged == first.inserted - 3


def _row(**kw: str) -> dict[str, str]:
    base = {
        "register_no": "", "village": "", "group": "", "address": "", "head_name": "某某",
        "phone": "", "population": "3", "lon": "", "lat": "", "crs": "",
    }  # fmt: skip
    base.update(kw)
    return base


def test_every_kind_of_bad_row_goes_to_rejects_with_row_and_reason(
    town_db: Engine, sample_town
) -> None:  # type: ignore[no-untyped-def]
    truth = gpd.read_file(sample_town.truth_households)
    v = truth["village_code"].iloc[0]
    with town_db.connect() as conn:
        vname = conn.execute(
            text("SELECT name FROM admin_areas WHERE code = :c"), {"c": v}
        ).scalar()
    x, y = truth_xy(truth)[0]
    rows = [
        _row(register_no="A1", village=vname, group="3", lon=f"{x}", lat=f"{y}"),  # good
        _row(register_no="", village=vname, group="3"),
        _row(register_no="A2", village="不存在村", group="3"),
        _row(register_no="A3", village=vname, address="什么也不是"),
        _row(register_no="A4", village=vname, group="3", lon="东经114", lat="30.4"),
        _row(register_no="A5", village=vname, group="3", lon=f"{y}", lat=f"{x}"),
        _row(register_no="A6", village=vname, group="3", lon="116.39", lat="39.91"),
        _row(register_no="A7", village=vname, group="3", lon=f"{x}", lat=f"{y}", crs="火星"),
        _row(register_no="A8", village=vname, group="3", population="three"),
        _row(register_no="A1", village=vname, group="4"),  # duplicate of the first row
        _row(register_no="A9", village=vname, group="3", lon="0", lat="0"),
    ]
    raw = pd.DataFrame(rows)
    raw["source_row"] = np.arange(2, len(raw) + 2)
    report, rejects = import_frame(town_db, raw)
    assert report.inserted == 1
    got = dict(zip(rejects["source_row"], rejects["reason"], strict=True))
    assert got[3] == "missing register number"
    assert got[4].startswith("unknown village '不存在村'")
    assert got[5].startswith("unparseable address")
    assert got[6].startswith("bad coordinates")
    assert got[7].startswith("coordinates swapped")
    assert got[8].startswith("outside county")
    assert got[9].startswith("unknown coordinate system '火星'")
    assert got[10] == "bad member count"
    assert got[11] == "duplicate in file: same register number as row 2"
    assert got[12] == "bad coordinates: (0, 0)"
    # original values are kept
    assert rejects.set_index("source_row").loc[4, "village"] == "不存在村"


def test_known_address_point_gives_house_precision(town_db: Engine, sample_town) -> None:  # type: ignore[no-untyped-def]
    truth = gpd.read_file(sample_town.truth_households)
    v = truth["village_code"].iloc[0]
    with town_db.connect() as conn:
        vname = conn.execute(
            text("SELECT name FROM admin_areas WHERE code = :c"), {"c": v}
        ).scalar()
    x, y = truth_xy(truth)[0]
    first = pd.DataFrame(
        [_row(register_no="H1", village=vname, address=f"{vname}三组12号", lon=f"{x}", lat=f"{y}")]
    )
    first["source_row"] = [2]
    import_frame(town_db, first)
    second = pd.DataFrame([_row(register_no="H2", village=vname, address=f"{vname}3组12号")])
    second["source_row"] = [2]
    report, _ = import_frame(town_db, second)
    assert report.by_precision == {"house": 1}
    with town_db.connect() as conn:
        got = conn.execute(
            text("SELECT ST_X(geom), ST_Y(geom) FROM households WHERE register_no = 'H2'")
        ).one()
    assert got == pytest.approx((x, y))


def test_bulk_path_gives_the_same_result(
    town_db: Engine, sample_town, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import geogrid.ingest.load as load

    monkeypatch.setattr(load, "BULK_ROWS", 1)
    with town_db.connect() as conn:
        before = conn.execute(
            text("SELECT version FROM layer_versions WHERE layer = 'households'")
        ).scalar_one()
    raw = register_frame(sample_town.households_utf8_csv)
    report, _ = import_frame(town_db, raw)
    assert report.inserted == report.read - report.rejected
    again, _ = import_frame(town_db, raw)
    assert again.unchanged == report.inserted
    with town_db.connect() as conn:
        after = conn.execute(
            text("SELECT version FROM layer_versions WHERE layer = 'households'")
        ).scalar_one()
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM households h LEFT JOIN villager_groups g "
                "ON g.id = h.group_id WHERE g.id IS NULL"
            )
        ).scalar_one()
    assert after == before + 1  # bumped once by the load, not by the unchanged re-load
    assert orphans == 0


def test_notebook_api_read_geocode_load(town_db: Engine, sample_town) -> None:  # type: ignore[no-untyped-def]
    from geogrid.ingest import geocode_register, load_register

    households, rejects = geocode_register(town_db, sample_town.households_csv)
    assert households.crs.to_epsg() == 4326
    assert set(households["geocode_precision"]) >= {"exact", "group", "village"}
    assert list(rejects.columns[:2]) == ["source_row", "reason"]
    assert "户号" in rejects.columns  # original headers
    report = load_register(town_db, households)
    assert report.inserted == len(households)


def test_derived_territories_do_not_move_reimported_households(
    town_db: Engine, sample_town
) -> None:  # type: ignore[no-untyped-def]
    raw = register_frame(sample_town.households_utf8_csv)
    first, _ = import_frame(town_db, raw)
    with town_db.begin() as conn:  # what a plan does: territories for groups without one
        derived = conn.execute(
            text(
                "UPDATE villager_groups g SET geom = ST_Multi(ST_Buffer(ST_Centroid(v.geom), "
                "0.001)), territory_source = 'derived' FROM admin_areas v "
                "WHERE v.code = g.village_code AND g.geom IS NULL"
            )
        ).rowcount
    assert derived > 0
    again, _ = import_frame(town_db, raw)
    assert (again.inserted, again.updated) == (0, 0)
    assert again.unchanged == first.inserted
