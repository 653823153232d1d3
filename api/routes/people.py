"""People: household members (masked), unmask, special population and follow-ups.

Every route declares one policy action; the services filter by the principal's scope in
SQL, run on a connection whose transaction carries the scope for row-level security, and
audit every read of personal data. Searches by name or ID number are POSTs so that the
values never appear in URLs (and so never in access logs).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from api.auth import ScopedConnDep, allow, client_ip, require
from geogrid.access.policy import Principal
from geogrid.errors import ConfigurationError, InvalidInput
from geogrid.people import service
from geogrid.people.crypto import KeyProvider, key_provider

router = APIRouter(prefix="/api", tags=["people"])

ReadDep = Annotated[Principal | None, Depends(allow("people.read"))]
UnmaskDep = Annotated[Principal | None, Depends(allow("people.unmask"))]
SpecialReadDep = Annotated[Principal | None, Depends(allow("special.read"))]
SpecialWriteDep = Annotated[Principal | None, Depends(allow("special.write"))]
Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
RowId = Annotated[int, Path(ge=1, le=2**62)]


def data_keys(request: Request) -> KeyProvider:
    """The data key provider (``GEOGRID_DATA_KEY`` or ``GEOGRID_HOME/data.key``), loaded
    once; the server never creates a key."""
    keys: KeyProvider | None = getattr(request.app.state, "data_keys", None)
    if keys is None:
        try:
            keys = key_provider(request.app.state.settings.home)
        except InvalidInput as exc:
            raise ConfigurationError(f"personal data cannot be read: {exc.message}") from None
        request.app.state.data_keys = keys
    return keys


KeysDep = Annotated[KeyProvider, Depends(data_keys)]


#: Response shapes are the services' dataclasses: masked members and records, the plain
#: fields of an unmask, follow-ups.
MemberPublic = service.Member
MemberUnmasked = service.Unmasked
SpecialPublic = service.SpecialRecord
FollowupPublic = service.Followup


class MemberPage(BaseModel):
    """A page of members in scope, masked."""

    items: list[MemberPublic]
    total: int
    limit: int
    offset: int


class MemberSearch(BaseModel):
    """Find members by name (prefix) or ID number (exact); both masked in the answer."""

    name: str | None = Field(default=None, min_length=1, max_length=40)
    id_number: str | None = Field(default=None, min_length=1, max_length=40)
    limit: int = Field(default=50, ge=1, le=service.MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=10_000_000)


class UnmaskRequest(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="事由: why the full data")


class SpecialPage(BaseModel):
    """A page of special-population records in scope."""

    items: list[SpecialPublic]
    total: int
    limit: int
    offset: int


class FollowupCreate(BaseModel):
    note: str = Field(min_length=1, max_length=4000, description="情况记录")
    followed_at: dt.datetime | None = Field(default=None, description="default: now")
    next_due: dt.date | None = None


def _members_page(
    conn: Connection, members: list[service.Member], total: int, limit: int, offset: int
) -> MemberPage:
    conn.commit()  # the audit entry of the read
    return MemberPage(items=members, total=total, limit=limit, offset=offset)


@router.get("/people", response_model=MemberPage)
def list_people(
    request: Request,
    principal: ReadDep,
    conn: ScopedConnDep,
    household_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    village: Annotated[str | None, Query(pattern=r"^\d{12}$")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> MemberPage:
    """Household members in your scope (masked), by household or village."""
    members, total = service.list_members(
        conn, principal=require(principal), household_id=household_id, village_code=village,
        limit=limit, offset=offset, ip=client_ip(request),
    )  # fmt: skip
    return _members_page(conn, members, total, limit, offset)


@router.post("/people/search", response_model=MemberPage)
def search_people(
    request: Request, body: MemberSearch, principal: ReadDep, conn: ScopedConnDep
) -> MemberPage:
    """Members in your scope by name prefix or exact ID number (answers masked)."""
    if not body.name and not body.id_number:
        raise InvalidInput("give a name or an ID number to search for")
    keys = data_keys(request) if body.id_number else None
    members, total = service.list_members(
        conn, principal=require(principal), name=body.name, id_number=body.id_number,
        provider=keys, limit=body.limit, offset=body.offset, ip=client_ip(request),
    )  # fmt: skip
    return _members_page(conn, members, total, body.limit, body.offset)


@router.get("/people/{member_id}", response_model=MemberPublic)
def get_person(
    request: Request,
    member_id: RowId,
    principal: ReadDep,
    conn: ScopedConnDep,
) -> MemberPublic:
    """One member in your scope (masked); 404 when absent or out of scope."""
    member = service.get_member(
        conn, principal=require(principal), member_id=member_id, ip=client_ip(request)
    )
    conn.commit()
    return member


@router.post("/people/{member_id}/unmask", response_model=MemberUnmasked)
def unmask_person(
    request: Request,
    member_id: RowId,
    body: UnmaskRequest,
    principal: UnmaskDep,
    conn: ScopedConnDep,
    keys: KeysDep,
) -> MemberUnmasked:
    """The full name, ID number, phone and birth date of one member: needs the ``unmask``
    permission and a reason; audited."""
    plain = service.unmask(
        conn, principal=require(principal), provider=keys, member_id=member_id,
        reason=body.reason, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return plain


@router.get("/special", response_model=SpecialPage)
def list_special(
    request: Request,
    principal: SpecialReadDep,
    conn: ScopedConnDep,
    category: Annotated[str | None, Query(max_length=20)] = None,
    member_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SpecialPage:
    """Special-population records in your scope: needs the ``special`` permission."""
    records, total = service.list_special(
        conn, principal=require(principal), category=category, member_id=member_id,
        limit=limit, offset=offset, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return SpecialPage(items=records, total=total, limit=limit, offset=offset)


@router.get("/special/{record_id}/followups", response_model=list[FollowupPublic])
def list_followups(
    request: Request,
    record_id: RowId,
    principal: SpecialReadDep,
    conn: ScopedConnDep,
) -> list[FollowupPublic]:
    """The follow-ups of one special-population record, newest first."""
    rows = service.list_followups(
        conn, principal=require(principal), record_id=record_id, ip=client_ip(request)
    )
    conn.commit()
    return rows


@router.post("/special/{record_id}/followups", response_model=FollowupPublic, status_code=201)
def add_followup(
    request: Request,
    record_id: RowId,
    body: FollowupCreate,
    principal: SpecialWriteDep,
    conn: ScopedConnDep,
) -> FollowupPublic:
    """Record a follow-up (visit, talk, check) of a special-population record."""
    made = service.add_followup(
        conn, principal=require(principal), record_id=record_id, note=body.note,
        followed_at=body.followed_at, next_due=body.next_due, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return made
