"""Archive bundles (一户一档、一组一本、一格一盒): manifests verified, the PDF read back (Chinese
text, fonts embedded), the workbook's cells, the GeoPackage's layers and CRS, masking and
the audited unmask, scope, guards, area exports and the command line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pyogrio
import pytest
from pypdf import PdfReader
from sqlalchemy import text

from geogrid.archives import bundle, data
from geogrid.errors import InvalidInput, NotFound
from geogrid.people.crypto import key_provider
from geogrid.people.load import open_all_scopes
from tests.archives_support import CANARIES, PEOPLE, World, make_world


@pytest.fixture(scope="module")
def world(pg, _town_template, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(pg, _town_template, account_maker, tmp_path_factory.mktemp("arch"))


def _export(world: World, kind: str, code: str, out: Path, **kw: object) -> bundle.Bundle:
    with world.engine.begin() as conn:
        open_all_scopes(conn)
        return bundle.export_unit(conn, kind, code, out, actor=None, prefix="", **kw)  # type: ignore[arg-type]


def _pdf_text(path: Path) -> tuple[str, list[str]]:
    reader = PdfReader(path)
    txt = "".join(p.extract_text() for p in reader.pages)
    embedded = []
    for page in reader.pages:
        fonts = page["/Resources"]["/Font"]
        for ref in fonts.values():
            f = ref.get_object()
            desc = (
                f.get("/FontDescriptor") or f["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            )
            d = desc.get_object()
            if any(k in d for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                embedded.append(str(f["/BaseFont"]))
    return txt, embedded


def test_grid_box_is_complete_masked_and_verifiable(world: World, tmp_path: Path) -> None:
    grid = world.codes["grid"]
    b = _export(world, "grid", grid, tmp_path)
    assert b.path == tmp_path / f"grid-{grid}"
    assert bundle.verify_bundle(b.path) == []
    m = json.loads((b.path / "manifest.json").read_text(encoding="utf-8"))
    assert [f["name"] for f in m["files"]] == ["archive.pdf", "records.xlsx", "map.gpkg"]
    assert m["personal_data"] == "masked" and m["archive"] == "一格一盒"
    with world.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM households WHERE grid_code = :g"),
                         {"g": grid}).scalar_one()  # fmt: skip
    assert m["counts"]["households"] == n and m["counts"]["members"] == len(PEOPLE)
    # the PDF: Chinese text extracted, the CJK font embedded, masked names only
    txt, embedded = _pdf_text(b.path / "archive.pdf")
    assert "一格一盒" in txt and "网格组织" in txt and "已脱敏" in txt
    assert any("NotoSansCJK" in f.replace("-", "") for f in embedded), embedded
    assert "张*明" in txt
    for canary in CANARIES:
        assert canary not in txt
    # the workbook: sheets, a member row masked
    wb = openpyxl.load_workbook(b.path / "records.xlsx", read_only=True)
    assert wb.sheetnames == ["概况", "住户", "成员", "走访", "事件", "网格组织"]
    members = list(wb["成员"].iter_rows(values_only=True))
    assert members[0][:2] == ("户号", "姓名") and len(members) == 1 + len(PEOPLE)
    assert {r[1] for r in members[1:]} == {"张*明", "张*红"}
    assert all("*" in (r[5] or "") for r in members[1:])
    cells = [c for row in wb["成员"].iter_rows(values_only=True) for c in row]
    assert not set(CANARIES) & set(map(str, cells))
    assert len(list(wb["住户"].iter_rows())) == 1 + n
    # the GeoPackage: layers in CGCS2000, no personal columns
    layers = {name for name, _ in pyogrio.list_layers(b.path / "map.gpkg")}
    assert {"outline", "grids", "households"} <= layers
    info = pyogrio.read_info(b.path / "map.gpkg", layer="households")
    assert info["crs"] == "EPSG:4490" and info["features"] == n
    assert not {"head", "name", "phone"} & set(info["fields"])


def test_tampering_is_detected(world: World, tmp_path: Path) -> None:
    b = _export(world, "grid", world.codes["sibling"], tmp_path)
    assert bundle.verify_bundle(b.path) == []
    with (b.path / "records.xlsx").open("ab") as fh:
        fh.write(b"x")
    (b.path / "extra.txt").write_text("?")
    problems = bundle.verify_bundle(b.path)
    assert "records.xlsx: changed (size or SHA-256 differs)" in problems
    assert "extra.txt: not in the manifest" in problems
    assert "records.xlsx: does not match SHA256SUMS" in problems
    (b.path / "map.gpkg").unlink()
    assert "map.gpkg: missing" in bundle.verify_bundle(b.path)
    (b.path / "manifest.json").write_text("{")
    assert bundle.verify_bundle(b.path) == ["manifest.json: unreadable (JSONDecodeError)"]


def test_household_file_unmasked_is_audited(world: World, tmp_path: Path) -> None:
    keys = key_provider(world.home, env={})
    with pytest.raises(InvalidInput):
        _export(world, "household", str(world.household), tmp_path, provider=keys, reason=" ")
    b = _export(world, "household", str(world.household), tmp_path, provider=keys,
                reason="档案移交")  # fmt: skip
    assert bundle.verify_bundle(b.path) == []
    txt, _ = _pdf_text(b.path / "archive.pdf")
    assert "一户一档" in txt and PEOPLE[0][0] in txt and PEOPLE[0][1] in txt
    wb = openpyxl.load_workbook(b.path / "records.xlsx", read_only=True)
    rows = list(wb["成员"].iter_rows(values_only=True))[1:]
    assert {(r[1], r[5], r[6]) for r in rows} == set(PEOPLE)
    with world.engine.connect() as conn:
        ids = conn.execute(
            text("SELECT id::text FROM household_members WHERE household_id = :h"),
            {"h": world.household},
        ).scalars().all()  # fmt: skip
        entry = conn.execute(
            text("SELECT target_ids, detail FROM audit_log WHERE action = 'archive.unmask' "
                 "ORDER BY id DESC LIMIT 1")
        ).one()  # fmt: skip
    assert sorted(entry.target_ids) == sorted(ids)
    assert entry.detail["reason"] == "档案移交"
    assert not set(CANARIES) & set(json.dumps(entry.detail, ensure_ascii=False).split('"'))


def test_group_book(world: World, tmp_path: Path) -> None:
    with world.engine.connect() as conn:
        village, no, n = conn.execute(
            text(
                "SELECT vg.village_code, vg.group_no, count(h.id) FROM villager_groups vg "
                "JOIN households h ON h.group_id = vg.id WHERE vg.geom IS NOT NULL "
                "GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 1"
            )
        ).one()
    b = _export(world, "group", f"{village}-{no}", tmp_path)
    assert b.manifest["archive"] == "一组一本" and b.manifest["counts"]["households"] == n
    assert bundle.verify_bundle(b.path) == []
    txt, _ = _pdf_text(b.path / "archive.pdf")
    assert "一组一本" in txt


BAD_UNITS = [
    ("kind", "street", "1"),
    ("household not digits", "household", "12a"),
    ("household zero", "household", "0"),
    ("group without number", "group", "420117105201"),
    ("group bad village", "group", "4201171052-3"),
    ("grid too short", "grid", "42011710520100"),
]


@pytest.mark.parametrize(("rule", "kind", "code"), BAD_UNITS, ids=[r for r, *_ in BAD_UNITS])
def test_bad_units_are_rejected(rule: str, kind: str, code: str) -> None:
    with pytest.raises(InvalidInput):
        data.parse_unit(kind, code)


def test_unknown_and_out_of_scope_units_are_not_found(world: World, tmp_path: Path) -> None:
    with world.engine.begin() as conn:
        open_all_scopes(conn)
        with pytest.raises(NotFound):
            bundle.export_unit(conn, "grid", "420117999201001", tmp_path, actor=None, prefix="")
        with pytest.raises(NotFound):
            bundle.export_unit(conn, "household", "999999999", tmp_path, actor=None, prefix="")
        # the household exists but lies outside the sibling grid's scope
        with pytest.raises(NotFound):
            bundle.export_unit(conn, "household", str(world.household), tmp_path, actor=None,
                               prefix=world.codes["sibling"])  # fmt: skip
        conn.rollback()
    with world.engine.connect() as conn, pytest.raises(InvalidInput):
        bundle.area_grids(conn, "4201")


def test_listing_puts_narrow_records_two_to_a_line() -> None:
    from geogrid.archives.pdf import LINE, SPLIT, _listing, _width

    narrow = [("no", "户号"), ("name", "姓名")]
    rows = [{"no": f"{i:04d}", "name": "张*明" if i % 2 else "Li"} for i in range(5)]
    lines = _listing(narrow, rows).split("\n")
    assert len(lines) == 2 + 3  # header, rule, five records on three lines
    assert lines[0].count("户号") == 2 and lines[1].startswith("─")
    # read left to right, the right half starting at the same column on every line
    assert [line.split(SPLIT)[0].split()[0] for line in lines[2:]] == ["0000", "0002", "0004"]
    assert [line.split(SPLIT)[1].split()[0] for line in lines[2:4]] == ["0001", "0003"]
    assert len({_width(lines[i].split(SPLIT)[0]) for i in (0, 2, 3)}) == 1
    assert SPLIT not in lines[4]  # the odd record alone
    # records too wide for two on a line stay one a line, cut at the column limit
    wide = [(k, k) for k in ("a", "b", "c")]
    lines = _listing(wide, [dict.fromkeys("abc", "长" * 30)] * 3).split("\n")
    assert len(lines) == 2 + 3 and not any(SPLIT in line for line in lines)
    assert all(_width(line) <= LINE for line in lines)


def test_grid_box_pdf_lists_every_household_and_member(world: World, tmp_path: Path) -> None:
    grid = world.codes["grid"]
    b = _export(world, "grid", grid, tmp_path)
    txt, _ = _pdf_text(b.path / "archive.pdf")
    # numbers as words (a page's footer can run into the line after it in the extraction)
    words = set(re.findall(r"\d+", txt)) | set(txt.split())
    with world.engine.connect() as conn:
        hh = conn.execute(
            text("SELECT register_no, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM households "
                 "WHERE grid_code = :g"), {"g": grid}
        ).all()  # fmt: skip
    assert hh and {h.register_no for h in hh} <= words
    assert "张*明" in words and "张*红" in words
    # the GeoPackage's points are the households' places (EPSG:4326 relabelled CGCS2000)
    import pyogrio as po

    frame = po.read_dataframe(b.path / "map.gpkg", layer="households")
    got = {r.register_no: (r.geometry.x, r.geometry.y) for r in frame.itertuples()}
    assert len(got) == len(hh)
    for h in hh:
        x, y = got[h.register_no]
        assert abs(x - h.lon) < 1e-7 and abs(y - h.lat) < 1e-7


def test_village_boxes_with_progress(world: World, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    boxes = bundle.export_area(world.engine, world.codes["village"], tmp_path, jobs=2,
                               progress=lambda i, n, _g: seen.append((i, n)))  # fmt: skip
    with world.engine.connect() as conn:
        grids = bundle.area_grids(conn, world.codes["village"])
    assert [b.unit.code for b in boxes] == grids
    assert seen[0] == (0, len(grids)) and seen[-1] == (len(grids), len(grids))
    index = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert [b["code"] for b in index["boxes"]] == grids
    assert all(bundle.verify_bundle(b.path) == [] for b in boxes)


def test_command_line(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from geogrid.cli import build_app

    monkeypatch.setenv("GEOGRID_DATABASE_URL", world.url)
    monkeypatch.setenv("GEOGRID_HOME", str(world.home))
    app = build_app()
    run = CliRunner().invoke
    r = run(app, ["archive", "export", "--grid", world.codes["grid"], "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    folder = tmp_path / f"grid-{world.codes['grid']}"
    assert (folder / "manifest.json").is_file()
    r = run(app, ["archive", "verify", str(folder)])
    assert r.exit_code == 0 and "OK" in r.output
    (folder / "archive.pdf").write_bytes(b"%PDF-1.7")
    assert run(app, ["archive", "verify", str(folder)]).exit_code == 1
    # guards: exactly one unit, --unmask needs a reason, a town code ends in 000
    for args in (
        ["--grid", world.codes["grid"], "--village", world.codes["village"]],
        [],
        ["--grid", world.codes["grid"], "--unmask"],
        ["--town", world.codes["village"]],
    ):
        r = run(app, ["archive", "export", *args, "--out", str(tmp_path)])
        assert r.exit_code != 0 and isinstance(r.exception, InvalidInput | SystemExit), args
    with world.engine.connect() as conn:
        actor = conn.execute(
            text("SELECT actor FROM audit_log WHERE action = 'archive.export' "
                 "ORDER BY id DESC LIMIT 1")
        ).scalar_one()  # fmt: skip
    assert str(actor).startswith("cli:")
