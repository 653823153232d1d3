"""Public grid look-ups for residents: which grid serves this address, or this place?

Everything here is public by design: a grid's code, name and village, its household
*count*, and the staff posted there with their public contact (name, duty phone, photo,
duties, role, post). Nothing is read from the register's personal columns (the web role
cannot read them anyway): an address is resolved through the administrative names
(village, villager group) and, for a house number, the address-point gazetteer
(``address_points``: buildings, not people).

How an address is resolved (:func:`find_by_address`)
----------------------------------------------------
1. :func:`geogrid.ingest.address.parse_address` splits it into town, village, group and
   house number.
2. The village is matched by name (``王家湾村``, ``王家湾``), within the town when one is
   given.
3. With a house number that the gazetteer knows, the grid containing that point answers
   (``match = "house"``).
4. Else the group's grid in the active plan (``"group"``; a group split between grids gives
   each of them).
5. Else the village's grids (``"village"``; one grid when the village has only one).

This module imports no FastAPI.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.ingest.address import normalise_address, parse_address

__all__ = ["GRID_CODE", "find_by_address", "find_by_point", "grid_cards"]

#: A basic grid's code: 12-digit village code + 3-digit number.
GRID_CODE = re.compile(r"^\d{15}$")
MAX_ADDRESS = 100

#: Public fields of grids of active plans with their staff, for a list of grid ids.
_CARDS_SQL = """
SELECT g.id, g.code, COALESCE(g.name, g.code) AS name, g.village_code, g.households,
       v.name AS village, t.name AS town,
       COALESCE(
         (SELECT json_agg(json_build_object(
                    'id', s.id, 'name', s.name, 'phone', s.phone, 'duties', s.duties,
                    'role', a.role, 'post', a.post)
                  ORDER BY CASE a.role WHEN 'leader' THEN 0 WHEN 'guide' THEN 1 ELSE 2 END,
                           a.post, s.name)
            FROM staff_assignments a JOIN staff s ON s.id = a.staff_id
           WHERE a.grid_id = g.id), '[]'::json) AS staff
  FROM grids g
  JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
  LEFT JOIN admin_areas v ON v.code = g.village_code
  LEFT JOIN admin_areas t ON t.code = v.parent_code
 WHERE g.id = ANY(:ids) AND g.level = 3
 ORDER BY g.code
"""


def grid_cards(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    """The public card of each grid in ``ids`` (grids of active plans only), by code."""
    if not ids:
        return []
    cards = []
    for row in conn.execute(text(_CARDS_SQL), {"ids": ids}):
        staff = [
            {**s, "photo_url": f"/public/photos/{s['id']}", "tel": _tel(s.get("phone"))}
            for s in (row.staff or [])
        ]
        cards.append(
            {
                "code": row.code,
                "name": row.name,
                "village": row.village,
                "village_code": row.village_code,
                "town": row.town,
                "households": int(row.households),
                "staff": staff,
                "url": f"/public/grid/{row.code}",
            }
        )
    return cards


def _tel(phone: str | None) -> str | None:
    """A ``tel:`` URI for a duty phone (digits, ``+``, ``-`` kept), or ``None``.

    >>> _tel("0731-8 000 123"), _tel("无"), _tel(None)
    ('tel:0731-8000123', None, None)
    """
    if not phone:
        return None
    digits = re.sub(r"[^\d+\-]", "", phone)
    return f"tel:{digits}" if sum(c.isdigit() for c in digits) >= 3 else None


def grid_by_code(conn: Connection, code: str) -> dict[str, Any]:
    """The public card of grid ``code`` of an active plan.

    Raises
    ------
    InvalidInput
        When ``code`` is not a 15-digit grid code.
    NotFound
        When no active plan has that grid.
    """
    if not GRID_CODE.fullmatch(code):
        raise InvalidInput(f"{code!r} is not a grid code (15 digits)")
    ids = conn.execute(
        text(
            "SELECT g.id FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
            "WHERE g.code = :code AND g.level = 3"
        ),
        {"code": code},
    ).scalars()
    cards = grid_cards(conn, [int(i) for i in ids])
    if not cards:
        raise NotFound(f"no grid {code} in an active plan")
    return cards[0]


def find_by_point(conn: Connection, lng: float, lat: float) -> dict[str, Any]:
    """The grid of an active plan covering the point ``lng, lat`` (WGS84).

    Returns
    -------
    dict
        ``match`` (``"point"`` or ``"none"``) and ``grids`` (zero or one card).

    Raises
    ------
    InvalidInput
        For a longitude outside −180…180 or a latitude outside −90…90.
    """
    if not (-180 <= lng <= 180) or not (-90 <= lat <= 90):
        raise InvalidInput("longitude must be within -180..180 and latitude within -90..90")
    ids = conn.execute(
        text(
            "SELECT g.id FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active' "
            "WHERE g.level = 3 AND ST_Covers(g.geom, ST_SetSRID(ST_Point(:x, :y), 4326)) "
            "ORDER BY g.code LIMIT 1"
        ),
        {"x": lng, "y": lat},
    ).scalars()
    cards = grid_cards(conn, [int(i) for i in ids])
    return {"match": "point" if cards else "none", "grids": cards}


_VILLAGES_SQL = """
SELECT v.code FROM admin_areas v
  LEFT JOIN admin_areas t ON t.code = v.parent_code
 WHERE v.level = 'village'
   AND regexp_replace(v.name, '(村民委员会|村委会|居委会|村|社区)$', '')
       = regexp_replace(:name, '(村民委员会|村委会|居委会|村|社区)$', '')
   AND (CAST(:town AS text) IS NULL OR t.name = :town
        OR regexp_replace(t.name, '(镇|乡|街道)$', '') = regexp_replace(:town, '(镇|乡|街道)$', ''))
 ORDER BY v.code
"""

_HOUSE_SQL = """
SELECT g.id FROM address_points a
  JOIN grids g ON ST_Covers(g.geom, a.geom) AND g.level = 3
  JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
 WHERE a.address_norm = :addr AND a.village_code = ANY(:villages)
 ORDER BY g.code LIMIT 1
"""

_GROUP_SQL = """
SELECT DISTINCT g.id FROM villager_groups vg
  JOIN grid_groups gg ON gg.group_id = vg.id
  JOIN grids g ON g.id = gg.grid_id AND g.level = 3
  JOIN plans p ON p.id = gg.plan_id AND p.status = 'active'
 WHERE vg.village_code = ANY(:villages) AND vg.group_no = :group
"""

_VILLAGE_GRIDS_SQL = """
SELECT g.id FROM grids g JOIN plans p ON p.id = g.plan_id AND p.status = 'active'
 WHERE g.level = 3 AND g.village_code = ANY(:villages)
"""


def find_by_address(conn: Connection, address: str) -> dict[str, Any]:
    """The grid(s) serving ``address`` (see the module's docstring for how).

    Parameters
    ----------
    conn
        Database connection.
    address
        An address as a resident types it: ``王家湾村三组12号``, ``石门镇王家湾3组``...

    Returns
    -------
    dict
        ``parsed`` (``town``, ``village``, ``group``, ``house_number`` as read), ``match``
        (``"house"``, ``"group"``, ``"village"`` or ``"none"``), ``reason`` when nothing
        was found (``"unreadable"``: no village in the text; ``"no_village"``: no such
        village) and ``grids`` (public cards).

    Raises
    ------
    InvalidInput
        For an empty address, one longer than :data:`MAX_ADDRESS` characters or one with
        control characters.
    """
    address = (address or "").strip()
    if not address:
        raise InvalidInput("type an address: village, group and house number")
    if len(address) > MAX_ADDRESS:
        raise InvalidInput(f"an address has at most {MAX_ADDRESS} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in address):
        raise InvalidInput("the address contains control characters")
    p = parse_address(address)
    parsed = {
        "town": p.town,
        "village": p.village,
        "group": p.group,
        "house_number": p.house_number,
    }
    out: dict[str, Any] = {"parsed": parsed, "match": "none", "reason": None, "grids": []}
    if not p.village:
        out["reason"] = "unreadable"
        return out
    villages = list(
        conn.execute(text(_VILLAGES_SQL), {"name": p.village, "town": p.town}).scalars()
    )
    if not villages:
        out["reason"] = "no_village"
        return out
    steps: list[tuple[str, str, dict[str, Any]]] = []
    if p.house_number is not None:
        steps.append(("house", _HOUSE_SQL, {"addr": normalise_address(address)}))
    if p.group is not None:
        steps.append(("group", _GROUP_SQL, {"group": p.group}))
    steps.append(("village", _VILLAGE_GRIDS_SQL, {}))
    for match, sql, params in steps:
        ids = [int(i) for i in conn.execute(text(sql), {"villages": villages, **params}).scalars()]
        if ids:
            out["match"], out["grids"] = match, grid_cards(conn, ids)
            return out
    out["reason"] = "no_grid"
    return out
