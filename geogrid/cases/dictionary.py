"""Administrators' edits of the category dictionary, its time limits and the routing table
(audited; the caller checked ``case.admin`` and commits)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.cases import machine, routing
from geogrid.cases.queries import list_categories
from geogrid.cases.shapes import Category
from geogrid.errors import InvalidInput

__all__ = ["set_routes_audited", "update_category"]


def _limits(limits: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for step, value in limits.items():
        if step not in machine.STEPS:
            raise InvalidInput(f"unknown step {step!r}; one of {', '.join(machine.STEPS)}")
        if value is None:
            rows.append({"s": step, "a": None, "u": None})
            continue
        amount, unit = value.get("amount"), value.get("unit")
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= 10_000:
            raise InvalidInput(f"{step}: amount must be a whole number between 1 and 10000")
        if unit not in ("hours", "days"):
            raise InvalidInput(f"{step}: unit must be hours or days")
        rows.append({"s": step, "a": amount, "u": unit})
    return rows


def update_category(
    conn: Connection,
    *,
    principal: Principal,
    code: str,
    changes: dict[str, Any],
    ip: str | None = None,
) -> Category:
    """Add or change the entry ``code`` (2-digit class, 4-digit subclass of an existing
    class): name, English name, active, aliases, and step limits (``{step: {amount, unit}}``,
    ``null`` removes a subclass's own limit)."""
    if not re.fullmatch(r"\d{2}(\d{2})?", code):
        raise InvalidInput("a category code has 2 (class) or 4 (subclass) digits")
    exists = conn.execute(
        text("SELECT 1 FROM case_categories WHERE code = :c"), {"c": code}
    ).first()
    parent = code[:2] if len(code) == 4 else None
    if not exists:
        if not changes.get("name"):
            raise InvalidInput("a new category needs a name")
        if (
            parent
            and not conn.execute(
                text("SELECT 1 FROM case_categories WHERE code = :p"), {"p": parent}
            ).first()
        ):
            raise InvalidInput(f"a subclass needs its class {parent} first")
        conn.execute(
            text(
                "INSERT INTO case_categories (code, parent_code, name, sort) VALUES "
                "(:c, :p, :n, (SELECT coalesce(max(sort), 0) + 1 FROM case_categories))"
            ),
            {"c": code, "p": parent, "n": changes["name"].strip()},
        )
    aliases = changes.get("aliases")
    if aliases is not None and any(
        not isinstance(a, str) or not a.strip() or len(a) > 40 for a in aliases
    ):
        raise InvalidInput("aliases are names of 1–40 characters")
    for column in ("name", "name_en", "active", "aliases"):
        if column in changes:
            value = changes[column]
            if column == "name":
                value = value.strip()
            conn.execute(
                text(f"UPDATE case_categories SET {column} = :v WHERE code = :c"),
                {"v": value, "c": code},
            )
    for row in _limits(changes.get("limits") or {}):
        if row["a"] is None:
            if parent is None:
                raise InvalidInput("a class keeps a limit for every step it has one for")
            conn.execute(
                text("DELETE FROM case_time_limits WHERE category_code = :c AND step = :s"),
                {"c": code, "s": row["s"]},
            )
            continue
        conn.execute(
            text(
                "INSERT INTO case_time_limits (category_code, step, amount, unit) VALUES "
                "(:c, :s, :a, :u) ON CONFLICT (category_code, step) DO UPDATE SET "
                "amount = EXCLUDED.amount, unit = EXCLUDED.unit"
            ),
            {"c": code, **row},
        )
    audit.record(
        conn,
        actor=principal,
        action="case.admin",
        target_type="case_category",
        target_ids=[code],
        ip=ip,
        detail={"changed": sorted(changes)},
    )
    return next(c for c in list_categories(conn, include_inactive=True) if c.code == code)


def set_routes_audited(
    conn: Connection,
    *,
    principal: Principal,
    area_code: str,
    rows: list[dict[str, Any]],
    ip: str | None = None,
) -> list[routing.Route]:
    """:func:`geogrid.cases.routing.set_routes`, audited."""
    out = routing.set_routes(conn, area_code=area_code, rows=rows)
    audit.record(
        conn,
        actor=principal,
        action="case.admin",
        target_type="case_routes",
        target_ids=[area_code or "*"],
        ip=ip,
        detail={"rows": len(out)},
    )
    return out
