"""Assessment rounds (考核轮次): monthly, quarterly and year-end, frozen when published.

A round applies a scheme (:mod:`geogrid.assessment.scheme`) to the groups of the scheme's
level inside an area (a town, or everywhere) for one period: ``2026-06`` (monthly),
``2026-Q2`` (quarterly) or ``2026`` (year-end). While it is a ``draft`` its results are
computed live and manual scores may be entered; **publishing** computes them once more and
writes them into ``assessment_results`` with a copy of the scheme: from then on the round
answers from those rows only, so later events, edits of the scheme or late manual scores
never change it. Publishing twice is refused.

**Rank**: by composite score, highest first; equal scores share a rank and the next rank
skips (1, 2, 2, 4); groups without a score have no rank. **Change** since the previous
round (the latest published round of the same scheme, area and kind ending before this one
starts): ``previous rank − rank`` (positive: moved up), ``null`` when either is missing.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from typing import Any, Final

from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from geogrid.access.policy import Principal
from geogrid.assessment import indicators, scheme
from geogrid.errors import Conflict, Forbidden, InvalidInput, NotFound

__all__ = [
    "ManualScoreIn",
    "RoundIn",
    "create_round",
    "get_round",
    "list_rounds",
    "parse_label",
    "publish",
    "ranking",
    "results",
    "set_manual_score",
]

_LABEL: Final = re.compile(r"(\d{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?")
_TARGET: Final = {
    "town": re.compile(r"\d{9}000"),
    "village": re.compile(r"\d{12}"),
    "grid": re.compile(r"\d{15}"),
    "staff": re.compile(r"[1-9]\d{0,9}"),
}


class RoundIn(BaseModel):
    """A new round: its scheme, period label and area."""

    scheme_id: int = Field(ge=1, le=2**31 - 1)
    label: str = Field(
        pattern=r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$", description="2026-06, 2026-Q2 or 2026"
    )
    area_code: str | None = Field(
        default=None, pattern=r"^(\d{9}000)?$", description="'' or a town (default: the scheme's)"
    )


class ManualScoreIn(BaseModel):
    """A manual item's score (自查、互查、抽查) for one target of a round."""

    item_key: str = Field(min_length=1, max_length=32)
    target_code: str = Field(min_length=1, max_length=15)
    score: float = Field(ge=0, le=100)
    checker: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=2000)


def parse_label(label: str) -> tuple[str, dt.date, dt.date]:
    """``(kind, first day, last day)`` of a period label.

    >>> parse_label("2026-02")[1:]
    (datetime.date(2026, 2, 1), datetime.date(2026, 2, 28))
    >>> parse_label("2026-Q3")
    ('quarterly', datetime.date(2026, 7, 1), datetime.date(2026, 9, 30))
    >>> parse_label("2026")[2]
    datetime.date(2026, 12, 31)
    """
    m = _LABEL.fullmatch(label)
    if m is None:
        raise InvalidInput("a round's label is a month (2026-06), a quarter (2026-Q2) or a year")
    year = int(m.group(1))
    if not 2000 <= year <= 2100:
        raise InvalidInput("a round's year lies between 2000 and 2100")
    if m.group(2):
        month = int(m.group(2))
        return (
            "monthly",
            dt.date(year, month, 1),
            dt.date(year, month, calendar.monthrange(year, month)[1]),
        )
    if m.group(3):
        q = int(m.group(3))
        last = 3 * q
        return (
            "quarterly",
            dt.date(year, last - 2, 1),
            dt.date(year, last, calendar.monthrange(year, last)[1]),
        )
    return "yearly", dt.date(year, 1, 1), dt.date(year, 12, 31)


_ROUND_SQL: Final = (
    "SELECT r.id, r.scheme_id, r.kind, r.area_code, r.label, r.period_start, r.period_end, "
    "r.status, r.scheme_snapshot, r.created_by, r.published_by, r.published_at, "
    "s.name AS scheme_name, s.level FROM assessment_rounds r "
    "JOIN assessment_schemes s ON s.id = r.scheme_id"
)


def _round_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "scheme_id": row.scheme_id, "scheme_name": row.scheme_name,
        "level": row.level, "kind": row.kind, "area_code": row.area_code, "label": row.label,
        "period_start": row.period_start, "period_end": row.period_end, "status": row.status,
        "published_at": row.published_at, "published_by": row.published_by,
    }  # fmt: skip


def _visible(principal: Principal, area: str) -> bool:
    p, a = principal.scope.prefix, area[:9]
    return a.startswith(p) or p.startswith(a)


def _load(conn: Connection, principal: Principal, round_id: int, *, lock: bool = False) -> Any:
    row = conn.execute(
        text(_ROUND_SQL + " WHERE r.id = :id" + (" FOR UPDATE OF r" if lock else "")),
        {"id": round_id},
    ).first()
    if row is None or not _visible(principal, row.area_code):
        raise NotFound(f"no assessment round {round_id}")
    return row


def get_round(conn: Connection, *, principal: Principal, round_id: int) -> dict[str, Any]:
    """One round visible to the caller (its area overlaps their scope)."""
    return _round_out(_load(conn, principal, round_id))


def list_rounds(
    conn: Connection, *, principal: Principal, scheme_id: int | None = None
) -> list[dict[str, Any]]:
    """The rounds whose area overlaps the caller's scope, newest period first."""
    rows = conn.execute(
        text(
            _ROUND_SQL + " WHERE (left(r.area_code, 9) LIKE :p || '%' OR :p LIKE "
            "left(r.area_code, 9) || '%') AND (CAST(:s AS integer) IS NULL OR r.scheme_id = :s) "
            "ORDER BY r.period_end DESC, r.id DESC"
        ),
        {"p": principal.scope.prefix, "s": scheme_id},
    ).all()
    return [_round_out(r) for r in rows]


def create_round(conn: Connection, *, principal: Principal, body: RoundIn) -> dict[str, Any]:
    """A draft round of a scheme for a period label, in the scheme's area (or a town of it)."""
    kind, start, end = parse_label(body.label)
    sch = scheme.get_scheme(conn, principal=principal, scheme_id=body.scheme_id)
    area = sch.area_code if body.area_code is None else body.area_code
    if sch.area_code and area != sch.area_code:
        raise InvalidInput("a round's area is its scheme's town")
    if not area[:9].startswith(principal.scope.prefix):
        raise Forbidden("a round's area must lie inside your scope")
    if sch.level == "town" and area:
        raise InvalidInput("a town-level round compares towns: its area is everywhere ('')")
    taken = conn.execute(
        text(
            "SELECT id FROM assessment_rounds WHERE scheme_id = :s AND area_code = :a "
            "AND period_start = :f AND period_end = :t"
        ),
        {"s": sch.id, "a": area, "f": start, "t": end},
    ).scalar()
    if taken is not None:
        raise Conflict(f"round {taken} already assesses {body.label} with this scheme")
    rid = conn.execute(
        text(
            "INSERT INTO assessment_rounds (scheme_id, kind, area_code, label, period_start, "
            "period_end, created_by) VALUES (:s, :k, :a, :l, :f, :t, :by) RETURNING id"
        ),
        {"s": sch.id, "k": kind, "a": area, "l": body.label, "f": start, "t": end,
         "by": principal.username},
    ).scalar_one()  # fmt: skip
    return get_round(conn, principal=principal, round_id=rid)


def set_manual_score(
    conn: Connection, *, principal: Principal, round_id: int, body: ManualScoreIn
) -> dict[str, Any]:
    """Enter (or replace) a manual item's score in a draft round."""
    row = _load(conn, principal, round_id, lock=True)
    if row.status == "published":
        raise Conflict(f"round {round_id} is published: its scores are frozen")
    item = conn.execute(
        text("SELECT kind FROM assessment_scheme_items WHERE scheme_id = :s AND key = :k"),
        {"s": row.scheme_id, "k": body.item_key},
    ).scalar()
    if item is None or item == "indicator":
        raise InvalidInput(f"{body.item_key!r} is not a manual item of the round's scheme")
    if not _TARGET[row.level].fullmatch(body.target_code):
        raise InvalidInput(f"target {body.target_code!r} is not a {row.level} code")
    if row.level != "staff":
        prefix = indicators.area_prefix(row.area_code or None)
        if not body.target_code.startswith(prefix):
            raise InvalidInput("the target lies outside the round's area")
        if not body.target_code.startswith(principal.scope.prefix):
            raise Forbidden("the target lies outside your scope")
    conn.execute(
        text(
            "INSERT INTO assessment_manual_scores (round_id, item_key, target_code, score, "
            "checker, note, entered_by) VALUES (:r, :k, :t, :s, :c, :n, :by) "
            "ON CONFLICT (round_id, item_key, target_code) DO UPDATE SET score = EXCLUDED.score, "
            "checker = EXCLUDED.checker, note = EXCLUDED.note, entered_by = EXCLUDED.entered_by, "
            "updated_at = now()"
        ),
        {"r": round_id, "k": body.item_key, "t": body.target_code, "s": body.score,
         "c": body.checker, "n": body.note, "by": principal.username},
    )  # fmt: skip
    return body.model_dump()


def _snapshot(conn: Connection, row: Any) -> dict[str, Any]:
    sch = scheme._load(conn, row.scheme_id)
    return {"name": sch.name, "level": sch.level, "thresholds": sch.thresholds,
            "items": sch.items or [], "version": sch.version}  # fmt: skip


def _evaluate(conn: Connection, row: Any, snap: dict[str, Any]) -> list[dict[str, Any]]:
    """Every group's values, item scores, composite, grade and rank (live)."""
    period = indicators.Period(row.period_start, row.period_end)
    prefix = indicators.area_prefix(row.area_code or None)
    rows = indicators.compute(conn, prefix=prefix, level=snap["level"], period=period)
    manual: dict[str, dict[str, float]] = {}
    for m in conn.execute(
        text(
            "SELECT item_key, target_code, score FROM assessment_manual_scores WHERE round_id = :r"
        ),
        {"r": row.id},
    ):
        manual.setdefault(m.target_code, {})[m.item_key] = float(m.score)
    out = []
    for r in rows:
        values = {k: r[k] for k in indicators.KEYS}
        scores = {
            i["key"]: scheme.item_score(i, values, manual.get(r["code"], {})) for i in snap["items"]
        }
        total = scheme.composite(snap["items"], scores)
        out.append({
            "target_code": r["code"], "level": r["level"], "name": r["name"],
            "households": r["households"], "values": values, "item_scores": scores,
            "score": total, "grade": scheme.grade(total, snap["thresholds"]),
        })  # fmt: skip
    ranked = sorted((x["score"] for x in out if x["score"] is not None), reverse=True)
    for x in out:
        x["rank"] = None if x["score"] is None else ranked.index(x["score"]) + 1
    return out


def publish(conn: Connection, *, principal: Principal, round_id: int) -> dict[str, Any]:
    """Freeze a draft round: its results written once with a copy of the scheme."""
    row = _load(conn, principal, round_id, lock=True)
    if not (row.area_code[:9]).startswith(principal.scope.prefix):
        raise Forbidden("the round's area is wider than your scope")
    if row.status == "published":
        raise Conflict(f"round {round_id} is published already")
    snap = _snapshot(conn, row)
    found = _evaluate(conn, row, snap)
    if found:
        conn.execute(
            text(
                "INSERT INTO assessment_results (round_id, target_code, level, name, households, "
                "indicator_values, item_scores, score, grade, rank) VALUES (:r, :t, :l, :n, :h, "
                "CAST(:v AS jsonb), CAST(:i AS jsonb), :s, :g, :k)"
            ),
            [{"r": round_id, "t": x["target_code"], "l": x["level"], "n": x["name"],
              "h": x["households"], "v": json.dumps(x["values"]),
              "i": json.dumps(x["item_scores"]), "s": x["score"], "g": x["grade"],
              "k": x["rank"]} for x in found],
        )  # fmt: skip
    conn.execute(
        text(
            "UPDATE assessment_rounds SET status = 'published', published_at = now(), "
            "published_by = :by, scheme_snapshot = CAST(:snap AS jsonb), updated_at = now() "
            "WHERE id = :id"
        ),
        {"by": principal.username, "snap": json.dumps(snap, default=str), "id": round_id},
    )
    return get_round(conn, principal=principal, round_id=round_id)


def _in_scope(principal: Principal, level: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if level == "staff" or not principal.scope.prefix:
        return rows
    return [x for x in rows if x["target_code"].startswith(principal.scope.prefix)]


_RESULTS_SQL: Final = """
SELECT target_code, level, name, households, indicator_values AS values, item_scores,
       CAST(score AS float) AS score, grade, rank
FROM assessment_results
WHERE round_id = :r AND (:staff OR target_code LIKE :p || '%')
ORDER BY rank NULLS LAST, target_code
"""


def results(conn: Connection, *, principal: Principal, round_id: int) -> dict[str, Any]:
    """A round with its results in the caller's scope: the frozen rows once published, else
    computed now (a preview)."""
    row = _load(conn, principal, round_id)
    if row.status == "published":
        snap = row.scheme_snapshot
        found = [
            dict(r._mapping)
            for r in conn.execute(
                text(_RESULTS_SQL),
                {"r": round_id, "p": principal.scope.prefix, "staff": row.level == "staff"},
            )
        ]
    else:
        snap = _snapshot(conn, row)
        found = sorted(
            _in_scope(principal, row.level, _evaluate(conn, row, snap)),
            key=lambda x: (x["rank"] is None, x["rank"] or 0, x["target_code"]),
        )
    return {"round": _round_out(row), "scheme": snap, "results": found}


def ranking(conn: Connection, *, principal: Principal, round_id: int) -> dict[str, Any]:
    """The round's results with each group's change of rank since the previous round."""
    out = results(conn, principal=principal, round_id=round_id)
    row = _load(conn, principal, round_id)
    prev = conn.execute(
        text(
            "SELECT id, label FROM assessment_rounds WHERE scheme_id = :s AND area_code = :a "
            "AND kind = :k AND status = 'published' AND period_end < :f "
            "ORDER BY period_end DESC LIMIT 1"
        ),
        {"s": row.scheme_id, "a": row.area_code, "k": row.kind, "f": row.period_start},
    ).first()
    before: dict[str, Any] = {}
    if prev is not None:
        before = {
            r.target_code: r
            for r in conn.execute(
                text("SELECT target_code, rank, grade FROM assessment_results WHERE round_id = :r"),
                {"r": prev.id},
            )
        }
    for x in out["results"]:
        b = before.get(x["target_code"])
        x["previous_rank"] = b.rank if b else None
        x["previous_grade"] = b.grade if b else None
        x["change"] = (
            b.rank - x["rank"] if b is not None and b.rank is not None and x["rank"] else None
        )
    out["previous"] = {"id": prev.id, "label": prev.label} if prev else None
    return out
