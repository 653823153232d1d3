"""``geogrid partition`` end to end on files (synthetic village set and the sample town)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from typer.testing import CliRunner

from geogrid.cli import build_app
from partition.synthetic import random_town


@pytest.fixture(scope="module")
def town_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    v, hh = random_town(np.random.default_rng(21), 3, n_groups=10)
    v.to_file(out / "boundaries.gpkg", layer="villages")
    hh.to_file(out / "households.gpkg", layer="households")
    (out / "cadres.csv").write_text(
        "village_code,village_name,cadres\n" + "".join(f"{c},x,3\n" for c in v["code"]),
        encoding="utf-8",
    )
    return out


def test_cli_partition_writes_grids_assignment_and_reports(town_files: Path, tmp_path: Path):
    runner = CliRunner()
    out = tmp_path / "grids.gpkg"
    args = [
        "partition",
        "--households",
        str(town_files / "households.gpkg"),
        "--villages",
        str(town_files / "boundaries.gpkg"),
        "--jobs",
        "1",
        "-o",
        str(out),
        "--report",
        str(tmp_path / "report.html"),
        "--json",
        str(tmp_path / "report.json"),
    ]
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    grids = gpd.read_file(out, layer="grids")
    assert {
        "code",
        "village_code",
        "grid_no",
        "level",
        "households",
        "population",
        "groups",
        "flags",
    } <= set(grids.columns)
    assert grids.crs.to_epsg() == 4326
    assert (grids.geom_type == "MultiPolygon").all()
    assert (grids["code"].str.len() == 15).all() and (grids["level"] == 3).all()
    assignment = gpd.read_file(out, layer="assignment")
    assert set(assignment["grid_code"]) == set(grids["code"])
    rep = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert rep["violations"] == []
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    # self-contained: Leaflet inlined, no tag or stylesheet loads anything from a network
    loads = r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//"""
    assert not re.search(loads, html, flags=re.I)
    assert not re.search(r"""url\(\s*["']?(https?:)?//""", html)
    assert 'src="assets/' not in html
    assert "L.map" in html
    assert "within band" in result.output

    # redraw from the written grids: nothing moves
    again = runner.invoke(
        build_app(),
        [
            *args[:-4],
            "--existing",
            str(out),
            "-o",
            str(tmp_path / "g2.gpkg"),
            "--json",
            str(tmp_path / "r2.json"),
        ],
    )
    assert again.exit_code == 0, again.output
    assert (
        json.loads((tmp_path / "r2.json").read_text(encoding="utf-8"))["totals"]["households_moved"]
        == 0
    )


def test_cli_partition_with_cadres(town_files: Path, tmp_path: Path):
    out = tmp_path / "grids.gpkg"
    result = CliRunner().invoke(
        build_app(),
        [
            "partition",
            "--households",
            str(town_files / "households.gpkg"),
            "--villages",
            str(town_files / "boundaries.gpkg"),
            "--cadres",
            str(town_files / "cadres.csv"),
            "--jobs",
            "1",
            "-o",
            str(out),
        ],
    )
    # 3 grids per village: where the households cannot fill them within the band the
    # command says which village and why, writes nothing and exits 3 ...
    assert result.exit_code == 3, result.output
    assert "440101001003" in result.output and "202.3 per grid" in result.output
    assert not out.exists()
    # ... unless the planner accepts the imbalance
    accepted = CliRunner().invoke(
        build_app(),
        [
            "partition", "--households", str(town_files / "households.gpkg"),
            "--villages", str(town_files / "boundaries.gpkg"),
            "--cadres", str(town_files / "cadres.csv"), "--jobs", "1", "-o", str(out),
            "--accept-imbalance",
        ],
    )  # fmt: skip
    assert accepted.exit_code == 0, accepted.output
    assert "accepted imbalance" in accepted.output
    grids = gpd.read_file(out, layer="grids")
    assert grids.groupby("village_code").size().eq(3).all()


def test_cli_partition_sample_town(tmp_path: Path):
    from geogrid.sample import town as sample

    town = sample.generate_town(0, tmp_path / "town", formats=("csv",))
    out = tmp_path / "grids.gpkg"
    result = CliRunner().invoke(
        build_app(),
        [
            "partition",
            "--households",
            str(town.truth_households),
            "--villages",
            str(town.boundaries),
            "--groups",
            str(town.groups),
            "--jobs",
            "1",
            "-o",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
            "--accept-imbalance",  # a village's groups besides an oversized one hold < 100
        ],
    )
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    # the independent check finds no broken rule; only accepted, explained imbalance
    assert {v["rule"] for v in rep["violation_details"]} <= {"band"}
    assert {v["village_code"] for v in rep["imbalance"]} == {
        v["village_code"] for v in rep["violation_details"]
    }
    assert all(v["infeasible"] for v in rep["imbalance"])
    t = rep["totals"]
    assert t["households"] + t["unassigned_households"] == town.n_households
    assert t["share_in_band"] >= 0.95 * t["bound_share_in_band"]
    grids = gpd.read_file(out, layer="grids")
    assert town.multipart_village_code in set(grids["village_code"])
