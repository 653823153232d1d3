"""Placing a case (point in grid), routing it to a post, and who stands at a post.

Placement: the village whose polygon covers the point (the lowest code when the point
lies on a shared border, so the answer is unique and the same every time), else the
nearest village within :data:`SLACK_DEG` (GPS slack at the county edge); then the
level-3 grid of the town's active plan that covers it, again the lowest code on a border,
else the village's nearest grid (a gap between grid polygons).

Routing: the rows of ``case_routes`` map (area, category) to a post. The most specific
area wins (grid > village > town > everywhere), then the most specific category
(subclass > class > any). A row without ``post_code`` means the case's own grid,
village or town. With no row at all a case goes to its grid, or its village when it is
in no grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, text

from geogrid.access.policy import Principal, Role
from geogrid.errors import InvalidInput

__all__ = [
    "POST_KINDS",
    "Post",
    "Route",
    "get_routes",
    "place_point",
    "post_sql",
    "route",
    "set_routes",
    "town_of",
    "user_at_post",
    "validate_post",
]

POST_KINDS: Final = ("centre", "grid", "village", "department")
#: Degrees of slack around the villages for a point just outside them.
SLACK_DEG: Final = 0.002
#: Roles that stand at a post of each kind (departments: their members, any role).
POST_ROLES: Final[dict[str, frozenset[Role]]] = {
    "centre": frozenset({Role.town_leader}),
    "grid": frozenset({Role.grid_worker, Role.village_leader}),
    "village": frozenset({Role.village_leader}),
}


@dataclass(frozen=True)
class Post:
    """Where a case is sent: the centre of a town, a grid, a village or a department."""

    kind: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "code": self.code}


@dataclass(frozen=True)
class Route:
    """A row of the routing table."""

    id: int
    area_code: str
    category_code: str | None
    post_kind: str
    post_code: str | None


def town_of(code: str | None) -> str | None:
    """The 12-digit town code of a village or grid code.

    >>> town_of("420117105201003"), town_of("420117105201"), town_of(None)
    ('420117105000', '420117105000', None)
    """
    return f"{code[:9]}000" if code else None


_PLACE_SQL = f"""
WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g),
village AS (
    SELECT coalesce(
        (SELECT v.code FROM admin_areas v, pt WHERE v.level = 'village'
           AND ST_Covers(v.geom, pt.g) ORDER BY v.code LIMIT 1),
        (SELECT v.code FROM admin_areas v, pt WHERE v.level = 'village'
           AND ST_DWithin(v.geom, pt.g, {SLACK_DEG}) ORDER BY v.geom <-> pt.g, v.code LIMIT 1)
    ) AS code
)
SELECT village.code AS village_code, coalesce(
    (SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active', pt
      WHERE g.level = 3 AND g.village_code = village.code AND ST_Covers(g.geom, pt.g)
      ORDER BY g.code LIMIT 1),
    (SELECT g.code FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active', pt
      WHERE g.level = 3 AND g.village_code = village.code
      ORDER BY g.geom <-> pt.g, g.code LIMIT 1)
) AS grid_code
FROM village
"""


def place_point(conn: Connection, lon: float, lat: float) -> tuple[str | None, str | None]:
    """(village code, grid code of the active plan) of a WGS84 point; ``(None, None)``
    outside every village."""
    row = conn.execute(text(_PLACE_SQL), {"lon": lon, "lat": lat}).one()
    return row.village_code, row.grid_code


_ROUTE_SQL = """
SELECT r.post_kind, r.post_code FROM case_routes r
WHERE :key LIKE (CASE WHEN r.area_code ~ '^[0-9]{9}000$' THEN left(r.area_code, 9)
                      ELSE r.area_code END) || '%'
  AND (r.category_code IS NULL OR :cat LIKE r.category_code || '%')
ORDER BY length(CASE WHEN r.area_code ~ '^[0-9]{9}000$' THEN left(r.area_code, 9)
                     ELSE r.area_code END) DESC,
         length(coalesce(r.category_code, '')) DESC
LIMIT 1
"""


def route(
    conn: Connection, *, category_code: str, village_code: str, grid_code: str | None
) -> Post:
    """The post a new case of ``category_code`` placed in (village, grid) is sent to."""
    key = grid_code or village_code
    row = conn.execute(text(_ROUTE_SQL), {"key": key, "cat": category_code}).first()
    kind, code = (row.post_kind, row.post_code) if row else ("grid", None)
    if code:
        return Post(kind, code)
    if kind == "grid":
        return Post("grid", grid_code) if grid_code else Post("village", village_code)
    if kind == "village":
        return Post("village", village_code)
    if kind == "centre":
        return Post("centre", town_of(village_code) or "")
    raise InvalidInput(f"a department route needs a department code (area {key})")


def validate_post(conn: Connection, post: Any, town_code: str) -> Post:
    """A post named by a client (``{"kind", "code"}``), checked to exist in the case's town."""
    if not isinstance(post, dict) or set(post) - {"kind", "code", "name"}:
        raise InvalidInput("post must be {kind, code}")
    kind, code = post.get("kind"), post.get("code")
    if kind not in POST_KINDS or not isinstance(code, str) or not code:
        raise InvalidInput(f"post kind must be one of {', '.join(POST_KINDS)}, with a code")
    if kind == "centre":
        ok = code == town_code
    elif kind == "grid":
        ok = (
            bool(re.fullmatch(r"\d{15}", code))
            and code[:9] == town_code[:9]
            and bool(
                conn.execute(
                    text(
                        "SELECT 1 FROM grids g JOIN plans p ON p.id = g.plan_id "
                        "AND p.status = 'active' WHERE g.level = 3 AND g.code = :c"
                    ),
                    {"c": code},
                ).first()
            )
        )
    elif kind == "village":
        ok = bool(
            conn.execute(
                text(
                    "SELECT 1 FROM admin_areas WHERE level = 'village' AND code = :c "
                    "AND parent_code = :t"
                ),
                {"c": code, "t": town_code},
            ).first()
        )
    else:
        ok = bool(
            conn.execute(
                text("SELECT 1 FROM case_departments WHERE code = :c AND town_code = :t"),
                {"c": code, "t": town_code},
            ).first()
        )
    if not ok:
        raise InvalidInput(f"no {kind} {code} in town {town_code} to send the case to")
    return Post(kind, code)


def _departments(conn: Connection, user_id: int) -> set[str]:
    """The departments ``user_id`` belongs to, read once per transaction (``conn.info``
    outlives the transaction: the pooled connection keeps it across requests)."""
    key = "geogrid.case_departments"
    kept: tuple[Any, dict[int, set[str]]] | None = conn.info.get(key)
    tx = conn.get_transaction()
    if kept is not None and tx is not None and kept[0] is tx and user_id in kept[1]:
        return set(kept[1][user_id])
    found = set(
        conn.execute(
            text("SELECT department_code FROM case_department_members WHERE user_id = :u"),
            {"u": user_id},
        ).scalars()
    )
    tx = conn.get_transaction()  # the query began one if none was open
    if kept is None or kept[0] is not tx:
        kept = conn.info[key] = (tx, {})
    kept[1][user_id] = found
    return set(found)


def user_at_post(
    conn: Connection, principal: Principal, kind: str | None, code: str | None
) -> bool:
    """Does ``principal`` stand at the post (kind, code)?"""
    if not kind or not code:
        return False
    if kind == "department":
        return code in _departments(conn, principal.user_id)
    return principal.role in POST_ROLES.get(kind, frozenset()) and principal.scope.covers(code)


def post_sql(
    conn: Connection, principal: Principal, alias: str = "c"
) -> tuple[str, dict[str, Any]]:
    """SQL true for cases whose current post ``principal`` stands at (for inboxes)."""
    parts: list[str] = []
    params: dict[str, Any] = {"post_prefix": principal.scope.prefix}
    for kind, roles in POST_ROLES.items():
        if principal.role in roles:
            parts.append(
                f"({alias}.assignee_kind = '{kind}' AND "
                f"{alias}.assignee_code LIKE :post_prefix || '%')"
            )
    departments = sorted(_departments(conn, principal.user_id))
    if departments:
        parts.append(
            f"({alias}.assignee_kind = 'department' AND "
            f"{alias}.assignee_code = ANY(:post_departments))"
        )
        params["post_departments"] = departments
    return ("(" + " OR ".join(parts) + ")" if parts else "false"), params


# --------------------------------------------------------------------------- the table


def get_routes(conn: Connection, *, area_prefix: str = "") -> list[Route]:
    """Rows of the routing table whose area lies within ``area_prefix``."""
    rows = conn.execute(
        text(
            "SELECT id, area_code, category_code, post_kind, post_code FROM case_routes "
            "WHERE area_code LIKE :p || '%' ORDER BY area_code, category_code NULLS FIRST"
        ),
        {"p": area_prefix},
    ).all()
    return [Route(**r._mapping) for r in rows]


def set_routes(conn: Connection, *, area_code: str, rows: list[dict[str, Any]]) -> list[Route]:
    """Replace the rows of one area (town, village or grid code, ``""`` for everywhere).

    Each row: ``category_code`` (``None``: any), ``post_kind``, ``post_code`` (``None``: the
    case's own grid/village/town; required for departments).
    """
    if not re.fullmatch(r"(\d{12}|\d{15})?", area_code):
        raise InvalidInput(
            "area_code must be a town or village code (12 digits), a grid code "
            "(15 digits) or empty (everywhere)"
        )
    seen: set[str | None] = set()
    clean = []
    for i, r in enumerate(rows):
        cat, kind, code = r.get("category_code"), r.get("post_kind"), r.get("post_code")
        if kind not in POST_KINDS:
            raise InvalidInput(f"row {i + 1}: post_kind must be one of {', '.join(POST_KINDS)}")
        if kind == "department" and not code:
            raise InvalidInput(f"row {i + 1}: a department route needs post_code")
        if (
            cat is not None
            and not conn.execute(
                text("SELECT 1 FROM case_categories WHERE code = :c"), {"c": cat}
            ).first()
        ):
            raise InvalidInput(f"row {i + 1}: no category {cat!r} in the dictionary")
        if cat in seen:
            raise InvalidInput(f"row {i + 1}: category {cat or 'any'} appears twice")
        seen.add(cat)
        if code and area_code:
            validate_post(conn, {"kind": kind, "code": code}, town_of(area_code) or "")
        clean.append({"a": area_code, "c": cat, "k": kind, "p": code})
    conn.execute(text("DELETE FROM case_routes WHERE area_code = :a"), {"a": area_code})
    if clean:
        conn.execute(
            text(
                "INSERT INTO case_routes (area_code, category_code, post_kind, post_code) "
                "VALUES (:a, :c, :k, :p)"
            ),
            clean,
        )
    return [r for r in get_routes(conn, area_prefix=area_code) if r.area_code == area_code]


def require_place(village_code: str | None) -> str:
    if village_code is None:
        raise InvalidInput(
            "the point is in no village of this system: outside the served area (不在服务范围内)"
        )
    return village_code
