"""The world of the visit and follow-up API tests (imported by tests/test_visits_api.py and
tests/test_followups.py; a helpers module, not a test file).

A copy of the sample town where village ``V`` gets two grids: its first three households in
``G1`` (own grid), the next two in ``G2`` (sibling); the rest of the town keeps village
scope. One key unit in ``G1``. One member with a special-population record (risk 高) in G1
and one (risk 低) in G2, canary names. Accounts per subject (role, scope, permissions).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.settings import Settings
from tests.conftest import make_home

#: Names that must never appear unmasked in an answer.
CANARIES = ("欧阳明华", "司马光明", "诸葛亮亮")

#: subject → (role, scope key, permissions)
SUBJECTS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "anonymous": (None, "", ()),
    "sysadmin": ("sysadmin", "all", ()),
    "secadmin": ("secadmin", "all", ()),
    "auditor": ("auditor", "all", ()),
    "planner": ("planner", "town", ()),
    "viewer": ("viewer", "town", ()),
    "town_leader": ("town_leader", "town", ("special",)),
    "town_leader_other": ("town_leader", "other_town", ("special",)),
    "village_leader": ("village_leader", "village", ("special",)),
    "grid_worker": ("grid_worker", "grid", ("special",)),
    "grid_worker_plain": ("grid_worker", "grid", ()),
    "grid_worker_sibling": ("grid_worker", "sibling", ("special",)),
}


@dataclass
class VisitWorld:
    client: TestClient
    engine: Engine
    url: str
    codes: dict[str, str]
    households: dict[str, list[int]]  # "g1", "g2", "other": household ids
    key_unit: int
    records: dict[str, int]  # "g1", "g2": special-population record ids
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # subject → username


def jpeg(colour: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(out, "JPEG")
    return out.getvalue()


def _member(conn: Any, household: int, village: str, name: str, n: int) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO household_members (household_id, village_code, name, id_hash, "
                "id_enc, id_key, id_masked, row_hash) VALUES (:h, :v, :n, :hash, '\\x02', 'k', "
                ":m, '\\x03') RETURNING id"
            ),
            {"h": household, "v": village, "n": name, "hash": bytes([n]) * 8,
             "m": f"4201**********{n:04d}"},
        ).scalar_one()
    )  # fmt: skip


def _setup(
    engine: Engine, town: str
) -> tuple[dict[str, str], dict[str, list[int]], int, dict[str, int]]:
    with engine.begin() as conn:
        (v, ids), (w, other) = [
            (r[0], list(r[1]))
            for r in conn.execute(
                text(
                    "SELECT village_code, (array_agg(id ORDER BY id))[1:5] FROM households "
                    "GROUP BY 1 ORDER BY 1 LIMIT 2"
                )
            ).all()
        ]
        g1, g2 = v + "001", v + "002"
        conn.execute(text("UPDATE households SET grid_code = :g WHERE id = ANY(:i)"),
                     {"g": g1, "i": ids[:3]})  # fmt: skip
        conn.execute(text("UPDATE households SET grid_code = :g WHERE id = ANY(:i)"),
                     {"g": g2, "i": ids[3:5]})  # fmt: skip
        unit = conn.execute(
            text(
                "INSERT INTO key_units (unit_no, name, unit_type, risk_level, geom, "
                "village_code, grid_code) VALUES ('T-KU-1', '村小学', 'school', 2, "
                "ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326), :v, :g) RETURNING id"
            ),
            {"v": v, "g": g1},
        ).scalar_one()
        records = {}
        for key, hh, name, risk, n in (("g1", ids[0], CANARIES[0], "高", 1),
                                       ("g2", ids[3], CANARIES[1], "低", 2)):  # fmt: skip
            member = _member(conn, hh, v, name, n)
            records[key] = conn.execute(
                text(
                    "INSERT INTO special_population (member_id, village_code, category, "
                    "risk_level, since) VALUES (:m, :v, '社区矫正', :r, '2026-01-05') RETURNING id"
                ),
                {"m": member, "v": v, "r": risk},
            ).scalar_one()
    codes = {
        "all": "all", "town": town, "village": v, "grid": g1, "sibling": g2,
        "other_town": "420117999000", "other_village": w,
    }  # fmt: skip
    return codes, {"g1": ids[:3], "g2": ids[3:5], "other": other}, int(unit), records


def visit_world(pg, template: str, town: str, account_maker) -> Iterator[VisitWorld]:  # type: ignore[no-untyped-def]
    """Yield the world (module fixture body); the database is dropped afterwards."""
    name = pg.create_database(template=template)
    url = pg.url(name)
    home: Path = make_home("geogrid-visits-")
    engine = store.make_engine(url)
    try:
        codes, households, unit, records = _setup(engine, town)
        accounts = {
            key: account_maker(url, role, codes[scope], perms)
            for key, (role, scope, perms) in SUBJECTS.items()
            if role is not None
        }
        app = create_app(Settings(home=home), database_url=url)
        with TestClient(app) as client:
            world = VisitWorld(client, engine, url, codes, households, unit, records)
            world.headers = {"anonymous": {}}
            world.headers.update({k: a.headers(client) for k, a in accounts.items()})
            world.users = {k: a.username for k, a in accounts.items()}
            yield world
    finally:
        engine.dispose()
        pg.drop_database(name)


def audit_rows(world: VisitWorld, username: str) -> list[Any]:
    with world.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT action, outcome, target_type, target_ids, detail FROM audit_log "
                    "WHERE actor = :u AND action <> 'auth.signin' ORDER BY id"
                ),
                {"u": username},
            ).all()
        )


def no_canary(body: str) -> None:
    for name in CANARIES:
        assert name not in body
