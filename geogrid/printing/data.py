"""What printed matter shows, read from the store: the place, its plan, grids, groups, staff.

Only public facts are read here (grid and group outlines, household *counts*, staff duty
contacts); the one household read, :func:`card_households`, selects a house number and the
villager group, never a name or phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.plans import StaffPost, grid_staff

__all__ = [
    "Area",
    "CardHousehold",
    "MapFeature",
    "PrintPlace",
    "card_households",
    "parse_code",
    "print_place",
]

PlaceKind = Literal["grid", "village", "town"]
_CODE = re.compile(r"[0-9]{12}(?:[0-9]{3})?")


def parse_code(code: str) -> PlaceKind:
    """What a code names: a 15-digit basic grid, a 12-digit village or a town (…000).

    >>> parse_code("420117105201003"), parse_code("420117105201"), parse_code("420117105000")
    ('grid', 'village', 'town')
    >>> parse_code("4201")
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: code must have 15 digits (grid) or 12 (village, town), not '4201'
    """
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise InvalidInput(
            f"code must have 15 digits (grid) or 12 (village, town), not {str(code)[:40]!r}",
            detail={"value": str(code)[:40]},
        )
    if len(code) == 15:
        return "grid"
    return "town" if code.endswith("000") else "village"


@dataclass(frozen=True)
class MapFeature:
    """One outline on a printed map, in EPSG:4326."""

    code: str
    name: str
    geom: BaseGeometry
    village_code: str | None = None
    households: int = 0
    population: int = 0


@dataclass(frozen=True)
class Area:
    """A row of a poster's table: a grid (village posters) or a village (town posters)."""

    code: str
    name: str
    households: int
    population: int
    grids: int = 1
    leader: str | None = None
    phone: str | None = None


@dataclass
class PrintPlace:
    """Everything a poster draws and lists for one grid, village or town of a plan."""

    code: str
    kind: PlaceKind
    name: str
    town_name: str
    village_name: str | None
    plan_id: int
    plan_name: str
    households: int
    population: int
    groups: list[str]
    focus: list[MapFeature]
    grids: list[MapFeature]
    villages: list[MapFeature]
    group_outlines: list[MapFeature]
    staff: list[StaffPost]
    areas: list[Area] = field(default_factory=list)


def _geom(wkb: Any) -> BaseGeometry:
    return shapely.from_wkb(bytes(wkb))


def _plan(conn: Connection, town_code: str, plan_id: int | None) -> tuple[int, str]:
    if plan_id is not None:
        row = conn.execute(
            text("SELECT id, name, town_code FROM plans WHERE id = :p"), {"p": plan_id}
        ).first()
        if row is None:
            raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
        if row.town_code != town_code:
            raise NotFound(
                f"plan {plan_id} is a plan of town {row.town_code}, not of {town_code}.",
                detail={"plan_id": plan_id},
            )
        return int(row.id), str(row.name)
    row = conn.execute(
        text("SELECT id, name FROM plans WHERE town_code = :t AND status = 'active'"),
        {"t": town_code},
    ).first()
    if row is None:
        raise NotFound(
            f"town {town_code} has no active plan; activate one or name a plan.",
            detail={"town_code": town_code},
        )
    return int(row.id), str(row.name)


_GRIDS = """
SELECT g.code, coalesce(g.name, g.code) AS name, g.village_code, g.households, g.population,
       ST_AsBinary(g.geom) AS wkb
  FROM grids g
 WHERE g.plan_id = :p AND g.level = 3 AND g.geom IS NOT NULL
   AND g.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)
 ORDER BY g.code
"""

_FOCUS = """
SELECT g.code, coalesce(g.name, g.code) AS name, g.village_code, g.households, g.population,
       ST_AsBinary(g.geom) AS wkb
  FROM grids g
 WHERE g.plan_id = :p AND g.level = 3 AND g.geom IS NOT NULL AND g.code LIKE :prefix || '%'
 ORDER BY g.code
"""

_VILLAGES = """
SELECT v.code, v.name, ST_AsBinary(v.geom) AS wkb
  FROM admin_areas v
 WHERE v.level = 'village' AND v.geom IS NOT NULL
   AND v.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)
 ORDER BY v.code
"""

_GROUPS = """
SELECT vg.village_code, vg.group_no, vg.name, ST_AsBinary(vg.geom) AS wkb
  FROM villager_groups vg
 WHERE vg.geom IS NOT NULL AND vg.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)
 ORDER BY vg.village_code, vg.group_no
"""

_GRID_GROUPS = """
SELECT DISTINCT vg.group_no, vg.name
  FROM grid_groups gg JOIN villager_groups vg ON vg.id = gg.group_id
  JOIN grids g ON g.id = gg.grid_id
 WHERE g.plan_id = :p AND g.code = :c
 ORDER BY vg.group_no
"""

_LEADERS = """
SELECT DISTINCT ON (g.code) g.code, s.name, s.phone
  FROM grids g JOIN staff_assignments a ON a.grid_id = g.id AND a.role = 'leader'
  JOIN staff s ON s.id = a.staff_id
 WHERE g.plan_id = :p AND g.level = 3 AND g.code LIKE :prefix || '%'
 ORDER BY g.code, a.post
"""


def group_label(group_no: int, name: str | None, lang: str) -> str:
    """A villager group's label: its name in Chinese, ``Group N`` in English.

    >>> group_label(3, "三组", "zh"), group_label(3, None, "zh"), group_label(3, "三组", "en")
    ('三组', '3组', 'Group 3')
    """
    if lang == "en":
        return f"Group {group_no}"
    return name or f"{group_no}组"


def _name(conn: Connection, code: str) -> str | None:
    return conn.execute(text("SELECT name FROM admin_areas WHERE code = :c"), {"c": code}).scalar()


def print_place(
    conn: Connection, code: str, *, plan_id: int | None = None, lang: str = "zh"
) -> PrintPlace:
    """Read what a poster of ``code`` (grid, village or town) shows in a plan.

    Parameters
    ----------
    conn
        A connection (the web role's scoped one or the owner's).
    code
        15-digit grid, 12-digit village or town code.
    plan_id
        The plan; default: the town's active plan.
    lang
        Language of the group labels.

    Raises
    ------
    InvalidInput
        A malformed code.
    NotFound
        An unknown plan, or a code with no grid in the plan.
    """
    kind = parse_code(code)
    town_code = code[:9] + "000"
    pid, plan_name = _plan(conn, town_code, plan_id)
    prefix = code[:9] if kind == "town" else code
    focus = [
        MapFeature(r.code, r.name, _geom(r.wkb), r.village_code, int(r.households),
                   int(r.population))
        for r in conn.execute(text(_FOCUS), {"p": pid, "prefix": prefix})
    ]  # fmt: skip
    if not focus:
        raise NotFound(
            f"{code} has no grid in plan {pid} ({plan_name}).",
            detail={"place": code, "plan_id": pid},
        )
    village_code = code[:12] if kind != "town" else None
    if kind == "grid":
        # the grid on its village, with the neighbouring grids around it
        outline = conn.execute(
            text("SELECT ST_AsBinary(geom) FROM admin_areas WHERE code = :c"), {"c": village_code}
        ).scalar()
        view = shapely.union_all(
            [f.geom for f in focus] + ([_geom(outline)] if outline is not None else [])
        )
    else:
        view = shapely.union_all([f.geom for f in focus])
    x0, y0, x1, y1 = view.bounds
    pad = 0.04 * max(x1 - x0, y1 - y0, 1e-4)
    box = {"x0": x0 - pad, "y0": y0 - pad, "x1": x1 + pad, "y1": y1 + pad}
    grids = [
        MapFeature(r.code, r.name, _geom(r.wkb), r.village_code, int(r.households),
                   int(r.population))
        for r in conn.execute(text(_GRIDS), {"p": pid, **box})
    ]  # fmt: skip
    villages = [
        MapFeature(r.code, r.name, _geom(r.wkb), r.code) for r in conn.execute(text(_VILLAGES), box)
    ]
    group_outlines = (
        []
        if kind == "town"
        else [
            MapFeature(f"{r.village_code}/{r.group_no}", group_label(r.group_no, r.name, lang),
                       _geom(r.wkb), r.village_code)
            for r in conn.execute(text(_GROUPS), box)
        ]
    )  # fmt: skip
    groups = (
        [
            group_label(r.group_no, r.name, lang)
            for r in conn.execute(text(_GRID_GROUPS), {"p": pid, "c": code})
        ]
        if kind == "grid"
        else []
    )
    try:
        staff = grid_staff(conn, grid_code=code, plan_id=pid)
    except NotFound:  # plans drawn without village/town rows have no posts above grids
        staff = []
    leaders = {
        r.code: (r.name, r.phone)
        for r in conn.execute(text(_LEADERS), {"p": pid, "prefix": prefix})
    }
    areas: list[Area] = []
    if kind == "village":
        areas = [
            Area(f.code, f.name, f.households, f.population, 1, *leaders.get(f.code, (None, None)))
            for f in focus
        ]
    elif kind == "town":
        by_village: dict[str, list[MapFeature]] = {}
        for f in focus:
            by_village.setdefault(f.village_code or "", []).append(f)
        vnames = {v.code: v.name for v in villages}
        areas = [
            Area(vc, vnames.get(vc) or _name(conn, vc) or vc, sum(f.households for f in fs),
                 sum(f.population for f in fs), len(fs))
            for vc, fs in sorted(by_village.items())
        ]  # fmt: skip
    town_name = _name(conn, town_code) or town_code
    village_name = _name(conn, village_code) if village_code else None
    name = focus[0].name if kind == "grid" else (village_name or town_name)
    if kind == "town":
        name = town_name
    return PrintPlace(
        code=code,
        kind=kind,
        name=name,
        town_name=town_name,
        village_name=village_name,
        plan_id=pid,
        plan_name=plan_name,
        households=sum(f.households for f in focus),
        population=sum(f.population for f in focus),
        groups=groups,
        focus=focus,
        grids=grids,
        villages=villages,
        group_outlines=group_outlines,
        staff=staff,
        areas=areas,
    )


# --------------------------------------------------------------------------- cards


@dataclass(frozen=True)
class CardHousehold:
    """What a contact card says about its household: the group and the house number."""

    group: str | None
    natural_village: str | None
    house_number: str | None


def card_households(
    conn: Connection, grid_code: str, *, scope_prefix: str = "", lang: str = "zh"
) -> list[CardHousehold]:
    """The households of a basic grid of the active plan, for contact cards.

    Only the villager group, natural village and house number (``households.house_no``,
    generated from the address and readable by the web role; migration 0013) are read.

    Parameters
    ----------
    grid_code
        15-digit code of a basic grid.
    scope_prefix
        The reader's scope prefix (``""``: everywhere), bound into the query.
    """
    rows = conn.execute(
        text(
            "SELECT vg.group_no, vg.name, h.natural_village, h.house_no AS house "
            "FROM households h LEFT JOIN villager_groups vg ON vg.id = h.group_id "
            "WHERE h.grid_code = :g AND h.scope_key LIKE :scope_prefix || '%' "
            "ORDER BY vg.group_no NULLS LAST, h.id"
        ),
        {"g": grid_code, "scope_prefix": scope_prefix},
    ).all()
    return [
        CardHousehold(
            group_label(r.group_no, r.name, lang) if r.group_no is not None else None,
            r.natural_village,
            r.house or None,
        )
        for r in rows
    ]
