"""Checklist templates of fire inspections: configurable by ``inspection.admin``.

A template is a list of items (code, label, the fire-hazard case category a failure
opens: 消防隐患 ``03`` or a subcategory) and the key-unit types it is the default for.
Saving one bumps its version; records keep the version they were made with. Two are
seeded by migration 0017: ``general`` and ``small_premises`` (九小场所).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access import audit
from geogrid.access.policy import Principal
from geogrid.errors import InvalidInput, NotFound

__all__ = ["TemplateIn", "TemplateItem", "TemplatePublic", "save_template", "templates"]

MAX_ITEMS: Final = 40
_CODE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


class TemplateItem(BaseModel):
    """One checklist item; a failure opens a case of ``case_category`` (a 消防隐患 code)."""

    code: str = Field(min_length=1, max_length=32)
    label: str = Field(min_length=1, max_length=100)
    label_en: str | None = Field(default=None, max_length=100)
    case_category: str = Field(default="03", max_length=4)


class TemplateIn(BaseModel):
    """A checklist template as an administrator saves it."""

    name: str = Field(min_length=1, max_length=60)
    items: list[TemplateItem] = Field(min_length=1, max_length=MAX_ITEMS)
    unit_types: list[str] = Field(default_factory=list, max_length=40)
    active: bool = True


class TemplatePublic(TemplateIn):
    code: str
    version: int


def templates(conn: Connection, *, include_inactive: bool = False) -> list[TemplatePublic]:
    """The checklist templates (active ones unless asked)."""
    rows = conn.execute(
        text(
            "SELECT code, name, items, unit_types, active, version FROM inspection_templates "
            "WHERE active OR :all ORDER BY code"
        ),
        {"all": include_inactive},
    ).all()
    return [TemplatePublic(**r._mapping) for r in rows]


def get_template(conn: Connection, code: str) -> TemplatePublic:
    row = conn.execute(
        text(
            "SELECT code, name, items, unit_types, active, version FROM inspection_templates "
            "WHERE code = :c"
        ),
        {"c": code},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no checklist template {code!r}")
    return TemplatePublic(**row._mapping)


def save_template(
    conn: Connection,
    *,
    principal: Principal,
    code: str,
    body: TemplateIn,
    ip: str | None = None,
) -> TemplatePublic:
    """Create or replace a template (the caller checked ``inspection.admin``); audited.
    Records keep the version they were made with."""
    if not _CODE.fullmatch(code):
        raise InvalidInput("a template code is a lower-case word (a-z, 0-9, _), ≤ 32 characters")
    name = body.name.strip()
    if not name:
        raise InvalidInput("a template needs a name")
    seen: set[str] = set()
    for item in body.items:
        if not _CODE.fullmatch(item.code):
            raise InvalidInput(f"item code {item.code[:32]!r} is not a lower-case word")
        if item.code in seen:
            raise InvalidInput(f"item code {item.code!r} appears twice")
        seen.add(item.code)
        if not item.label.strip():
            raise InvalidInput(f"item {item.code!r} needs a label")
        if not item.case_category.startswith("03"):
            raise InvalidInput(
                f"item {item.code!r}: a failed item opens a fire-hazard case, so its category "
                "must be 03 (消防隐患) or one of its subcategories"
            )
    cats = {i.case_category for i in body.items}
    known = set(
        conn.execute(
            text("SELECT code FROM case_categories WHERE active AND code = ANY(:c)"),
            {"c": list(cats)},
        ).scalars()
    )
    if cats - known:
        raise InvalidInput(f"unknown case category {sorted(cats - known)[0]!r}")
    types = set(conn.execute(text("SELECT name FROM key_unit_types")).scalars())
    bad = [t for t in body.unit_types if t not in types]
    if bad:
        raise InvalidInput(f"unknown key-unit type {bad[0][:40]!r}")
    items = [i.model_dump() for i in body.items]
    conn.execute(
        text(
            "INSERT INTO inspection_templates (code, name, items, unit_types, active, updated_by) "
            "VALUES (:c, :n, CAST(:i AS jsonb), :t, :a, :by) ON CONFLICT (code) DO UPDATE SET "
            "name = EXCLUDED.name, items = EXCLUDED.items, unit_types = EXCLUDED.unit_types, "
            "active = EXCLUDED.active, updated_by = EXCLUDED.updated_by, updated_at = now(), "
            "version = inspection_templates.version + 1"
        ),
        {"c": code, "n": name, "i": dumps(items), "t": body.unit_types, "a": body.active,
         "by": principal.username},
    )  # fmt: skip
    audit.record(
        conn, actor=principal, action="inspection.admin", target_type="inspection_template",
        target_ids=[code], ip=ip, detail={"items": len(items)},
    )  # fmt: skip
    return get_template(conn, code)


def dumps(value: Any) -> str:
    """JSON text with Chinese kept readable."""
    return json.dumps(value, ensure_ascii=False)
