"""What an archive holds: a household's file, a villager group's book, a grid's box.

An archive *unit* is named by a kind and a code:

``household``
    the household's database id (一户一档);
``group``
    the village code and the group number, ``420117105201-3`` (一组一本);
``grid``
    a 15-digit basic grid code of an active plan (一格一盒).

:func:`collect` reads everything of one unit in a few SQL statements, each filtered by the
caller's scope prefix (``coalesce(grid_code, village_code)`` of the household or case
starts with it; row-level security repeats it for the web role): the households with their
register data, the members (masked: name, ID number and phone as
:mod:`geogrid.people.mask` stores them; with a key provider, unmasked: the full values,
decrypted here), the visits (民情日志, people met masked unless unmasked), the cases (a
household's: those within :data:`NEAR_METRES` of its location, since cases carry no
household), the grid's team (一格一盒) and the outlines for the map.

The caller audits the read (:mod:`geogrid.archives.bundle` does). This module imports no
FastAPI.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.people.crypto import KeyProvider, unseal
from geogrid.people.mask import mask_name

__all__ = ["KINDS", "NEAR_METRES", "Records", "Unit", "collect", "parse_unit", "resolve"]

Kind = Literal["household", "group", "grid"]
KINDS: tuple[Kind, ...] = ("household", "group", "grid")
#: A household's cases: reported within this distance of its location.
NEAR_METRES = 30
TITLES = {"household": "一户一档", "group": "一组一本", "grid": "一格一盒"}
STATUS_LABELS = {
    "reported": "已上报", "accepted": "已受理", "rejected": "不予受理", "verified": "已核实",
    "registered": "已立案", "voided": "不予立案", "dispatched": "已派遣", "in_progress": "处置中",
    "suspended": "挂账", "handled": "已处置", "checked": "已核查", "evaluated": "已评价",
    "closed": "已结案", "archived": "已归档", "merged": "已合并",
}  # fmt: skip
_PATTERNS = {
    "household": re.compile(r"^[1-9]\d{0,17}$"),
    "group": re.compile(r"^\d{12}-\d{1,3}$"),
    "grid": re.compile(r"^\d{15}$"),
}


@dataclass(frozen=True)
class Unit:
    """One household, villager group or grid, resolved."""

    kind: Kind
    code: str
    name: str
    village_code: str
    village: str | None
    town: str | None
    #: the code the policy checks the user's scope against (the grid, else the village)
    scope_code: str
    key: int  # household id, group id or grid id

    @property
    def title(self) -> str:
        """一户一档, 一组一本 or 一格一盒."""
        return TITLES[self.kind]

    @property
    def slug(self) -> str:
        """A file-name-safe name of the unit: ``grid-420117105201001``."""
        return f"{self.kind}-{self.code}"


@dataclass
class Records:
    """Everything one archive unit holds (personal fields masked unless ``unmasked``)."""

    unit: Unit
    unmasked: bool
    households: list[dict[str, Any]] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    visits: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    team: dict[str, Any] | None = None
    outline: dict[str, Any] | None = None  # GeoJSON geometry of the grid or group
    grid_outlines: list[dict[str, Any]] = field(default_factory=list)  # code, name, geometry


def parse_unit(kind: str, code: str) -> tuple[Kind, str]:
    """``(kind, code)`` checked, else :class:`InvalidInput`.

    >>> parse_unit("group", "420117105201-3")
    ('group', '420117105201-3')
    """
    if kind not in KINDS:
        raise InvalidInput(
            f"kind must be one of {', '.join(KINDS)}, not {str(kind)[:20]!r}",
            detail={"field": "kind"},
        )
    c = str(code).strip()
    if not _PATTERNS[kind].fullmatch(c):
        expected = {
            "household": "a household id (digits)",
            "group": "village code and group number, e.g. 420117105201-3",
            "grid": "a 15-digit grid code",
        }[kind]
        raise InvalidInput(f"a {kind} code is {expected}, not {c[:30]!r}", detail={"field": "code"})
    return kind, c


_RESOLVE = {
    "household": """
        SELECT h.id AS key, h.id::text AS code,
               coalesce(h.register_no, h.id::text) AS name, h.village_code,
               coalesce(h.grid_code, h.village_code) AS scope_code
          FROM households h WHERE h.id = CAST(:code AS bigint)
    """,
    "group": """
        SELECT vg.id AS key, :code AS code,
               coalesce(vg.name, vg.group_no || '组') AS name, vg.village_code,
               vg.village_code AS scope_code
          FROM villager_groups vg
         WHERE vg.village_code = split_part(:code, '-', 1)
           AND vg.group_no = CAST(split_part(:code, '-', 2) AS int)
    """,
    "grid": """
        SELECT g.id AS key, g.code, coalesce(g.name, g.code) AS name, g.village_code,
               g.code AS scope_code
          FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
         WHERE g.code = :code AND g.level = 3
         ORDER BY p.activated_at DESC NULLS LAST LIMIT 1
    """,
}


def resolve(conn: Connection, kind: str, code: str) -> Unit:
    """The unit ``kind``/``code`` with its names. :class:`NotFound` when it does not exist."""
    k, c = parse_unit(kind, code)
    row = conn.execute(text(_RESOLVE[k]), {"code": c}).first()
    if row is None:
        raise NotFound(f"no {k} {c}", detail={"kind": k, "code": c})
    names = conn.execute(
        text(
            "SELECT v.name, t.name FROM admin_areas v "
            "LEFT JOIN admin_areas t ON t.code = v.parent_code WHERE v.code = :v"
        ),
        {"v": row.village_code},
    ).first()
    return Unit(
        kind=k, code=str(row.code), name=str(row.name), village_code=str(row.village_code),
        village=names[0] if names else None, town=names[1] if names else None,
        scope_code=str(row.scope_code), key=int(row.key),
    )  # fmt: skip


#: The unit's households, by kind; every statement also keeps the scope.
_WHERE = {
    "household": "h.id = :key",
    "group": "h.group_id = :key",
    "grid": "h.grid_code = :code",
}
_SCOPE = "h.scope_key LIKE :prefix || '%'"

_HOUSEHOLDS = """
    SELECT h.id, h.register_no, h.house_no, h.natural_village, h.members,
           h.village_code, h.grid_code, vg.group_no, h.geocode_precision,
           ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat
      FROM households h LEFT JOIN villager_groups vg ON vg.id = h.group_id
     WHERE {where} AND {scope}
     ORDER BY vg.group_no NULLS LAST, h.register_no, h.id
"""

_MEMBERS = """
    SELECT m.id, m.household_id, h.register_no, m.name, m.sex, m.birth_date, m.id_masked,
           m.relation, m.phone_masked, m.residence, m.id_enc, m.id_key, m.phone_enc,
           m.phone_key
      FROM household_members m JOIN households h ON h.id = m.household_id
     WHERE m.household_id = ANY(:hids) AND {scope}
     ORDER BY h.register_no, (m.relation = '户主') DESC NULLS LAST, m.id
"""

_VISITS = """
    SELECT v.id, v.household_id, h.register_no, v.visited_on, v.worker_name, v.people_met,
           v.notes, v.tags, v.follow_up, v.follow_up_due
      FROM visits v JOIN households h ON h.id = v.household_id
     WHERE v.household_id = ANY(:hids) AND {scope}
     ORDER BY v.visited_on DESC, v.id DESC
"""

_CASES_NEAR = {
    "household": """
        EXISTS (SELECT 1 FROM households h WHERE h.id = :key AND h.geom IS NOT NULL
                   AND ST_DWithin(c.geom::geography, h.geom::geography, :near))""",
    "group": """
        c.village_code = :village AND EXISTS (
            SELECT 1 FROM villager_groups vg WHERE vg.id = :key AND ST_Covers(vg.geom, c.geom))""",
    "grid": "coalesce(c.current_grid_code, c.grid_code) = :code",
}
_CASES = """
    SELECT c.id, c.case_no, c.category, coalesce(cc.name, c.category) AS category_name,
           c.status, c.reported_at, c.due_at, c.closed_at, c.description,
           coalesce(c.current_grid_code, c.grid_code) AS grid_code, c.village_code,
           ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
      FROM cases c LEFT JOIN case_categories cc ON cc.code = c.category
     WHERE {near} AND coalesce(c.grid_code, c.village_code) LIKE :prefix || '%'
     ORDER BY c.reported_at DESC, c.id DESC
"""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _members(rows: list[Any], provider: KeyProvider | None) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if provider is None:
            name, number, phone = mask_name(r.name), r.id_masked, r.phone_masked
            birth = str(r.birth_date.year) if r.birth_date else None
        else:
            table, mid = "household_members", int(r.id)
            name = r.name
            number = unseal(provider, table, mid, "id_number", r.id_key, r.id_enc)
            phone = (
                unseal(provider, table, mid, "phone", r.phone_key, r.phone_enc)
                if r.phone_enc is not None
                else None
            )
            birth = _iso(r.birth_date)
        out.append(
            {
                "id": int(r.id),
                "household_id": int(r.household_id),
                "register_no": r.register_no,
                "name": name,
                "sex": r.sex,
                "birth": birth,
                "id_number": number,
                "relation": r.relation,
                "phone": phone,
                "residence": r.residence,
            }
        )
    return out


def collect(
    conn: Connection, unit: Unit, *, prefix: str, provider: KeyProvider | None = None
) -> Records:
    """Read one unit's records within the scope ``prefix`` (``""``: everything).

    Parameters
    ----------
    unit
        From :func:`resolve`.
    prefix
        The caller's scope prefix, bound into every statement.
    provider
        The data keys: given, members are decrypted (full personal data); the caller has
        checked the unmask permission and audits the read with its reason.
    """
    params: dict[str, Any] = {
        "key": unit.key, "code": unit.code, "prefix": prefix, "village": unit.village_code,
        "near": NEAR_METRES,
    }  # fmt: skip
    where = _WHERE[unit.kind]
    rec = Records(unit=unit, unmasked=provider is not None)
    hh = conn.execute(text(_HOUSEHOLDS.format(where=where, scope=_SCOPE)), params).all()
    rec.households = [
        {
            "id": int(r.id),
            "register_no": r.register_no,
            "house_no": r.house_no,
            "natural_village": r.natural_village,
            "members": int(r.members or 0),
            "village_code": r.village_code,
            "grid_code": r.grid_code,
            "group_no": r.group_no,
            "precision": r.geocode_precision,
            "lon": float(r.lon) if r.lon is not None else None,
            "lat": float(r.lat) if r.lat is not None else None,
        }
        for r in hh
    ]
    if unit.kind == "household" and not rec.households:
        raise NotFound(f"no household {unit.code} in your scope", detail={"code": unit.code})
    params["hids"] = [h["id"] for h in rec.households]
    rows = conn.execute(text(_MEMBERS.format(scope=_SCOPE)), params).all()
    rec.members = _members(list(rows), provider)
    heads = {m["household_id"]: m["name"] for m in reversed(rec.members)}
    for h in rec.households:
        h["head"] = heads.get(h["id"])
    rec.visits = [
        {
            "id": int(r.id),
            "register_no": r.register_no,
            "visited_on": _iso(r.visited_on),
            "worker": r.worker_name,
            "people_met": [p if provider else mask_name(p) for p in (r.people_met or [])],
            "notes": r.notes,
            "tags": list(r.tags or []),
            "follow_up": bool(r.follow_up),
            "follow_up_due": _iso(r.follow_up_due),
        }
        for r in conn.execute(text(_VISITS.format(scope=_SCOPE)), params).all()
    ]
    rec.cases = [
        {
            "id": int(r.id),
            "case_no": r.case_no,
            "category": r.category_name,
            "status": r.status,
            "status_label": STATUS_LABELS.get(r.status, r.status),
            "reported_at": _iso(r.reported_at),
            "due_at": _iso(r.due_at),
            "closed_at": _iso(r.closed_at),
            "description": r.description,
            "grid_code": r.grid_code,
            "village_code": r.village_code,
            "lon": float(r.lon) if r.lon is not None else None,
            "lat": float(r.lat) if r.lat is not None else None,
        }
        for r in conn.execute(text(_CASES.format(near=_CASES_NEAR[unit.kind])), params).all()
    ]
    _outlines(conn, rec)
    if unit.kind == "grid":
        from geogrid.archives.teams import get_team

        rec.team = get_team(conn, unit.code)
    return rec


def _outlines(conn: Connection, rec: Records) -> None:
    """The unit's outline (grid or group; a household's grid) and its village's grids."""
    u = rec.unit
    if u.kind == "group":
        geom = conn.execute(
            text("SELECT ST_AsGeoJSON(geom, 7) FROM villager_groups WHERE id = :k"), {"k": u.key}
        ).scalar()
    else:
        code = u.code if u.kind == "grid" else (rec.households[0]["grid_code"] or "")
        geom = conn.execute(
            text(
                "SELECT ST_AsGeoJSON(g.geom, 7) FROM grids g JOIN plans p ON p.id = g.plan_id "
                "AND p.status = 'active' WHERE g.code = :c AND g.level = 3 LIMIT 1"
            ),
            {"c": code},
        ).scalar()
    rec.outline = json.loads(geom) if geom else None
    rec.grid_outlines = [
        {"code": r.code, "name": r.name, "geometry": json.loads(r.g)}
        for r in conn.execute(
            text(
                "SELECT g.code, coalesce(g.name, g.code) AS name, ST_AsGeoJSON(g.geom, 7) AS g "
                "FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
                "WHERE g.level = 3 AND g.village_code = :v AND g.geom IS NOT NULL ORDER BY g.code"
            ),
            {"v": u.village_code},
        ).all()
    ]
