"""Shared machinery of the grid-team, archive and dashboard tests (a helpers module, not a
test file): a copy of the sample town seeded with an active plan, cases and staff
(tests/pages_support.py), households placed in their grids, a few household members with
full personal data, accounts of every role and scope, and the real app behind a TestClient.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.access import users
from geogrid.access.policy import Principal
from geogrid.people.crypto import key_provider
from geogrid.people.idcard import check_character
from geogrid.people.load import import_members
from geogrid.settings import Settings
from tests.fieldwork_support import SUBJECTS
from tests.pages_support import seed_overlays


def id_number(first17: str) -> str:
    return first17 + check_character(first17)


#: Members of the first household of the grid under test (name, ID number, phone).
PEOPLE = (
    ("张三明", id_number("42011719800101001"), "13812345678"),
    ("张小红", id_number("42011720100202002"), "13912345670"),
)
CANARIES = [v for person in PEOPLE for v in person]


@dataclass
class World:
    client: TestClient
    engine: Engine
    url: str
    home: Path
    codes: dict[str, str]
    headers: dict[str, dict[str, str]]
    principals: dict[str, Principal]
    household: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _place_households(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE households h SET grid_code = g.code FROM grids g "
                "JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                "WHERE g.level = 3 AND ST_Covers(g.geom, h.geom)"
            )
        )
        conn.execute(
            text(
                "UPDATE households h SET grid_code = h.village_code || '001' "
                "WHERE h.grid_code IS NULL AND EXISTS (SELECT 1 FROM grids g "
                "WHERE g.code = h.village_code || '001')"
            )
        )


def _members(engine: Engine, home: Path, grid: str) -> int:
    with engine.connect() as conn:
        hh, reg, village = conn.execute(
            text(
                "SELECT h.id, h.register_no, v.name FROM households h "
                "JOIN admin_areas v ON v.code = h.village_code "
                "WHERE h.grid_code = :g ORDER BY h.id LIMIT 1"
            ),
            {"g": grid},
        ).one()
    path = home / "members.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["村", "户号", "姓名", "与户主关系", "公民身份号码", "联系电话"])
        for i, (name, number, phone) in enumerate(PEOPLE):
            out.writerow([village, reg, name, "户主" if i == 0 else "子女", number, phone])
    keys = key_provider(home, env={}, create=True)
    assert import_members(engine, path, keys).inserted == len(PEOPLE)
    return int(hh)


def make_world(
    pg: Any, template: str, account_maker: Any, home: Path, *, members: bool = True
) -> Iterator[World]:
    """The world of a test module (yielded; the database is dropped after)."""
    name = pg.create_database(template=template)
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        ids = seed_overlays(url)
        _place_households(engine)
        with engine.connect() as conn:
            village, grid, sibling = conn.execute(
                text(
                    "SELECT g.village_code, min(g.code), max(g.code) FROM grids g "
                    "WHERE g.plan_id = :p AND g.level = 3 GROUP BY g.village_code "
                    "HAVING count(*) >= 2 ORDER BY g.village_code LIMIT 1"
                ),
                {"p": ids["active"]},
            ).one()
        codes = {
            "all": "all", "town": ids["town"], "village": village, "grid": grid,
            "sibling": sibling, "other_town": "420117999000", "other_village": "420117999201",
        }  # fmt: skip
        household = _members(engine, home, grid) if members else 0
        key_provider(home, env={}, create=True)
        accounts = {
            key: account_maker(url, role, codes[scope], perms)
            for key, (role, scope, perms) in SUBJECTS.items()
            if role is not None
        }
        principals = {}
        with engine.connect() as conn:
            for key, acc in accounts.items():
                principals[key] = users.get_user(conn, username=acc.username).principal()
        app = create_app(Settings(home=home), database_url=url)
        with TestClient(app) as client:
            headers: dict[str, dict[str, str]] = {"anonymous": {}}
            headers.update({k: a.headers(client) for k, a in accounts.items()})
            yield World(client, engine, url, home, codes, headers, principals, household)
    finally:
        engine.dispose()
        pg.drop_database(name)
