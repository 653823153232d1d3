"""Key units (重点单位"户籍化"): the register, managers (masked; unmask audited), filings,
overdue filings per grid. Services: :mod:`geogrid.fieldwork.units`, :mod:`~.filings`.

Edits need ``If-Match`` with the ETag of the record (428 without it, 412 with
``detail.current`` when stale); creates that the field app sends take a ``client_id``
(201 the first time, 200 with the same record when repeated).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from api.auth import ScopedConnDep, allow, client_ip, require
from api.routes.people import KeysDep, data_keys
from api.schemas import ErrorPublic
from geogrid.access.policy import Principal
from geogrid.errors import NotFound
from geogrid.fieldwork import filings, units
from geogrid.fieldwork.common import parse_etag
from geogrid.people.crypto import KeyProvider

router = APIRouter(prefix="/api/key-units", tags=["key units"])

ReadDep = Annotated[Principal | None, Depends(allow("unit.read"))]
WriteDep = Annotated[Principal | None, Depends(allow("unit.write"))]
UnmaskDep = Annotated[Principal | None, Depends(allow("unit.unmask"))]
UnitId = Annotated[int, Path(ge=1, le=2**62)]
FilingId = Annotated[int, Path(ge=1, le=2**62)]
Area = Annotated[str | None, Query(pattern=r"^(\d{12}|\d{15})$", description="town/village/grid")]
AsOf = Annotated[dt.date | None, Query(description="judge overdue on this day (default today)")]
IfMatch = Annotated[str | None, Header(max_length=200)]

#: Answers of routes that need If-Match.
PRECONDITION: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "The number is already taken."},
    412: {"model": ErrorPublic, "description": "If-Match names an older version (detail.current)."},
    428: {"model": ErrorPublic, "description": "If-Match is missing."},
}


#: Answers of creates: a taken number, or a client_id used by someone else.
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "The number or client_id is already taken."},
}


def precondition_required(what: str) -> JSONResponse:
    """The 428 answer of an edit sent without ``If-Match``."""
    return JSONResponse(
        status_code=428,
        content={
            "code": "PreconditionRequired",
            "description": f"send If-Match with the ETag of {what}",
        },
    )


def expected_version(if_match: str, kind: str, record_id: int) -> int:
    """The version ``If-Match`` names (``-1``, always stale, when it is not this record's)."""
    version = parse_etag(if_match, kind, record_id)
    return -1 if version is None else version


def keys_if(request: Request, needed: bool) -> KeyProvider | None:
    """The data keys, loaded only when a phone has to be sealed."""
    return data_keys(request) if needed else None


class UnitUnmaskRequest(BaseModel):
    reason: str = Field(min_length=2, max_length=500, description="事由: why the full data")


class FilingSend(filings.FilingCreate):
    """A filing with the client-made id that makes sending it twice harmless."""

    client_id: uuid.UUID | None = Field(default=None, description="outbox id (idempotency key)")


class OverduePage(BaseModel):
    items: list[filings.OverdueFiling]
    total: int
    limit: int
    offset: int


def _phones(*contacts: units.ContactIn | None) -> bool:
    return any(c is not None and c.phone for c in contacts)


def _answer(conn: Connection, response: Response, unit: units.KeyUnitPublic) -> units.KeyUnitPublic:
    conn.commit()
    response.headers["ETag"] = unit.etag
    return unit


@router.get("", response_model=list[units.KeyUnitPublic])
def list_units(
    request: Request,
    principal: ReadDep,
    conn: ScopedConnDep,
    grid: Area = None,
    overdue: bool = False,
    as_of: AsOf = None,
    limit: Annotated[int, Query(ge=1, le=units.MAX_LIMIT)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[units.KeyUnitPublic]:
    """Key units in your scope (managers masked), optionally only those with an overdue filing."""
    found = units.list_units(
        conn, principal=require(principal), grid=grid, overdue=overdue, limit=limit,
        offset=offset, today=as_of, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return found


@router.post("", response_model=units.KeyUnitPublic, status_code=201, responses=CONFLICT)
def create_unit(
    request: Request, body: units.KeyUnitCreate, response: Response, principal: WriteDep,
    conn: ScopedConnDep,
) -> units.KeyUnitPublic:  # fmt: skip
    """Register a key unit (placed in its village and grid by its point)."""
    made = units.create_unit(
        conn, principal=require(principal), body=body, ip=client_ip(request),
        provider=keys_if(request, _phones(body.responsible, body.safety)),
    )  # fmt: skip
    return _answer(conn, response, made)


@router.get("/types", response_model=list[units.UnitType])
def list_types(principal: ReadDep, conn: ScopedConnDep) -> list[units.UnitType]:
    """The key-unit type dictionary (学校, 医院, 养老院, 九小场所 …)."""
    return units.list_types(conn)


@router.get("/overdue", response_model=OverduePage)
def overdue(
    principal: ReadDep,
    conn: ScopedConnDep,
    grid: Area = None,
    as_of: AsOf = None,
    limit: Annotated[int, Query(ge=1, le=filings.MAX_LIMIT)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> OverduePage:
    """Filings past their due date in your scope, by grid then due date (no personal data)."""
    items, total = filings.overdue_filings(
        conn, principal=require(principal), grid=grid, today=as_of, limit=limit, offset=offset
    )
    conn.commit()
    return OverduePage(items=items, total=total, limit=limit, offset=offset)


@router.get("/overdue/counts", response_model=list[filings.GridFilings])
def overdue_counts(
    principal: ReadDep, conn: ScopedConnDep, grid: Area = None, as_of: AsOf = None
) -> list[filings.GridFilings]:
    """Per grid: key units, units with an overdue filing, overdue filings."""
    counts = filings.overdue_counts(conn, principal=require(principal), grid=grid, today=as_of)
    conn.commit()
    return counts


@router.get("/{unit_id}", response_model=units.KeyUnitPublic)
def get_unit(
    request: Request, unit_id: UnitId, response: Response, principal: ReadDep,
    conn: ScopedConnDep,
) -> units.KeyUnitPublic:  # fmt: skip
    """One key unit with its managers (masked) and dues; ``ETag`` names its version."""
    unit = units.get_unit(
        conn, principal=require(principal), unit_id=unit_id, ip=client_ip(request)
    )
    return _answer(conn, response, unit)


@router.patch("/{unit_id}", response_model=units.KeyUnitPublic, responses=PRECONDITION)
def update_unit(
    request: Request, unit_id: UnitId, body: units.KeyUnitUpdate, response: Response,
    principal: WriteDep, conn: ScopedConnDep, if_match: IfMatch = None,
) -> units.KeyUnitPublic | JSONResponse:  # fmt: skip
    """Edit a key unit (If-Match required). Replacing a manager starts the staff-change
    filing, due within 5 working days."""
    if not if_match:
        return precondition_required(f"GET /api/key-units/{unit_id}")
    made = units.update_unit(
        conn, principal=require(principal), unit_id=unit_id, body=body, ip=client_ip(request),
        expected_version=expected_version(if_match, "key_unit", unit_id),
        provider=keys_if(request, _phones(body.responsible, body.safety)),
    )  # fmt: skip
    return _answer(conn, response, made)


@router.delete("/{unit_id}", status_code=204, responses=PRECONDITION)
def delete_unit(
    request: Request, unit_id: UnitId, principal: WriteDep, conn: ScopedConnDep,
    if_match: IfMatch = None,
) -> Response:  # fmt: skip
    """Remove a key unit and its file from the register (If-Match required)."""
    if not if_match:
        return precondition_required(f"GET /api/key-units/{unit_id}")
    units.delete_unit(
        conn, principal=require(principal), unit_id=unit_id, ip=client_ip(request),
        expected_version=expected_version(if_match, "key_unit", unit_id),
    )  # fmt: skip
    conn.commit()
    return Response(status_code=204)


@router.post("/{unit_id}/unmask", response_model=list[units.ContactUnmasked])
def unmask(
    request: Request, unit_id: UnitId, body: UnitUnmaskRequest, principal: UnmaskDep,
    conn: ScopedConnDep, keys: KeysDep,
) -> list[units.ContactUnmasked]:  # fmt: skip
    """The managers' full names and phones: needs the ``unmask`` permission and a reason;
    audited."""
    plain = units.unmask(
        conn, principal=require(principal), provider=keys, unit_id=unit_id, reason=body.reason,
        ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    return plain


@router.get("/{unit_id}/filings", response_model=list[filings.FilingPublic])
def list_filings(
    unit_id: UnitId,
    principal: ReadDep,
    conn: ScopedConnDep,
    kind: Annotated[str | None, Query(max_length=20)] = None,
) -> list[filings.FilingPublic]:
    """The unit's filings, newest first."""
    return filings.list_filings(conn, principal=require(principal), unit_id=unit_id, kind=kind)


@router.post(
    "/{unit_id}/filings",
    response_model=filings.FilingPublic,
    status_code=201,
    responses={
        **CONFLICT,
        200: {"model": filings.FilingPublic, "description": "A repeated client_id: the first."},
    },
)
def record_filing(
    request: Request, unit_id: UnitId, body: FilingSend, response: Response,
    principal: WriteDep, conn: ScopedConnDep,
) -> filings.FilingPublic:  # fmt: skip
    """File a staff change, maintenance report or self-assessment (201; a repeated
    ``client_id`` answers 200 with the first filing)."""
    made, created = filings.record_filing(
        conn, principal=require(principal), unit_id=unit_id, client_id=body.client_id,
        body=body, ip=client_ip(request),
    )  # fmt: skip
    conn.commit()
    response.status_code = 201 if created else 200
    response.headers["ETag"] = made.etag
    return made


@router.patch(
    "/{unit_id}/filings/{filing_id}", response_model=filings.FilingPublic, responses=PRECONDITION
)
def update_filing(
    request: Request, unit_id: UnitId, filing_id: FilingId, body: filings.FilingUpdate,
    response: Response, principal: WriteDep, conn: ScopedConnDep, if_match: IfMatch = None,
) -> filings.FilingPublic | JSONResponse:  # fmt: skip
    """Correct a filing (If-Match required)."""
    if not if_match:
        return precondition_required(f"the filing {filing_id}")
    who = require(principal)
    if filings.get_filing(conn, principal=who, filing_id=filing_id).unit_id != unit_id:
        raise NotFound(f"no filing {filing_id} of key unit {unit_id}")
    made = filings.update_filing(
        conn, principal=who, filing_id=filing_id, body=body, ip=client_ip(request),
        expected_version=expected_version(if_match, "filing", filing_id),
    )  # fmt: skip
    conn.commit()
    response.headers["ETag"] = made.etag
    return made
