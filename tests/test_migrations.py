"""Alembic migrations: upgrade from empty, downgrade to empty, upgrade again."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from geogrid import store
from geogrid.models import Base
from geogrid.ops.partitions import PARTITION_NAME

TABLES = {
    "admin_areas", "villager_groups", "households", "plans", "grids", "grid_groups",
    "address_points", "cases", "key_units", "inspection_points", "staff",
    "staff_assignments", "layer_versions", "heat_daily", "heat_cum", "heat_dirty",
    # the cases layer's version shards (0032)
    "layer_version_shards",
    # access (0007) and people (0008)
    "users", "web_sessions", "refresh_tokens", "embed_tokens", "public_layers", "audit_log",
    "audit_log_default", "household_members", "special_population", "special_followups",
    # open311 (0016)
    "open311_requests", "open311_attributes", "open311_rate",
    # residents' ratings of closed cases (0030)
    "case_feedback",
    # key units and fire inspections (0017)
    "key_unit_types", "key_unit_contacts", "key_unit_filings", "key_unit_dues",
    "inspection_templates", "inspection_records", "inspection_case_links",
    # field app sync (0019)
    "client_records",
    # background plan jobs (0022)
    "plan_jobs",
    # assessment (0026)
    "assessment_schemes", "assessment_scheme_items", "assessment_rounds",
    "assessment_manual_scores", "assessment_results",
    # assessment facts (0029)
    "assessment_case_facts", "assessment_case_rollup",
    # grid teams (0027)
    "grid_teams", "grid_team_members",
    # visits, visit plan, follow-up intervals (0018)
    "visit_tags", "visits", "visit_photos", "visit_rules", "followup_rules",
    "visit_area_state", "visit_coverage_cache",
    # field-work list figures (0025)
    "visit_list_cache",
    # working calendar (0015)
    "calendar_settings", "calendar_office_hours", "calendar_years", "calendar_days",
    # planner (0013)
    "plan_edits",
    # cases (0014)
    "case_categories", "case_time_limits", "case_events", "case_reporters",
    "case_departments", "case_department_members", "case_routes", "stored_files",
    "case_files", "case_settings",
    # monthly partitions (0023): the DEFAULT ones; the months are left out by _tables
    "case_events_default", "heat_daily_default",
}  # fmt: skip


@pytest.fixture
def empty_db(pg) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"geogrid_empty_{pg.create_database.__hash__() % 10_000}"
    with pg.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


def _tables(url: str) -> set[str]:
    """Tables, the monthly partitions (audit_log_YYYYMM, case_events_YYYYMM…) left out."""
    engine = store.make_engine(url)
    try:
        names = set(inspect(engine).get_table_names()) - {"spatial_ref_sys"}
        months = r"(audit_log|case_events|heat_daily)_\d{6}"
        return {n for n in names if not re.fullmatch(months, n)}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_db: str) -> None:
    assert _tables(empty_db) == set()
    store.upgrade(empty_db)
    assert _tables(empty_db) == TABLES | {"alembic_version"}
    store.downgrade(empty_db, "base")
    assert _tables(empty_db) == {"alembic_version"}
    store.upgrade(empty_db)
    assert _tables(empty_db) >= TABLES
    engine = store.make_engine(empty_db)
    try:
        assert store.current_revision(engine) == store.head_revision()
    finally:
        engine.dispose()


def test_geometries_are_4326_with_gist_indexes(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        cols = conn.execute(
            text("SELECT f_table_name, type, srid FROM geometry_columns ORDER BY 1")
        ).all()
        assert {(t, ty, s) for t, ty, s in cols} == {
            ("admin_areas", "MULTIPOLYGON", 4326),
            ("villager_groups", "MULTIPOLYGON", 4326),
            ("households", "POINT", 4326),
            ("grids", "MULTIPOLYGON", 4326),
            ("address_points", "POINT", 4326),
            ("cases", "POINT", 4326),
            ("key_units", "POINT", 4326),
            ("inspection_points", "POINT", 4326),
        }
        gist = conn.execute(
            text("SELECT tablename FROM pg_indexes WHERE indexdef ILIKE '%USING gist (geom)%'")
        ).scalars()
        assert set(gist) == {
            "admin_areas", "villager_groups", "households", "grids", "address_points",
            "cases", "key_units", "inspection_points",
        }  # fmt: skip


def test_models_match_migrations(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    def partition(d: object) -> bool:  # partitions mirror their parent
        table = getattr(getattr(d[1], "table", None), "name", "") if isinstance(d, tuple) else ""
        return PARTITION_NAME.fullmatch(table or "") is not None

    def unmodelled(d: object) -> bool:  # tables made in plain SQL only (the calendar's)
        return isinstance(d, tuple) and d[0] == "remove_table"

    relevant = [d for d in diff if not unmodelled(d) and not partition(d)]
    assert relevant == []


def test_constraints_enforce_the_domain(db_conn) -> None:  # type: ignore[no-untyped-def]
    db_conn.execute(
        text(
            "INSERT INTO admin_areas (code, level, name) VALUES "
            "('420117105000', 'town', '石门镇'), ('420117105201', 'village', '王家湾村')"
        )
    )
    nested = db_conn.begin_nested()
    with pytest.raises(Exception, match="ck_admin_areas_code_format"):
        db_conn.execute(
            text("INSERT INTO admin_areas (code, level, name) VALUES ('4201', 'village', 'x')")
        )
    nested.rollback()
    db_conn.execute(
        text(
            "INSERT INTO households (village_code, register_no, geocode_precision, geom) "
            "VALUES ('420117105201', '0001', 'exact', ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326))"
        )
    )
    nested = db_conn.begin_nested()
    with pytest.raises(Exception, match="uq_households_village_code_register_no"):
        db_conn.execute(
            text(
                "INSERT INTO households (village_code, register_no, geocode_precision) "
                "VALUES ('420117105201', '0001', 'failed')"
            )
        )
    nested.rollback()
    # one active plan per town
    db_conn.execute(
        text("INSERT INTO plans (town_code, name, status) VALUES ('420117105000', 'a', 'active')")
    )
    with pytest.raises(Exception, match="uq_plans_town_code_active"):
        db_conn.execute(
            text(
                "INSERT INTO plans (town_code, name, status) VALUES ('420117105000', 'b', 'active')"
            )
        )


def test_layer_versions_bump_on_change(db_conn) -> None:  # type: ignore[no-untyped-def]
    def version(layer: str) -> int:
        return int(
            db_conn.execute(
                text("SELECT version FROM layer_versions_now WHERE layer = :l"), {"l": layer}
            ).scalar_one()
        )

    before = version("cases"), version("villages")
    db_conn.execute(
        text(
            "INSERT INTO cases (case_no, category, reported_at, geom) VALUES "
            "('C1', '安全隐患', now(), ST_SetSRID(ST_MakePoint(114.3, 30.4), 4326))"
        )
    )
    db_conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # 'cases' moves at commit (0024)
    assert version("cases") == before[0] + 1
    assert version("villages") == before[1]


def test_layer_versions_do_not_move_when_nothing_changed(db_conn) -> None:  # type: ignore[no-untyped-def]
    def version() -> int:
        return int(
            db_conn.execute(
                text("SELECT version FROM layer_versions_now WHERE layer = 'cases'")
            ).scalar_one()
        )

    before = version()
    db_conn.execute(text("UPDATE cases SET category = category WHERE false"))
    db_conn.execute(text("DELETE FROM cases WHERE case_no = 'no such case'"))
    assert version() == before
