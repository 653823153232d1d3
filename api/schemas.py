"""API schemas, named by role (``XCreate`` in, ``XPublic`` out); GeoJSON as typed models.

These are separate from the ORM models in :mod:`geogrid.models` and from the service's
dataclasses in :mod:`geogrid.plans`; each ``XPublic`` is built from the matching service
object with ``model_validate(..., from_attributes=True)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Ids are PostgreSQL ``integer`` columns: keep path and body ids in range (never a 500).
DbId = Annotated[int, Field(ge=1, le=2**31 - 1)]
TownCode = Annotated[str, Field(pattern=r"^\d{12}$", examples=["420117105000"])]
GridCode = Annotated[str, Field(pattern=r"^\d{15}$", examples=["420117105201001"])]


class _In(BaseModel):
    """Request bodies: unknown fields are refused (400), not ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ErrorPublic(BaseModel):
    """Body of every 4xx/5xx answer: what went wrong and where."""

    code: str = Field(description="Error class, e.g. NotFound, InvalidInput, StaleVersion.")
    description: str = Field(description="One sentence: what is wrong and where.")


# --------------------------------------------------------------------------- plans


class PlanPublic(BaseModel):
    """A plan's header, parameters and quality metrics."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    town_code: str
    name: str
    status: Literal["draft", "active", "archived"]
    version: int = Field(description="Bumped by every edit; the plan's ETag names it.")
    etag: str
    params: dict[str, Any]
    metrics: dict[str, Any] = Field(
        description="totals, villages (with balance bounds), inputs, unassigned, edits."
    )
    author: str | None
    parent_id: int | None = Field(description="The plan this one was redrawn from.")
    activated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    grids: int = Field(description="Number of basic (level-3) grids.")


class PlanCreate(_In):
    """Partition a town into a new draft plan (runs in the background)."""

    town: TownCode
    name: str | None = Field(default=None, max_length=200)
    author: str | None = Field(default=None, max_length=200)
    target: int = Field(default=150, ge=1, le=100_000, description="Households per grid.")
    lo: int = Field(default=100, ge=1, le=100_000, alias="min")
    hi: int = Field(default=200, ge=1, le=100_000, alias="max")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    split_large: bool = False
    cadres: dict[str, Annotated[int, Field(ge=1, le=999)]] | None = Field(
        default=None, description="Exact number of grids per village code."
    )
    redraw_from: DbId | None = Field(
        default=None, description="Redraw from this plan with minimal change."
    )
    locked: list[GridCode] | None = Field(
        default=None,
        max_length=10_000,
        description="Grids of redraw_from kept as they are (besides those locked in it).",
    )

    @model_validator(mode="after")
    def _check(self) -> PlanCreate:
        bad = [c for c in self.cadres or {} if not (len(c) == 12 and c.isdigit())]
        if bad:
            raise ValueError(f"cadres keys must be 12-digit village codes: {bad[:5]}")
        if not self.lo <= self.target <= self.hi:
            raise ValueError(f"need min <= target <= max, got {self.lo}, {self.target}, {self.hi}")
        return self


class JobProgress(BaseModel):
    done: int = Field(description="Villages partitioned so far.")
    total: int = Field(description="Villages in the town (0 until inputs are read).")
    village_code: str | None = Field(description="The village finished last.")


class JobPublic(BaseModel):
    """A background plan creation."""

    id: str
    town_code: str
    status: Literal["queued", "running", "done", "failed"]
    progress: JobProgress
    plan_id: int | None
    error: str | None = Field(description="Why the job failed (status failed).")
    error_type: str | None
    problem: ErrorPublic | None = Field(
        default=None,
        description="The failure in the error body every other answer uses (status failed).",
    )
    created_at: datetime
    finished_at: datetime | None
    href: str


# --------------------------------------------------------------------------- grids


class MultiPolygon(BaseModel):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[list[float]]]]


class GridProperties(BaseModel):
    code: str = Field(description="12 digits (town, village) or 15 (village code + 3).")
    level: Literal[1, 2, 3]
    name: str | None
    village_code: str | None
    parent_code: str | None
    households: int
    population: int
    deviation: int | None = Field(default=None, description="households - target (level 3).")
    polsby_popper: float | None = None
    area_km2: float | None = None
    groups: list[str] = Field(default_factory=list, description="Member groups (level 3).")
    flags: list[str] = Field(default_factory=list)
    locked: bool = Field(default=False, description="Kept as it is by redraws (level 3).")
    metrics: dict[str, Any] | None = Field(default=None, description="Village/town summary.")


class GridFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: MultiPolygon | None
    properties: GridProperties


class GridFeatureCollection(BaseModel):
    type: Literal["FeatureCollection"]
    plan_id: int
    version: int
    level: int
    features: list[GridFeature]


# --------------------------------------------------------------------------- diff and moves


class GroupChangePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    village_code: str
    group_no: int | None
    unit: str = Field(description="Group number, or 3.1 / 3@2 for a part of a group.")
    group_id: int | None
    from_grid: str | None
    to_grid: str | None
    households: int


class PlanDiffPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    a: int
    b: int
    town_code: str
    changes: list[GroupChangePublic]
    households_moved: int
    groups_compared: int


class MoveCreate(_In):
    """Move one villager group of a draft plan to an adjacent grid."""

    group: str = Field(
        pattern=r"^\d{12}/[0-9][0-9.@]*$",
        description="VILLAGECODE/GROUPNO (or VILLAGECODE/3.2 for a part of a split group).",
        examples=["420117105201/3"],
    )
    to: GridCode
    author: str | None = Field(default=None, max_length=200)
    confirm: bool = Field(
        default=False, description="Make the move even though it leaves a grid outside the band."
    )


class MovePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    plan_id: int
    version: int
    etag: str
    village_code: str
    unit: str
    from_grid: str
    to_grid: str
    households: int


# --------------------------------------------------------------------------- staff


class StaffPostPublic(BaseModel):
    """A staff member at a grid post: public duty contact only."""

    model_config = ConfigDict(from_attributes=True)

    staff_id: int
    name: str
    role: Literal["leader", "guide", "info_officer"]
    post: Literal["A", "B"]
    phone: str | None = Field(description="Duty phone (public).")
    photo: str | None
    duties: str | None
    grid_code: str
    plan_id: int


class StaffAssign(_In):
    """Put a staff member at a post of a grid (replacing whoever held it)."""

    role: Literal["leader", "guide", "info_officer"]
    post: Literal["A", "B"] = "A"
    staff_id: DbId | None = Field(default=None, description="A known staff member.")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=40)
    photo: str | None = Field(default=None, max_length=300)
    duties: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _who(self) -> StaffAssign:
        if self.staff_id is None and not self.name:
            raise ValueError("give staff_id or the name of a new staff member")
        return self
