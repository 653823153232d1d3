"""The fast path of the case workflow (issue 12, speed): the brief answer to an action
(``Prefer: return=minimal``) says what a full read says, and a bearer token's account is
read in the request's own transaction, so a disabled account or a changed scope counts at
once and no connection is left behind (no account cache). The working calendar is kept in
the process by version: an edit counts for the next deadline. Writers of different cases
do not wait for each other (the cases layer's version moves at commit, migration 0024)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from api import auth, create_app
from api.routes import cases_lane
from geogrid import store
from geogrid.access import users
from geogrid.cases import calendar, service
from geogrid.plans import activate_plan, create_plan
from geogrid.settings import Settings

BRIEF = {"Prefer": "return=minimal"}
MOVED_FIELDS = {
    "id", "case_no", "status", "version", "pending", "due_at", "deadline_problem",
    "assignee_kind", "assignee_code", "owner_id", "merged_into", "updated_at",
    "allowed_actions", "etag",
}  # fmt: skip


@dataclass
class Town:
    engine: Engine
    client: TestClient
    grid: str
    other_grid: str
    names: dict[str, str]
    headers: dict[str, dict[str, str]]

    def report(self) -> tuple[int, str]:
        made = self.report_json()
        return made["case"]["id"], made["etag"]

    def report_json(self) -> dict[str, Any]:
        """A case reported in the grid by its worker: the answer, with its ETag."""
        with self.engine.connect() as conn:
            lon, lat = conn.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(g.geom) AS p "
                    "FROM grids g JOIN plans pl ON pl.id = g.plan_id AND pl.status = 'active' "
                    "WHERE g.code = :g) s"
                ),
                {"g": self.grid},
            ).one()
        r = self.client.post(
            "/api/cases",
            headers=self.headers["worker"],
            json={"category": "0401", "lon": lon, "lat": lat, "description": "路灯不亮"},
        )
        assert r.status_code == 201, r.text
        return {**r.json(), "etag": r.headers["etag"]}

    def act(self, who: str, case_id: int, etag: str, action: str, **kw: Any) -> Any:
        return self.client.post(
            f"/api/cases/{case_id}/transitions",
            headers={**self.headers[who], "If-Match": etag, **kw.pop("extra", {})},
            json={"action": action, **kw},
        )


@pytest.fixture(scope="module")
def town(pg, _town_template: str, sample_town, account_maker, tmp_path_factory) -> Iterator[Town]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template=_town_template)
    url = pg.url(name)
    engine = store.make_engine(url)
    plan = create_plan(engine, sample_town.town_code, name="active", jobs=1)
    activate_plan(engine, plan)
    with engine.connect() as conn:
        grid, other = conn.execute(
            text(
                "SELECT min(g.code), max(g.code) FROM grids g WHERE g.plan_id = :p AND g.level = 3"
            ),
            {"p": plan},
        ).one()
    worker = account_maker(url, "grid_worker", grid)
    leader = account_maker(url, "town_leader", sample_town.town_code)
    app = create_app(Settings(home=tmp_path_factory.mktemp("home")), database_url=url)
    try:
        with TestClient(app) as client:
            yield Town(
                engine,
                client,
                grid,
                other,
                {"worker": worker.username, "leader": leader.username},
                {"worker": worker.headers(client), "leader": leader.headers(client)},
            )
    finally:
        engine.dispose()
        pg.drop_database(name)


def _no_connection_left(town: Town) -> None:
    """Every connection back in the pool (a request's connection is given back as its
    dependencies close, which may be just after the answer was sent)."""
    pool = town.client.app.state.engine.pool  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.checkedout() == 0


# --------------------------------------------------------------------------- brief answers


def test_brief_answer_says_what_a_full_read_says(town: Town) -> None:
    cid, etag = town.report()
    r = town.act("worker", cid, etag, "accept", extra=BRIEF)
    assert r.status_code == 200, r.text
    assert r.headers["preference-applied"] == "return=minimal"
    body = r.json()
    assert set(body) == MOVED_FIELDS  # no events, files or reporter
    assert body["etag"] == r.headers["etag"] == f'"case-{cid}-v2"'
    full = town.client.get(f"/api/cases/{cid}", headers=town.headers["worker"]).json()
    for key in ("status", "version", "pending", "due_at", "deadline_problem", "etag",
                "allowed_actions", "case_no", "merged_into"):  # fmt: skip
        assert body[key] == full[key], key
    assert (body["assignee_kind"], body["assignee_code"]) == (
        full["assignee"]["kind"],
        full["assignee"]["code"],
    )
    # the next step from the brief answer's ETag, as a client goes on
    nxt = town.act("leader", cid, body["etag"], "register", extra=BRIEF)
    assert nxt.status_code == 200 and nxt.json()["status"] == "registered"
    led = town.client.get(f"/api/cases/{cid}", headers=town.headers["leader"]).json()
    assert nxt.json()["allowed_actions"] == led["allowed_actions"]
    assert nxt.json()["due_at"] == led["due_at"] and led["due_at"] is not None


def test_without_prefer_the_answer_is_the_full_case(town: Town) -> None:
    cid, etag = town.report()
    r = town.act("worker", cid, etag, "accept")
    assert r.status_code == 200, r.text
    assert "preference-applied" not in r.headers
    assert [e["action"] for e in r.json()["events"]] == ["report", "accept"]
    for prefer in ("return=representation", "minimal"):  # not a request for the brief one
        stale = town.act("worker", cid, etag, "start", extra={"Prefer": prefer})
        assert stale.status_code == 412 and "preference-applied" not in stale.headers
    full = town.act("leader", cid, r.headers["etag"], "register",
                    extra={"Prefer": "return=representation"})  # fmt: skip
    assert full.status_code == 200 and len(full.json()["events"]) == 3


def test_brief_refusals_are_the_usual_errors(town: Town) -> None:
    cid, etag = town.report()
    assert town.act("worker", cid, f'"case-{cid + 1}-v1"', "accept", extra=BRIEF).status_code == 412
    illegal = town.act("worker", cid, etag, "close", extra=BRIEF)
    assert illegal.status_code == 409, illegal.text
    assert illegal.json()["allowed"] == ["accept", "reject", "merge", "comment"], illegal.text
    stale = town.act("worker", cid, etag.replace("-v1", "-v7"), "accept", extra=BRIEF)
    assert stale.status_code == 412
    accepted = town.act("worker", cid, etag, "accept", extra=BRIEF)
    assert accepted.status_code == 200, accepted.text
    not_mine = town.act("worker", cid, accepted.headers["etag"], "register", extra=BRIEF)
    assert not_mine.status_code == 403, not_mine.text
    assert not_mine.json()["allowed"] == [a["action"] for a in accepted.json()["allowed_actions"]]
    r = town.client.post(
        f"/api/cases/{cid}/transitions", headers={**town.headers["worker"], **BRIEF},
        json={"action": "accept"},
    )  # fmt: skip
    assert r.status_code == 428
    _no_connection_left(town)


# --------------------------------------------------------------------------- the account


def test_a_disabled_account_stops_at_once(town: Town) -> None:
    cid, etag = town.report()
    h = town.headers["worker"]
    assert town.client.get(f"/api/cases/{cid}", headers=h).status_code == 200
    with town.engine.begin() as conn:
        users.set_disabled(conn, username=town.names["worker"], disabled=True)
    try:
        for call in (
            lambda: town.client.get(f"/api/cases/{cid}", headers=h),
            lambda: town.act("worker", cid, etag, "accept", extra=BRIEF),
            lambda: town.client.get("/api/cases/inbox", headers=h),
        ):
            r = call()
            assert r.status_code == 401, r.text
    finally:
        with town.engine.begin() as conn:
            users.set_disabled(conn, username=town.names["worker"], disabled=False)
    assert town.client.get(f"/api/cases/{cid}", headers=h).status_code == 200
    _no_connection_left(town)


def test_a_changed_scope_counts_at_once(town: Town) -> None:
    cid, _ = town.report()
    h = town.headers["worker"]
    assert town.client.get(f"/api/cases/{cid}", headers=h).status_code == 200

    def move(code: str) -> None:
        with town.engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET scope_code = :c WHERE username = :u"),
                {"c": code, "u": town.names["worker"]},
            )

    move(town.other_grid)
    try:
        assert town.client.get(f"/api/cases/{cid}", headers=h).status_code == 404
        listed = town.client.get("/api/cases?limit=200", headers=h).json()["items"]
        assert cid not in {c["id"] for c in listed}
    finally:
        move(town.grid)
    assert town.client.get(f"/api/cases/{cid}", headers=h).status_code == 200


def test_a_refused_request_leaves_no_connection(town: Town) -> None:
    r = town.client.put(
        "/api/cases/routing", headers=town.headers["worker"], json={"area_code": "", "rows": []}
    )
    assert r.status_code == 403
    bad = {"Authorization": town.headers["worker"]["Authorization"] + "x"}
    assert town.client.get("/api/cases/inbox", headers=bad).status_code == 401
    _no_connection_left(town)


def test_row_level_settings_follow_the_account_row(town: Town) -> None:
    """The scope guessed from the user's last request is checked against the row read in
    the same statement and set again when it differs (here: a special-population grant)."""
    with town.engine.connect() as conn:
        user = users.get_user(conn, username=town.names["leader"])

    def settings() -> tuple[str, str, Any]:
        conn, principal = auth._open_for_token(town.engine, user.id)
        try:
            row = conn.execute(
                text("SELECT current_setting('geogrid.scope'), current_setting('geogrid.special')")
            ).one()
            return row[0], row[1], principal
        finally:
            conn.close()

    for _ in range(2):  # the first call guesses nothing, the second guesses right
        scope, special, principal = settings()
        assert (scope, special) == (principal.scope.sql_value, "off")
    with town.engine.begin() as conn:
        users.set_permissions(conn, username=user.username, grant=["special"], revoke=[])
    try:
        scope, special, principal = settings()
        assert special == "on" and "special" in principal.permissions
    finally:
        with town.engine.begin() as conn:
            users.set_permissions(conn, username=user.username, grant=[], revoke=["special"])
    assert settings()[1] == "off"


# --------------------------------------------------------------------------- calendar cache


def _local_day(due_at: str) -> date:
    return datetime.fromisoformat(due_at).astimezone(ZoneInfo("Asia/Shanghai")).date()


def _accepted_due(town: Town) -> str:
    cid, etag = town.report()
    r = town.act("worker", cid, etag, "accept", extra=BRIEF)
    assert r.status_code == 200, r.text
    due: str | None = r.json()["due_at"]
    assert due is not None, r.text
    return due


def test_one_calendar_snapshot_per_process_and_version(town: Town) -> None:
    with town.engine.connect() as a, town.engine.connect() as b:
        first = calendar.load_calendar(a)
        assert calendar.load_calendar(b) is first  # shared, not loaded per connection
        assert calendar.load_calendar(b, version=first.version) is first


def test_a_calendar_edit_counts_for_the_next_deadline(town: Town) -> None:
    """The deadline a transition starts reads the process's calendar snapshot: after an
    administrator makes the deadline's day a holiday (committed elsewhere), the very next
    transition counts it, and again after the day is given back."""
    due = _accepted_due(town)
    day = _local_day(due)
    with town.engine.connect() as conn:
        before = conn.execute(
            text("SELECT kind, name FROM calendar_days WHERE day = :d"), {"d": day}
        ).first()
    assert before is None, f"{day} is a special day already; pick another case time"
    with town.engine.begin() as conn:
        calendar.set_day(conn, calendar.DayEntry(day, "holiday", "测试假日"))
    try:
        moved = _accepted_due(town)
        assert _local_day(moved) > day, (due, moved)
    finally:
        with town.engine.begin() as conn:
            calendar.remove_day(conn, day)
    assert _local_day(_accepted_due(town)) == day


# --------------------------------------------------------------------------- no global lock


def test_writers_of_different_cases_do_not_wait_for_each_other(town: Town) -> None:
    """Two open transactions each write a case; neither waits for the other (the cases
    layer's version, one row, is raised at commit), and each commit raises it by one."""
    one, two = town.report()[0], town.report()[0]

    def version() -> int:
        with town.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT version FROM layer_versions_now WHERE layer = 'cases'")
                ).scalar_one()
            )

    start = version()
    touch = text("UPDATE cases SET priority = priority WHERE id = :id")
    with town.engine.connect() as a, town.engine.connect() as b:
        a.execute(touch, {"id": one})
        a.execute(touch, {"id": one})  # twice in one transaction: one bump
        b.execute(text("SET LOCAL lock_timeout = '3s'"))
        b.execute(touch, {"id": two})  # waited for a (and timed out) before 0024
        assert version() == start  # nothing committed yet
        a.commit()
        assert version() == start + 1
        b.commit()
        assert version() == start + 2
    with town.engine.connect() as a:
        a.execute(touch, {"id": one})
        a.rollback()
    assert version() == start + 2  # a rolled-back write raises nothing


def test_commits_of_different_cases_do_not_queue_on_one_version_row(town: Town) -> None:
    """Two transactions that have both raised the cases layer's version (as a commit does)
    stay open side by side: their bumps went to their connections' shards (0032), not to
    one row a commit holds through its WAL flush. The version is the row plus the shards."""
    one, two = town.report()[0], town.report()[0]
    touch = text("UPDATE cases SET priority = priority WHERE id = :id")
    conns = [town.engine.connect() for _ in range(4)]
    try:
        pids = [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in conns]
        for c in conns:
            c.rollback()
        # two of the four connections on different shards
        by_shard: dict[int, list[int]] = {}
        for i, pid in enumerate(pids):
            by_shard.setdefault(pid % 64, []).append(i)
        firsts = [ids[0] for ids in by_shard.values()]
        a, b = conns[firsts[0]], conns[firsts[1]]
        with town.engine.connect() as reader:
            start = int(
                reader.execute(
                    text("SELECT version FROM layer_versions_now WHERE layer = 'cases'")
                ).scalar_one()
            )
        a.execute(touch, {"id": one})
        a.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the bump now, row held till commit
        b.execute(text("SET LOCAL lock_timeout = '2s'"))
        b.execute(touch, {"id": two})
        b.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # waited for a's commit before 0032
        a.commit()
        b.commit()
        with town.engine.connect() as reader:
            now = reader.execute(
                text(
                    "SELECT v.version, (SELECT version FROM layer_versions WHERE layer = 'cases'),"
                    " (SELECT sum(version) FROM layer_version_shards WHERE layer = 'cases') "
                    "FROM layer_versions_now v WHERE v.layer = 'cases'"
                )
            ).one()
        assert now[0] == start + 2
        assert now[0] == now[1] + now[2]
    finally:
        for c in conns:
            c.close()


def test_every_connection_bumps_a_shard_of_its_own(town: Town) -> None:
    """40 connections each holding a bump of the cases layer's version (as a commit does)
    stay open side by side: each claimed a shard of its own (0033). With shards chosen by
    ``pg_backend_pid() % 64`` (0032), 40 connections share one almost surely (all differ
    with a chance of 1 in 200,000) and the second of a pair waits for the first's commit."""
    ids = [town.report()[0] for _ in range(40)]
    touch = text("UPDATE cases SET priority = priority WHERE id = :id")
    many = create_engine(town.engine.url, poolclass=NullPool)  # 40 at once
    conns = [many.connect() for _ in ids]
    try:
        for conn, case_id in zip(conns, ids, strict=True):
            conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            conn.execute(touch, {"id": case_id})
            conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # the bump now, held
        shards = [
            int(c.execute(text("SELECT current_setting('geogrid.layer_shard')")).scalar_one())
            for c in conns
        ]
        assert len(set(shards)) == len(conns)
        for conn in conns:
            conn.commit()
        # a connection keeps its shard for its life (the claim outlives the transaction)
        again = conns[0]
        again.execute(touch, {"id": ids[0]})
        again.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        assert again.execute(text("SELECT geogrid_layer_shard()")).scalar_one() == shards[0]
        again.commit()
    finally:
        for c in conns:
            c.close()
        many.dispose()


def test_a_rolled_back_claim_is_claimed_again(town: Town) -> None:
    """A connection whose first bump was rolled back (its claim's setting with it) claims a
    shard again on its next bump, and still bumps the version exactly once per commit."""
    one = town.report()[0]
    touch = text("UPDATE cases SET priority = priority WHERE id = :id")
    version = text("SELECT version FROM layer_versions_now WHERE layer = 'cases'")
    fresh = create_engine(town.engine.url, poolclass=NullPool)  # a connection never used
    with fresh.connect() as conn:
        conn.execute(touch, {"id": one})
        conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
        conn.rollback()
        assert conn.execute(
            text("SELECT current_setting('geogrid.layer_shard', true)")
        ).scalar() in (
            None,
            "",
        )
        start = int(conn.execute(version).scalar_one())
        conn.rollback()
        conn.execute(touch, {"id": one})
        conn.commit()
        assert int(conn.execute(version).scalar_one()) == start + 1
        shard = conn.execute(text("SELECT current_setting('geogrid.layer_shard')")).scalar_one()
        assert 0 <= int(shard) < 64
        conn.rollback()
    fresh.dispose()


# --------------------------------------------------------------------------- fewer round trips


def test_a_report_numbers_and_times_itself_in_its_insert(town: Town) -> None:
    """The case number (E, the local day of the report, seven digits of the sequence),
    the first deadline (the category's accept limit on the calendar) and the duplicate
    settings come with the row's INSERT: each as the separate queries gave it."""
    from geogrid.cases import workflow

    case = town.report_json()["case"]
    reported = datetime.fromisoformat(case["reported_at"])
    local = reported.astimezone(ZoneInfo("Asia/Shanghai"))
    assert case["case_no"][:9] == f"E{local:%Y%m%d}", case["case_no"]
    assert len(case["case_no"]) == 16 and case["case_no"][9:].isdigit(), case["case_no"]
    with town.engine.connect() as conn:
        last = conn.execute(text("SELECT last_value FROM case_no_seq")).scalar_one()
        fresh = workflow.deadline(conn, "0401", "accept", reported)  # limits queried
    assert int(case["case_no"][9:]) == int(last) % 10**7
    assert fresh["due_at"] is not None
    assert datetime.fromisoformat(case["due_at"]) == datetime.fromisoformat(fresh["due_at"])


def test_duplicate_settings_count_for_the_next_report(town: Town) -> None:
    """Two reports at one point: the second names the first as a possible duplicate;
    with the window set to nothing (committed elsewhere) the next names none."""
    first = town.report_json()["case"]["id"]
    second = town.report_json()
    assert first in [d["id"] for d in second["duplicates"]], second["duplicates"]
    with town.engine.begin() as conn:
        conn.execute(
            text("UPDATE case_settings SET value = '0' WHERE key = 'duplicate_window_hours'")
        )
    try:
        third = town.report_json()
        assert third["duplicates"] == []
    finally:
        with town.engine.begin() as conn:
            conn.execute(
                text("UPDATE case_settings SET value = '72' WHERE key = 'duplicate_window_hours'")
            )
    assert first in [d["id"] for d in town.report_json()["duplicates"]]


def test_department_membership_counts_in_the_next_transaction(town: Town) -> None:
    """A department's members stand at its post: read once per transaction, so a member
    added elsewhere counts on the same (pooled) connection's next transaction."""
    from geogrid.cases import routing

    with town.engine.begin() as conn:
        town_code = conn.execute(
            text("SELECT code FROM admin_areas WHERE level = 'town' ORDER BY code LIMIT 1")
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO case_departments (code, town_code, name) VALUES "
                "('speed-dept', :t, '测试科') ON CONFLICT DO NOTHING"
            ),
            {"t": town_code},
        )
        worker = users.get_user(conn, username=town.names["worker"]).principal()
    member = text(
        "INSERT INTO case_department_members (department_code, user_id) VALUES ('speed-dept', :u)"
    )
    try:
        with town.engine.connect() as conn:
            assert not routing.user_at_post(conn, worker, "department", "speed-dept")
            with town.engine.begin() as other:
                other.execute(member, {"u": worker.user_id})
            # the same transaction keeps what it read; the next one reads again
            assert not routing.user_at_post(conn, worker, "department", "speed-dept")
            conn.rollback()
            assert routing.user_at_post(conn, worker, "department", "speed-dept")
    finally:
        with town.engine.begin() as conn:
            conn.execute(text("DELETE FROM case_department_members WHERE user_id = :u"),
                         {"u": worker.user_id})  # fmt: skip
            conn.execute(text("DELETE FROM case_departments WHERE code = 'speed-dept'"))


# --------------------------------------------------------------------------- the lane


def _lane(town: Town, method: str = "POST") -> cases_lane.Lane:
    lanes = [
        r
        for r in town.client.app.router.routes[:2]  # type: ignore[attr-defined]
        if isinstance(r, cases_lane.Lane) and r.method == method
    ]
    assert len(lanes) == 1
    return lanes[0]


@contextmanager
def _counting(town: Town, lane: cases_lane.Lane | None = None) -> Iterator[list[int]]:
    """How many requests the lane took meanwhile (its one thread's work, counted)."""
    lane, taken = lane or _lane(town), [0]
    work = lane._work

    def counted(request: Any, body: bytes) -> Any:
        taken[0] += 1
        return work(request, body)

    lane._work = counted  # type: ignore[method-assign]
    try:
        yield taken
    finally:
        del lane._work


@contextmanager
def _without_lane(town: Town) -> Iterator[None]:
    routes = town.client.app.router.routes  # type: ignore[attr-defined]
    lanes = [routes.pop(0), routes.pop(0)]
    assert all(isinstance(lane, cases_lane.Lane) for lane in lanes)
    try:
        yield
    finally:
        routes[:0] = lanes


def test_the_lane_takes_bearer_transitions_and_the_route_the_rest(town: Town) -> None:
    cid, etag = town.report()
    with _counting(town) as taken:
        assert town.act("worker", cid, etag, "accept", extra=BRIEF).status_code == 200
        assert taken == [1]
        as_form = town.client.post(
            f"/api/cases/{cid}/transitions",
            headers={**town.headers["worker"], "If-Match": etag},
            data={"action": "accept"},
        )
        assert as_form.status_code == 400  # the route's validation: a JSON body
        for bad_id in ("0", str(2**62 + 1), "x1"):
            r = town.client.post(
                f"/api/cases/{bad_id}/transitions",
                headers={**town.headers["worker"], "If-Match": etag},
                json={"action": "accept"},
            )
            assert r.status_code in (400, 404), r.text  # the route's answer
        long_prefer = {"Prefer": "return=minimal, " + "x" * 300}
        assert town.act("worker", cid, etag, "accept", extra=long_prefer).status_code == 400
        anonymous = town.client.post(
            f"/api/cases/{cid}/transitions", headers={"If-Match": etag}, json={"action": "x"}
        )
        assert anonymous.status_code == 401
        assert taken == [1]
    _no_connection_left(town)


def _shape(value: Any, case_id: int) -> Any:
    """An answer with what differs between two cases (ids, times, ETags) blanked."""
    volatile = {"id", "case_id", "case_no", "etag", "updated_at", "due_at", "at", "reported_at"}
    if isinstance(value, dict):
        return {k: "-" if k in volatile else _shape(v, case_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v, case_id) for v in value]
    if isinstance(value, str):
        return re.sub(rf"(case[ -]|cases/){case_id}(?!\d)", r"\1ID", value)
    return value


def test_the_lane_answers_as_the_route_does(town: Town) -> None:
    """The same calls on two new cases, through the lane and through the route: the same
    statuses, bodies (but ids, times and ETags) and headers (but their values)."""

    def scenario() -> list[tuple[int, Any, list[str]]]:
        cid, etag = town.report()
        out = []

        def keep(r: Any) -> str:
            out.append((r.status_code, _shape(r.json(), cid), sorted(r.headers.keys())))
            return str(r.headers.get("etag", ""))

        keep(town.act("worker", cid, etag, "close", extra=BRIEF))  # 409
        keep(town.act("worker", cid, etag.replace("-v1", "-v5"), "accept"))  # 412
        keep(town.act("worker", cid, "nonsense", "accept"))  # 412
        keep(town.act("worker", cid, etag, "accept", public="yes please"))  # 400
        keep(
            town.client.post(
                f"/api/cases/{cid}/transitions", headers=town.headers["worker"],
                json={"action": "accept"},
            )
        )  # 428  # fmt: skip
        etag = keep(town.act("worker", cid, etag, "accept", extra=BRIEF))  # brief
        keep(town.act("worker", cid, etag, "register"))  # 403: not the worker's step
        etag = keep(town.act("leader", cid, etag, "register", note="立案"))  # full
        keep(town.act("leader", cid, etag, "dispatch", post={"kind": "nowhere", "code": "1"}))
        nowhere = 2**40
        keep(town.act("leader", nowhere, service.make_etag(nowhere, 3), "dispatch"))  # 404
        return out

    lane = _lane(town)
    with _counting(town, lane) as taken:
        through_lane = scenario()
    assert taken[0] == 10
    with _without_lane(town), _counting(town, lane) as taken:
        through_route = scenario()
    assert taken[0] == 0
    assert [s for s, _, _ in through_lane] == [409, 412, 412, 400, 428, 200, 403, 200, 400, 404]
    assert through_lane == through_route
    _no_connection_left(town)


def test_the_lane_checks_credentials_before_the_body(town: Town) -> None:
    cid, etag = town.report()
    bad = {"Authorization": town.headers["worker"]["Authorization"] + "x", "If-Match": etag}
    with _counting(town) as taken:
        r = town.client.post(f"/api/cases/{cid}/transitions", headers=bad, content=b"{not json")
        assert r.status_code == 401  # no JSON content type: the route, credentials first too
        bad["Content-Type"] = "application/json"
        r = town.client.post(f"/api/cases/{cid}/transitions", headers=bad, content=b"{not json")
        assert r.status_code == 401, r.text
        good = {**town.headers["worker"], "If-Match": etag, "Content-Type": "application/json"}
        r = town.client.post(f"/api/cases/{cid}/transitions", headers=good, content=b"{not")
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "InvalidParameterValue"
        assert r.json()["errors"][0]["where"].startswith("body")
        assert taken == [2]
    _no_connection_left(town)


def test_the_lane_refuses_who_the_route_refuses(town: Town, account_maker: Any) -> None:
    """The route's rule (case.work) and the first-password rule, through the lane."""
    cid, etag = town.report()
    url = town.engine.url.render_as_string(hide_password=False)
    planner = account_maker(url, "planner", "all")
    fresh = account_maker(url, "grid_worker", town.grid, must_change=True)
    with _counting(town) as taken:
        for account, detail in ((planner, False), (fresh, True)):
            r = town.client.post(
                f"/api/cases/{cid}/transitions",
                headers={**account.headers(town.client), "If-Match": etag, **BRIEF},
                json={"action": "accept"},
            )
            assert r.status_code == 403, r.text
            if detail:
                assert r.json()["password_change_required"] is True, r.text
        assert taken == [2]
    # the lane declares the route's rule
    assert _lane(town).action == auth.policy_of(_lane(town).route) == "case.work"
    _no_connection_left(town)


def test_the_lane_plans_once_and_only_its_own_transaction(town: Town) -> None:
    """The web server's connections plan every statement (tiles: the plan depends on the
    bounds); the lane's transaction, whose statements are lookups by key, plans once per
    connection (0.12 of the lock's 0.2 ms were planning), and only that transaction."""
    url = town.engine.url.render_as_string(hide_password=False)
    serving = store.make_serving_engine(url, pool_size=1, max_overflow=0)
    with town.engine.connect() as conn:
        uid = conn.execute(
            text("SELECT id FROM users WHERE username = :u"), {"u": town.names["worker"]}
        ).scalar_one()
    mode = text("SELECT current_setting('plan_cache_mode')")
    try:
        conn, principal = auth._open_for_token(serving, uid, generic_plans=True)
        try:
            assert principal.username == town.names["worker"]
            assert conn.execute(mode).scalar_one() == "force_generic_plan"
            conn.commit()
            assert conn.execute(mode).scalar_one() == "force_custom_plan"  # the next one
            conn.rollback()
        finally:
            conn.close()
        cid, _ = town.report()
        conn, principal = auth._open_for_token(serving, uid)
        try:
            assert conn.execute(mode).scalar_one() == "force_custom_plan"
            service._lock(conn, principal, cid)  # an action through the route: from its lock
            assert conn.execute(mode).scalar_one() == "force_generic_plan"
        finally:
            conn.close()
    finally:
        serving.dispose()


def test_the_read_lane_answers_as_the_route_does(town: Town, account_maker: Any) -> None:
    cid, etag = town.report()
    url = town.engine.url.render_as_string(hide_password=False)
    planner = account_maker(url, "planner", "all").headers(town.client)

    def reads() -> list[tuple[int, Any, list[str]]]:
        calls = [
            (f"/api/cases/{cid}", town.headers["worker"]),
            (f"/api/cases/{cid}", {**town.headers["worker"], "If-None-Match": etag}),
            (f"/api/cases/{cid}", {**town.headers["worker"], "If-None-Match": '"x", ' + etag}),
            (f"/api/cases/{cid}", {**town.headers["worker"], "If-None-Match": '"old"'}),
            (f"/api/cases/{2**40}", town.headers["worker"]),
            (f"/api/cases/{cid}", planner),  # not a case role: 403
        ]
        out = []
        for path, headers in calls:
            r = town.client.get(path, headers=headers)
            body = r.json() if r.content else None
            out.append((r.status_code, body, sorted(r.headers.keys())))
        return out

    lane = _lane(town, "GET")
    with _counting(town, lane) as taken:
        through_lane = reads()
        r = town.client.get("/api/cases/inbox", headers=town.headers["worker"])
        assert r.status_code == 200  # not a case id: the inbox route
        assert town.client.get(f"/api/cases/{cid}").status_code == 401  # no token: the route
    assert taken[0] == 6
    with _without_lane(town), _counting(town, lane) as taken:
        through_route = reads()
    assert taken[0] == 0
    assert [s for s, _, _ in through_lane] == [200, 304, 304, 200, 404, 403]
    assert through_lane == through_route
    _no_connection_left(town)
