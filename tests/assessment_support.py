"""A small hand-made township for the assessment tests: two villages, two grids, eight
cases whose events are inserted with chosen times and deadlines, visits, inspections and
filings. The expected indicator values are worked out by hand in the tests."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, text

LOCAL = dt.timezone(dt.timedelta(hours=8))
TOWN = "420117105000"
V1 = "420117105201"
V2 = "420117105202"
G1 = "420117105201001"
G2 = "420117105201002"
JUNE = (dt.date(2026, 6, 1), dt.date(2026, 6, 30))
TODAY = dt.date(2026, 7, 5)


def lt(day: int, hour: int, month: int = 6) -> dt.datetime:
    """A local time in 2026."""
    return dt.datetime(2026, month, day, hour, tzinfo=LOCAL)


CLEAR = "clear"


def _point(conn: Connection) -> Any:
    return conn.execute(text("SELECT ST_SetSRID(ST_MakePoint(114.3, 30.5), 4326)")).scalar()


def add_case(
    conn: Connection,
    no: str,
    grid: str | None,
    village: str,
    events: list[tuple[Any, ...]],
) -> int:
    """A case with ``events`` = (action, to_status, at, due_at | CLEAR | None, actor_id,
    rating); the row is the state after the last event."""
    first_at = events[0][2]
    last = events[-1]
    closed = next((e[2] for e in events if e[0] == "close"), None)
    cid = conn.execute(
        text(
            "INSERT INTO cases (case_no, category, status, reported_at, geom, village_code, "
            "grid_code, current_grid_code, category_code, source, version, closed_at, "
            "updated_at) VALUES (:no, '其他', :st, :rep, ST_SetSRID(ST_MakePoint(114.3, 30.5), "
            "4326), :v, :g, :g, '09', 'grid_worker', :ver, :closed, :upd) RETURNING id"
        ),
        {"no": no, "st": last[1], "rep": first_at, "v": village, "g": grid,
         "ver": len(events), "closed": closed, "upd": last[2]},
    ).scalar_one()  # fmt: skip
    prev = None
    for seq, (action, to_status, at, due, actor, *rest) in enumerate(events, start=1):
        rating = rest[0] if rest else None
        data: dict[str, Any] = {"set": {}}
        if due == CLEAR:
            data["set"]["due_at"] = None
        elif due is not None:
            data["set"]["due_at"] = due.isoformat()
        if rating:
            data["rating"] = rating
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, seq, action, from_status, to_status, at, "
                "actor_id, actor, data) VALUES (:c, :s, :a, :f, :t, :at, :uid, 'test', "
                "CAST(:d AS jsonb))"
            ),
            {"c": cid, "s": seq, "a": action, "f": prev, "t": to_status, "at": at,
             "uid": actor, "d": json.dumps(data)},
        )  # fmt: skip
        prev = to_status
    return int(cid)


def build(conn: Connection) -> dict[str, int]:
    """Areas, grids, households, two workers, the eight cases and the field-work records."""
    conn.execute(
        text(
            "INSERT INTO admin_areas (code, level, name, parent_code) VALUES "
            "(:t, 'town', '测试镇', NULL), (:v1, 'village', '东村', :t), "
            "(:v2, 'village', '西村', :t)"
        ),
        {"t": TOWN, "v1": V1, "v2": V2},
    )
    plan = conn.execute(
        text("INSERT INTO plans (town_code, name, status) VALUES (:t, 'p', 'active') RETURNING id"),
        {"t": TOWN},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO grids (plan_id, code, level, village_code, name, households) VALUES "
            "(:p, :g1, 3, :v1, '东村一网格', 4), (:p, :g2, 3, :v1, '东村二网格', 2)"
        ),
        {"p": plan, "g1": G1, "g2": G2, "v1": V1},
    )
    hh = {}
    for no, (village, grid) in enumerate([(V1, G1)] * 4 + [(V1, G2)] * 2 + [(V2, None)], start=1):
        hh[no] = conn.execute(
            text(
                "INSERT INTO households (village_code, register_no, geocode_precision, "
                "grid_code) VALUES (:v, :n, 'failed', :g) RETURNING id"
            ),
            {"v": village, "n": f"R{no}", "g": grid},
        ).scalar_one()
    users = {}
    for name in ("w1", "w2"):
        users[name] = conn.execute(
            text(
                "INSERT INTO users (username, display_name, role, scope_kind, scope_code, "
                "password_hash) VALUES (:u, :d, 'grid_worker', 'grid', :g, 'x') RETURNING id"
            ),
            {"u": f"assess-{name}", "d": f"网格员{name[-1]}", "g": G1},
        ).scalar_one()
    w1, w2 = users["w1"], users["w2"]
    # 1 (G1): every step on time, satisfied
    add_case(conn, "C1", G1, V1, [
        ("report", "reported", lt(2, 9), lt(2, 11), w1),
        ("accept", "accepted", lt(2, 10), lt(3, 10), w1),
        ("register", "registered", lt(2, 12), lt(2, 14), None),
        ("dispatch", "dispatched", lt(2, 13), lt(5, 13), None),
        ("start", "in_progress", lt(3, 9), None, w1),
        ("handle", "handled", lt(4, 9), lt(5, 9), w1),
        ("check_pass", "checked", lt(4, 12), lt(5, 12), None),
        ("evaluate", "evaluated", lt(4, 13), lt(5, 13), None, "satisfied"),
        ("close", "closed", lt(4, 14), CLEAR, None),
    ])  # fmt: skip
    # 2 (G1): late acceptance, returned once and re-dispatched late, reworked, extended
    add_case(conn, "C2", G1, V1, [
        ("report", "reported", lt(6, 9), lt(6, 11), w1),
        ("accept", "accepted", lt(6, 12), lt(7, 12), w1),
        ("register", "registered", lt(6, 13), lt(6, 15), None),
        ("dispatch", "dispatched", lt(6, 14), lt(9, 14), None),
        ("return", "registered", lt(6, 15), lt(6, 17), w1),
        ("dispatch", "dispatched", lt(6, 18), lt(9, 18), None),
        ("start", "in_progress", lt(7, 9), None, w1),
        ("handle", "handled", lt(8, 9), lt(9, 9), w1),
        ("check_fail", "in_progress", lt(8, 10), lt(10, 10), None),
        ("request_extension", "in_progress", lt(9, 9), None, w2),
        ("approve_extension", "in_progress", lt(9, 10), lt(12, 10), None),
        ("handle", "handled", lt(11, 9), lt(12, 9), w2),
        ("check_pass", "checked", lt(11, 10), lt(12, 10), None),
        ("evaluate", "evaluated", lt(11, 11), lt(12, 11), None, "unsatisfied"),
        ("close", "closed", lt(11, 12), CLEAR, None),
    ])  # fmt: skip
    # 3 (G1): suspended (挂账) at the period's end
    add_case(conn, "C3", G1, V1, [
        ("report", "reported", lt(10, 9), lt(10, 11), w1),
        ("accept", "accepted", lt(10, 10), lt(11, 10), w1),
        ("register", "registered", lt(10, 11), lt(10, 13), None),
        ("dispatch", "dispatched", lt(10, 12), lt(13, 12), None),
        ("request_suspension", "dispatched", lt(11, 9), None, w1),
        ("approve_suspension", "suspended", lt(11, 10), CLEAR, None),
    ])  # fmt: skip
    # 4 (G2): dispatched, never handled: overdue at the end
    add_case(conn, "C4", G2, V1, [
        ("report", "reported", lt(20, 9), lt(20, 11), w2),
        ("accept", "accepted", lt(20, 10), lt(21, 10), w2),
        ("register", "registered", lt(20, 11), lt(20, 13), None),
        ("dispatch", "dispatched", lt(20, 12), lt(23, 12), None),
    ])  # fmt: skip
    # 5 (G2): rejected
    add_case(conn, "C5", G2, V1, [
        ("report", "reported", lt(21, 9), lt(21, 11), None),
        ("reject", "rejected", lt(21, 10), CLEAR, w2),
    ])  # fmt: skip
    # 6 (G2): reported and dispatched in May, handled late in June, not closed
    add_case(conn, "C6", G2, V1, [
        ("report", "reported", lt(28, 9, 5), lt(28, 11, 5), w2),
        ("accept", "accepted", lt(28, 10, 5), lt(29, 10, 5), w2),
        ("register", "registered", lt(28, 11, 5), lt(28, 13, 5), None),
        ("dispatch", "dispatched", lt(28, 12, 5), lt(31, 12, 5), None),
        ("start", "in_progress", lt(29, 9, 5), None, w2),
        ("handle", "handled", lt(2, 9), lt(3, 9), w2),
    ])  # fmt: skip
    # 7 (village V2, no grid): registered, overdue for dispatch
    add_case(conn, "C7", None, V2, [
        ("report", "reported", lt(15, 9), lt(15, 11), None),
        ("accept", "accepted", lt(15, 10), lt(16, 10), None),
        ("register", "registered", lt(15, 11), lt(15, 13), None),
    ])  # fmt: skip
    # 8 (G1): reported on the last evening, accepted after the period
    add_case(conn, "C8", G1, V1, [
        ("report", "reported", lt(30, 20), lt(30, 22), w1),
        ("accept", "accepted", lt(1, 9, 7), lt(2, 9, 7), w1),
    ])  # fmt: skip
    # visits: household 1 in June, household 2 in May (outside), household 7 (V2) in June
    for household, day in ((1, dt.date(2026, 6, 5)), (2, dt.date(2026, 5, 30)),
                           (7, dt.date(2026, 6, 9)), (1, dt.date(2026, 6, 25))):  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO visits (household_id, visited_on, worker_id, worker_name) "
                "VALUES (:h, :d, :w, 'w')"
            ),
            {"h": hh[household], "d": day, "w": w1},
        )
    # inspections (G1): due 10 June on time, due 15 June late, one point due 20 June missed
    p1, p2 = (
        conn.execute(
            text(
                "INSERT INTO inspection_points (point_no, name, geom, schedule, village_code, "
                "grid_code, next_due) VALUES (:n, :n, ST_SetSRID(ST_MakePoint(114.3, 30.5), "
                "4326), 'monthly', :v, :g, :due) RETURNING id"
            ),
            {"n": n, "v": V1, "g": G1, "due": due},
        ).scalar_one()
        for n, due in (("P1", dt.date(2026, 7, 10)), ("P2", dt.date(2026, 6, 20)))
    )
    for point, due in ((p1, dt.date(2026, 7, 10)), (p2, dt.date(2026, 6, 20))):
        # a trigger computes next_due from the schedule on insert: set the one wanted
        conn.execute(
            text("UPDATE inspection_points SET next_due = :d WHERE id = :p"), {"d": due, "p": point}
        )
    for due, on_time in ((dt.date(2026, 6, 10), True), (dt.date(2026, 6, 15), False)):
        conn.execute(
            text(
                "INSERT INTO inspection_records (point_id, inspected_at, by_user_id, by_name, "
                "template_code, template_version, results, due_date, on_time) VALUES "
                "(:p, :at, :w, 'w', 'general', 0, '{}', :due, :ok)"
            ),
            {"p": p1, "at": lt(due.day, 10), "w": w1, "due": due, "ok": on_time},
        )
    # filings (G2): due 5 June filed on time; a due of 25 June not filed
    unit = conn.execute(
        text(
            "INSERT INTO key_units (unit_no, name, unit_type, risk_level, geom, village_code, "
            "grid_code) VALUES ('U1', '加油站', '加油站', 1, ST_SetSRID(ST_MakePoint(114.3, "
            "30.5), 4326), :v, :g) RETURNING id"
        ),
        {"v": V1, "g": G2},
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO key_unit_filings (unit_id, kind, event_date, filed_at, by_user_id, "
            "by_name, due_date, on_time) VALUES (:u, 'maintenance', '2026-06-03', :at, :w, 'w', "
            "'2026-06-05', true)"
        ),
        {"u": unit, "at": lt(4, 10), "w": w2},
    )
    # a trigger (0030) gives a new unit its recurring dues: keep only the one wanted
    conn.execute(text("DELETE FROM key_unit_dues WHERE unit_id = :u"), {"u": unit})
    conn.execute(
        text(
            "INSERT INTO key_unit_dues (unit_id, kind, due_date) VALUES "
            "(:u, 'self_assessment', '2026-06-25')"
        ),
        {"u": unit},
    )
    return {"w1": int(w1), "w2": int(w2), "p2": int(p2)}


def township_db(pg: Any) -> Iterator[tuple[Engine, dict[str, int]]]:
    """A fresh database holding :func:`build`'s township (for a module fixture)."""
    from geogrid import store

    name = pg.create_database()
    engine = store.make_engine(pg.url(name))
    with engine.begin() as conn:
        ids = build(conn)
    try:
        yield engine, ids
    finally:
        engine.dispose()
        pg.drop_database(name)
