"""Grid teams (五个一同步, 党组织建在网格上): each grid's five parts, recorded and checked.

The seed document fixes one team per basic grid, made of five parts:

1. **one grid leader** (网格长): the ``leader`` post of the grid in the active plan
   (``staff_assignments``, edited with the staff posts);
2. **one party group** (党小组, or the 党支部 the grid belongs to) **with its members**:
   ``grid_teams.party_org_name`` set *and* at least one ``party_leader`` or
   ``party_member`` in ``grid_team_members``;
3. **one information officer** (信息员): the grid's ``info_officer`` post;
4. **one service team** (服务团队): at least one of 党代表, 人大代表, 政协委员, petition
   liaison (信访联络员), opinion liaison (民意联络员) or volunteer in ``grid_team_members``;
5. **one information archive** (一格一盒): ``grid_teams.archive_no`` set.

**Completeness** of a grid is the number of parts present, 0–5 (5 = complete). It is
computed in the database by ``grid_team_parts(prefix)`` (migration 0027) for every basic
grid of the active plans whose code starts with ``prefix``; :func:`completeness` calls it.
The assessment indicators may call the same function::

    SELECT grid_code, parts FROM grid_team_parts('420117105')   -- a town's grids

Team members are people in public duties: what the public grid map shows of them is the
name, role, title and office phone of members marked ``public`` (:func:`public_team`),
like the staff cards. Nothing is read from the household register.

This module imports no FastAPI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from geogrid.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "MEMBER_ROLES",
    "PARTS",
    "PARTY_ROLES",
    "SERVICE_ROLES",
    "MemberIn",
    "TeamIn",
    "completeness",
    "get_team",
    "public_team",
    "save_team",
    "validate_team",
]

GRID_CODE = re.compile(r"^\d{15}$")
PARTY_ROLES = ("party_leader", "party_member")
SERVICE_ROLES = (
    "party_rep", "npc_deputy", "cppcc_member", "petition_liaison", "opinion_liaison",
    "volunteer",
)  # fmt: skip
MEMBER_ROLES = PARTY_ROLES + SERVICE_ROLES
#: Chinese labels of the roles, the posts and the five parts.
ROLE_LABELS: dict[str, str] = {
    "leader": "网格长",
    "info_officer": "信息员",
    "guide": "网格指导员",
    "party_leader": "党小组长",
    "party_member": "党员",
    "party_rep": "党代表",
    "npc_deputy": "人大代表",
    "cppcc_member": "政协委员",
    "petition_liaison": "信访联络员",
    "opinion_liaison": "民意联络员",
    "volunteer": "志愿者",
}
#: The five parts in the seed document's order: key → label.
PARTS: dict[str, str] = {
    "leader": "网格长",
    "party": "党小组",
    "info_officer": "信息员",
    "service_team": "服务团队",
    "archive": "信息档案",
}
#: The completeness rule in one sentence (shown with the figures).
RULE = (
    "五个一：网格长（网格长岗位）、党小组（党组织名称且至少一名党员）、信息员（信息员岗位）、"
    "服务团队（党代表、人大代表、政协委员、信访/民意联络员或志愿者至少一人）、信息档案（档案编号）；"
    "完整度 = 具备的项数 0–5"
)
MAX_MEMBERS = 100
_PHONE = re.compile(r"^[0-9+\-() ]{3,30}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class MemberIn:
    """A team member as a town leader enters it."""

    role: str
    name: str
    title: str | None = None
    office_phone: str | None = None
    staff_id: int | None = None
    public: bool = True


@dataclass(frozen=True)
class TeamIn:
    """A grid's team (party organisation, members, archive) as a town leader enters it."""

    party_org_kind: str | None = None
    party_org_name: str | None = None
    archive_no: str | None = None
    archive_place: str | None = None
    members: list[MemberIn] = field(default_factory=list)


def check_grid_code(code: str) -> str:
    """``code`` when it is a 15-digit basic grid code, else :class:`InvalidInput`.

    >>> check_grid_code("420117105201001")
    '420117105201001'
    """
    if not isinstance(code, str) or not GRID_CODE.fullmatch(code):
        raise InvalidInput(
            f"{str(code)[:20]!r} is not a grid code (15 digits)", detail={"field": "grid_code"}
        )
    return code


def _text(value: str | None, name: str, limit: int, *, required: bool = False) -> str | None:
    v = (value or "").strip()
    if not v:
        if required:
            raise InvalidInput(f"{name} is required", detail={"field": name})
        return None
    if len(v) > limit:
        raise InvalidInput(f"{name} has at most {limit} characters", detail={"field": name})
    if _CONTROL.search(v):
        raise InvalidInput(f"{name} contains control characters", detail={"field": name})
    return v


def validate_team(team: TeamIn) -> TeamIn:
    """The team with its text trimmed, or :class:`InvalidInput` naming the first broken rule.

    Rules: the party organisation's kind is ``group`` (党小组) or ``branch`` (所属党支部);
    names and titles are short and free of control characters; a member's role is one of
    :data:`MEMBER_ROLES` (the grid leader and information officer are grid posts, set with
    the staff posts); an office phone holds only digits, spaces, ``+``, ``-`` and
    brackets; at most one party group leader; party members need a named party
    organisation; at most :data:`MAX_MEMBERS` members.
    """
    kind = _text(team.party_org_kind, "party_org_kind", 8)
    if kind is not None and kind not in ("group", "branch"):
        raise InvalidInput(
            "party_org_kind must be 'group' (党小组) or 'branch' (所属党支部)",
            detail={"field": "party_org_kind"},
        )
    org = _text(team.party_org_name, "party_org_name", 80)
    if len(team.members) > MAX_MEMBERS:
        raise InvalidInput(f"a team has at most {MAX_MEMBERS} members", detail={"field": "members"})
    members = []
    for i, m in enumerate(team.members):
        if m.role in ("leader", "info_officer", "guide"):
            raise InvalidInput(
                f"members[{i}]: the {ROLE_LABELS[m.role]} is a grid post: set it with the "
                "staff posts (PUT /api/grids/{code}/staff)",
                detail={"field": f"members[{i}].role"},
            )
        if m.role not in MEMBER_ROLES:
            raise InvalidInput(
                f"members[{i}]: role must be one of {', '.join(MEMBER_ROLES)}",
                detail={"field": f"members[{i}].role"},
            )
        name = _text(m.name, f"members[{i}].name", 40, required=True)
        phone = _text(m.office_phone, f"members[{i}].office_phone", 30)
        if phone is not None and not _PHONE.fullmatch(phone):
            raise InvalidInput(
                f"members[{i}].office_phone may hold digits, spaces, + - and brackets only",
                detail={"field": f"members[{i}].office_phone"},
            )
        if m.staff_id is not None and not (1 <= m.staff_id <= 2**31 - 1):
            raise InvalidInput(
                f"members[{i}].staff_id is not an id", detail={"field": f"members[{i}].staff_id"}
            )
        members.append(
            MemberIn(
                role=m.role,
                name=str(name),
                title=_text(m.title, f"members[{i}].title", 60),
                office_phone=phone,
                staff_id=m.staff_id,
                public=bool(m.public),
            )
        )
    if sum(m.role == "party_leader" for m in members) > 1:
        raise InvalidInput("a party group has one leader (党小组长)", detail={"field": "members"})
    if org is None and any(m.role in PARTY_ROLES for m in members):
        raise InvalidInput(
            "name the party organisation (党小组 or 党支部) of the party members",
            detail={"field": "party_org_name"},
        )
    return TeamIn(
        party_org_kind=kind,
        party_org_name=org,
        archive_no=_text(team.archive_no, "archive_no", 40),
        archive_place=_text(team.archive_place, "archive_place", 120),
        members=members,
    )


_GRID_SQL = text(
    """
    SELECT g.id, g.code, COALESCE(g.name, g.code) AS name, g.village_code, v.name AS village
      FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
      LEFT JOIN admin_areas v ON v.code = g.village_code
     WHERE g.code = :code AND g.level = 3
     ORDER BY p.activated_at DESC NULLS LAST, g.id LIMIT 1
    """
)


def _grid(conn: Connection, code: str) -> Any:
    row = conn.execute(_GRID_SQL, {"code": check_grid_code(code)}).first()
    if row is None:
        raise NotFound(f"no grid {code} in an active plan", detail={"grid_code": code})
    return row


def _posts(conn: Connection, grid_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT s.id, s.name, s.phone, a.role, a.post FROM staff_assignments a "
            "JOIN staff s ON s.id = a.staff_id WHERE a.grid_id = :g "
            "ORDER BY CASE a.role WHEN 'leader' THEN 0 WHEN 'info_officer' THEN 1 ELSE 2 END, "
            "a.post, s.name"
        ),
        {"g": grid_id},
    ).all()
    return [
        {
            "staff_id": int(r.id),
            "name": r.name,
            "office_phone": r.phone,
            "role": r.role,
            "role_label": ROLE_LABELS.get(r.role, r.role),
            "post": r.post,
        }
        for r in rows
    ]


def completeness(conn: Connection, prefix: str) -> list[dict[str, Any]]:
    """The five parts of every basic grid of the active plans under ``prefix`` (``""``: all).

    Returns
    -------
    list of dict
        ``grid_code``, ``village_code``, ``households``, one boolean per key of
        :data:`PARTS` and ``parts`` (0–5), by grid code.
    """
    if not re.fullmatch(r"\d{0,15}", prefix or ""):
        raise InvalidInput("prefix must be up to 15 digits", detail={"field": "prefix"})
    rows = conn.execute(text("SELECT * FROM grid_team_parts(:p)"), {"p": prefix or ""}).all()
    return [
        {
            "grid_code": r.grid_code,
            "village_code": r.village_code,
            "households": int(r.households or 0),
            "leader": bool(r.has_leader),
            "party": bool(r.has_party),
            "info_officer": bool(r.has_info_officer),
            "service_team": bool(r.has_service_team),
            "archive": bool(r.has_archive),
            "parts": int(r.parts),
        }
        for r in rows
    ]


def _members(conn: Connection, code: str, *, public_only: bool) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            "SELECT id, role, name, title, office_phone, staff_id, public FROM grid_team_members "
            "WHERE grid_code = :c AND (public OR NOT :pub) ORDER BY sort, id"
        ),
        {"c": code, "pub": public_only},
    ).all()
    out = []
    for r in rows:
        m = {
            "role": r.role, "role_label": ROLE_LABELS[r.role], "name": r.name,
            "title": r.title, "office_phone": r.office_phone,
        }  # fmt: skip
        if not public_only:
            m.update(id=int(r.id), staff_id=r.staff_id, public=bool(r.public))
        out.append(m)
    return out


def get_team(conn: Connection, grid_code: str) -> dict[str, Any]:
    """A grid's whole team: posts, party organisation, members, archive and completeness.

    Raises
    ------
    InvalidInput
        When ``grid_code`` is not 15 digits.
    NotFound
        When no active plan has that grid.
    """
    g = _grid(conn, grid_code)
    t = conn.execute(
        text(
            "SELECT party_org_kind, party_org_name, archive_no, archive_place, updated_by, "
            "updated_at, version FROM grid_teams WHERE grid_code = :c"
        ),
        {"c": g.code},
    ).first()
    parts = completeness(conn, g.code)
    return {
        "grid_code": g.code,
        "grid_name": g.name,
        "village_code": g.village_code,
        "village": g.village,
        "posts": _posts(conn, int(g.id)),
        "party_org": {
            "kind": t.party_org_kind if t else None,
            "name": t.party_org_name if t else None,
        },
        "members": _members(conn, g.code, public_only=False),
        "archive": {"no": t.archive_no if t else None, "place": t.archive_place if t else None},
        "completeness": parts[0] if parts else None,
        "parts": PARTS,
        "version": int(t.version) if t else 0,
        "updated_by": t.updated_by if t else None,
        "updated_at": t.updated_at.isoformat() if t and t.updated_at else None,
    }


def save_team(
    conn: Connection, grid_code: str, team: TeamIn, *, actor: str, version: int | None = None
) -> dict[str, Any]:
    """Replace a grid's team (party organisation, members, archive) in ``conn``'s transaction.

    Parameters
    ----------
    version
        The version the edit was based on (``get_team(...)["version"]``); ``None`` skips
        the check.

    Raises
    ------
    InvalidInput
        A rule of :func:`validate_team` broken.
    NotFound
        No such grid in an active plan, or an unknown ``staff_id``.
    Conflict
        Someone saved the team since ``version``.
    """
    g = _grid(conn, grid_code)
    team = validate_team(team)
    staff_ids = sorted({m.staff_id for m in team.members if m.staff_id is not None})
    if staff_ids:
        known = set(
            conn.execute(text("SELECT id FROM staff WHERE id = ANY(:ids)"), {"ids": staff_ids})
            .scalars()
            .all()
        )
        missing = [i for i in staff_ids if i not in known]
        if missing:
            raise NotFound(
                f"staff member {missing[0]} does not exist", detail={"staff_id": missing[0]}
            )
    current = conn.execute(
        text("SELECT version FROM grid_teams WHERE grid_code = :c FOR UPDATE"), {"c": g.code}
    ).scalar()
    if version is not None and int(current or 0) != version:
        raise Conflict(
            "the team was changed since you loaded it: reload and edit again",
            detail={"version": int(current or 0)},
        )
    params = {
        "c": g.code, "k": team.party_org_kind, "n": team.party_org_name,
        "a": team.archive_no, "ap": team.archive_place, "by": actor,
    }  # fmt: skip
    conn.execute(
        text(
            "INSERT INTO grid_teams (grid_code, party_org_kind, party_org_name, archive_no, "
            "archive_place, updated_by, version) VALUES (:c, :k, :n, :a, :ap, :by, 1) "
            "ON CONFLICT (grid_code) DO UPDATE SET party_org_kind = EXCLUDED.party_org_kind, "
            "party_org_name = EXCLUDED.party_org_name, archive_no = EXCLUDED.archive_no, "
            "archive_place = EXCLUDED.archive_place, updated_by = EXCLUDED.updated_by, "
            "updated_at = now(), version = grid_teams.version + 1"
        ),
        params,
    )
    conn.execute(text("DELETE FROM grid_team_members WHERE grid_code = :c"), {"c": g.code})
    if team.members:
        conn.execute(
            text(
                "INSERT INTO grid_team_members (grid_code, role, name, title, office_phone, "
                "staff_id, public, sort) VALUES (:c, :r, :n, :t, :p, :s, :pub, :o)"
            ),
            [
                {
                    "c": g.code,
                    "r": m.role,
                    "n": m.name,
                    "t": m.title,
                    "p": m.office_phone,
                    "s": m.staff_id,
                    "pub": m.public,
                    "o": i,
                }
                for i, m in enumerate(team.members)
            ],
        )
    return get_team(conn, g.code)


def public_team(conn: Connection, grid_code: str) -> dict[str, Any]:
    """What the public grid map shows of a grid's team: the party organisation's name, the
    public members (name, role, title, office phone) and which of the five parts exist."""
    g = _grid(conn, grid_code)
    t = conn.execute(
        text("SELECT party_org_kind, party_org_name FROM grid_teams WHERE grid_code = :c"),
        {"c": g.code},
    ).first()
    parts = completeness(conn, g.code)
    done = parts[0] if parts else {}
    return {
        "grid_code": g.code,
        "party_org": {
            "kind": t.party_org_kind if t else None,
            "name": t.party_org_name if t else None,
        },
        "members": _members(conn, g.code, public_only=True),
        "parts": {k: {"label": v, "present": bool(done.get(k))} for k, v in PARTS.items()},
    }
