"""Monthly partitions (migration 0023, :mod:`geogrid.ops.partitions`): pruning shown by the
plans of the real queries, new months in their own partitions, detach/export/drop losing
nothing, append-only and the web role's rights kept, an upgrade with data in it."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, event, text

from geogrid import store
from geogrid.access import audit
from geogrid.cases import open311_store
from geogrid.cases import queries as case_queries
from geogrid.errors import Conflict, InvalidInput
from geogrid.ops import partitions
from geogrid.ops.backup import client_tool, pg_connection
from geogrid.ops.restore import libpq_dsn
from geogrid.settings import Settings
from tests.ops_support import geogrid_env, run_cli
from tiles import heat
from tiles.params import Window

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
#: Past months the data sits in (each gets a partition when the data moves out of DEFAULT).
MONTHS = (dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1))
LON, LAT = 114.3001, 30.4001
BBOX = (114.299, 30.399, 114.302, 30.402)


# --------------------------------------------------------------------------- helpers


def _local(month: dt.date, day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(month.year, month.month, day, hour, tzinfo=SHANGHAI)


def _fill(conn: Connection, *, per_month: int = 3) -> None:
    """Cases reported in :data:`MONTHS` (one on each month's first local hour, when the
    month has begun in Shanghai but not yet in UTC), their report events, audit entries,
    and the heat pyramid, then partitions for every month the rows are in."""
    for month in MONTHS:
        for i in range(per_month):
            at = _local(month, 1, 0) if i == 0 else _local(month, 2 + i, 10)
            case_id = conn.execute(
                text(
                    "INSERT INTO cases (case_no, category, reported_at, geom) VALUES "
                    "(:no, '环境卫生', :at, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) RETURNING id"
                ),
                {"no": f"T{month:%Y%m}{i}", "at": at, "x": LON + i * 1e-4, "y": LAT},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO case_events (case_id, seq, action, to_status, at, actor) "
                    "VALUES (:c, 1, 'report', 'reported', :at, 'test')"
                ),
                {"c": case_id, "at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, action, outcome, prev_hash, hash) "
                    "VALUES (:at, 'test.fill', 'ok', '', '')"
                ),
                {"at": at},
            )
    heat.refresh_heat(conn, full=True)
    partitions.ensure(conn)


@contextmanager
def _captured(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) the code runs on ``conn`` meanwhile."""
    seen: list[tuple[str, Any]] = []

    def hook(_c: Any, _cur: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", hook)


def _scanned(
    conn: Connection, statement: str, parameters: Any, table: str, *, run: bool = False
) -> set[str]:
    """The partitions of ``table`` the plan of ``statement`` reads (EXPLAIN's JSON). With
    ``run`` the statement runs (EXPLAIN ANALYZE) and only nodes run at least once count:
    bounds known only while it runs (a subquery's value) prune then ("never executed")."""
    with conn.connection.driver_connection.cursor() as cur:
        options = "ANALYZE, FORMAT JSON" if run else "FORMAT JSON"
        cur.execute(f"EXPLAIN ({options}) {statement}", parameters)
        row = cur.fetchone()
    assert row is not None

    def walk(node: dict[str, Any]) -> Iterator[str]:
        if "Relation Name" in node and (not run or node.get("Actual Loops", 0) > 0):
            yield node["Relation Name"]
        for child in node.get("Plans", []):
            yield from walk(child)

    return {n for n in walk(row[0][0]["Plan"]) if n.startswith(f"{table}_")}


def _statement(seen: list[tuple[str, Any]], *needles: str) -> tuple[str, Any]:
    found = [s for s in seen if all(n in s[0] for n in needles)]
    assert found, f"no statement with {needles}"
    return found[-1]


def _where(conn: Connection, table: str, sql: str, params: dict[str, Any]) -> str:
    return conn.execute(
        text(f"SELECT tableoid::regclass::text FROM {table} WHERE {sql}"), params
    ).scalar_one()


@dataclass
class Db:
    url: str
    engine: Engine


@pytest.fixture
def db(pg) -> Iterator[Db]:  # type: ignore[no-untyped-def]
    """A fresh database at the newest schema holding :func:`_fill`'s rows."""
    name = pg.create_database()
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        with engine.begin() as conn:
            _fill(conn)
        yield Db(url, engine)
    finally:
        engine.dispose()
        pg.drop_database(name)


def _name(table: str, month: dt.date) -> str:
    return f"{table}_{month:%Y%m}"


def _content(conn: Connection, table: str) -> tuple[int, str]:
    return tuple(  # type: ignore[return-value]
        conn.execute(
            text(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), "
                f"'')) FROM {table} t"
            )
        ).one()
    )


# --------------------------------------------------------------------------- pruning


def test_heat_tiles_of_a_window_read_only_its_months(db: Db) -> None:
    feb = MONTHS[1]
    window = Window(start=feb, end=dt.date(2025, 2, 28))
    with db.engine.connect() as conn:
        with _captured(conn) as seen:
            answer = heat.heat_geojson(conn, bbox=BBOX, z=16, window=window)
        assert '"n"' in answer  # the window's cases are found
        statement, params = _statement(seen, "heat_daily")
        assert _scanned(conn, statement, params, "heat_daily") == {_name("heat_daily", feb)}
        wide = Window(start=dt.date(2025, 1, 15), end=dt.date(2025, 3, 2))
        with _captured(conn) as seen:
            heat.heat_geojson(conn, bbox=BBOX, z=15, window=wide)
        statement, params = _statement(seen, "heat_daily")
        assert _scanned(conn, statement, params, "heat_daily") == {
            _name("heat_daily", m) for m in MONTHS
        }


def test_a_heat_refresh_rereads_only_the_dirty_days_months(db: Db) -> None:
    mar = MONTHS[2]
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO cases (case_no, category, reported_at, geom) VALUES "
                "('T-late', '环境卫生', :at, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"
            ),
            {"at": _local(mar, 20), "x": LON, "y": LAT},
        )
        with _captured(conn) as seen:
            done = heat.refresh_heat(conn)
        assert done.days == 1
        statement, params = _statement(seen, "DELETE FROM heat_daily")
        assert _scanned(conn, statement, params, "heat_daily") == {_name("heat_daily", mar)}


def test_the_audit_reader_reads_only_the_period_asked(db: Db) -> None:
    jan, feb = MONTHS[0], MONTHS[1]
    since = dt.datetime(2025, 1, 5, tzinfo=dt.UTC)
    until = dt.datetime(2025, 2, 10, tzinfo=dt.UTC)
    with db.engine.connect() as conn:
        with _captured(conn) as seen:
            entries, total = audit.search(conn, since=since, until=until)
        # 31 January 16:00 UTC (1 February in Shanghai), 3 and 4 February
        assert total == len(entries) == 3
        want = {_name("audit_log", jan), _name("audit_log", feb)}
        for needle in ("count(*)", "ORDER BY id DESC"):
            statement, params = _statement(seen, "FROM audit_log", needle)
            assert _scanned(conn, statement, params, "audit_log") == want


def test_a_case_timeline_reads_only_the_months_from_its_report_on(db: Db) -> None:
    feb = MONTHS[1]
    with db.engine.begin() as conn:
        case_id = conn.execute(
            text("SELECT id FROM cases WHERE case_no = :no"), {"no": f"T{feb:%Y%m}1"}
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, seq, action, to_status, at, actor, public, "
                "note) VALUES (:c, 2, 'accept', 'accepted', :at, 'test', true, '已受理')"
            ),
            {"c": case_id, "at": _local(MONTHS[2], 9)},
        )
    with db.engine.connect() as conn:
        want = {
            p.name
            for p in partitions.list_partitions(conn, "case_events")
            if p.attached and (p.month is None or p.month >= feb)
        }
        with _captured(conn) as seen:
            steps = case_queries.public_events(conn, case_id)
        assert [s.to_status for s in steps] == ["reported", "accepted"]
        statement, params = _statement(seen, "FROM case_events")
        assert _scanned(conn, statement, params, "case_events", run=True) == want
        assert _name("case_events", MONTHS[0]) not in want
        history = conn.execute(text(open311_store._HISTORY_SQL), {"c": case_id}).all()
        assert [h.note for h in history] == ["已受理"]
        compiled = text(open311_store._HISTORY_SQL).compile(dialect=conn.dialect)
        params = {"c": case_id}
        assert _scanned(conn, str(compiled), params, "case_events", run=True) == want


# --------------------------------------------------------------------------- months


def test_rows_that_landed_in_default_are_moved_to_their_months(db: Db) -> None:
    with db.engine.connect() as conn:  # _fill's rows went to DEFAULT, then ensure() ran
        found = partitions.list_partitions(conn)
        defaults = {p.name: p.rows for p in found if p.month is None}
        assert defaults == {f"{t}_default": 0 for t in partitions.SPECS}
        for table in ("case_events", "heat_daily"):
            months = {p.month for p in found if p.table == table and p.rows}
            assert months == set(MONTHS), table
        utc_months = {p.month for p in found if p.table == "audit_log" and p.rows}
        assert utc_months == {dt.date(2024, 12, 1), *MONTHS}
        # a case reported at local midnight on the 1st is in that month (Shanghai months)
        first = _local(MONTHS[1], 1, 0)
        where = _where(conn, "case_events", "at = :at", {"at": first})
        assert where == _name("case_events", MONTHS[1])
        assert _where(conn, "audit_log", "at = :at", {"at": first}) == _name(
            "audit_log", MONTHS[0]
        )  # the audit log's months are UTC months: 31 January 16:00 UTC


def test_rows_of_a_new_month_go_to_their_own_partition_after_create(db: Db) -> None:
    future = dt.date(2031, 6, 1)
    at = _local(future, 15)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, seq, action, to_status, at, actor) "
                "VALUES (1, 9, 'note', 'reported', :at, 'test')"
            ),
            {"at": at},
        )
        assert _where(conn, "case_events", "at = :at", {"at": at}) == "case_events_default"
        done = partitions.ensure(conn, months_ahead=1, now=at)
        name = _name("case_events", future)
        assert name in done.created and done.moved[name] == 1
        assert _name("case_events", dt.date(2031, 7, 1)) in done.created
        assert _name("heat_daily", future) in done.created
        assert _name("audit_log", future) in done.created
        later = _local(future, 20)
        conn.execute(
            text(
                "INSERT INTO case_events (case_id, seq, action, to_status, at, actor) "
                "VALUES (1, 10, 'note', 'reported', :at, 'test')"
            ),
            {"at": later},
        )
        assert _where(conn, "case_events", "at = :at", {"at": later}) == name
        conn.execute(
            text("INSERT INTO heat_daily VALUES (20, 1, 1, :d, '环境卫生', 16, 16, 1)"),
            {"d": future},
        )
        assert _where(conn, "heat_daily", "day = :d", {"d": future}) == _name("heat_daily", future)
        audit.record(conn, actor=None, action="test.future")
        assert partitions.ensure(conn, months_ahead=1, now=at).created == []
        assert audit.verify(conn).ok  # moving rows re-chains nothing


# --------------------------------------------------------------------------- archiving


def _restore(settings: Settings, url: str, dump: Path) -> None:
    args, env = pg_connection(url)
    subprocess.run([client_tool(settings, "pg_restore"), *args, str(dump)], env=env, check=True)


def test_detach_export_drop_keeps_every_row_recoverable(db: Db, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=db.url)
    jan, feb = MONTHS[0], MONTHS[1]
    with db.engine.connect() as conn:
        before = _content(conn, "case_events")
        old = {m: _content(conn, _name("case_events", m)) for m in (jan, feb)}
    with db.engine.begin() as conn:
        names = partitions.detach(conn, "case_events", "2025-03")
    assert names == [_name("case_events", jan), _name("case_events", feb)]
    with db.engine.connect() as conn:
        live = conn.execute(text("SELECT count(*) FROM case_events")).scalar_one()
        assert live == before[0] - sum(c for c, _ in old.values())
        states = {p.name: p.attached for p in partitions.list_partitions(conn, "case_events")}
        assert not states[names[0]] and not states[names[1]]
    for name in names:
        manifest = partitions.export(settings, db.url, name)
        assert manifest.parent == tmp_path / "archive"
        partitions.drop(settings, db.url, name)
    with db.engine.connect() as conn:
        assert all(
            conn.execute(text("SELECT to_regclass(:n)"), {"n": n}).scalar() is None for n in names
        )
    for name in names:  # back from the archive, and into the table again
        _restore(settings, db.url, tmp_path / "archive" / f"{name}.dump")
    with db.engine.begin() as conn:
        for month, name in zip((jan, feb), names, strict=True):
            assert _content(conn, name) == old[month]
            partitions.reattach(conn, name)
    with db.engine.connect() as conn:
        assert _content(conn, "case_events") == before


BAD_MONTHS = ["2025-13", "2025-00", "2025-1", "25-01", "2025/01", "2025-01-01", "", "next"]


@pytest.mark.parametrize("month", BAD_MONTHS)
def test_a_bad_month_string_is_refused(db: Db, month: str) -> None:
    with pytest.raises(InvalidInput, match="YYYY-MM"), db.engine.begin() as conn:
        partitions.detach(conn, "case_events", month)


def test_the_current_month_is_not_detached(db: Db) -> None:
    after_this = partitions.shift(partitions.current_month(partitions.SPECS["case_events"]), 1)
    with pytest.raises(Conflict, match="still written"), db.engine.begin() as conn:
        partitions.detach(conn, "case_events", f"{after_this:%Y-%m}")


def test_the_audit_log_keeps_its_months(db: Db) -> None:
    now = dt.datetime(2025, 5, 15, tzinfo=dt.UTC)  # 2025-01 is four months back: kept
    with pytest.raises(Conflict, match="keeps at least 6 months"), db.engine.begin() as conn:
        partitions.detach(conn, "audit_log", "2025-02", now=now)


def test_heat_rows_are_not_archived(db: Db) -> None:
    with pytest.raises(Conflict, match="derived"), db.engine.begin() as conn:
        partitions.detach(conn, "heat_daily", "2025-02")


def test_a_table_not_partitioned_is_refused(db: Db) -> None:
    with pytest.raises(InvalidInput, match="not partitioned"), db.engine.begin() as conn:
        partitions.detach(conn, "cases", "2025-02")


def test_an_unexported_partition_is_not_dropped(db: Db, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=db.url)
    with db.engine.begin() as conn:
        (name, *_) = partitions.detach(conn, "case_events", "2025-02")
    with pytest.raises(Conflict, match="not exported"):
        partitions.drop(settings, db.url, name)


def test_an_attached_partition_is_neither_exported_nor_dropped(db: Db, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=db.url)
    name = _name("case_events", MONTHS[0])
    with pytest.raises(Conflict, match="detach it first"):
        partitions.export(settings, db.url, name)
    with pytest.raises(Conflict, match="detach it first"):
        partitions.drop(settings, db.url, name)


def test_a_changed_archive_is_not_trusted(db: Db, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=db.url)
    with db.engine.begin() as conn:
        (name, *_) = partitions.detach(conn, "case_events", "2025-02")
    partitions.export(settings, db.url, name)
    dump = tmp_path / "archive" / f"{name}.dump"
    dump.write_bytes(dump.read_bytes()[:-10])
    with pytest.raises(Conflict, match="missing or changed"):
        partitions.drop(settings, db.url, name)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM " + name)).scalar_one() > 0


def test_the_cli_lists_creates_detaches_and_archives(db: Db, tmp_path: Path) -> None:
    with geogrid_env(home=str(tmp_path), database_url=db.url):
        listed = run_cli("db", "partitions", "list", "--table", "case_events")
        assert _name("case_events", MONTHS[0]) in listed and "case_events_default" in listed
        assert "none needed" in run_cli("db", "partitions", "create", "--months", "2")
        out = run_cli("db", "partitions", "detach", "--before", "2025-02", "--export")
        assert "exported and verified" in out and "dropped" in out
        assert "YYYY-MM" in run_cli("db", "partitions", "detach", "--before", "2025-2", code=1)
        name = _name("case_events", MONTHS[0])
        dump = tmp_path / "archive" / f"{name}.dump"
        _restore(Settings(home=tmp_path, database_url=db.url), db.url, dump)
        assert "attached again" in run_cli("db", "partitions", "reattach", name)
    with db.engine.connect() as conn:
        assert _where(conn, "case_events", "at = :at", {"at": _local(MONTHS[0], 1, 0)}) == name


# --------------------------------------------------------------------------- rules kept


ROW = {
    "case_events": "INSERT INTO case_events (case_id, seq, action, to_status, at, actor) "
    "VALUES (1, 7, 'note', 'reported', :at, 'test')",
    "audit_log": "INSERT INTO audit_log (at, action, outcome, prev_hash, hash) "
    "VALUES (:at, 'test.row', 'ok', '', '')",
}


@pytest.mark.parametrize("table", sorted(ROW))
@pytest.mark.parametrize("sql", ["UPDATE {p} SET actor = 'x'", "DELETE FROM {p}", "TRUNCATE {p}"])
def test_partitions_stay_append_only(db: Db, table: str, sql: str) -> None:
    month = _name(table, MONTHS[0])
    soon, far = dt.datetime(2032, 1, 5, tzinfo=dt.UTC), dt.datetime(2040, 1, 5, tzinfo=dt.UTC)
    with db.engine.begin() as conn:
        created = partitions.ensure(conn, months_ahead=0, now=soon)
        for at in (soon, far):  # into the partition ensure() made, and into DEFAULT
            conn.execute(text(ROW[table]), {"at": at})
    fresh = next(n for n in created.created if n.startswith(table))
    for name in (month, fresh, f"{table}_default"):
        with pytest.raises(Exception, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql.format(p=name)))


def test_a_detached_partition_stays_append_only(db: Db) -> None:
    with db.engine.begin() as conn:
        (name, *_) = partitions.detach(conn, "case_events", "2025-02")
    for sql in (f"UPDATE {name} SET note = 'x'", f"DELETE FROM {name}", f"TRUNCATE {name}"):
        with pytest.raises(Exception, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql))


def test_the_web_role_reads_and_writes_what_it_could(db: Db) -> None:
    with psycopg.connect(libpq_dsn(db.url), options="-c role=geogrid_web") as conn:
        at = dt.datetime.now(dt.UTC)
        conn.execute(
            "INSERT INTO case_events (case_id, seq, action, to_status, at, actor) "
            "VALUES (1, 5, 'note', 'reported', %s, 'web')",
            (at,),
        )
        row = conn.execute("SELECT count(*) FROM case_events WHERE actor = 'web'").fetchone()
        assert row == (1,)
        for sql in ("UPDATE case_events SET note = 'x'", "DELETE FROM case_events",
                    "TRUNCATE case_events"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
            conn.rollback()
        conn.execute("TRUNCATE heat_daily")
        conn.execute("INSERT INTO heat_daily VALUES (20, 1, 1, %s, 'x', 16, 16, 1)", (at.date(),))
        conn.execute("UPDATE heat_daily SET n = 2")
        conn.execute("DELETE FROM heat_daily WHERE n = 2")
        audit_row = conn.execute(
            "INSERT INTO audit_log (action, outcome, prev_hash, hash) "
            "VALUES ('test.web', 'ok', '', '') RETURNING tableoid::regclass::text"
        ).fetchone()
        assert audit_row is not None and audit_row[0] != "audit_log_default"
        conn.commit()


# --------------------------------------------------------------------------- upgrade


@pytest.fixture
def empty_url(pg) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = pg.create_database(template="template0")  # nothing in it, not even PostGIS
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


def test_the_upgrade_keeps_every_row_and_the_ids(empty_url: str) -> None:
    store.upgrade(empty_url, "0022")
    engine = store.make_engine(empty_url)
    try:
        with engine.begin() as conn:
            _fill(conn)
        with engine.connect() as conn:
            before = {t: _content(conn, t) for t in ("case_events", "heat_daily", "audit_log")}
            next_id = conn.execute(text("SELECT last_value FROM case_events_id_seq")).scalar()
        store.upgrade(empty_url, "0023")
        with engine.connect() as conn:
            assert {t: _content(conn, t) for t in before} == before
            assert conn.execute(text("SELECT last_value FROM case_events_id_seq")).scalar() == (
                next_id
            )
            found = partitions.list_partitions(conn)
            for table in ("case_events", "heat_daily"):
                default = next(p for p in found if p.name == f"{table}_default")
                assert default.rows == 0
                assert {p.month for p in found if p.table == table and p.rows} == set(MONTHS)
            keys = conn.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'case_events'::regclass AND contype IN ('p', 'u') ORDER BY 1"
                )
            ).all()
            assert [tuple(k) for k in keys] == [
                ("pk_case_events", "PRIMARY KEY (id, at)"),
                ("uq_case_events_case_id_seq_at", "UNIQUE (case_id, seq, at)"),
            ]
        store.downgrade(empty_url, "0022")
        with engine.connect() as conn:
            assert {t: _content(conn, t) for t in before} == before
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- db check


def test_db_check_warns_about_rows_in_a_default_partition(db: Db, tmp_path: Path) -> None:
    with geogrid_env(home=str(tmp_path), database_url=db.url):
        out = run_cli("db", "check")  # nothing in DEFAULT: no warning, exit 0
        assert "warning" not in out and "audit chain intact" in out
        with db.engine.begin() as conn:  # a month far ahead has no partition: DEFAULT
            conn.execute(text("INSERT INTO heat_daily VALUES (20, 1, 1, '2099-01-05', "
                              "'环境卫生', 16, 16, 1)"))  # fmt: skip
            assert _where(conn, "heat_daily", "day = '2099-01-05'", {}) == "heat_daily_default"
        out = run_cli("db", "check", code=2)  # a warning: exit 2, the checks themselves pass
        assert "warning: partitions: 1 rows of heat_daily" in out and "heat_daily_default" in out
        assert "audit chain intact" in out and "db partitions create" in out
        run_cli("db", "partitions", "create")  # moves the row into its month
        assert "warning" not in run_cli("db", "check")
