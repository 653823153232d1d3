"""Printed 网格化图谱 posters and contact cards, read back: pypdf for text, page size and
embedded fonts, zxing-cpp for the QR code taken out of the PDF; over HTTP as the web role,
and from the command line."""

from __future__ import annotations

import io
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from api import create_app
from geogrid import store
from geogrid.cli import build_app
from geogrid.ingest.address import parse_address
from geogrid.plans import activate_plan, assign_staff, create_plan, params_from_options
from geogrid.printing import render_poster
from geogrid.settings import Settings

BASE = "https://grid.example.gov.cn/luohan"
A3 = (841.89, 1190.55)  # points
A4 = (595.28, 841.89)
#: staff names no resident of the sample town has (checked in the fixture)
LEADER, OFFICER = "欧阳晓岚", "司马振东"
LEADER_PHONE, OFFICER_PHONE = "13807310001", "0731-88880002"


@dataclass
class Town:
    engine: Engine
    url: str
    client: TestClient
    settings: Settings
    town: str
    village: str
    grid: str
    sibling: str
    plan: int
    photo: tuple[int, int]


@pytest.fixture(scope="module")
def town(pg, _town_template: str, sample_town, tmp_path_factory) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    code = sample_town.town_code
    plan = create_plan(engine, code, name="测试方案", jobs=1,
                       params=params_from_options(exact_seconds=0))  # fmt: skip
    activate_plan(engine, plan)
    with engine.connect() as conn:
        village, grid, sibling = conn.execute(
            text(
                "SELECT g.village_code, min(g.code), max(g.code) FROM grids g "
                "WHERE g.plan_id = :p AND g.level = 3 GROUP BY g.village_code "
                "HAVING count(*) >= 3 ORDER BY g.village_code LIMIT 1"
            ),
            {"p": plan},
        ).one()
        residents = set(conn.execute(text("SELECT head_name FROM households")).scalars())
    assert not {LEADER, OFFICER} & residents
    photos = tmp_path_factory.mktemp("photos")
    size = (90, 120)
    Image.new("RGB", size, (200, 120, 60)).save(photos / "leader.jpg", quality=90)
    assign_staff(engine, grid_code=grid, role="leader", post="A", name=LEADER, phone=LEADER_PHONE,
                 photo="leader.jpg", duties="负责巡查走访与矛盾调解")  # fmt: skip
    assign_staff(engine, grid_code=grid, role="info_officer", post="A", name=OFFICER,
                 phone=OFFICER_PHONE)  # fmt: skip
    settings = Settings(home=tmp_path_factory.mktemp("home"), photo_dir=photos,
                        public_base_url=BASE)  # fmt: skip
    app = create_app(settings, database_url=url)
    try:
        with TestClient(app) as client:
            yield Town(engine, url, client, settings, code, village, grid, sibling, plan, size)
    finally:
        engine.dispose()
        pg.drop_database(name)


# --------------------------------------------------------------------------- reading PDFs


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


def page_sizes(pdf: bytes) -> set[tuple[float, float]]:
    return {
        (round(float(p.mediabox.width), 2), round(float(p.mediabox.height), 2))
        for p in PdfReader(io.BytesIO(pdf)).pages
    }


def fonts(pdf: bytes) -> dict[str, bool]:
    """Every font the pages use → is its program embedded (FontFile, FontFile2/3)?"""
    out: dict[str, bool] = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        res = page["/Resources"].get_object()
        for font in (res.get("/Font") or {}).values():
            font = font.get_object()
            desc_font = (
                font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
            )
            desc = desc_font.get("/FontDescriptor")
            desc = desc.get_object() if desc is not None else {}
            out[str(font["/BaseFont"])] = any(
                k in desc for k in ("/FontFile", "/FontFile2", "/FontFile3")
            )
    return out


def qr_codes(pdf: bytes) -> list[str]:
    """The texts of the QR codes in the PDF's images (decoded with zxing-cpp); at least one."""
    found = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for image in page.images:
            pil = Image.open(io.BytesIO(image.data)).convert("L")
            found += [r.text for r in zxingcpp.read_barcodes(pil) if r.format.name == "QRCode"]
    assert found, "no QR code in the PDF's images"
    return found


def image_sizes(pdf: bytes) -> set[tuple[int, int]]:
    return {
        Image.open(io.BytesIO(i.data)).size
        for p in PdfReader(io.BytesIO(pdf)).pages
        for i in p.images
    }


def assert_noto_embedded(pdf: bytes) -> None:
    used = fonts(pdf)
    assert used and all(used.values()), used
    assert all(re.search(r"Noto.?Sans.?CJK", name) for name in used), used


# --------------------------------------------------------------------------- posters


def test_grid_poster_zh_a3(town: Town) -> None:
    with town.engine.connect() as conn:
        name, households = conn.execute(
            text("SELECT name, households FROM grids WHERE plan_id = :p AND code = :c"),
            {"p": town.plan, "c": town.grid},
        ).one()
        render_poster(conn, town.grid, base_url=BASE, settings=town.settings)  # fonts loaded once
        t0 = time.perf_counter()
        printed = render_poster(conn, town.grid, base_url=BASE, settings=town.settings)
        elapsed = time.perf_counter() - t0
    # ~1.5 s on an idle 2-core machine; the bound leaves room for a busy one
    assert elapsed < 6, f"a grid poster took {elapsed:.1f} s"
    pdf = printed.pdf
    assert page_sizes(pdf) == {A3}
    body = pdf_text(pdf)
    for expected in (name, "网格化图谱", "网格长", "网格信息员", LEADER, LEADER_PHONE, OFFICER,
                     OFFICER_PHONE, "负责巡查走访与矛盾调解", "图例", "本网格", "相邻网格",
                     "村民小组界线", f"{households} 户", "扫码查看本网格信息"):  # fmt: skip
        assert expected in body, expected
    scale = re.search(r"比例尺 1:([\d ]+)", body)
    assert scale and int(scale.group(1).replace(" ", "")) % 1000 == 0
    assert "千米" in body or "米" in body  # the scale bar's unit
    assert_noto_embedded(pdf)
    url = f"{BASE}/public/grid/{town.grid}"
    assert printed.url == url
    assert set(qr_codes(pdf)) == {url}
    assert town.photo in image_sizes(pdf)  # the leader's photo; the officer gets a placeholder


def test_grid_poster_en_a4(town: Town) -> None:
    with town.engine.connect() as conn:
        printed = render_poster(conn, town.grid, paper="a4", lang="en", base_url=BASE,
                                settings=town.settings)  # fmt: skip
    assert page_sizes(printed.pdf) == {A4}
    body = pdf_text(printed.pdf)
    for expected in ("Grid map", "Grid leader", "Information officer", "Legend", "This grid",
                     "Scale 1:", LEADER):  # fmt: skip
        assert expected in body, expected
    for chinese_label in ("网格长", "图例", "比例尺", "相邻网格"):
        assert chinese_label not in body
    assert set(qr_codes(printed.pdf)) == {f"{BASE}/public/grid/{town.grid}"}


def test_village_and_town_posters(town: Town) -> None:
    with town.engine.connect() as conn:
        grids = (
            conn.execute(
                text(
                    "SELECT name FROM grids WHERE plan_id = :p AND village_code = :v AND level = 3"
                ),
                {"p": town.plan, "v": town.village},
            )
            .scalars()
            .all()
        )
        villages = (
            conn.execute(
                text("SELECT name FROM admin_areas WHERE level = 'village' AND parent_code = :t"),
                {"t": town.town},
            )
            .scalars()
            .all()
        )
        village = render_poster(conn, town.village, paper="A4", base_url=BASE,
                                settings=town.settings)  # fmt: skip
        whole = render_poster(conn, town.town, base_url=BASE, settings=town.settings)
    body = pdf_text(village.pdf)
    assert all(g in body for g in grids), body
    assert LEADER in body and LEADER_PHONE in body  # the grid table names each grid's leader
    assert page_sizes(village.pdf) == {A4}
    body = pdf_text(whole.pdf)
    assert all(v in body for v in villages)
    assert "村（社区）一览" in body
    assert set(qr_codes(whole.pdf)) == {f"{BASE}/public"}
    assert_noto_embedded(whole.pdf)


# --------------------------------------------------------------------------- cards


def _residents(town: Town) -> tuple[set[str], set[str]]:
    with town.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT head_name, phone FROM households WHERE grid_code = :g"), {"g": town.grid}
        ).all()
        members = (
            conn.execute(
                text(
                    "SELECT m.name FROM household_members m JOIN households h "
                    "ON h.id = m.household_id WHERE h.grid_code = :g"
                ),
                {"g": town.grid},
            )
            .scalars()
            .all()
        )
    names = {r.head_name for r in rows if r.head_name} | set(members)
    phones = {re.sub(r"\D", "", r.phone) for r in rows if r.phone}
    return names, phones


def test_cards_carry_staff_and_house_number_only(town: Town, account_maker) -> None:  # type: ignore[no-untyped-def]
    with town.engine.connect() as conn:
        n = conn.execute(
            text("SELECT count(*) FROM households WHERE grid_code = :g"), {"g": town.grid}
        ).scalar_one()
    worker = account_maker(town.url, "grid_worker", town.grid)
    t0 = time.perf_counter()
    r = town.client.get("/print/cards.pdf", params={"grid": town.grid},
                        headers=worker.headers(town.client))  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert elapsed < 45, f"{n} cards took {elapsed:.1f} s"  # a few seconds when idle
    pdf = r.content
    pages = PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) == math.ceil(n / 10) and page_sizes(pdf) == {A4}
    body = pdf_text(pdf)
    assert body.count("网格服务管理人员联系卡") == n
    assert body.count("门牌") == n
    with town.engine.connect() as conn:  # the web role reads house_no, never the address
        addresses = conn.execute(
            text("SELECT address_norm FROM households WHERE grid_code = :g"), {"g": town.grid}
        ).scalars()
        numbers = [parse_address(a).house_number for a in addresses if a]
    assert numbers and sorted(re.findall(r"门牌：[^\n]*?(\S+)号", body)) == sorted(
        x for x in numbers if x
    )
    for expected in (LEADER, LEADER_PHONE, OFFICER, OFFICER_PHONE, "网格长"):
        assert expected in body
    names, phones = _residents(town)
    assert names and phones
    assert [x for x in names if x in body] == []
    digits = re.sub(r"\D", "", body)
    assert [p for p in phones if p in digits] == []
    assert_noto_embedded(pdf)
    assert set(qr_codes(pdf)) == {f"{BASE}/public/grid/{town.grid}"}


def test_cards_from_the_command_line_print_house_numbers(
    town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOGRID_DATABASE_URL", town.url)
    monkeypatch.setenv("GEOGRID_PUBLIC_BASE_URL", BASE)
    out = tmp_path / "cards.pdf"
    result = CliRunner().invoke(build_app(), ["map", "cards", town.grid, "-o", str(out)])
    assert result.exit_code == 0, result.output
    body = pdf_text(out.read_bytes())
    with town.engine.connect() as conn:
        addresses = (
            conn.execute(
                text("SELECT address_norm FROM households WHERE grid_code = :g"), {"g": town.grid}
            )
            .scalars()
            .all()
        )
    numbers = [parse_address(a).house_number for a in addresses]
    printed = re.findall(r"门牌：[^\n]*?(\S+)号", body)
    assert sorted(printed) == sorted(x for x in numbers if x)
    names, _ = _residents(town)
    assert [x for x in names if x in body] == []


def test_poster_from_the_command_line(
    town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOGRID_DATABASE_URL", town.url)
    monkeypatch.setenv("GEOGRID_PUBLIC_BASE_URL", BASE)
    out = tmp_path / "poster.pdf"
    args = ["map", "poster", town.grid, "-o", str(out), "--paper", "A4", "--lang", "en",
            "--plan", str(town.plan)]  # fmt: skip
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert page_sizes(out.read_bytes()) == {A4} and "Grid leader" in pdf_text(out.read_bytes())
    for bad, reason in (
        (["--paper", "A5"], "paper must be A3 or A4"),
        (["--lang", "fr"], "unknown language"),
        (["--plan", "999999"], "does not exist"),
    ):
        r = CliRunner().invoke(build_app(), ["map", "poster", town.grid, "-o", str(out), *bad])
        assert r.exit_code == 1 and reason in str(r.exception), (bad, r.output)
    r = CliRunner().invoke(build_app(), ["map", "cards", town.village, "-o", str(out)])
    assert r.exit_code == 1 and "15-digit" in str(r.exception)


# --------------------------------------------------------------------------- refusals


def _error(r: Any, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) >= {"code", "description"} and body["code"] == code, body
    assert "SELECT" not in body["description"]
    return str(body["description"])


def test_bad_requests_are_refused_clearly(town: Town, account_maker) -> None:  # type: ignore[no-untyped-def]
    h = account_maker(town.url, "town_leader", town.town).headers(town.client)
    c = town.client
    unknown_grid = town.village + "999"
    assert "has no grid" in _error(
        c.get("/print/poster.pdf", params={"code": unknown_grid}, headers=h), 404, "NotFound"
    )
    assert "has no grid" in _error(
        c.get("/print/cards.pdf", params={"grid": unknown_grid}, headers=h), 404, "NotFound"
    )
    assert "does not exist" in _error(
        c.get("/print/poster.pdf", params={"code": town.grid, "plan": 999999}, headers=h),
        404,
        "NotFound",
    )
    for params, reason in (
        ({"code": "42011710520100x"}, "15 digits"),
        ({"code": "4201171052"}, "15 digits"),
        ({"code": town.grid, "paper": "A5"}, "A3 or A4"),
        ({"code": town.grid, "lang": "fr"}, "unknown language"),
    ):
        r = c.get("/print/poster.pdf", params=params, headers=h)
        assert reason in _error(r, 400, "InvalidInput"), params
    for params, reason in (
        ({"grid": town.village}, "15-digit"),
        ({"grid": town.grid, "lang": "de"}, "unknown language"),
    ):
        r = c.get("/print/cards.pdf", params=params, headers=h)
        assert reason in _error(r, 400, "InvalidInput"), params
    assert c.get("/print/poster.pdf", params={"code": "x" * 30}, headers=h).status_code == 400


def test_printing_is_scoped(town: Town, account_maker) -> None:  # type: ignore[no-untyped-def]
    c = town.client
    assert c.get("/print/poster.pdf", params={"code": town.grid}).status_code == 401
    sibling = account_maker(town.url, "grid_worker", town.sibling).headers(c)
    assert c.get("/print/cards.pdf", params={"grid": town.grid}, headers=sibling).status_code == 403
    assert (
        c.get("/print/poster.pdf", params={"code": town.grid}, headers=sibling).status_code == 403
    )
    # a grid worker may print the poster of the village and town its grid belongs to
    r = c.get("/print/poster.pdf", params={"code": town.village, "paper": "A4"}, headers=sibling)
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    admin = account_maker(town.url, "secadmin", "all").headers(c)
    assert c.get("/print/poster.pdf", params={"code": town.grid}, headers=admin).status_code == 403
