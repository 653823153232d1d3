"""ORM models of the PostGIS store (SQLAlchemy 2, GeoAlchemy2).

The schema itself is created by the Alembic migrations in :mod:`geogrid.migrations`;
these models mirror it for queries, and a test checks that they agree.

All geometries are EPSG:4326 with GiST indexes (integer SRIDs everywhere); lengths,
areas and compactness are computed in a local metric CRS, never stored in degrees.
Columns holding personal data carry ``info={"personal": True}`` so that public layers,
tiles and logs can exclude them mechanically.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID = 4326

#: Constraint names are derived, never left to the database, so migrations can name them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADMIN_LEVELS = ("county", "town", "village")
GEOCODE_PRECISIONS = ("exact", "house", "group", "village", "failed")
PLAN_STATUSES = ("draft", "active", "archived")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB}


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _updated() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class AdminArea(Base):
    """County, town (镇/乡/街道) or village (村/社区) with its official code."""

    __tablename__ = "admin_areas"
    __table_args__ = (
        CheckConstraint(_in("level", ADMIN_LEVELS), name="level"),
        CheckConstraint(
            "(level = 'county' AND code ~ '^[0-9]{6}([0-9]{6})?$') OR code ~ '^[0-9]{12}$'",
            name="code_format",
        ),
        Index("ix_admin_areas_geom", "geom", postgresql_using="gist"),
        Index("ix_admin_areas_parent_code", "parent_code"),
    )

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    level: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(Text)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    geom: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False), nullable=True
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class VillagerGroup(Base):
    """A villager group (村民小组) of a village, with an optional territory."""

    __tablename__ = "villager_groups"
    __table_args__ = (
        UniqueConstraint("village_code", "group_no"),
        CheckConstraint("group_no > 0", name="group_no_positive"),
        CheckConstraint("territory_source IN ('supplied', 'derived')", name="territory_source"),
        Index("ix_villager_groups_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    village_code: Mapped[str] = mapped_column(ForeignKey("admin_areas.code"))
    group_no: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False), nullable=True
    )
    territory_source: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


def _scope_index(name: str) -> Index:
    """The index of a row's scope key, ``coalesce(grid_code, village_code)``, for prefix
    matches (``text_pattern_ops``; migration 0009)."""
    key: Any = func.coalesce(literal_column("grid_code"), literal_column("village_code"))
    return Index(name, key.label("k"), postgresql_ops={"k": "text_pattern_ops"})


class Household(Base):
    """A registered household (户), the unit every grid is counted in."""

    __tablename__ = "households"
    __table_args__ = (
        UniqueConstraint("village_code", "register_no"),
        CheckConstraint("members >= 0", name="members_nonnegative"),
        CheckConstraint(_in("geocode_precision", GEOCODE_PRECISIONS), name="geocode_precision"),
        CheckConstraint(
            "(geom IS NULL) = (geocode_precision = 'failed')", name="geom_matches_precision"
        ),
        Index("ix_households_geom", "geom", postgresql_using="gist"),
        Index("ix_households_group_id", "group_id"),
        Index(
            "ix_households_scope_key", "scope_key", postgresql_ops={"scope_key": "text_pattern_ops"}
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    village_code: Mapped[str] = mapped_column(ForeignKey("admin_areas.code"))
    register_no: Mapped[str] = mapped_column(Text)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("villager_groups.id"))
    address_raw: Mapped[str | None] = mapped_column(Text)
    address_norm: Mapped[str | None] = mapped_column(Text)
    house_no: Mapped[str | None] = mapped_column(
        Text,
        Computed("substring(address_norm from '([0-9]+(?:[-附之][0-9]+)?)号$')", persisted=True),
    )  # the door number alone, readable by the web role (contact cards; migration 0013)
    natural_village: Mapped[str | None] = mapped_column(Text)
    head_name: Mapped[str | None] = mapped_column(
        Text, info={"personal": True}, comment="personal data"
    )
    phone: Mapped[str | None] = mapped_column(
        Text, info={"personal": True}, comment="personal data"
    )
    members: Mapped[int] = mapped_column(Integer, server_default="1")
    geom: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=SRID, spatial_index=False), nullable=True
    )
    geocode_precision: Mapped[str] = mapped_column(String(8))
    geocode_source: Mapped[str | None] = mapped_column(Text)
    row_hash: Mapped[str | None] = mapped_column(String(32))
    grid_code: Mapped[str | None] = mapped_column(
        String(15), index=True, comment=None
    )  # the active plan's basic grid (geogrid.placement)
    #: what scope filters and row-level security match on (migration 0011)
    scope_key: Mapped[str | None] = mapped_column(
        Text, Computed("coalesce(grid_code, village_code)", persisted=True)
    )
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Plan(Base):
    """A partition of a town into grids: draft → active → archived."""

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint(_in("status", PLAN_STATUSES), name="status"),
        # at most one active plan per town
        Index(
            "uq_plans_town_code_active",
            "town_code",
            unique=True,
            postgresql_where="status = 'active'",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    town_code: Mapped[str] = mapped_column(ForeignKey("admin_areas.code"))
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), server_default="draft")
    params: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    metrics: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    author: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Grid(Base):
    """A grid of a plan: level 1 town, level 2 village, level 3 basic grid."""

    __tablename__ = "grids"
    __table_args__ = (
        UniqueConstraint("plan_id", "code"),
        CheckConstraint("level IN (1, 2, 3)", name="level"),
        CheckConstraint(
            "(level = 3 AND code ~ '^[0-9]{15}$') OR (level < 3 AND code ~ '^[0-9]{12}$')",
            name="code_format",
        ),
        Index("ix_grids_geom", "geom", postgresql_using="gist"),
        Index("ix_grids_parent_id", "parent_id"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(15))
    level: Mapped[int] = mapped_column(SmallInteger)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"))
    village_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    name: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False), nullable=True
    )
    households: Mapped[int] = mapped_column(Integer, server_default="0")
    population: Mapped[int] = mapped_column(Integer, server_default="0")
    metrics: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    locked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class GridGroup(Base):
    """Membership of a villager group in a basic grid.

    A whole group is in one grid per plan; a group split with ``split_large`` has one row
    per part (``part`` 1, 2, ...), each in its own grid.
    """

    __tablename__ = "grid_groups"
    __table_args__ = (
        Index(
            "uq_grid_groups_plan_id_group_id_whole",
            "plan_id",
            "group_id",
            unique=True,
            postgresql_where="part IS NULL",
        ),
    )

    grid_id: Mapped[int] = mapped_column(
        ForeignKey("grids.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(ForeignKey("villager_groups.id"), primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    part: Mapped[int | None] = mapped_column(SmallInteger)


class AddressPoint(Base):
    """A known point for a normalised address (the geocoding gazetteer)."""

    __tablename__ = "address_points"
    __table_args__ = (
        UniqueConstraint("address_norm"),
        Index("ix_address_points_geom", "geom", postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    address_norm: Mapped[str] = mapped_column(Text)
    village_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


#: Workflow statuses of a case (geogrid.cases.machine; migration 0014).
CASE_STATUSES = (
    "reported", "accepted", "rejected", "verified", "registered", "voided", "dispatched",
    "in_progress", "suspended", "handled", "checked", "evaluated", "closed", "archived",
    "merged",
)  # fmt: skip
CASE_SOURCES = ("grid_worker", "open311", "hotline", "inspection", "import")
_CASE_OPEN = (
    "status IN ('reported', 'accepted', 'verified', 'registered', 'dispatched', "
    "'in_progress', 'suspended', 'handled', 'checked', 'evaluated')"
)


class Case(Base):
    """An incident, complaint or hazard (事件), placed in a grid of the active plan."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("case_no"),
        CheckConstraint(_in("status", CASE_STATUSES), name="status"),
        CheckConstraint(_in("source", CASE_SOURCES), name="source"),
        CheckConstraint("priority BETWEEN 1 AND 3", name="priority"),
        CheckConstraint(
            "pending IS NULL OR pending IN ('extension', 'suspension', 'transfer')", name="pending"
        ),
        CheckConstraint(
            "assignee_kind IS NULL OR assignee_kind IN ('centre', 'grid', 'village', 'department')",
            name="assignee_kind",
        ),
        Index(
            "ix_cases_open_due_at",
            "due_at",
            postgresql_where=text(_CASE_OPEN),
            postgresql_include=["status", "grid_code", "village_code"],
        ),
        Index(
            "ix_cases_open_assignee",
            "assignee_kind",
            "assignee_code",
            postgresql_where=text(_CASE_OPEN),
        ),
        Index("ix_cases_status", "status", postgresql_where=text(f"NOT ({_CASE_OPEN})")),
        Index("ix_cases_current_grid_code", "current_grid_code"),
        Index(
            "ix_cases_open_geom",
            "geom",
            postgresql_using="gist",
            postgresql_where=text(_CASE_OPEN),
        ),
        Index(
            "ix_cases_open_queue",
            func.coalesce(literal_column("grid_code"), literal_column("village_code")).label("k"),
            postgresql_ops={"k": "text_pattern_ops"},
            postgresql_include=[
                "id",
                "status",
                "source",
                "pending",
                "assignee_kind",
                "assignee_code",
                "handled_by",
                "due_at",
                "pending_data",
                "grid_code",
                "village_code",
            ],
            postgresql_where=text(_CASE_OPEN),
        ),
        Index("ix_cases_geom", "geom", postgresql_using="gist"),
        Index("ix_cases_reported_at", "reported_at"),
        Index("ix_cases_category_reported_at", "category", "reported_at"),
        Index("ix_cases_grid_code", "grid_code"),
        # OGC items filtered by village (and time): their bounded counts (migration 0020)
        Index("ix_cases_village_code_reported_at", "village_code", "reported_at"),
        # cases outside every village and grid: asked for by scope checks (migration 0012)
        Index(
            "ix_cases_unplaced",
            "id",
            postgresql_where=text("grid_code IS NULL AND village_code IS NULL"),
        ),
        _scope_index("ix_cases_scope"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    case_no: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), server_default="reported")
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    village_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    grid_code: Mapped[str | None] = mapped_column(
        String(15), comment="basic grid of the active plan when the case was placed"
    )
    description: Mapped[str | None] = mapped_column(Text, comment="public description")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # the workflow (migration 0014): the current state, derived from case_events
    category_code: Mapped[str | None] = mapped_column(String(4), ForeignKey("case_categories.code"))
    source: Mapped[str] = mapped_column(String(12), server_default="import")
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="2")
    address: Mapped[str | None] = mapped_column(Text)
    current_grid_code: Mapped[str | None] = mapped_column(
        String(15), comment="basic grid of the active plan now (grid_code: when reported)"
    )
    route_kind: Mapped[str | None] = mapped_column(String(10))
    route_code: Mapped[str | None] = mapped_column(Text)
    assignee_kind: Mapped[str | None] = mapped_column(String(10))
    assignee_code: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    handled_by: Mapped[int | None] = mapped_column(Integer)
    pending: Mapped[str | None] = mapped_column(String(10))
    pending_data: Mapped[dict[str, Any] | None] = mapped_column()
    resume_status: Mapped[str | None] = mapped_column(String(12))
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    due_step: Mapped[str | None] = mapped_column(String(10))
    deadline_problem: Mapped[str | None] = mapped_column(Text)
    rework_count: Mapped[int] = mapped_column(Integer, server_default="0")
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, server_default="0")


class KeyUnit(Base):
    """A key unit (重点单位): school, petrol station, care home, factory, market..."""

    __tablename__ = "key_units"
    __table_args__ = (
        UniqueConstraint("unit_no"),
        CheckConstraint("risk_level BETWEEN 1 AND 3", name="risk_level"),
        Index("ix_key_units_geom", "geom", postgresql_using="gist"),
        Index(
            "ix_key_units_scope_key", "scope_key", postgresql_ops={"scope_key": "text_pattern_ops"}
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    unit_no: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    unit_type: Mapped[str] = mapped_column(Text)
    risk_level: Mapped[int] = mapped_column(SmallInteger)
    address: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    village_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # the register (migration 0017; filings and contacts: geogrid.fieldwork.units)
    registered_on: Mapped[date] = mapped_column(Date, server_default=text("CURRENT_DATE"))
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    scope_key: Mapped[str | None] = mapped_column(
        Text, Computed("coalesce(grid_code, village_code)", persisted=True)
    )


INSPECTION_SCHEDULES = ("weekly", "monthly", "quarterly", "halfyearly", "yearly")


class InspectionPoint(Base):
    """A fire-safety inspection point with its schedule."""

    __tablename__ = "inspection_points"
    __table_args__ = (
        UniqueConstraint("point_no"),
        CheckConstraint(_in("schedule", INSPECTION_SCHEDULES), name="schedule"),
        Index("ix_inspection_points_geom", "geom", postgresql_using="gist"),
        Index("ix_inspection_points_next_due", "next_due"),
        Index(
            "ix_inspection_points_scope_key",
            "scope_key",
            postgresql_ops={"scope_key": "text_pattern_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    point_no: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=False))
    schedule: Mapped[str] = mapped_column(String(12))
    last_inspected: Mapped[date | None] = mapped_column(Date)
    key_unit_id: Mapped[int | None] = mapped_column(ForeignKey("key_units.id", ondelete="SET NULL"))
    village_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    grid_code: Mapped[str | None] = mapped_column(String(15))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # due state, template and version (migration 0017; geogrid.fieldwork.inspections)
    template_code: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("inspection_templates.code")
    )
    next_due: Mapped[date | None] = mapped_column(Date)
    due_problem: Mapped[str | None] = mapped_column(Text)
    due_cal: Mapped[int | None] = mapped_column(BigInteger)
    due_basis: Mapped[date | None] = mapped_column(Date)
    due_schedule: Mapped[str | None] = mapped_column(String(12))
    registered_on: Mapped[date] = mapped_column(Date, server_default=text("CURRENT_DATE"))
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    scope_key: Mapped[str | None] = mapped_column(
        Text, Computed("coalesce(grid_code, village_code)", persisted=True)
    )


class Staff(Base):
    """A grid worker: leader, guide or information officer (public duty contact)."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text, comment="duty phone, shown publicly")
    photo: Mapped[str | None] = mapped_column(Text, comment="file name under the photo store")
    duties: Mapped[str | None] = mapped_column(Text)
    town_code: Mapped[str | None] = mapped_column(ForeignKey("admin_areas.code"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


STAFF_ROLES = ("leader", "guide", "info_officer")


class StaffAssignment(Base):
    """A staff member's post in a grid (at any level): role and A/B post."""

    __tablename__ = "staff_assignments"
    __table_args__ = (
        UniqueConstraint("grid_id", "role", "post"),
        CheckConstraint(_in("role", STAFF_ROLES), name="role"),
        CheckConstraint("post IN ('A', 'B')", name="post"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(12))
    post: Mapped[str] = mapped_column(String(1), server_default="A")
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class LayerVersion(Base):
    """Per-layer data version, bumped by statement triggers (tile ETags, cache keys)."""

    __tablename__ = "layer_versions"

    layer: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, server_default="1")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LayerVersionShard(Base):
    """A busy layer's version bumps spread over rows by backend (0032): the layer's version
    is its :class:`LayerVersion` plus the sum of its shards (view ``layer_versions_now``)."""

    __tablename__ = "layer_version_shards"
    __table_args__ = (
        {"comment": "bumps of a busy layer's version spread over rows (by backend): the "
                    "version is layer_versions plus their sum"},
    )  # fmt: skip

    layer: Mapped[str] = mapped_column(
        Text, ForeignKey("layer_versions.layer", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class HeatDaily(Base):
    """Cases per level-20 heat bin, category and local day: the heat pyramid's base.

    A bin of level ``s`` is the Web-Mercator tile ``(s, bin_x, bin_y)``; a heat tile at
    zoom ``z`` shows the 16 × 16 bins of level ``z + 4`` whose ``(tile_x, tile_y)`` are its
    ``(x, y)``. Tiles z15–z16 sum these rows; every coarser level is computed from them
    (revision 0006: only level 20 is stored here).
    """

    __tablename__ = "heat_daily"
    __table_args__ = (Index("ix_heat_daily_category_day", "category", "day"),)

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    tile_x: Mapped[int] = mapped_column(Integer, primary_key=True)
    tile_y: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(Text, primary_key=True)
    bin_x: Mapped[int] = mapped_column(Integer, primary_key=True)
    bin_y: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class HeatCum(Base):
    """Running day totals of cases per heat bin, category and year (levels 4–18).

    ``cum`` holds 366 big-endian int4: ``cum[d]`` counts the cases from 1 January to day of
    year ``d``, so a window costs two reads (SQL ``geogrid_heat_at(cum, d)``).
    """

    __tablename__ = "heat_cum"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    tile_x: Mapped[int] = mapped_column(Integer, primary_key=True)
    tile_y: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(Text, primary_key=True)
    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bin_x: Mapped[int] = mapped_column(Integer, primary_key=True)
    bin_y: Mapped[int] = mapped_column(Integer, primary_key=True)
    cum: Mapped[bytes] = mapped_column(
        LargeBinary, comment="366 big-endian int4 running totals by day of year"
    )


class HeatDirty(Base):
    """(day, category) pairs whose cases changed since the heat pyramid was refreshed."""

    __tablename__ = "heat_dirty"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    category: Mapped[str] = mapped_column(Text, primary_key=True)


# The access tables live with their domain; importing them here registers them on Base.
from geogrid.access import models as _access_models  # noqa: E402, F401
from geogrid.archives import team_models as _team_models  # noqa: E402, F401
from geogrid.assessment import models as _assessment_models  # noqa: E402, F401
from geogrid.cases import models as _case_models  # noqa: E402, F401
from geogrid.cases import open311_models as _open311_models  # noqa: E402, F401
from geogrid.fieldwork import sync_models as _field_sync_models  # noqa: E402, F401
from geogrid.fieldwork import unit_models as _unit_models  # noqa: E402, F401
from geogrid.fieldwork import visit_models as _visit_models  # noqa: E402, F401
from geogrid.ops import jobs_store as _ops_jobs_store  # noqa: E402, F401
from geogrid.people import models as _people_models  # noqa: E402, F401
from geogrid.planner import models as _planner_models  # noqa: E402, F401
