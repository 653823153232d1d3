"""Assessment schemes (考核方案): weighted items, the composite score and grades A–E.

**Items.** An item is an indicator of the registry (:data:`INDICATORS`; only rates, unit
``%``) or a manual item scored per round: ``self`` (自查), ``mutual`` (互查) or ``spot``
(抽查), each score 0–100 with its checker and notes. Weights are positive and sum to
exactly 100.

**Item score** (0–100): a rate ``r`` of an indicator where higher is better scores
``100·r``; one where lower is better (rework, extension, overdue) ``100·(1 − r)``; a manual
item its entered score. A rate that is ``null`` (nothing to measure) or a manual score not
entered gives no item score.

**Composite** = Σ weightᵢ·scoreᵢ ÷ Σ weightᵢ over the items that have a score (rounded to 2
places): a grid without cases is judged on the rest; ``null`` when no item has a score.

**Grades.** Thresholds ``{"A": a, "B": b, "C": c, "D": d}`` with 100 ≥ a > b > c > d > 0:
composite ≥ a → A, ≥ b → B, ≥ c → C, ≥ d → D, else E (a score equal to a threshold takes
the higher grade).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.assessment.indicators import INDICATORS, LEVELS
from geogrid.errors import Conflict, Forbidden, InvalidInput, NotFound

__all__ = [
    "GRADES",
    "Scheme",
    "SchemeIn",
    "SchemeItem",
    "composite",
    "create_scheme",
    "delete_scheme",
    "get_scheme",
    "grade",
    "item_score",
    "list_schemes",
    "update_scheme",
    "validate",
]

GRADES: Final = ("A", "B", "C", "D", "E")
MANUAL_KINDS: Final = ("self", "mutual", "spot")
MANUAL_NAMES: Final = {"self": "自查", "mutual": "互查", "spot": "抽查"}
_BY_KEY: Final = {i.key: i for i in INDICATORS}
_MANUAL_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


class SchemeItem(BaseModel):
    """One weighted item of a scheme."""

    key: str = Field(min_length=1, max_length=32)
    kind: Literal["indicator", "self", "mutual", "spot"] = "indicator"
    name: str | None = Field(default=None, max_length=100)
    weight: float = Field(gt=0, le=100)


class SchemeIn(BaseModel):
    """A scheme as clients send it."""

    name: str = Field(min_length=1, max_length=100)
    level: Literal["town", "village", "grid", "staff"]
    area_code: str = Field(default="", pattern=r"^(\d{9}000)?$", description="'' or a town")
    description: str = Field(default="", max_length=2000)
    thresholds: dict[str, float] = Field(description='{"A": 90, "B": 80, "C": 70, "D": 60}')
    items: list[SchemeItem] = Field(min_length=1, max_length=40)


class Scheme(SchemeIn):
    """A stored scheme."""

    id: int
    version: int


def validate(scheme: SchemeIn) -> list[SchemeItem]:
    """The items with their names filled in, or :class:`InvalidInput` naming the broken rule."""
    if scheme.level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}")
    keys = [i.key for i in scheme.items]
    if len(set(keys)) != len(keys):
        raise InvalidInput("an item key appears twice in the scheme")
    out = []
    for item in scheme.items:
        if item.kind == "indicator":
            ind = _BY_KEY.get(item.key)
            if ind is None:
                raise InvalidInput(f"unknown indicator {item.key!r}")
            if ind.unit != "%":
                raise InvalidInput(f"indicator {item.key!r} is a count, not a rate: not scorable")
            out.append(item.model_copy(update={"name": item.name or ind.name}))
        else:
            if not _MANUAL_KEY.fullmatch(item.key) or item.key in _BY_KEY:
                raise InvalidInput(
                    f"manual item key {item.key!r}: lowercase letters, digits and _ and not an "
                    "indicator key"
                )
            out.append(item.model_copy(update={"name": item.name or MANUAL_NAMES[item.kind]}))
    if any(round(i.weight, 2) != i.weight for i in scheme.items):
        raise InvalidInput("a weight has at most two decimals")
    total = round(sum(i.weight for i in scheme.items), 6)
    if abs(total - 100) > 1e-6:
        raise InvalidInput(f"the weights sum to {total:g}, not 100")
    check_thresholds(scheme.thresholds)
    return out


def check_thresholds(thresholds: dict[str, float]) -> None:
    """Thresholds for A–D, each in (0, 100], strictly decreasing."""
    if set(thresholds) != set(GRADES[:4]):
        raise InvalidInput("thresholds must give exactly A, B, C and D (E is below D)")
    values = [thresholds[g] for g in GRADES[:4]]
    if any(not 0 < v <= 100 for v in values):
        raise InvalidInput("every threshold lies in (0, 100]")
    if any(a <= b for a, b in itertools.pairwise(values)):
        raise InvalidInput("thresholds must decrease strictly from A to D")


def grade(score: float | None, thresholds: dict[str, float]) -> str | None:
    """The grade of a composite score (``None`` for none).

    >>> t = {"A": 90, "B": 80, "C": 70, "D": 60}
    >>> grade(90, t), grade(89.99, t), grade(60, t), grade(59.99, t), grade(None, t)
    ('A', 'B', 'D', 'E', None)
    """
    if score is None:
        return None
    for g in GRADES[:4]:
        if score >= thresholds[g]:
            return g
    return "E"


def item_score(item: dict[str, Any], values: dict[str, Any], manual: dict[str, float]) -> Any:
    """The 0–100 score of one item for one target (``None``: nothing to score)."""
    if item["kind"] != "indicator":
        return manual.get(item["key"])
    value = values.get(item["key"])
    if value is None:
        return None
    rate = float(value)
    return round(100 * (rate if _BY_KEY[item["key"]].higher_is_better else 1 - rate), 2)


def composite(items: list[dict[str, Any]], scores: dict[str, Any]) -> float | None:
    """Σ weight·score ÷ Σ weight over the items with a score (see the module docs)."""
    scored = [
        (float(i["weight"]), scores[i["key"]]) for i in items if scores.get(i["key"]) is not None
    ]
    weight = sum(w for w, _ in scored)
    if not weight:
        return None
    return round(sum(w * float(s) for w, s in scored) / weight, 2)


# --------------------------------------------------------------------------- storage


def _visible(principal: Principal, area_code: str) -> bool:
    prefix = area_code[:9]
    return (
        not area_code
        or prefix.startswith(principal.scope.prefix)
        or (principal.scope.prefix.startswith(prefix))
    )


def _check_write(principal: Principal, area_code: str) -> None:
    if not area_code[:9].startswith(principal.scope.prefix):
        raise Forbidden("a scheme's area must lie inside your scope")


def _load(conn: Connection, scheme_id: int, *, lock: bool = False) -> Any:
    return conn.execute(
        text(
            "SELECT s.id, s.name, s.level, s.area_code, s.description, s.thresholds, s.version, "
            "(SELECT json_agg(json_build_object('key', i.key, 'kind', i.kind, 'name', i.name, "
            "'weight', i.weight) ORDER BY i.sort, i.key) FROM assessment_scheme_items i "
            "WHERE i.scheme_id = s.id) AS items FROM assessment_schemes s WHERE s.id = :id"
            + (" FOR UPDATE" if lock else "")
        ),
        {"id": scheme_id},
    ).first()


def _scheme(row: Any) -> Scheme:
    return Scheme(
        id=row.id, name=row.name, level=row.level, area_code=row.area_code,
        description=row.description, thresholds=row.thresholds, version=row.version,
        items=[SchemeItem(**i) for i in row.items or []],
    )  # fmt: skip


def get_scheme(conn: Connection, *, principal: Principal, scheme_id: int) -> Scheme:
    """A scheme visible to the caller (its area overlaps their scope), else 404."""
    row = _load(conn, scheme_id)
    if row is None or not _visible(principal, row.area_code):
        raise NotFound(f"no assessment scheme {scheme_id}")
    return _scheme(row)


def list_schemes(conn: Connection, *, principal: Principal) -> list[Scheme]:
    """Every scheme whose area overlaps the caller's scope."""
    ids = conn.execute(
        text(
            "SELECT id FROM assessment_schemes WHERE area_code = '' OR left(area_code, 9) LIKE "
            ":p || '%' OR :p LIKE left(area_code, 9) || '%' ORDER BY id"
        ),
        {"p": principal.scope.prefix},
    ).scalars()
    return [_scheme(_load(conn, i)) for i in ids]


def _write_items(conn: Connection, scheme_id: int, items: list[SchemeItem]) -> None:
    conn.execute(text("DELETE FROM assessment_scheme_items WHERE scheme_id = :s"), {"s": scheme_id})
    conn.execute(
        text(
            "INSERT INTO assessment_scheme_items (scheme_id, key, kind, name, weight, sort) "
            "VALUES (:s, :k, :kind, :n, :w, :o)"
        ),
        [{"s": scheme_id, "k": i.key, "kind": i.kind, "n": i.name, "w": i.weight, "o": n}
         for n, i in enumerate(items)],
    )  # fmt: skip


def create_scheme(conn: Connection, *, principal: Principal, scheme: SchemeIn) -> Scheme:
    """Store a checked scheme (the caller commits)."""
    items = validate(scheme)
    _check_write(principal, scheme.area_code)
    sid = conn.execute(
        text(
            "INSERT INTO assessment_schemes (name, level, area_code, description, thresholds, "
            "updated_by) VALUES (:n, :l, :a, :d, CAST(:t AS jsonb), :by) RETURNING id"
        ),
        {"n": scheme.name, "l": scheme.level, "a": scheme.area_code, "d": scheme.description,
         "t": json.dumps(scheme.thresholds), "by": principal.username},
    ).scalar_one()  # fmt: skip
    _write_items(conn, sid, items)
    return get_scheme(conn, principal=principal, scheme_id=sid)


def update_scheme(
    conn: Connection, *, principal: Principal, scheme_id: int, scheme: SchemeIn, version: int
) -> Scheme:
    """Replace a scheme (``version``: the one the caller saw; published rounds keep their copy)."""
    items = validate(scheme)
    row = _load(conn, scheme_id, lock=True)
    if row is None or not _visible(principal, row.area_code):
        raise NotFound(f"no assessment scheme {scheme_id}")
    _check_write(principal, row.area_code)
    _check_write(principal, scheme.area_code)
    if row.version != version:
        raise Conflict(f"scheme {scheme_id} is at version {row.version}, you sent {version}")
    conn.execute(
        text(
            "UPDATE assessment_schemes SET name = :n, level = :l, area_code = :a, "
            "description = :d, thresholds = CAST(:t AS jsonb), version = version + 1, "
            "updated_by = :by, updated_at = now() WHERE id = :id"
        ),
        {"n": scheme.name, "l": scheme.level, "a": scheme.area_code, "d": scheme.description,
         "t": json.dumps(scheme.thresholds), "by": principal.username, "id": scheme_id},
    )  # fmt: skip
    _write_items(conn, scheme_id, items)
    return get_scheme(conn, principal=principal, scheme_id=scheme_id)


def delete_scheme(conn: Connection, *, principal: Principal, scheme_id: int) -> None:
    """Delete a scheme that no round uses yet."""
    row = _load(conn, scheme_id, lock=True)
    if row is None or not _visible(principal, row.area_code):
        raise NotFound(f"no assessment scheme {scheme_id}")
    _check_write(principal, row.area_code)
    used = conn.execute(
        text("SELECT count(*) FROM assessment_rounds WHERE scheme_id = :id"), {"id": scheme_id}
    ).scalar_one()
    if used:
        raise Conflict(f"scheme {scheme_id} has {used} rounds: it cannot be deleted")
    conn.execute(text("DELETE FROM assessment_schemes WHERE id = :id"), {"id": scheme_id})
