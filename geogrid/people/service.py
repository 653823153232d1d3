"""Scoped, audited reads and writes of household members and special-population records.

Every query binds the principal's scope prefix into its SQL (the first wall; row-level
security on the tables is the second): a member is in scope when its household's
``coalesce(grid_code, village_code)`` starts with the prefix. Results carry masked
fields only (:mod:`geogrid.people.mask`; the masked ID number and phone are stored
masked, so a list never decrypts anything); :func:`unmask` is the one way to the plain
values, permitted by the policy and audited with its reason.

Every read of personal data appends an audit entry (who, which record ids, outcome) in
the caller's transaction: the caller commits. A refusal (a record that does not exist or
lies outside the scope — the two are indistinguishable on purpose) is audited and
committed at once, before the error is raised, so that the raise cannot roll it back.
Audit details never hold personal values (no names, no ID numbers searched for).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.errors import InvalidInput, NotFound
from geogrid.people.crypto import KeyProvider, lookup_hash, unseal
from geogrid.people.idcard import id_problem, normalize_id
from geogrid.people.mask import mask_name
from geogrid.people.models import CATEGORIES

__all__ = [
    "Followup",
    "Member",
    "SpecialRecord",
    "Unmasked",
    "add_followup",
    "get_member",
    "list_followups",
    "list_members",
    "list_special",
    "unmask",
]

#: The scope condition on a household aliased ``h``.
#: households.scope_key is coalesce(grid_code, village_code), stored (migration 0011)
SCOPE = "h.scope_key LIKE :scope_prefix || '%'"
MAX_LIMIT = 500

_MEMBER_COLUMNS = """
    SELECT m.id, m.household_id, h.register_no, m.village_code, h.grid_code, m.name, m.sex,
           extract(year FROM m.birth_date)::int AS birth_year, m.id_masked, m.relation,
           m.phone_masked, m.residence
"""
_MEMBER_FROM = "FROM household_members m JOIN households h ON h.id = m.household_id"
_MEMBER_SELECT = f"{_MEMBER_COLUMNS} {_MEMBER_FROM}"


@dataclass(frozen=True)
class Member:
    """A household member as every response shows it: masked."""

    id: int
    household_id: int
    register_no: str
    village_code: str
    grid_code: str | None
    name: str
    sex: str | None
    birth_year: int | None
    id_number: str
    relation: str | None
    phone: str | None
    residence: str


@dataclass(frozen=True)
class Unmasked:
    """The plain personal fields of one member (only from :func:`unmask`)."""

    id: int
    name: str
    id_number: str
    phone: str | None
    birth_date: dt.date | None


@dataclass(frozen=True)
class SpecialRecord:
    """A special-population record with its member's masked name and ID number."""

    id: int
    member_id: int
    name: str
    id_number: str
    village_code: str
    grid_code: str | None
    category: str
    since: dt.date | None
    risk_level: str
    responsible: str | None
    followups: int
    next_due: dt.date | None


@dataclass(frozen=True)
class Followup:
    """One follow-up (visit, talk, check) of a special-population record."""

    id: int
    record_id: int
    followed_at: dt.datetime
    by_name: str
    note: str
    next_due: dt.date | None


def _member(row: Any) -> Member:
    return Member(
        id=int(row.id), household_id=int(row.household_id), register_no=row.register_no,
        village_code=row.village_code, grid_code=row.grid_code, name=mask_name(row.name) or "",
        sex=row.sex, birth_year=row.birth_year, id_number=row.id_masked, relation=row.relation,
        phone=row.phone_masked, residence=row.residence,
    )  # fmt: skip


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    return limit, offset


def _paged(
    conn: Connection, columns: str, from_: str, where: list[str], params: dict[str, Any],
    limit: int, offset: int,
) -> tuple[list[Any], int]:  # fmt: skip
    """One page of rows (ordered by the first table's id) and the total count."""
    cond = " AND ".join(where)
    total = conn.execute(text(f"SELECT count(*) {from_} WHERE {cond}"), params).scalar_one()
    rows = conn.execute(
        text(f"{columns} {from_} WHERE {cond} ORDER BY 1 LIMIT :lim OFFSET :off"),
        {**params, "lim": limit, "off": offset},
    ).all()
    return list(rows), int(total)


def _refuse(
    conn: Connection, principal: Principal, action: str, target_type: str, target: int,
    why: str, ip: str | None,
) -> NotFound:  # fmt: skip
    audit.record(
        conn, actor=principal, action=action, outcome="refused", target_type=target_type,
        target_ids=[str(target)], ip=ip, detail={"why": why},
    )  # fmt: skip
    conn.commit()
    return NotFound(f"no {target_type.replace('_', ' ')} {target} in your scope")


def list_members(
    conn: Connection,
    *,
    principal: Principal,
    household_id: int | None = None,
    village_code: str | None = None,
    name: str | None = None,
    id_number: str | None = None,
    provider: KeyProvider | None = None,
    limit: int = 50,
    offset: int = 0,
    ip: str | None = None,
) -> tuple[list[Member], int]:
    """Members in the principal's scope, optionally of one household or village, or found
    by name (prefix) or ID number (exact, through its keyed hash; needs ``provider``).

    Returns the page and the total count; the read is audited with the ids returned.
    """
    limit, offset = _page(limit, offset)
    where = [SCOPE]
    params: dict[str, Any] = {"scope_prefix": principal.scope.prefix}
    used: list[str] = []
    if household_id is not None:
        where.append("m.household_id = :hh")
        params["hh"] = household_id
        used.append("household")
    if village_code is not None:
        where.append("m.village_code = :vc")
        params["vc"] = village_code
        used.append("village")
    if name:
        where.append("m.name LIKE :name || '%'")
        params["name"] = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        used.append("name")
    if id_number:
        problem = id_problem(id_number)
        if problem:
            raise InvalidInput(problem)
        if provider is None:
            raise InvalidInput("searching by ID number needs the data key")
        where.append("m.id_hash = :idh")
        params["idh"] = lookup_hash(provider, "id", normalize_id(id_number))
        used.append("id_number")
    rows, total = _paged(conn, _MEMBER_COLUMNS, _MEMBER_FROM, where, params, limit, offset)
    members = [_member(r) for r in rows]
    audit.record(
        conn, actor=principal, action="people.read", target_type="household_member",
        target_ids=[str(m.id) for m in members], ip=ip,
        detail={"filters": used, "returned": len(members), "total": int(total)},
    )  # fmt: skip
    return members, int(total)


def get_member(
    conn: Connection, *, principal: Principal, member_id: int, ip: str | None = None
) -> Member:
    """One member in scope (masked); audited. :class:`NotFound` when absent or out of
    scope (audited as refused)."""
    row = conn.execute(
        text(f"{_MEMBER_SELECT} WHERE m.id = :id AND {SCOPE}"),
        {"id": member_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()
    if row is None:
        raise _refuse(conn, principal, "people.read", "household_member", member_id,
                      "not found in scope", ip)  # fmt: skip
    audit.record(
        conn, actor=principal, action="people.read", target_type="household_member",
        target_ids=[str(member_id)], ip=ip,
    )  # fmt: skip
    return _member(row)


def unmask(
    conn: Connection,
    *,
    principal: Principal,
    provider: KeyProvider,
    member_id: int,
    reason: str,
    ip: str | None = None,
) -> Unmasked:
    """The plain name, ID number, phone and birth date of one member in scope.

    The caller has checked the ``people.unmask`` policy; the reason is required and kept
    in the audit entry.
    """
    why = (reason or "").strip()
    if len(why) < 2:
        raise InvalidInput("give the reason for seeing the full personal data (事由)")
    row = conn.execute(
        text(
            "SELECT m.id, m.name, m.birth_date, m.id_enc, m.id_key, m.phone_enc, m.phone_key "
            f"{_MEMBER_FROM} WHERE m.id = :id AND {SCOPE}"
        ),
        {"id": member_id, "scope_prefix": principal.scope.prefix},
    ).one_or_none()
    if row is None:
        raise _refuse(conn, principal, "people.unmask", "household_member", member_id,
                      "not found in scope", ip)  # fmt: skip
    table = "household_members"
    number = unseal(provider, table, member_id, "id_number", row.id_key, row.id_enc)
    phone = (
        unseal(provider, table, member_id, "phone", row.phone_key, row.phone_enc)
        if row.phone_enc is not None
        else None
    )
    audit.record(
        conn, actor=principal, action="people.unmask", target_type="household_member",
        target_ids=[str(member_id)], ip=ip,
        detail={"reason": why[:500], "fields": ["name", "id_number", "phone", "birth_date"]},
    )  # fmt: skip
    return Unmasked(int(row.id), row.name, number, phone, row.birth_date)


_SPECIAL_COLUMNS = """
    SELECT s.id, s.member_id, m.name, m.id_masked, s.village_code, h.grid_code, s.category,
           s.since, s.risk_level, s.responsible,
           (SELECT count(*) FROM special_followups f WHERE f.record_id = s.id) AS followups,
           (SELECT f.next_due FROM special_followups f WHERE f.record_id = s.id
            ORDER BY f.followed_at DESC, f.id DESC LIMIT 1) AS next_due
"""
_SPECIAL_FROM = (
    "FROM special_population s JOIN household_members m ON m.id = s.member_id "
    "JOIN households h ON h.id = m.household_id"
)


def _special(row: Any) -> SpecialRecord:
    return SpecialRecord(
        id=int(row.id), member_id=int(row.member_id), name=mask_name(row.name) or "",
        id_number=row.id_masked, village_code=row.village_code, grid_code=row.grid_code,
        category=row.category, since=row.since, risk_level=row.risk_level,
        responsible=row.responsible, followups=int(row.followups), next_due=row.next_due,
    )  # fmt: skip


def list_special(
    conn: Connection,
    *,
    principal: Principal,
    category: str | None = None,
    member_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    ip: str | None = None,
) -> tuple[list[SpecialRecord], int]:
    """Special-population records in scope (the caller checked ``special.read``)."""
    limit, offset = _page(limit, offset)
    where = [SCOPE]
    params: dict[str, Any] = {"scope_prefix": principal.scope.prefix}
    if category is not None:
        if category not in CATEGORIES:
            raise InvalidInput(f"unknown category; expected one of {'、'.join(CATEGORIES)}")
        where.append("s.category = :cat")
        params["cat"] = category
    if member_id is not None:
        where.append("s.member_id = :mid")
        params["mid"] = member_id
    rows, total = _paged(conn, _SPECIAL_COLUMNS, _SPECIAL_FROM, where, params, limit, offset)
    records = [_special(r) for r in rows]
    audit.record(
        conn, actor=principal, action="special.read", target_type="special_population",
        target_ids=[str(r.id) for r in records], ip=ip,
        detail={"category": category, "returned": len(records), "total": int(total)},
    )  # fmt: skip
    return records, int(total)


def _record_in_scope(conn: Connection, principal: Principal, record_id: int) -> str | None:
    """The record's village code when it is in scope, else ``None``."""
    village = conn.execute(
        text(f"SELECT s.village_code {_SPECIAL_FROM} WHERE s.id = :id AND {SCOPE}"),
        {"id": record_id, "scope_prefix": principal.scope.prefix},
    ).scalar_one_or_none()
    return str(village) if village is not None else None


def list_followups(
    conn: Connection, *, principal: Principal, record_id: int, ip: str | None = None
) -> list[Followup]:
    """The follow-ups of one record in scope, newest first; audited."""
    if _record_in_scope(conn, principal, record_id) is None:
        raise _refuse(conn, principal, "special.read", "special_population", record_id,
                      "not found in scope", ip)  # fmt: skip
    rows = conn.execute(
        text(
            "SELECT id, record_id, followed_at, by_name, note, next_due FROM special_followups "
            "WHERE record_id = :r ORDER BY followed_at DESC, id DESC"
        ),
        {"r": record_id},
    ).all()
    out = [Followup(**r._mapping) for r in rows]
    audit.record(
        conn, actor=principal, action="special.read", target_type="special_population",
        target_ids=[str(record_id)], ip=ip, detail={"followups": len(out)},
    )  # fmt: skip
    return out


def add_followup(
    conn: Connection,
    *,
    principal: Principal,
    record_id: int,
    note: str,
    followed_at: dt.datetime | None = None,
    next_due: dt.date | None = None,
    ip: str | None = None,
) -> Followup:
    """Record a follow-up of one record in scope (the caller checked ``special.write``)."""
    text_ = (note or "").strip()
    if not text_:
        raise InvalidInput("a follow-up needs a note (情况记录)")
    when = followed_at or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        raise InvalidInput("followed_at needs a time zone (e.g. +08:00)")
    if when > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
        raise InvalidInput("followed_at is in the future")
    if next_due is not None and next_due < when.date():
        raise InvalidInput("next_due is before the follow-up")
    village = _record_in_scope(conn, principal, record_id)
    if village is None:
        raise _refuse(conn, principal, "special.write", "special_population", record_id,
                      "not found in scope", ip)  # fmt: skip
    row = conn.execute(
        text(
            "INSERT INTO special_followups (record_id, village_code, followed_at, by_user_id, "
            "by_name, note, next_due) VALUES (:r, :v, :t, :uid, :by, :note, :due) "
            "RETURNING id, record_id, followed_at, by_name, note, next_due"
        ),
        {
            "r": record_id, "v": village, "t": when,
            "uid": principal.user_id if principal.user_id > 0 else None,
            "by": principal.username, "note": text_, "due": next_due,
        },
    ).one()  # fmt: skip
    audit.record(
        conn, actor=principal, action="special.write", target_type="special_population",
        target_ids=[str(record_id)], ip=ip, detail={"followup": int(row.id)},
    )  # fmt: skip
    return Followup(**row._mapping)
