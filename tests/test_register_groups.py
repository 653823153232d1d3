"""The register's groups are trusted no further than they deserve; addresses keep all parts.

- a household naming a group its village does not have is rejected (reject file row and
  reason) unless the import is told new groups are expected (``--new-groups``);
- a village with no registered group takes its groups from its first register;
- village names ending in a level word (新村村) and house numbers with attached parts
  (附N号, 之N, -N) are parsed without losing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from geogrid.cli import build_app
from geogrid.ingest.address import normalise_address, parse_address


@dataclass
class Town:
    grouped: str  # code of a village with supplied group polygons
    grouped_name: str
    groups: set[int]  # its groups
    free: str  # a village with no group polygons
    free_name: str


@pytest.fixture
def town(db_url: str, town_db: Engine, sample_town, monkeypatch: pytest.MonkeyPatch) -> Town:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GEOGRID_DATABASE_URL", db_url)
    villages = gpd.read_file(sample_town.boundaries, layer="villages")
    names = dict(zip(villages["code"], villages["name"], strict=True))
    groups = gpd.read_file(sample_town.groups)
    grouped = sorted(sample_town.grouped_village_codes)[0]
    free = next(c for c in sorted(names) if c not in sample_town.grouped_village_codes)
    mine = set(groups.loc[groups["village_code"] == grouped, "group_no"].astype(int))
    return Town(grouped, names[grouped], mine, free, names[free])


def _register(tmp_path: Path, town: Town) -> tuple[Path, int, int]:
    """A register naming one known group, two unknown ones and a group of a free village."""
    path = tmp_path / "register.csv"
    g, v = town.grouped_name, town.free_name
    known = min(town.groups)
    unknown, from_address = max(town.groups) + 3, max(town.groups) + 6
    rows = [
        ("0001", g, f"{known}组", f"{g}{known}组12号"),
        ("0002", g, f"{unknown}组", f"{g}{unknown}组5号"),
        ("0003", v, "4组", f"{v}4组8号"),  # no group registered in this village yet
        ("0004", g, "", f"{g}第{from_address}村民小组3号"),  # the group from the address
    ]
    frame = pd.DataFrame(rows, columns=["户号", "村", "组", "家庭住址"])
    frame.to_csv(path, index=False, encoding="utf-8-sig")
    return path, unknown, from_address


def _groups(engine: Engine, village: str) -> set[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT group_no FROM villager_groups WHERE village_code = :v"), {"v": village}
        )
        return {int(r[0]) for r in rows}


def _households(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT register_no FROM households"))}


def test_unknown_group_is_rejected_with_its_reason(
    town: Town, engine: Engine, tmp_path: Path
) -> None:
    assert _groups(engine, town.grouped) == town.groups
    path, unknown, from_address = _register(tmp_path, town)
    result = CliRunner().invoke(build_app(), ["import", "households", str(path)])
    assert result.exit_code == 0, result.output
    assert _households(engine) == {"0001", "0003"}
    rejects = pd.read_csv(tmp_path / "register.csv.rejects.csv", dtype=str, encoding="utf-8-sig")
    assert rejects["户号"].tolist() == ["0002", "0004"]
    assert rejects["source_row"].tolist() == ["3", "5"]
    first = f"unknown group: {town.grouped_name} has no group {unknown}"
    assert rejects["reason"].iloc[0].startswith(first)
    assert f"no group {from_address} " in rejects["reason"].iloc[1]
    assert "--new-groups" in rejects["reason"].iloc[1]
    assert "rejected: unknown group" in result.output
    # nothing was created behind the planner's back; the free village took its first group
    assert _groups(engine, town.grouped) == town.groups
    assert _groups(engine, town.free) == {4}


def test_new_groups_when_the_import_expects_them(
    town: Town, engine: Engine, tmp_path: Path
) -> None:
    path, unknown, from_address = _register(tmp_path, town)
    result = CliRunner().invoke(build_app(), ["import", "households", str(path), "--new-groups"])
    assert result.exit_code == 0, result.output
    assert _households(engine) == {"0001", "0002", "0003", "0004"}
    assert _groups(engine, town.grouped) == {*town.groups, unknown, from_address}
    assert not (tmp_path / "register.csv.rejects.csv").exists()


def test_a_village_with_groups_from_an_earlier_register_is_strict(
    town: Town, engine: Engine, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    pd.DataFrame([("0101", town.free_name, "1组")], columns=["户号", "村", "组"]).to_csv(
        first, index=False, encoding="utf-8-sig"
    )
    second = tmp_path / "second.csv"
    pd.DataFrame([("0102", town.free_name, "2组")], columns=["户号", "村", "组"]).to_csv(
        second, index=False, encoding="utf-8-sig"
    )
    for path in (first, second):
        result = CliRunner().invoke(build_app(), ["import", "households", str(path)])
        assert result.exit_code == 0, result.output
    assert _groups(engine, town.free) == {1}
    reasons = pd.read_csv(tmp_path / "second.csv.rejects.csv", dtype=str, encoding="utf-8-sig")
    assert reasons["reason"].iloc[0].startswith(f"unknown group: {town.free_name} has no group 2")


@pytest.mark.parametrize(
    ("text", "village", "group", "house"),
    [
        ("新村村3组12号", "新村村", 3, "12"),
        ("石门镇中心村村三组5号", "中心村村", 3, "5"),
        ("新村村民委员会3组2号", "新村", 3, "2"),
        ("五里村村委会3组2号", "五里村", 3, "2"),
        ("三河镇三河镇村5组6号", "三河镇村", 5, "6"),
        ("王家乡村4组3号", "王家乡村", 4, "3"),
        ("王家湾村3组12号附3号", "王家湾村", 3, "12附3"),
        ("王家湾村3组12附3号", "王家湾村", 3, "12附3"),
        ("王家湾村3组12号附3", "王家湾村", 3, "12附3"),
        ("王家湾村3组附5号", "王家湾村", 3, "附5"),
        ("王家湾村3组12之1号", "王家湾村", 3, "12之1"),
        ("王家湾村二组018号之02", "王家湾村", 2, "18之2"),
        ("王家湾村3组12号-1", "王家湾村", 3, "12-1"),
        ("王家湾村3组12－1号", "王家湾村", 3, "12-1"),
    ],
)
def test_addresses_keep_every_part(text: str, village: str, group: int, house: str) -> None:
    p = parse_address(text)
    assert (p.village, p.group, p.house_number) == (village, group, house)
    canonical = normalise_address(text)
    assert canonical.endswith(f"{house}号") and village in canonical
    assert normalise_address(canonical) == canonical


def test_attached_house_numbers_are_different_houses() -> None:
    texts = ["王家湾村3组12号", "王家湾村3组12号附3号", "王家湾村3组12之1号", "王家湾村3组12-1号"]
    assert len({normalise_address(t) for t in texts}) == len(texts)
