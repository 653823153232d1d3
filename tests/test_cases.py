"""Cases through the service and over HTTP on the sample town: report, read, the whole
workflow, 409 and 412, routing, duplicates and merge, deadlines, scope and masking."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, text

from api import create_app
from geogrid import store
from geogrid.access import users
from geogrid.access.policy import Principal
from geogrid.cases import machine, service
from geogrid.cases.shapes import CaseFilter, Reporter
from geogrid.errors import Forbidden, IllegalTransition, InvalidInput, NotFound
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings


@dataclass
class Desk:
    engine: Engine
    url: str
    client: TestClient
    town: str
    village: str
    grid: str
    sibling: str
    other_village: str
    accounts: dict[str, Any]
    principals: dict[str, Principal]

    def point(self, grid: str | None = None) -> tuple[float, float]:
        """A point well inside ``grid`` (default: the first grid)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(g.geom) AS p "
                    "FROM grids g JOIN plans pl ON pl.id = g.plan_id AND pl.status = 'active' "
                    "WHERE g.code = :g) s"
                ),
                {"g": grid or self.grid},
            ).one()
        return float(row[0]), float(row[1])

    def headers(self, who: str) -> dict[str, str]:
        cached = self.accounts.setdefault(f"{who}:headers", None)
        if cached is None:
            cached = self.accounts[who].headers(self.client)
            self.accounts[f"{who}:headers"] = cached
        return cached


ROLES = {
    "leader": ("town_leader", "town"),
    "vleader": ("village_leader", "village"),
    "worker": ("grid_worker", "grid"),
    "sibling": ("grid_worker", "sibling"),
    "stranger": ("town_leader", "other"),
    "unmasker": ("town_leader", "town+unmask"),
}


@pytest.fixture(scope="module")
def desk(pg, _town_template: str, sample_town, account_maker, tmp_path_factory) -> Iterator[Desk]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    town = sample_town.town_code
    plan = create_plan(engine, town, name="active", jobs=1)
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
        other_village = conn.execute(
            text("SELECT min(code) FROM admin_areas WHERE level = 'village' AND code <> :v"),
            {"v": village},
        ).scalar_one()
    codes = {
        "town": town,
        "village": village,
        "grid": grid,
        "sibling": sibling,
        "other": "420117999000",
    }
    accounts: dict[str, Any] = {}
    principals: dict[str, Principal] = {}
    for key, (role, scope) in ROLES.items():
        perms = ("unmask",) if scope.endswith("+unmask") else ()
        acc = account_maker(url, role, codes[scope.split("+")[0]], perms)
        accounts[key] = acc
        with engine.connect() as conn:
            principals[key] = users.get_user(conn, username=acc.username).principal()
    app = create_app(Settings(home=tmp_path_factory.mktemp("home")), database_url=url)
    try:
        with TestClient(app) as client:
            yield Desk(
                engine,
                url,
                client,
                town,
                village,
                grid,
                sibling,
                other_village,
                accounts,
                principals,
            )
    finally:
        engine.dispose()
        pg.drop_database(name)


def _report(desk: Desk, who: str = "worker", **kw: Any) -> service.Created:
    lon, lat = desk.point(kw.pop("grid", None))
    args: dict[str, Any] = {
        "category": "0401",
        "lon": lon,
        "lat": lat,
        "description": "垃圾堆放未清运",
        "source": "grid_worker",
    }
    args.update(kw)
    principal = desk.principals[who] if who != "resident" else None
    with desk.engine.begin() as conn:
        return service.create_case(conn, principal=principal, **args)


def _act(desk: Desk, who: str, case_id: int, action: str, **kw: Any) -> service.CaseDetail:
    note = kw.pop("note", "说明")
    with desk.engine.begin() as conn:
        return service.transition(
            conn,
            principal=desk.principals[who],
            case_id=case_id,
            action=action,
            expected_version=None,
            note=note,
            data=kw,
        )


def _replayed(desk: Desk, case_id: int) -> None:
    with desk.engine.connect() as conn:
        events = (
            conn.execute(
                text(
                    "SELECT seq, to_status, data FROM case_events WHERE case_id = :i ORDER BY seq"
                ),
                {"i": case_id},
            )
            .mappings()
            .all()
        )
        row = (
            conn.execute(text("SELECT * FROM cases WHERE id = :i"), {"i": case_id}).mappings().one()
        )
    state = machine.replay(events)
    assert {k: row[k] for k in machine.STATE_FIELDS} == state


# --------------------------------------------------------------------------- the workflow


def test_a_grid_workers_report_goes_the_whole_way(desk: Desk) -> None:
    made = _report(desk)
    case = made.case
    assert (case.status, case.version, case.grid_code, case.village_code) == (
        "reported",
        1,
        desk.grid,
        desk.village,
    )
    assert case.category == "环境卫生" and case.category_code == "0401"
    assert case.assignee is not None and case.assignee.kind == "centre"
    assert case.due_at is not None and case.due_at > case.reported_at
    assert [a.action for a in case.allowed_actions] == ["accept", "reject", "merge", "comment"]
    steps = [
        ("worker", "accept"),
        ("leader", "register"),
        ("leader", "dispatch"),
        ("worker", "start"),
        ("worker", "handle"),
        ("leader", "check_fail"),
        ("worker", "handle"),
        ("sibling", "comment"),
        ("leader", "check_pass"),
    ]
    for who, action in steps:
        if who == "sibling":
            with pytest.raises(NotFound):  # the sibling grid's worker cannot see it
                _act(desk, who, case.id, action)
            continue
        case = _act(desk, who, case.id, action)
    case = _act(desk, "leader", case.id, "evaluate", rating="satisfied")
    case = _act(desk, "leader", case.id, "close")
    case = _act(desk, "leader", case.id, "archive")
    assert case.status == "archived" and case.rework_count == 1
    assert case.owner is not None and case.owner.username == desk.accounts["worker"].username
    assert case.closed_at if hasattr(case, "closed_at") else True
    assert [e.seq for e in case.events] == list(range(1, case.version + 1))
    assert [e.action for e in case.events][:3] == ["report", "accept", "register"]
    assert case.due_at is None and not case.overdue
    _replayed(desk, case.id)


def test_a_residents_report_is_verified_before_registration(desk: Desk) -> None:
    case = _report(
        desk, "resident", source="open311", reporter=Reporter("张三丰", "13812345678")
    ).case
    assert case.reporter is not None and case.reporter.name == "张*丰"
    assert case.reporter.phone == "138****5678"
    case = _act(desk, "leader", case.id, "accept")
    with pytest.raises(IllegalTransition) as err:
        _act(desk, "leader", case.id, "register")
    assert "verify" in err.value.detail["allowed"] or err.value.detail["allowed"] == [
        a.action for a in case.allowed_actions
    ]
    with pytest.raises(Forbidden):  # a town leader does not verify on site
        _act(desk, "leader", case.id, "verify")
    _act(desk, "vleader", case.id, "verify")
    case = _act(desk, "leader", case.id, "register")
    assert case.status == "registered"
    _replayed(desk, case.id)


def test_illegal_actions_list_the_allowed_ones(desk: Desk) -> None:
    case = _report(desk).case
    with pytest.raises(IllegalTransition) as err:
        _act(desk, "leader", case.id, "close")
    assert err.value.detail["status"] == "reported"
    assert set(err.value.detail["allowed"]) == {"accept", "reject", "merge", "comment", "transfer"}
    with pytest.raises(InvalidInput, match="unknown action"):
        _act(desk, "leader", case.id, "teleport")
    with pytest.raises(InvalidInput, match="note"):
        _act(desk, "leader", case.id, "reject", note="  ")


def test_wrong_dispatch_is_returned_and_redispatched(desk: Desk) -> None:
    case = _report(desk).case
    for who, action in [("worker", "accept"), ("leader", "register")]:
        _act(desk, who, case.id, action)
    case = _act(desk, "leader", case.id, "dispatch", post={"kind": "grid", "code": desk.sibling})
    assert case.assignee is not None and case.assignee.code == desk.sibling
    with pytest.raises(Forbidden):  # not at that post
        _act(desk, "worker", case.id, "start")
    # the sibling's worker cannot see a case reported in another grid: the village leader
    # (covering both grids) returns it
    case = _act(desk, "vleader", case.id, "return", note="不属于本网格")
    assert case.status == "registered" and case.assignee is not None
    assert case.assignee.kind == "centre" and case.due_step if hasattr(case, "due_step") else True
    case = _act(desk, "leader", case.id, "dispatch")
    assert case.assignee is not None and (case.assignee.kind, case.assignee.code) == (
        "grid",
        desk.grid,
    )
    _replayed(desk, case.id)


def test_extension_and_suspension_need_approval(desk: Desk) -> None:
    case = _report(desk).case
    for who, action in [
        ("worker", "accept"),
        ("leader", "register"),
        ("leader", "dispatch"),
        ("worker", "start"),
    ]:
        case = _act(desk, who, case.id, action)
    due = case.due_at
    assert due is not None
    with pytest.raises(InvalidInput, match="amount"):
        _act(desk, "worker", case.id, "request_extension", unit="days")
    case = _act(desk, "worker", case.id, "request_extension", amount=2, unit="days")
    assert case.pending == "extension" and case.due_at == due
    with pytest.raises(IllegalTransition):  # one request at a time
        _act(desk, "worker", case.id, "request_suspension")
    with pytest.raises(Forbidden):
        _act(desk, "worker", case.id, "approve_extension")
    case = _act(desk, "leader", case.id, "approve_extension")
    assert case.pending is None and case.due_at is not None and case.due_at > due
    case = _act(desk, "worker", case.id, "request_suspension", note="等待上级部门鉴定")
    case = _act(desk, "leader", case.id, "approve_suspension")
    assert case.status == "suspended" and case.due_at is None and not case.overdue
    case = _act(desk, "worker", case.id, "resume")
    assert case.status == "in_progress" and case.due_at is not None
    _replayed(desk, case.id)


def test_first_responsibility_stays_until_a_transfer_is_acknowledged(desk: Desk) -> None:
    case = _report(desk).case
    case = _act(desk, "worker", case.id, "accept")
    worker, vleader = desk.principals["worker"], desk.principals["vleader"]
    assert case.owner is not None and case.owner.id == worker.user_id
    with pytest.raises(Forbidden):  # only the owner (or the centre) hands it over
        _act(desk, "vleader", case.id, "transfer", to_user=worker.user_id)
    with pytest.raises(InvalidInput, match="cannot take"):
        _act(desk, "worker", case.id, "transfer", to_user=desk.principals["stranger"].user_id)
    case = _act(desk, "worker", case.id, "transfer", to_user=vleader.user_id)
    assert case.owner is not None and case.owner.id == worker.user_id and case.pending == "transfer"
    with pytest.raises(Forbidden):
        _act(desk, "leader", case.id, "acknowledge_transfer")
    with desk.engine.connect() as conn:
        waiting, _ = service.inbox(conn, principal=vleader, limit=500)
    assert case.id in {c.id for c in waiting}
    case = _act(desk, "vleader", case.id, "acknowledge_transfer")
    assert case.owner is not None and case.owner.id == vleader.user_id and case.pending is None
    _replayed(desk, case.id)


def test_closing_a_case_drops_a_pending_transfer(desk: Desk) -> None:
    """Found by the stateful test: a case voided while a transfer waited kept waiting for
    it (and sat in the target's inbox) although nobody can act on a closed case."""
    case = _report(desk).case
    case = _act(desk, "worker", case.id, "accept")
    vleader = desk.principals["vleader"]
    case = _act(desk, "worker", case.id, "transfer", to_user=vleader.user_id)
    assert case.pending == "transfer"
    case = _act(desk, "leader", case.id, "void", note="不予立案")
    assert case.status == "voided" and case.pending is None
    with desk.engine.connect() as conn:
        waiting, _ = service.inbox(conn, principal=vleader, limit=500)
    assert case.id not in {c.id for c in waiting}
    _replayed(desk, case.id)


def test_checks_are_not_made_by_who_handled(desk: Desk) -> None:
    case = _report(desk).case
    for who, action in [
        ("worker", "accept"),
        ("leader", "register"),
        ("leader", "dispatch"),
        ("worker", "start"),
        ("worker", "handle"),
    ]:
        case = _act(desk, who, case.id, action)
    with pytest.raises(Forbidden):
        _act(desk, "worker", case.id, "check_pass")
    assert _act(desk, "leader", case.id, "check_pass").status == "checked"


# --------------------------------------------------------------------------- deadlines


def test_a_deadline_past_the_calendar_keeps_the_report(desk: Desk) -> None:
    with desk.engine.begin() as conn:
        last = conn.execute(text("SELECT max(year) FROM calendar_years")).scalar_one()
    when = dt.datetime(last, 12, 31, 10, 0, tzinfo=dt.UTC)
    if when > dt.datetime.now(dt.UTC):
        # a report made late on the calendar's last day: its accept step runs into next year
        with desk.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE case_time_limits SET amount = 400, unit = 'days' "
                    "WHERE category_code = '07' AND step = 'accept'"
                )
            )
        try:
            case = _report(desk, "resident", source="open311", category="07").case
        finally:
            with desk.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE case_time_limits SET amount = 2, unit = 'hours' "
                        "WHERE category_code = '07' AND step = 'accept'"
                    )
                )
    else:
        case = _report(desk, "resident", source="open311", category="07").case
    assert case.status == "reported" and case.due_at is None
    assert case.deadline_problem is not None and str(last + 1) in case.deadline_problem
    with desk.engine.connect() as conn:
        items, _ = service.list_cases(
            conn,
            principal=desk.principals["leader"],
            filters=CaseFilter(status=("reported",)),
            limit=500,
        )
    flagged = [c for c in items if c.id == case.id]
    assert flagged and flagged[0].deadline_problem


def test_overdue_and_soon_due_lists_and_counts(desk: Desk) -> None:
    late, soon = _report(desk).case, _report(desk, "leader", grid=desk.sibling).case
    with desk.engine.begin() as conn:
        conn.execute(
            text("UPDATE cases SET due_at = now() - interval '1 hour' WHERE id = :i"),
            {"i": late.id},
        )
        conn.execute(
            text("UPDATE cases SET due_at = now() + interval '2 hours' WHERE id = :i"),
            {"i": soon.id},
        )
    leader = desk.principals["leader"]
    with desk.engine.connect() as conn:
        overdue, _ = service.due_cases(conn, principal=leader, kind="overdue", limit=500)
        coming, _ = service.due_cases(
            conn, principal=leader, kind="soon", within_hours=3, limit=500
        )
        counts = {
            c.grid_code: c for c in service.due_counts(conn, principal=leader, within_hours=3)
        }
        box, _ = service.inbox(conn, principal=leader, limit=500)
    assert late.id in {c.id for c in overdue} and late.id not in {c.id for c in coming}
    assert soon.id in {c.id for c in coming}
    assert counts[desk.grid].overdue >= 1 and counts[desk.sibling].soon >= 1
    assert all(c.overdue for c in overdue)
    flags = [c.overdue for c in box]
    assert flags == sorted(flags, reverse=True), "overdue cases come first in the inbox"


# --------------------------------------------------------------------------- routing


def test_routing_table_sends_a_category_to_a_department(desk: Desk) -> None:
    with desk.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO case_departments (code, town_code, name) VALUES "
                "('fire', :t, '消防办') ON CONFLICT DO NOTHING"
            ),
            {"t": desk.town},
        )
        from geogrid.cases import routing

        routing.set_routes(
            conn,
            area_code=desk.town,
            rows=[
                {"category_code": "03", "post_kind": "department", "post_code": "fire"},
                {"category_code": None, "post_kind": "village", "post_code": None},
            ],
        )
        routing.set_routes(
            conn,
            area_code=desk.grid,
            rows=[{"category_code": "0401", "post_kind": "grid", "post_code": None}],
        )
        fire = routing.route(
            conn, category_code="0302", village_code=desk.village, grid_code=desk.grid
        )
        rubbish = routing.route(
            conn, category_code="0401", village_code=desk.village, grid_code=desk.grid
        )
        other = routing.route(
            conn, category_code="0601", village_code=desk.village, grid_code=desk.grid
        )
        sewage = routing.route(
            conn, category_code="0402", village_code=desk.village, grid_code=desk.sibling
        )
        with pytest.raises(InvalidInput, match="department"):
            routing.set_routes(
                conn,
                area_code=desk.town,
                rows=[{"category_code": None, "post_kind": "department", "post_code": None}],
            )
        with pytest.raises(InvalidInput, match="twice"):
            routing.set_routes(
                conn,
                area_code=desk.town,
                rows=[
                    {"category_code": "01", "post_kind": "village"},
                    {"category_code": "01", "post_kind": "grid"},
                ],
            )
        with pytest.raises(InvalidInput, match="no department"):
            routing.set_routes(
                conn,
                area_code=desk.town,
                rows=[{"category_code": "01", "post_kind": "department", "post_code": "nope"}],
            )
        routing.set_routes(conn, area_code=desk.town, rows=[])
        routing.set_routes(conn, area_code=desk.grid, rows=[])
    assert (fire.kind, fire.code) == ("department", "fire")
    assert (rubbish.kind, rubbish.code) == ("grid", desk.grid)
    assert (other.kind, other.code) == ("village", desk.village)
    assert (sewage.kind, sewage.code) == ("village", desk.village)


def test_points_on_a_shared_border_go_to_one_grid_every_time(desk: Desk) -> None:
    from geogrid.cases.routing import place_point

    with desk.engine.connect() as conn:
        # vertices the grids of a village share (grids are unions of group polygons)
        pts = conn.execute(
            text(
                """
                SELECT DISTINCT ON (a.code, b.code) ST_X(v.geom) AS x, ST_Y(v.geom) AS y,
                       (SELECT array_agg(g.code ORDER BY g.code) FROM grids g
                         WHERE g.plan_id = a.plan_id AND g.level = 3
                           AND ST_Covers(g.geom, v.geom)) AS covering
                FROM grids a JOIN grids b ON a.plan_id = b.plan_id AND a.code < b.code
                 AND a.level = 3 AND b.level = 3 AND a.village_code = b.village_code
                 AND ST_Touches(a.geom, b.geom)
                JOIN plans pl ON pl.id = a.plan_id AND pl.status = 'active',
                LATERAL ST_DumpPoints(ST_Intersection(a.geom, b.geom)) AS v
                ORDER BY a.code, b.code LIMIT 8
                """
            )
        ).all()
        shared = [(x, y, cov) for x, y, cov in pts if cov and len(cov) >= 2]
        assert shared, "the sample town has grids sharing borders"
        for x, y, covering in shared:
            placed = {place_point(conn, x, y)[1] for _ in range(3)}
            assert placed == {covering[0]}
        outside = place_point(conn, 0.5, 0.5)
    assert outside == (None, None)
    with pytest.raises(InvalidInput, match="served area"):
        _report_at(desk, 0.5, 0.5)


def _report_at(desk: Desk, lon: float, lat: float) -> None:
    with desk.engine.begin() as conn:
        service.create_case(
            conn,
            principal=desk.principals["leader"],
            category="04",
            lon=lon,
            lat=lat,
            description="x",
            source="grid_worker",
        )


# --------------------------------------------------------------------------- duplicates


def test_a_nearby_open_case_is_suggested_and_merged(desk: Desk) -> None:
    first = _report(desk, category="0403", description="焚烧秸秆").case
    second = _report(
        desk,
        "resident",
        category="04",
        source="open311",
        description="有人在烧秸秆",
        reporter=Reporter("李四", "13900001111"),
    )
    assert first.id in {d.id for d in second.duplicates}
    assert all(d.distance_m <= 50 for d in second.duplicates)
    far = _report(desk, "leader", category="0403", grid=desk.sibling)
    assert first.id not in {d.id for d in far.duplicates} or far.duplicates[0].distance_m <= 50
    other_kind = _report(desk, category="0601")
    assert first.id not in {d.id for d in other_kind.duplicates}
    merged = _act(desk, "leader", second.case.id, "merge", into=first.id)
    assert merged.status == "merged" and merged.merged_into == first.id
    with pytest.raises(IllegalTransition) as err:
        _act(desk, "leader", second.case.id, "accept")
    assert err.value.detail["merged_into"] == first.id
    with desk.engine.connect() as conn:
        follows = conn.execute(
            text("SELECT name, merged_from FROM case_reporters WHERE case_id = :i"),
            {"i": first.id},
        ).all()
        public = service.public_case(conn, case_id=second.case.id)
    assert ("李四", second.case.id) in [tuple(r) for r in follows]
    assert public.id == first.id, "the duplicate's lookups are redirected to the original"
    with pytest.raises(InvalidInput, match="another case"):
        _act(desk, "leader", first.id, "merge", into=first.id)


# --------------------------------------------------------------------------- scope, inputs


def test_scope_hides_and_refuses(desk: Desk) -> None:
    case = _report(desk).case
    with desk.engine.connect() as conn:
        with pytest.raises(NotFound):
            service.get_case(conn, principal=desk.principals["stranger"], case_id=case.id)
        with pytest.raises(NotFound):
            service.get_case(conn, principal=desk.principals["sibling"], case_id=case.id)
        mine, _ = service.list_cases(conn, principal=desk.principals["sibling"], limit=500)
    assert all(c.grid_code == desk.sibling for c in mine)
    with pytest.raises(Forbidden):  # a grid worker reports in its own grid only
        _report(desk, grid=desk.sibling)


REPORT_ZOO: dict[str, tuple[dict[str, Any], str]] = {
    "unknown category": ({"category": "火星事件"}, "unknown category"),
    "empty category": ({"category": " "}, "category"),
    "empty description": ({"description": "  "}, "description"),
    "long description": ({"description": "x" * 2001}, "description"),
    "bad source": ({"source": "import"}, "source"),
    "bad priority": ({"priority": 7}, "priority"),
    "lon not a number": ({"lon": "east"}, "numbers"),
    "lat out of range": ({"lat": 91.0}, "±90"),
    "nan": ({"lon": float("nan")}, "±180"),
    "bad phone": ({"reporter": Reporter("王五", "call me")}, "phone"),
    "long name": ({"reporter": Reporter("王" * 51, None)}, "name"),
    "unknown attachment": ({"attachments": ["a" * 64]}, "upload it first"),
    "not a hash": ({"attachments": ["../x"]}, "sha256"),
    "future time": ({"reported_at": dt.datetime.now(dt.UTC) + dt.timedelta(days=1)}, "future"),
    "naive time": ({"reported_at": dt.datetime(2026, 1, 1)}, "time zone"),
    "long address": ({"address": "路" * 201}, "address"),
}


@pytest.mark.parametrize("rule", sorted(REPORT_ZOO))
def test_reports_refused(desk: Desk, rule: str) -> None:
    changes, words = REPORT_ZOO[rule]
    with pytest.raises(InvalidInput) as err:
        _report(desk, **changes)
    assert words in err.value.message


def test_a_resident_cannot_report_as_staff(desk: Desk) -> None:
    with pytest.raises(InvalidInput, match="resident"):
        _report(desk, "resident", source="grid_worker")


# --------------------------------------------------------------------------- HTTP


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def test_http_report_act_conflict_and_stale(desk: Desk) -> None:
    c, h = desk.client, desk.headers("worker")
    up = c.post("/api/cases/files", headers=h, files={"file": ("p.jpg", _jpeg(), "image/jpeg")})
    assert up.status_code == 201, up.text
    sha = up.json()["sha256"]
    lon, lat = desk.point()
    r = c.post(
        "/api/cases",
        headers=h,
        json={
            "category": "0401",
            "lon": lon,
            "lat": lat,
            "description": "路边垃圾",
            "attachments": [sha],
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()["case"]
    cid, etag = body["id"], r.headers["etag"]
    assert etag == f'"case-{cid}-v1"' and body["attachments"][0]["sha256"] == sha
    got = c.get(f"/api/cases/{cid}", headers=h)
    assert got.status_code == 200 and got.headers["etag"] == etag
    assert c.get(f"/api/cases/{cid}", headers={**h, "If-None-Match": etag}).status_code == 304
    thumb = c.get(f"/api/cases/{cid}/files/{sha}?thumb=1", headers=h)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    url = f"/api/cases/{cid}/transitions"
    assert c.post(url, headers=h, json={"action": "accept"}).status_code == 428
    ok = c.post(url, headers={**h, "If-Match": etag}, json={"action": "accept"})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == f'"case-{cid}-v2"' and ok.json()["status"] == "accepted"
    stale = c.post(url, headers={**h, "If-Match": etag}, json={"action": "comment", "note": "x"})
    assert stale.status_code == 412 and stale.json()["code"] == "StaleVersion"
    assert stale.json()["version"] == 2
    illegal = c.post(url, headers={**h, "If-Match": ok.headers["etag"]}, json={"action": "close"})
    assert illegal.status_code == 409, illegal.text
    assert illegal.json()["code"] == "IllegalTransition"
    assert "comment" in illegal.json()["allowed"] and "close" not in illegal.json()["allowed"]
    foreign = c.post(
        url,
        headers={**h, "If-Match": f'"case-{cid + 1}-v2"'},
        json={"action": "comment", "note": "x"},
    )
    assert foreign.status_code == 412
    listed = c.get("/api/cases", headers=h, params={"status": "accepted", "category": "04"})
    assert cid in {i["id"] for i in listed.json()["items"]}
    assert c.get("/api/cases", headers=h, params={"status": "nope"}).status_code == 400
    assert c.get("/api/cases/inbox", headers=desk.headers("leader")).status_code == 200
    assert c.get("/api/cases/machine", headers=h).json()["transitions"]
    cats = c.get("/api/cases/categories", headers=h).json()
    assert {"01", "02", "03", "04", "05", "06", "07", "08", "09"} <= {k["code"] for k in cats}
    assert next(k for k in cats if k["code"] == "0401")["limits"]["handle"]["unit"] == "days"


def test_http_reporter_is_masked_and_unmasking_is_audited(desk: Desk) -> None:
    case = _report(desk, "resident", source="open311", reporter=Reporter("王小明", "13712345678"))
    cid = case.case.id
    r = desk.client.get(f"/api/cases/{cid}", headers=desk.headers("leader"))
    assert r.json()["reporter"] == {"name": "王*明", "phone": "137****5678"}
    assert "13712345678" not in r.text
    refused = desk.client.post(
        f"/api/cases/{cid}/reporter/unmask", headers=desk.headers("leader"), json={"reason": "回访"}
    )
    assert refused.status_code == 403
    full = desk.client.post(
        f"/api/cases/{cid}/reporter/unmask",
        headers=desk.headers("unmasker"),
        json={"reason": "回访核实"},
    )
    assert full.status_code == 200 and full.json() == [{"name": "王小明", "phone": "13712345678"}]
    with desk.engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE action = 'case.unmask' AND :i = ANY("
                "target_ids) AND detail ->> 'reason' = '回访核实'"
            ),
            {"i": str(cid)},
        ).scalar_one()
    assert n == 1


def test_events_are_append_only(desk: Desk) -> None:
    case = _report(desk).case
    for sql in (
        "UPDATE case_events SET note = 'x' WHERE case_id = :i",
        "DELETE FROM case_events WHERE case_id = :i",
        "TRUNCATE case_events",
    ):
        with desk.engine.begin() as conn, pytest.raises(Exception, match="append-only"):
            conn.execute(text(sql), {"i": case.id})


# --------------------------------------------------------------------------- stateful


def test_no_sequence_of_calls_breaks_the_machine(desk: Desk) -> None:
    """Random calls by random users: an accepted call leaves exactly one event, a refused
    one none; the row always equals a replay of its events; no illegal state is reached."""
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        Bundle,
        RuleBasedStateMachine,
        invariant,
        precondition,
        rule,
        run_state_machine_as_test,
    )

    people = ["worker", "vleader", "leader", "sibling"]
    points = {"worker": desk.point(), "leader": desk.point(desk.sibling)}
    refused = (IllegalTransition, Forbidden, InvalidInput, NotFound)
    reached: set[str] = set()

    class Cases(RuleBasedStateMachine):
        cases = Bundle("cases")

        def __init__(self) -> None:
            super().__init__()
            self.ids: list[int] = []

        def _count(self, case_id: int) -> tuple[int, int]:
            with desk.engine.connect() as conn:
                n = conn.execute(
                    text("SELECT count(*) FROM case_events WHERE case_id = :i"), {"i": case_id}
                ).scalar_one()
                v = conn.execute(
                    text("SELECT version FROM cases WHERE id = :i"), {"i": case_id}
                ).scalar_one()
            return int(n), int(v)

        # a few cases walked far rather than many cases one step each: the walk must reach
        # deep statuses (checked below), not just report and accept
        @precondition(lambda self: len(self.ids) < 3)
        @rule(
            target=cases,
            who=st.sampled_from(["worker", "leader", "resident"]),
            category=st.sampled_from(["0401", "02", "0801", "居民投诉"]),
        )
        def report(self, who: str, category: str) -> int:
            lon, lat = points["leader" if who == "resident" else who]
            source = "open311" if who == "resident" else "grid_worker"
            with desk.engine.begin() as conn:
                made = service.create_case(
                    conn,
                    principal=desk.principals.get(who),
                    category=category,
                    lon=lon,
                    lat=lat,
                    description="随机上报",
                    source=source,
                )
            assert self._count(made.case.id) == (1, 1)
            self.ids.append(made.case.id)
            return made.case.id

        @rule(
            case=cases,
            who=st.sampled_from(people),
            action=st.sampled_from(machine.ACTIONS),
            note=st.sampled_from(["", "说明"]),
            amount=st.sampled_from([None, 2]),
            rating=st.sampled_from([None, "satisfied"]),
            to=st.sampled_from([None, *people]),
            into=st.integers(0, 3),
            post=st.sampled_from([None, "sibling", "village"]),
        )
        def act(
            self,
            case: int,
            who: str,
            action: str,
            note: str,
            amount: int | None,
            rating: str | None,
            to: str | None,
            into: int,
            post: str | None,
        ) -> None:
            data: dict[str, Any] = {}
            if amount:
                data.update(amount=amount, unit="days")
            if rating:
                data["rating"] = rating
            if to:
                data["to_user"] = desk.principals[to].user_id
            if self.ids:
                data["into"] = self.ids[into % len(self.ids)]
            if post == "sibling":
                data["post"] = {"kind": "grid", "code": desk.sibling}
            elif post == "village":
                data["post"] = {"kind": "village", "code": desk.village}
            before = self._count(case)
            try:
                with desk.engine.begin() as conn:
                    got = service.transition(
                        conn,
                        principal=desk.principals[who],
                        case_id=case,
                        action=action,
                        expected_version=before[1],
                        note=note,
                        data=data,
                    )
            except refused:
                assert self._count(case) == before
                return
            assert self._count(case) == (before[0] + 1, before[1] + 1)
            assert got.version == before[1] + 1 and got.events[-1].action == action
            reached.add(got.status)

        @rule(case=cases, who=st.sampled_from(people), pick=st.data())
        def advance(self, case: int, who: str, pick: st.DataObject) -> None:
            """Take one of the actions the case offers the user: never refused as illegal."""
            principal = desk.principals[who]
            with desk.engine.connect() as conn:
                try:
                    detail = service.get_case(conn, principal=principal, case_id=case)
                except NotFound:
                    return
            if not detail.allowed_actions:
                return
            forward = {t.action for t in machine.TRANSITIONS if t.queue}
            weighted = [
                a for a in detail.allowed_actions for _ in range(6 if a.action in forward else 1)
            ]
            choice = pick.draw(st.sampled_from(weighted))
            data: dict[str, Any] = {}
            if "amount" in choice.fields:
                data.update(amount=1, unit="days")
            if "rating" in choice.fields:
                data["rating"] = "basic"
            if "to_user" in choice.fields:
                data["to_user"] = desk.principals[pick.draw(st.sampled_from(people))].user_id
            if "into" in choice.fields:
                data["into"] = pick.draw(st.sampled_from(self.ids))
            before = self._count(case)
            try:
                with desk.engine.begin() as conn:
                    got = service.transition(
                        conn,
                        principal=principal,
                        case_id=case,
                        action=choice.action,
                        expected_version=detail.version,
                        note="说明",
                        data=data,
                    )
            except InvalidInput:  # a bad transfer target or merge target drawn
                assert choice.action in ("transfer", "merge")
                assert self._count(case) == before
                return
            assert self._count(case) == (before[0] + 1, before[1] + 1)
            reached.add(got.status)

        @invariant()
        def rows_replay_and_states_are_legal(self) -> None:
            if not self.ids:
                return
            with desk.engine.connect() as conn:
                rows = (
                    conn.execute(text("SELECT * FROM cases WHERE id = ANY(:i)"), {"i": self.ids})
                    .mappings()
                    .all()
                )
                events = (
                    conn.execute(
                        text(
                            "SELECT case_id, seq, action, from_status, to_status, actor_id, data "
                            "FROM case_events WHERE case_id = ANY(:i) ORDER BY case_id, seq"
                        ),
                        {"i": self.ids},
                    )
                    .mappings()
                    .all()
                )
            for row in rows:
                history = [e for e in events if e["case_id"] == row["id"]]
                assert machine.replay(history) == {k: row[k] for k in machine.STATE_FIELDS}
                _legal(row, history)

    settings_ = settings(
        max_examples=12,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    run_state_machine_as_test(Cases, settings=settings_)
    assert len(reached) >= 8, f"the random walk went nowhere: {sorted(reached)}"


def _legal(row: Any, history: list[Any]) -> None:
    """Invariants of a case, checked against its events independently of the service."""
    status = row["status"]
    assert status in machine.STATUSES
    assert row["version"] == len(history)
    prev = None
    for e in history:
        assert e["from_status"] == prev
        if e["action"] != "report":
            rows = [t for t in machine.TRANSITIONS if t.action == e["action"] and prev in t.sources]
            assert rows, f"{e['action']} from {prev}"
            targets = {t.target for t in rows}
            assert e["to_status"] == prev or e["to_status"] in targets or "resume" in targets
        prev = e["to_status"]
    assert row["rework_count"] == sum(e["action"] == "check_fail" for e in history)
    owners = [e["actor_id"] for e in history if e["action"] in ("accept", "acknowledge_transfer")]
    assert row["owner_id"] == (owners[-1] if owners else None)
    if status in machine.CLOSED_STATUSES or status == "suspended":
        assert row["due_at"] is None
    if status == "merged":
        assert row["merged_into"] is not None and row["merged_into"] != row["id"]
    if status == "suspended":
        assert row["resume_status"] in ("dispatched", "in_progress")
    if row["pending"] in ("extension", "suspension"):
        assert status in ("dispatched", "in_progress")
    if row["pending"] == "transfer":
        assert status in machine.OPEN_STATUSES and row["pending_data"]["to_user"]
    if status in ("dispatched", "in_progress", "handled"):
        assert row["assignee_kind"] in ("grid", "village", "department")


def test_the_public_view_of_residents_reports(desk: Desk) -> None:
    staff = _report(desk).case
    _report(desk, "resident", source="hotline", category="0601")
    resident = _report(desk, "resident", source="open311", reporter=Reporter("赵六", "13600000000"))
    rid = resident.case.id
    _act(desk, "leader", rid, "accept")
    with desk.engine.begin() as conn:
        service.transition(
            conn,
            principal=desk.principals["leader"],
            case_id=rid,
            action="comment",
            expected_version=None,
            note="已安排网格员核实",
            public=True,
        )
        service.transition(
            conn,
            principal=desk.principals["leader"],
            case_id=rid,
            action="comment",
            expected_version=None,
            note="内部备注",
        )
    with desk.engine.connect() as conn:
        one = service.public_case(conn, case_id=rid)
        listed = service.public_cases(conn, sources=("open311", "hotline"), limit=10_000)
        picked = service.public_cases(conn, case_ids=[rid, staff.id], sources=("open311",))
        page2 = service.public_cases(conn, sources=("open311", "hotline"), limit=1, offset=1)
    assert one.source == "open311" and one.last_public_note == "已安排网格员核实"
    assert [e.note for e in one.public_events] == ["", "已安排网格员核实"]
    assert one.agency  # the service centre's town name until dispatched
    assert "赵六" not in repr(one) and "13600000000" not in repr(one)
    assert rid in {c.id for c in listed} and staff.id not in {c.id for c in listed}
    assert [c.id for c in picked] == [rid]
    assert len(page2) == 1 and page2[0].id != listed[0].id
