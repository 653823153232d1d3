"""Grid staff posts (leader, guide, information officer; A/B)."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Connection, Engine, text

from geogrid.errors import (
    InvalidInput,
    NotFound,
)
from geogrid.plans.common import STAFF_POSTS, STAFF_ROLES, StaffPost
from geogrid.plans.read import get_plan


def _grid_id(conn: Connection, grid_code: str, plan_id: int | None) -> tuple[int, int]:
    """(grid id, plan id) of a grid code in ``plan_id``, default: its town's active plan."""
    if plan_id is not None:
        row = conn.execute(
            text("SELECT id, plan_id FROM grids WHERE plan_id = :p AND code = :c"),
            {"p": plan_id, "c": grid_code},
        ).first()
        if row is None:
            get_plan(conn, plan_id)  # NotFound for an unknown plan
            raise NotFound(
                f"grid {grid_code} is not in plan {plan_id}.",
                detail={"grid_code": grid_code, "plan_id": plan_id},
            )
        return int(row[0]), int(row[1])
    row = conn.execute(
        text(
            "SELECT g.id, g.plan_id FROM grids g JOIN plans p ON p.id = g.plan_id "
            "WHERE g.code = :c AND p.status = 'active' ORDER BY g.level LIMIT 1"
        ),
        {"c": grid_code},
    ).first()
    if row is None:
        raise NotFound(
            f"no active plan has a grid {grid_code}; activate a plan or name the plan.",
            detail={"grid_code": grid_code},
        )
    return int(row[0]), int(row[1])


def grid_staff(conn: Connection, *, grid_code: str, plan_id: int | None = None) -> list[StaffPost]:
    """Staff posted to a grid: name, role, post, duty phone, photo and duties.

    Parameters
    ----------
    grid_code
        Code of the grid (any level: town, village or basic grid).
    plan_id
        The plan; default: the active plan holding that code.
    """
    gid, pid = _grid_id(conn, grid_code, plan_id)
    rows = conn.execute(
        text(
            "SELECT s.id, s.name, a.role, a.post, s.phone, s.photo, s.duties "
            "FROM staff_assignments a JOIN staff s ON s.id = a.staff_id "
            "WHERE a.grid_id = :g ORDER BY "
            "array_position(ARRAY['leader','guide','info_officer']::text[], a.role::text), a.post"
        ),
        {"g": gid},
    ).all()
    return [
        StaffPost(
            staff_id=int(r[0]),
            name=str(r[1]),
            role=str(r[2]),
            post=str(r[3]),
            phone=r[4],
            photo=r[5],
            duties=r[6],
            grid_code=grid_code,
            plan_id=pid,
        )
        for r in rows
    ]


def assign_staff(
    engine: Engine,
    *,
    grid_code: str,
    role: Literal["leader", "guide", "info_officer"] | str,
    post: Literal["A", "B"] | str = "A",
    staff_id: int | None = None,
    name: str | None = None,
    phone: str | None = None,
    photo: str | None = None,
    duties: str | None = None,
    plan_id: int | None = None,
) -> StaffPost:
    """Put a staff member at a post (role + A/B) of a grid, replacing whoever held it.

    Give ``staff_id`` for a known person (``name``/``phone``/``photo``/``duties``, when
    given, update that record), or ``name`` (and the rest) to create one.

    Raises
    ------
    InvalidInput
        Unknown role or post, or neither ``staff_id`` nor ``name``.
    NotFound
        Unknown grid, plan or staff id.
    """
    if role not in STAFF_ROLES:
        raise InvalidInput(
            f"role must be one of {', '.join(STAFF_ROLES)}, not {role!r}.",
            detail={"role": role},
        )
    if post not in STAFF_POSTS:
        raise InvalidInput(f"post must be A or B, not {post!r}.", detail={"post": post})
    if staff_id is None and not (name and name.strip()):
        raise InvalidInput("give a staff_id or the name of a new staff member.")
    with engine.begin() as conn:
        gid, pid = _grid_id(conn, grid_code, plan_id)
        town = conn.execute(
            text("SELECT town_code FROM plans WHERE id = :p"), {"p": pid}
        ).scalar_one()
        if staff_id is None:
            staff_id = int(
                conn.execute(
                    text(
                        "INSERT INTO staff (name, phone, photo, duties, town_code) "
                        "VALUES (:n, :ph, :pic, :d, :t) RETURNING id"
                    ),
                    {"n": name, "ph": phone, "pic": photo, "d": duties, "t": town},
                ).scalar_one()
            )
        else:
            found = conn.execute(
                text(
                    "UPDATE staff SET name = COALESCE(:n, name), phone = COALESCE(:ph, phone), "
                    "photo = COALESCE(:pic, photo), duties = COALESCE(:d, duties), "
                    "updated_at = now() WHERE id = :id RETURNING id"
                ),
                {"n": name, "ph": phone, "pic": photo, "d": duties, "id": staff_id},
            ).first()
            if found is None:
                raise NotFound(
                    f"staff member {staff_id} does not exist.",
                    detail={"staff_id": staff_id},
                )
        conn.execute(
            text(
                "INSERT INTO staff_assignments (staff_id, grid_id, role, post) "
                "VALUES (:s, :g, :r, :p) ON CONFLICT (grid_id, role, post) "
                "DO UPDATE SET staff_id = EXCLUDED.staff_id, updated_at = now()"
            ),
            {"s": staff_id, "g": gid, "r": role, "p": post},
        )
        posts = grid_staff(conn, grid_code=grid_code, plan_id=pid)
    return next(p for p in posts if p.role == role and p.post == post)
