"""Shared machinery of the key-unit and inspection tests (a helpers module, not a test file):
a copy of the sample town with an active plan, accounts of every role and scope, the real
app behind a TestClient, a data key, and small helpers (a point inside a grid, an upload)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.access import users
from geogrid.access.policy import Principal
from geogrid.people.crypto import key_provider
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings

#: subject → (role, scope kind, permissions)
SUBJECTS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "anonymous": (None, "", ()),
    "sysadmin": ("sysadmin", "all", ()),
    "secadmin": ("secadmin", "all", ()),
    "auditor": ("auditor", "all", ()),
    "planner": ("planner", "town", ()),
    "viewer": ("viewer", "town", ()),
    "town_leader": ("town_leader", "town", ()),
    "town_leader_unmask": ("town_leader", "town", ("unmask",)),
    "town_leader_other": ("town_leader", "other_town", ()),
    "village_leader": ("village_leader", "village", ()),
    "village_leader_other": ("village_leader", "other_village", ()),
    "grid_worker": ("grid_worker", "grid", ()),
    "grid_worker_unmask": ("grid_worker", "grid", ("unmask",)),
    "grid_worker_sibling": ("grid_worker", "sibling", ()),
}


@dataclass
class World:
    client: TestClient
    engine: Engine
    url: str
    codes: dict[str, str]
    points: dict[str, tuple[float, float]]  # grid / sibling → a point inside
    headers: dict[str, dict[str, str]]
    principals: dict[str, Principal]


def jpeg(colour: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(out, "JPEG")
    return out.getvalue()


def upload(w: World, subject: str = "grid_worker", colour: tuple[int, int, int] = (1, 2, 3)) -> str:
    """Upload an image through the case file store; its sha256."""
    r = w.client.post(
        "/api/cases/files",
        headers=w.headers[subject],
        files={"file": ("a.jpg", jpeg(colour), "image/jpeg")},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def make_world(
    pg: Any, template: str, sample_town: Any, account_maker: Any, home: Any
) -> Iterator[World]:
    """The world of a test module (yielded; the database is dropped after)."""
    name = pg.create_database(template=template)
    url = pg.url(name)
    engine = store.make_engine(url)
    plan = create_plan(engine, sample_town.town_code, name="active", jobs=1)
    activate_plan(engine, plan)
    with engine.connect() as conn:
        village, grid, sibling = conn.execute(
            text(
                "SELECT g.village_code, min(g.code), max(g.code) FROM grids g "
                "WHERE g.plan_id = :p AND g.level = 3 GROUP BY g.village_code "
                "HAVING count(*) >= 2 ORDER BY g.village_code LIMIT 1"
            ),
            {"p": plan},
        ).one()
        points = {}
        for key, code in (("grid", grid), ("sibling", sibling)):
            x, y = conn.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p "
                    "FROM grids WHERE plan_id = :p AND code = :g) s"
                ),
                {"p": plan, "g": code},
            ).one()
            points[key] = (float(x), float(y))
    codes = {
        "all": "all",
        "town": sample_town.town_code,
        "village": village,
        "grid": grid,
        "sibling": sibling,
        "other_town": "420117999000",
        "other_village": "420117999201",
    }
    accounts = {
        key: account_maker(url, role, codes[scope], perms)
        for key, (role, scope, perms) in SUBJECTS.items()
        if role is not None
    }
    principals = {}
    with engine.connect() as conn:
        for key, acc in accounts.items():
            principals[key] = users.get_user(conn, username=acc.username).principal()
    key_provider(home, env={}, create=True)
    app = create_app(Settings(home=home), database_url=url)
    try:
        with TestClient(app) as client:
            headers: dict[str, dict[str, str]] = {"anonymous": {}}
            headers.update({k: a.headers(client) for k, a in accounts.items()})
            yield World(client, engine, url, codes, points, headers, principals)
    finally:
        engine.dispose()
        pg.drop_database(name)
