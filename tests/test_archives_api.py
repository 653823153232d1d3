"""/api/archives over real HTTP as the web role: every role and scope (allowed and refused;
tests/test_access_api.py leaves the prefix to this file), the zip's bundle verified, the
unmasked download audited with its reason."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import text

from api.auth import all_routes, policy_of
from geogrid.archives import bundle
from tests.archives_support import CANARIES, PEOPLE, World, make_world

ROUTES = {
    ("GET", "/api/archives/{kind}/{code}"): "archive.export",
    ("POST", "/api/archives/{kind}/{code}/unmasked"): "archive.unmask",
}
CASE_ROLES = (
    "town_leader", "town_leader_unmask", "town_leader_other", "village_leader",
    "village_leader_other", "grid_worker", "grid_worker_unmask", "grid_worker_sibling",
)  # fmt: skip
UNMASK = ("town_leader_unmask", "grid_worker_unmask")
OUTSIDE = ("town_leader_other", "village_leader_other", "grid_worker_sibling")


@pytest.fixture(scope="module")
def world(pg, _town_template, account_maker, tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from make_world(pg, _town_template, account_maker, tmp_path_factory.mktemp("arch-api"))


def test_every_route_under_the_prefix_is_listed(world: World) -> None:
    found = {
        (m, r.path): policy_of(r)
        for r in all_routes(world.client.app)  # type: ignore[arg-type]
        if r.path.startswith("/api/archives")
        for m in getattr(r, "methods", ())
        if m != "HEAD"
    }
    assert found == ROUTES


def _expect(subject: str, unmask: bool, household: bool) -> int:
    if subject == "anonymous":
        return 401
    if subject not in CASE_ROLES or (unmask and subject not in UNMASK):
        return 403
    if subject in OUTSIDE:
        return 404 if household else 403
    return 200


def _unzip(body: bytes, tmp: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        z.extractall(tmp)
        (top,) = {n.split("/")[0] for n in z.namelist()}
    return tmp / top


@pytest.mark.parametrize("unmask", [False, True], ids=["masked", "unmasked"])
@pytest.mark.parametrize("kind", ["grid", "household"])
def test_role_matrix(world: World, kind: str, unmask: bool, tmp_path: Path) -> None:
    code = world.codes["grid"] if kind == "grid" else str(world.household)
    url = f"/api/archives/{kind}/{code}" + ("/unmasked" if unmask else "")
    for subject, headers in world.headers.items():
        if unmask:
            r = world.client.post(url, json={"reason": "档案核对"}, headers=headers)
        else:
            r = world.client.get(url, headers=headers)
        want = _expect(subject, unmask, kind == "household")
        assert r.status_code == want, (subject, r.status_code, r.text[:200])
        if want != 200:
            assert r.json()["code"]
            continue
        assert r.headers["content-type"] == "application/zip"
        folder = _unzip(r.content, tmp_path / subject)
        assert folder.name == f"{kind}-{code}"
        assert bundle.verify_bundle(folder) == []
        names = {p[0] for p in PEOPLE}
        sheet = openpyxl.load_workbook(folder / "records.xlsx")["成员"]
        rows = list(sheet.iter_rows(values_only=True))
        got = {r[1] for r in rows[1:]}
        assert got == (names if unmask else {"张*明", "张*红"}), subject


def test_unmasked_needs_a_reason_and_is_audited(world: World) -> None:
    h = world.headers["grid_worker_unmask"]
    url = f"/api/archives/household/{world.household}/unmasked"
    assert world.client.post(url, json={}, headers=h).status_code == 400
    assert world.client.post(url, json={"reason": "x"}, headers=h).status_code == 400
    r = world.client.post(url, json={"reason": "移交档案室"}, headers=h)
    assert r.status_code == 200
    with world.engine.connect() as conn:
        actor, detail = conn.execute(
            text("SELECT actor, detail FROM audit_log WHERE action = 'archive.unmask' "
                 "AND outcome = 'ok' ORDER BY id DESC LIMIT 1")
        ).one()  # fmt: skip
    assert detail["reason"] == "移交档案室" and actor.startswith("grid-worker")
    assert not any(c in str(detail) for c in CANARIES)


@pytest.mark.parametrize(
    "path",
    ["/api/archives/street/1", "/api/archives/grid/123", "/api/archives/group/420117105201",
     "/api/archives/household/abc"],
)  # fmt: skip
def test_bad_paths_are_rejected(world: World, path: str) -> None:
    r = world.client.get(path, headers=world.headers["town_leader"])
    assert r.status_code in (400, 404, 422) and r.status_code != 500
    assert "code" in r.json()


def test_unknown_grid_is_not_found(world: World) -> None:
    r = world.client.get("/api/archives/grid/420117105999001", headers=world.headers["town_leader"])
    assert r.status_code == 404
