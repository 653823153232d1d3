"""Boundary import: validation, repair, overlap refusal, one transaction."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import Engine, text

from geogrid.errors import InvalidInput
from geogrid.ingest.boundaries import import_boundaries

TOWN = "420117105000"


def _write(path: Path, rows: list[dict], crs: int | None = 4326) -> Path:  # type: ignore[type-arg]
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    gdf.to_file(path, driver="GPKG", engine="pyogrio")
    return path


@pytest.fixture
def town(engine: Engine, tmp_path: Path) -> Engine:
    _write(
        tmp_path / "town.gpkg",
        [{"code": TOWN, "name": "石门镇", "geometry": shapely.box(114.0, 30.0, 114.1, 30.1)}],
    )
    import_boundaries(engine, tmp_path / "town.gpkg", level="town")
    return engine


def test_town_creates_its_county(town: Engine) -> None:
    with town.connect() as conn:
        rows = conn.execute(text("SELECT code, level FROM admin_areas ORDER BY code")).all()
    assert [tuple(r) for r in rows] == [("420117", "county"), (TOWN, "town")]


def test_invalid_geometry_is_repaired_and_slivers_dropped(town: Engine, tmp_path: Path) -> None:
    bowtie = shapely.Polygon([(114.0, 30.0), (114.05, 30.05), (114.05, 30.0), (114.0, 30.05)])
    sliver = shapely.box(114.09, 30.09, 114.09 + 1e-7, 30.09 + 1e-7)  # ~1 cm²
    village = shapely.MultiPolygon([shapely.box(114.06, 30.06, 114.08, 30.08), sliver])
    path = _write(
        tmp_path / "v.gpkg",
        [
            {"code": "420117105201", "name": "甲村", "geometry": bowtie},
            {"code": "420117105202", "name": "乙村", "geometry": village},
        ],
    )
    report = import_boundaries(town, path, level="village")
    assert report.inserted == 2
    assert report.repaired == ["row 1", "row 2"]
    with town.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT code, ST_IsValid(geom), ST_NumGeometries(geom), GeometryType(geom) "
                "FROM admin_areas WHERE level = 'village' ORDER BY code"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("420117105201", True, 2, "MULTIPOLYGON"),  # the bow-tie becomes two triangles
        ("420117105202", True, 1, "MULTIPOLYGON"),  # the sliver is gone
    ]


def test_overlapping_villages_are_refused_with_the_pairs(town: Engine, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "v.gpkg",
        [
            {
                "code": "420117105201",
                "name": "甲村",
                "geometry": shapely.box(114.0, 30.0, 114.05, 30.1),
            },
            {
                "code": "420117105202",
                "name": "乙村",
                "geometry": shapely.box(114.04, 30.0, 114.1, 30.1),
            },
            {
                "code": "420117105203",
                "name": "丙村",
                "geometry": shapely.box(114.2, 30.0, 114.3, 30.1),
            },
        ],
    )
    with pytest.raises(InvalidInput, match=r"villages overlap: 420117105201 × 420117105202") as exc:
        import_boundaries(town, path, level="village")
    assert len(exc.value.detail["pairs"]) == 1
    with town.connect() as conn:  # nothing was written
        n = conn.execute(text("SELECT count(*) FROM admin_areas WHERE level = 'village'"))
        assert n.scalar_one() == 0


@pytest.mark.parametrize(
    ("rows", "crs", "message"),
    [
        ([{"code": "420117105201", "name": "甲村"}], None, "no coordinate reference system"),
        ([{"code": "4201171052", "name": "甲村"}], 4326, "12-digit"),
        ([{"code": "420117999201", "name": "甲村"}], 4326, "unknown town codes"),
        ([{"bianma": "420117105201", "mc": "甲村"}], 4326, "need a code and a name column"),
        (
            [{"code": "420117105201", "name": "甲村"}, {"code": "420117105201", "name": "乙村"}],
            4326,
            "duplicate village codes",
        ),
    ],
)
def test_bad_boundary_files_get_a_precise_error(
    town: Engine,
    tmp_path: Path,
    rows: list[dict],
    crs: int | None,
    message: str,  # type: ignore[type-arg]
) -> None:
    for i, row in enumerate(rows):
        row["geometry"] = shapely.box(114.0 + i * 0.02, 30.0, 114.01 + i * 0.02, 30.01)
    path = _write(tmp_path / "bad.gpkg", rows, crs=crs)
    with pytest.raises(InvalidInput, match=message):
        import_boundaries(town, path, level="village")


def test_reimport_updates_in_place(town: Engine, sample_town) -> None:  # type: ignore[no-untyped-def]
    first = import_boundaries(town, sample_town.boundaries, level="town")
    assert first.updated == 0 or first.inserted == 0
    v1 = import_boundaries(town, sample_town.boundaries, level="village")
    v2 = import_boundaries(town, sample_town.boundaries, level="village")
    assert (v1.inserted, v2.inserted, v2.updated, v2.unchanged) == (v1.read, 0, 0, v1.read)
    g = import_boundaries(town, sample_town.groups, level="group")
    assert g.inserted == g.read > 0
