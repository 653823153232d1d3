"""``geogrid db upgrade`` from an earlier schema with a town in it, and ``geogrid db check``
finding schema drift and a broken audit chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from geogrid import store
from geogrid.access import audit
from geogrid.ops.restore import libpq_dsn
from tests.ops_support import fingerprint, geogrid_env, run_cli

#: The release schema the upgrade starts from (before planner, cases and calendar).
OLD = "0012"


@pytest.fixture
def empty_url(pg) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A database with nothing in it (dropped afterwards)."""
    name = f"geogrid_ops_up_{uuid.uuid4().hex[:12]}"
    with pg.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


def _sql(url: str, *statements: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        rows: list[tuple] = []  # type: ignore[type-arg]
        for st in statements:
            cur = conn.execute(st)
            rows = cur.fetchall() if cur.description else []
        return rows


def test_upgrade_from_an_old_schema_with_the_sample_town(
    empty_url: str, sample_town, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from geogrid.ingest.boundaries import import_boundaries
    from geogrid.ingest.load import import_households

    store.upgrade(empty_url, OLD)
    engine = store.make_engine(empty_url)
    try:
        import_boundaries(engine, sample_town.boundaries, level="town")
        import_boundaries(engine, sample_town.boundaries, level="village")
        import_boundaries(engine, sample_town.groups, level="group")
        import_households(
            engine, sample_town.households_xlsx, rejects_path=tmp_path / "rejects.csv"
        )
    finally:
        engine.dispose()
    before = fingerprint(empty_url)
    households = _sql(empty_url, "SELECT register_no, village_code FROM households ORDER BY 1, 2")
    assert len(households) > 100

    with geogrid_env(home=str(tmp_path), database_url=empty_url):
        text = run_cli("db", "upgrade", "--unencrypted")
        head = store.head_revision()
        assert f"schema {OLD} -> {head}" in text
        assert "0013" in text and "tables added:" in text and "plan_edits" in text
        assert "table households changed: +house_no" in text
        assert "backup first:" in text
        assert len(list((tmp_path / "backups").glob("geogrid-backup-*.tar"))) == 1
        assert "audit chain intact" in run_cli("db", "check")
        assert "already at the newest" in run_cli("db", "upgrade", "--unencrypted")

    after = fingerprint(empty_url)
    for table in ("admin_areas", "villager_groups"):  # untouched by the migrations
        assert after[table] == before[table], table
    assert households == _sql(
        empty_url, "SELECT register_no, village_code FROM households ORDER BY 1, 2"
    )
    numbered = _sql(empty_url, "SELECT count(*) FROM households WHERE house_no IS NOT NULL")
    assert numbered[0][0] > 0


def test_a_failing_upgrade_changes_nothing(empty_url: str, tmp_path: Path) -> None:
    store.upgrade(empty_url, OLD)
    _sql(
        empty_url,
        "INSERT INTO admin_areas (code, level, name) VALUES ('420117105000', 'town', '石门镇')",
        "CREATE TABLE calendar_settings (squatter int)",  # 0015 creates this table: it fails
    )
    with geogrid_env(home=str(tmp_path), database_url=empty_url):
        run_cli("db", "upgrade", "--no-backup", code=1)
    tables = {r[0] for r in _sql(empty_url, "SELECT tablename FROM pg_tables")}
    assert "plan_edits" not in tables and "case_events" not in tables  # 0013, 0014 undone
    assert _sql(empty_url, "SELECT version_num FROM alembic_version") == [(OLD,)]
    assert _sql(empty_url, "SELECT name FROM admin_areas") == [("石门镇",)]


def test_check_passes_on_a_sound_database_and_names_an_old_revision(
    db_url: str, empty_url: str, tmp_path: Path
) -> None:
    with geogrid_env(home=str(tmp_path), database_url=db_url):
        assert "schema matches the code" in run_cli("db", "check")
    store.upgrade(empty_url, OLD)
    with geogrid_env(home=str(tmp_path), database_url=empty_url):
        text = run_cli("db", "check", code=1)
    assert f"revision {OLD} is not the newest" in text and "geogrid db upgrade" in text


DRIFTS = {
    "extra column": ("ALTER TABLE households ADD COLUMN stray integer", "households.stray"),
    "missing column": ("ALTER TABLE staff DROP COLUMN phone", "staff.phone"),
    "changed type": ("ALTER TABLE plans ALTER COLUMN name TYPE varchar(7)", "plans.name"),
    "missing index": ("DROP INDEX ix_households_group_id", "ix_households_group_id"),
    "missing table": ("DROP TABLE grid_groups CASCADE", "add_table: grid_groups"),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_check_fails_on_schema_drift(drift: str, db_url: str, tmp_path: Path) -> None:
    statement, named = DRIFTS[drift]
    _sql(db_url, statement)
    with geogrid_env(home=str(tmp_path), database_url=db_url):
        text = run_cli("db", "check", code=1)
    assert "schema:" in text and named in text


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("UPDATE audit_log SET action = 'nothing.happened' WHERE id = {id}", "content"),
        ("DELETE FROM audit_log WHERE id = {id}", "previous-hash"),
    ],
)
def test_check_fails_on_a_broken_audit_chain(
    tamper: str, reason: str, db_url: str, tmp_path: Path
) -> None:
    engine = store.make_engine(db_url)
    try:
        with engine.begin() as conn:
            for i in range(3):
                audit.record(conn, actor=None, action="test.check", detail={"n": i})
    finally:
        engine.dispose()
    ids = [r[0] for r in _sql(db_url, "SELECT id FROM audit_log ORDER BY id")]
    with geogrid_env(home=str(tmp_path), database_url=db_url):
        assert "audit chain intact (3 entries" in run_cli("db", "check")
        # the table refuses changes; only a superuser switching triggers off gets through
        _sql(db_url, "SET session_replication_role = replica", tamper.format(id=ids[1]))
        text = run_cli("db", "check", code=1)
    broken = ids[1] if reason == "content" else ids[2]
    assert f"audit: audit entry {broken}:" in text and reason in text
