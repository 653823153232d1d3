"""Routes: grid teams (五个一同步, 党组织建在网格上) under ``/api/grid-teams``.

The rule of a team's five parts and its completeness is documented in
:mod:`geogrid.archives.teams`; this module only wires HTTP.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from api.auth import allow, audited, require
from api.deps import ConnDep, EngineDep
from geogrid.access.policy import Principal, check
from geogrid.access.scope import Scope
from geogrid.archives import teams

router = APIRouter(prefix="/api/grid-teams", tags=["grid teams"])

ReadDep = Annotated[Principal | None, Depends(allow("team.read"))]
WriteDep = Annotated[Principal | None, Depends(allow("team.write"))]
GridCode = Annotated[str, Path(pattern=r"^\d{15}$", description="Basic grid code (15 digits).")]
AreaCode = Annotated[
    str | None,
    Query(pattern=r"^\d{12}$|^\d{15}$", description="Town, village or grid code (default: yours)."),
]


class MemberBody(BaseModel):
    """A team member: role, name, title, office phone, shown on the public map or not."""

    role: str = Field(max_length=20, description=", ".join(teams.MEMBER_ROLES))
    name: str = Field(max_length=40)
    title: str | None = Field(default=None, max_length=60)
    office_phone: str | None = Field(default=None, max_length=30)
    staff_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    public: bool = True


class TeamBody(BaseModel):
    """A grid's team as a town leader saves it (the posts are set with the staff posts)."""

    party_org_kind: str | None = Field(default=None, max_length=8, description="group | branch")
    party_org_name: str | None = Field(default=None, max_length=80)
    archive_no: str | None = Field(default=None, max_length=40)
    archive_place: str | None = Field(default=None, max_length=120)
    members: list[MemberBody] = Field(default_factory=list, max_length=teams.MAX_MEMBERS)
    version: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="the version you loaded (conflict check)"
    )


def _prefix(principal: Principal, code: str | None) -> str:
    """The code prefix to list: the area asked for (checked against the scope) or the
    user's scope."""
    if code is None:
        return principal.scope.prefix
    check(principal, "team.read", code)
    return Scope.parse(code).prefix
    # a village user asking for the town sees the town's grids (teams are not personal)


@router.get("", summary="Completeness of the grid teams")
def list_teams(principal: ReadDep, conn: ConnDep, code: AreaCode = None) -> dict[str, Any]:
    """Every basic grid under the area with its five parts present or not and their count."""
    rows = teams.completeness(conn, _prefix(require(principal), code))
    return {"parts": teams.PARTS, "rule": teams.RULE, "grids": rows}


@router.get("/{code}", summary="A grid's team")
def get_team(principal: ReadDep, conn: ConnDep, code: GridCode) -> dict[str, Any]:
    """Posts, party organisation and members, service team, archive, completeness."""
    check(require(principal), "team.read", code)
    return teams.get_team(conn, code)


@router.put("/{code}", summary="Save a grid's team")
def put_team(
    request: Request, principal: WriteDep, engine: EngineDep, code: GridCode, body: TeamBody
) -> dict[str, Any]:
    """Replace the party organisation, members and archive of a grid in your scope."""
    p = require(principal)
    check(p, "team.write", code)
    team = teams.TeamIn(
        party_org_kind=body.party_org_kind,
        party_org_name=body.party_org_name,
        archive_no=body.archive_no,
        archive_place=body.archive_place,
        members=[teams.MemberIn(**m.model_dump()) for m in body.members],
    )
    with engine.begin() as conn:
        saved = teams.save_team(conn, code, team, actor=p.username, version=body.version)
        audited(
            request, conn, p, action="team.write", target_type="grid_team", target_ids=[code],
            detail={"members": len(team.members), "version": saved["version"]},
        )  # fmt: skip
    return saved


@router.get(
    "/{code}/public",
    dependencies=[Depends(allow("public.read"))],
    summary="The public part of a grid's team",
)
def public_team(conn: ConnDep, code: GridCode) -> dict[str, Any]:
    """Party organisation, public members (name, role, title, office phone), parts present."""
    return teams.public_team(conn, code)
