"""The key-unit register (重点单位"户籍化"): units, their managers, versions and scope.

A key unit has a type from the dictionary (``key_unit_types``), a risk level (1 low – 3
high), an address and a point, and is placed by its point in a village and the basic grid
of the town's active plan (:func:`geogrid.cases.routing.place_point`, the placement cases
use; :func:`geogrid.overlays.assign_grids` moves it when a plan is activated).

Its responsible person (负责人) and safety manager (消防安全管理人) are personal data: they
live in ``key_unit_contacts`` (row-level security by the unit's scope), names are shown
masked, phones are stored encrypted (:func:`geogrid.people.crypto.seal`, bound to the unit
and field) with a masked copy; :func:`unmask` is the one way to the plain values, checked
by the ``unit.unmask`` policy and audited with its reason. Layers never read that table.

Every query binds the principal's scope prefix (``scope_key LIKE prefix || '%'``); a unit
out of scope is indistinguishable from a missing one. Edits carry the version they were
based on (:class:`StaleVersion`, 412, with the current record in ``detail.current``).
Replacing a manager starts a staff-change filing due within 5 working days
(:mod:`geogrid.fieldwork.filings`).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal, check
from geogrid.cases import routing
from geogrid.errors import Conflict, InvalidInput
from geogrid.fieldwork import filings
from geogrid.fieldwork.common import (
    area_filter,
    check_page,
    check_point,
    make_etag,
    scoped_row,
    stale,
    today_local,
)
from geogrid.people.crypto import KeyProvider, seal, unseal
from geogrid.people.mask import mask_name, mask_phone

__all__ = [
    "ContactIn",
    "ContactPublic",
    "KeyUnitCreate",
    "KeyUnitPublic",
    "KeyUnitUpdate",
    "create_unit",
    "delete_unit",
    "get_unit",
    "list_types",
    "list_units",
    "unmask",
    "update_unit",
]

MAX_LIMIT: Final = 500
ROLES: Final = ("responsible", "safety")
_PHONE: Final = re.compile(r"\+?[0-9][0-9 -]{4,19}")
_UNIT_NO: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
#: The scope test on a table aliased ``u`` (``""`` is the ``all`` scope: unplaced rows too).
SCOPE: Final = "(:scope_prefix = '' OR u.scope_key LIKE :scope_prefix || '%')"


# --------------------------------------------------------------------------- shapes


class ContactIn(BaseModel):
    """A manager as the client sends it (plain name and phone)."""

    name: str = Field(min_length=1, max_length=50)
    phone: str | None = Field(default=None, max_length=30)


class ContactPublic(BaseModel):
    """A manager as every answer shows it: masked."""

    role: Literal["responsible", "safety"]
    name: str
    phone: str | None
    since: dt.date | None


class ContactUnmasked(BaseModel):
    """A manager's plain name and phone (only from :func:`unmask`)."""

    role: Literal["responsible", "safety"]
    name: str
    phone: str | None


class DuePublic(BaseModel):
    """The next due date of one kind of filing."""

    kind: str
    due_date: dt.date | None
    due_problem: str | None
    overdue: bool


class KeyUnitPublic(BaseModel):
    """A key unit with its masked managers and its filing dues."""

    id: int
    unit_no: str
    name: str
    unit_type: str
    risk_level: int
    address: str | None
    lon: float
    lat: float
    village_code: str | None
    grid_code: str | None
    registered_on: dt.date
    version: int
    etag: str
    contacts: list[ContactPublic]
    dues: list[DuePublic]
    overdue_filings: int


class KeyUnitCreate(BaseModel):
    """A new key unit."""

    unit_no: str | None = Field(default=None, max_length=32, description="default: KU + id")
    name: str = Field(min_length=1, max_length=100)
    unit_type: str = Field(min_length=1, max_length=40, description="from GET .../types")
    risk_level: int = Field(ge=1, le=3, description="1 low – 3 high")
    address: str | None = Field(default=None, max_length=200)
    lon: float
    lat: float
    registered_on: dt.date | None = Field(default=None, description="default: today")
    responsible: ContactIn | None = None
    safety: ContactIn | None = None


class KeyUnitUpdate(BaseModel):
    """Changes to a key unit (absent fields stay as they are)."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    unit_type: str | None = Field(default=None, min_length=1, max_length=40)
    risk_level: int | None = Field(default=None, ge=1, le=3)
    address: str | None = Field(default=None, max_length=200)
    lon: float | None = None
    lat: float | None = None
    responsible: ContactIn | None = None
    safety: ContactIn | None = None
    staff_changed_on: dt.date | None = Field(
        default=None, description="when a manager changed (default today): starts the filing"
    )


class UnitType(BaseModel):
    name: str
    name_en: str | None


# --------------------------------------------------------------------------- validation


def _text(value: str | None, what: str, limit: int, required: bool = False) -> str | None:
    v = (value or "").strip()
    if not v:
        if required:
            raise InvalidInput(f"{what} is required")
        return None
    if len(v) > limit or any(ord(c) < 32 for c in v):
        raise InvalidInput(f"{what} has at most {limit} printable characters")
    return v


def _unit_type(conn: Connection, value: str) -> str:
    v = (value or "").strip()
    ok = conn.execute(
        text("SELECT 1 FROM key_unit_types WHERE name = :n AND active"), {"n": v}
    ).first()
    if ok is None:
        raise InvalidInput(f"unknown key-unit type {v[:40]!r}: see GET /api/key-units/types")
    return v


def _risk(value: int) -> int:
    if isinstance(value, bool) or value not in (1, 2, 3):
        raise InvalidInput("risk_level must be 1 (low), 2 (medium) or 3 (high)")
    return int(value)


def place(
    conn: Connection, principal: Principal, action: str, lon: Any, lat: Any
) -> tuple[float, float, str, str | None]:
    """(lon, lat, village, grid) of a point inside a village and the principal's scope."""
    x, y = check_point(lon, lat)
    village, grid = routing.place_point(conn, x, y)
    if village is None:
        raise InvalidInput("the point lies outside every village of the register")
    check(principal, action, grid or village)
    return x, y, village, grid


def _contact(c: ContactIn | None, what: str) -> tuple[str, str | None] | None:
    if c is None:
        return None
    name = _text(c.name, f"the {what}'s name", 50, required=True)
    phone = (c.phone or "").strip() or None
    if phone is not None and not _PHONE.fullmatch(phone):
        raise InvalidInput(f"the {what}'s phone must be 5–20 digits (spaces, - and + allowed)")
    return str(name), phone


def _past(day: dt.date | None, what: str) -> dt.date | None:
    if day is not None and day > today_local():
        raise InvalidInput(f"{what} is in the future")
    return day


# --------------------------------------------------------------------------- reads

_SELECT = """
SELECT u.id, u.unit_no, u.name, u.unit_type, u.risk_level, u.address, ST_X(u.geom) AS lon,
       ST_Y(u.geom) AS lat, u.village_code, u.grid_code, u.registered_on, u.version
FROM key_units u
"""


def _assemble(conn: Connection, rows: Sequence[Any], today: dt.date) -> list[KeyUnitPublic]:
    ids = [int(r.id) for r in rows]
    contacts: dict[int, list[ContactPublic]] = {i: [] for i in ids}
    dues: dict[int, list[DuePublic]] = {i: [] for i in ids}
    if ids:
        for c in conn.execute(
            text(
                "SELECT unit_id, role, name, phone_masked, since FROM key_unit_contacts "
                "WHERE unit_id = ANY(:ids) ORDER BY unit_id, role"
            ),
            {"ids": ids},
        ):
            contacts[int(c.unit_id)].append(
                ContactPublic(
                    role=c.role, name=mask_name(c.name) or "", phone=c.phone_masked, since=c.since
                )
            )
        for d in conn.execute(
            text(
                "SELECT unit_id, kind, due_date, due_problem FROM key_unit_dues "
                "WHERE unit_id = ANY(:ids) ORDER BY unit_id, kind"
            ),
            {"ids": ids},
        ):
            late = d.due_date is not None and d.due_date < today
            dues[int(d.unit_id)].append(
                DuePublic(kind=d.kind, due_date=d.due_date, due_problem=d.due_problem, overdue=late)
            )
    return [
        KeyUnitPublic(
            id=int(r.id), unit_no=r.unit_no, name=r.name, unit_type=r.unit_type,
            risk_level=int(r.risk_level), address=r.address, lon=float(r.lon), lat=float(r.lat),
            village_code=r.village_code, grid_code=r.grid_code, registered_on=r.registered_on,
            version=int(r.version), etag=make_etag("key_unit", int(r.id), int(r.version)),
            contacts=contacts[int(r.id)], dues=dues[int(r.id)],
            overdue_filings=sum(d.overdue for d in dues[int(r.id)]),
        )
        for r in rows
    ]  # fmt: skip


def list_units(
    conn: Connection,
    *,
    principal: Principal,
    grid: str | None = None,
    overdue: bool = False,
    limit: int = 200,
    offset: int = 0,
    today: dt.date | None = None,
    ip: str | None = None,
) -> list[KeyUnitPublic]:
    """Key units in the principal's scope (ordered by unit number), managers masked.

    Parameters
    ----------
    grid
        Only units in this town, village or grid.
    overdue
        Only units with at least one overdue filing.
    today
        The day overdue is judged on (default: today in China).

    The read is audited with the ids returned (the masked managers are personal data).
    """
    check_page(limit, offset, MAX_LIMIT)
    day = today or today_local()
    filings.refresh_dues(conn)
    where = [SCOPE]
    params: dict[str, Any] = {"scope_prefix": principal.scope.prefix, "lim": limit,
                              "off": offset, "today": day}  # fmt: skip
    area = area_filter(grid)
    if area is not None:
        where.append("u.scope_key LIKE :area || '%'")
        params["area"] = area
    if overdue:
        where.append(
            "EXISTS (SELECT 1 FROM key_unit_dues d WHERE d.unit_id = u.id AND d.due_date < :today)"
        )
    rows = conn.execute(
        text(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY u.unit_no LIMIT :lim OFFSET :off"),
        params,
    ).all()
    units = _assemble(conn, rows, day)
    audit.record(
        conn, actor=principal, action="unit.read", target_type="key_unit",
        target_ids=[str(u.id) for u in units], ip=ip,
        detail={"returned": len(units), "overdue": overdue},
    )  # fmt: skip
    return units


def _one(conn: Connection, principal: Principal, unit_id: int, lock: bool = False) -> Any:
    return scoped_row(
        conn, _SELECT, "u", unit_id, principal.scope.prefix, what="key unit", lock=lock
    )


def get_unit(
    conn: Connection,
    *,
    principal: Principal,
    unit_id: int,
    today: dt.date | None = None,
    ip: str | None = None,
) -> KeyUnitPublic:
    """One key unit in scope with masked managers and dues; :class:`NotFound` otherwise."""
    filings.refresh_dues(conn)
    unit = _assemble(conn, [_one(conn, principal, unit_id)], today or today_local())[0]
    audit.record(
        conn, actor=principal, action="unit.read", target_type="key_unit",
        target_ids=[str(unit_id)], ip=ip,
    )  # fmt: skip
    return unit


def list_types(conn: Connection) -> list[UnitType]:
    """The active entries of the key-unit type dictionary."""
    rows = conn.execute(
        text("SELECT name, name_en FROM key_unit_types WHERE active ORDER BY sort, name")
    ).all()
    return [UnitType(name=r.name, name_en=r.name_en) for r in rows]


# --------------------------------------------------------------------------- writes


def _set_contact(
    conn: Connection, provider: KeyProvider | None, unit_id: int, role: str,
    contact: tuple[str, str | None], since: dt.date,
) -> bool:  # fmt: skip
    """Store one manager; whether the person changed (a new name)."""
    name, phone = contact
    old = conn.execute(
        text("SELECT name FROM key_unit_contacts WHERE unit_id = :u AND role = :r"),
        {"u": unit_id, "r": role},
    ).scalar_one_or_none()
    key: str | None = None
    blob: bytes | None = None
    if phone is not None:
        if provider is None:
            raise InvalidInput("storing a manager's phone needs the data key")
        key, blob = seal(provider, "key_unit_contacts", unit_id, f"{role}_phone", phone)
    changed = old is not None and old != name
    conn.execute(
        text(
            "INSERT INTO key_unit_contacts (unit_id, role, name, phone_enc, phone_key, "
            "phone_masked, since) VALUES (:u, :r, :n, :e, :k, :m, :s) "
            "ON CONFLICT (unit_id, role) DO UPDATE SET name = EXCLUDED.name, "
            "phone_enc = EXCLUDED.phone_enc, phone_key = EXCLUDED.phone_key, "
            "phone_masked = EXCLUDED.phone_masked, updated_at = now(), since = CASE "
            "WHEN key_unit_contacts.name = EXCLUDED.name THEN key_unit_contacts.since "
            "ELSE EXCLUDED.since END"
        ),
        {"u": unit_id, "r": role, "n": name, "e": blob, "k": key, "m": mask_phone(phone),
         "s": since},
    )  # fmt: skip
    return changed


def create_unit(
    conn: Connection,
    *,
    principal: Principal,
    body: KeyUnitCreate,
    provider: KeyProvider | None = None,
    ip: str | None = None,
) -> KeyUnitPublic:
    """Register a key unit in scope (the caller checked ``unit.write``); audited."""
    name = _text(body.name, "name", 100, required=True)
    unit_type = _unit_type(conn, body.unit_type)
    risk = _risk(body.risk_level)
    address = _text(body.address, "address", 200)
    registered = _past(body.registered_on, "registered_on") or today_local()
    if body.unit_no is not None and not _UNIT_NO.fullmatch(body.unit_no):
        raise InvalidInput("unit_no has 1–32 letters, digits, - or _")
    contacts = {r: _contact(getattr(body, r), r) for r in ROLES}
    x, y, village, grid = place(conn, principal, "unit.write", body.lon, body.lat)
    unit_no = body.unit_no or f"tmp-{uuid.uuid4().hex}"
    unit_id = conn.execute(
        text(
            "INSERT INTO key_units (unit_no, name, unit_type, risk_level, address, geom, "
            "village_code, grid_code, registered_on) VALUES (:no, :n, :t, :r, :a, "
            "ST_SetSRID(ST_MakePoint(:x, :y), 4326), :v, :g, :reg) "
            "ON CONFLICT (unit_no) DO NOTHING RETURNING id"
        ),
        {"no": unit_no, "n": name, "t": unit_type, "r": risk, "a": address, "x": x, "y": y,
         "v": village, "g": grid, "reg": registered},
    ).scalar_one_or_none()  # fmt: skip
    if unit_id is None:
        raise Conflict(f"unit number {unit_no} is taken")
    if body.unit_no is None:
        conn.execute(
            text("UPDATE key_units SET unit_no = 'KU' || lpad(id::text, 6, '0') WHERE id = :i"),
            {"i": unit_id},
        )
    for role, c in contacts.items():
        if c is not None:
            _set_contact(conn, provider, int(unit_id), role, c, registered)
    filings.start_dues(conn, int(unit_id), registered)
    audit.record(
        conn, actor=principal, action="unit.write", target_type="key_unit",
        target_ids=[str(unit_id)], ip=ip, detail={"op": "create"},
    )  # fmt: skip
    return get_unit(conn, principal=principal, unit_id=int(unit_id), ip=ip)


def update_unit(
    conn: Connection,
    *,
    principal: Principal,
    unit_id: int,
    expected_version: int,
    body: KeyUnitUpdate,
    provider: KeyProvider | None = None,
    ip: str | None = None,
) -> KeyUnitPublic:
    """Change a key unit based on ``expected_version`` (:class:`StaleVersion` when it moved
    on). A manager replaced by another person starts a staff-change filing due 5 working
    days after ``staff_changed_on`` (default today)."""
    row = _one(conn, principal, unit_id, lock=True)
    if int(row.version) != expected_version:
        raise stale("key_unit", unit_id, expected_version,
                    get_unit(conn, principal=principal, unit_id=unit_id))  # fmt: skip
    sets: dict[str, Any] = {}
    if body.name is not None:
        sets["name"] = _text(body.name, "name", 100, required=True)
    if body.unit_type is not None:
        sets["unit_type"] = _unit_type(conn, body.unit_type)
    if body.risk_level is not None:
        sets["risk_level"] = _risk(body.risk_level)
    if "address" in body.model_fields_set:
        sets["address"] = _text(body.address, "address", 200)
    changed_on = _past(body.staff_changed_on, "staff_changed_on") or today_local()
    contacts = {r: _contact(getattr(body, r), r) for r in ROLES if getattr(body, r) is not None}
    geo = ""
    params: dict[str, Any] = {"id": unit_id}
    if body.lon is not None or body.lat is not None:
        x, y, village, grid = place(
            conn, principal, "unit.write",
            body.lon if body.lon is not None else row.lon,
            body.lat if body.lat is not None else row.lat,
        )  # fmt: skip
        geo = ", geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326), village_code = :v, grid_code = :g"
        params.update(x=x, y=y, v=village, g=grid)
    assignments = "".join(f", {k} = :{k}" for k in sets)
    conn.execute(
        text(
            f"UPDATE key_units SET version = version + 1, updated_at = now(){assignments}{geo} "
            "WHERE id = :id"
        ),
        {**params, **sets},
    )
    replaced = [
        role for role, c in contacts.items()
        if c is not None and _set_contact(conn, provider, unit_id, role, c, changed_on)
    ]  # fmt: skip
    if replaced:
        filings.start_staff_change(conn, unit_id, changed_on)
    audit.record(
        conn, actor=principal, action="unit.write", target_type="key_unit",
        target_ids=[str(unit_id)], ip=ip,
        detail={"op": "update", "fields": sorted([*sets, *contacts]), "replaced": replaced},
    )  # fmt: skip
    return get_unit(conn, principal=principal, unit_id=unit_id, ip=ip)


def delete_unit(
    conn: Connection,
    *,
    principal: Principal,
    unit_id: int,
    expected_version: int,
    ip: str | None = None,
) -> None:
    """Remove a key unit from the register with its file (its inspection points stay,
    unlinked); based on ``expected_version`` like an edit."""
    row = _one(conn, principal, unit_id, lock=True)
    if int(row.version) != expected_version:
        raise stale("key_unit", unit_id, expected_version,
                    get_unit(conn, principal=principal, unit_id=unit_id))  # fmt: skip
    conn.execute(text("DELETE FROM key_units WHERE id = :id"), {"id": unit_id})
    audit.record(
        conn, actor=principal, action="unit.write", target_type="key_unit",
        target_ids=[str(unit_id)], ip=ip, detail={"op": "delete"},
    )  # fmt: skip


def unmask(
    conn: Connection,
    *,
    principal: Principal,
    provider: KeyProvider,
    unit_id: int,
    reason: str,
    ip: str | None = None,
) -> list[ContactUnmasked]:
    """The plain names and phones of a unit's managers (the caller checked
    ``unit.unmask``); the reason is required and kept in the audit entry."""
    why = (reason or "").strip()
    if len(why) < 2:
        raise InvalidInput("give the reason for seeing the full personal data (事由)")
    _one(conn, principal, unit_id)
    rows = conn.execute(
        text(
            "SELECT role, name, phone_enc, phone_key FROM key_unit_contacts WHERE unit_id = :u "
            "ORDER BY role"
        ),
        {"u": unit_id},
    ).all()
    out = [
        ContactUnmasked(
            role=r.role, name=r.name,
            phone=unseal(provider, "key_unit_contacts", unit_id, f"{r.role}_phone",
                         r.phone_key, r.phone_enc) if r.phone_enc is not None else None,
        )
        for r in rows
    ]  # fmt: skip
    audit.record(
        conn, actor=principal, action="unit.unmask", target_type="key_unit",
        target_ids=[str(unit_id)], ip=ip, detail={"reason": why[:500], "fields": ["managers"]},
    )  # fmt: skip
    return out
