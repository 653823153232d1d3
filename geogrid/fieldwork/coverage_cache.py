"""Coverage per area, kept between calls and recomputed only where the data changed.

A county's coverage list aggregates every household and the period's visits (hundreds of
thousands of rows); the figures of an area change only when one of its visits, or the
households, special-population records or plan rules, change. Migration 0018 keeps:

``visit_area_state``
    one row per area (a household's grid, or village) with a ``version`` that a trigger
    raises for every visit added, moved or removed in it; the row ``'*'`` holds the
    global version, raised by any change of households, members, special-population
    records or visit rules (their areas or plan periods may change), and ``listed``: the
    global version at which the list of areas was last rebuilt.
``visit_coverage_cache``
    the figures of an area for a period and a caller kind (with or without the
    ``special`` permission: the plan periods differ), stamped with the area and global
    versions they were computed at.

A cached row serves while both versions still match; otherwise the stale areas alone are
recomputed (the same SQL, restricted to them) and stored. Versions are read *before* the
computation, so a visit committed meanwhile leaves the stored row stale, never wrong.
The figures of an area do not depend on who computes them (an area lies wholly inside or
outside any scope), so one cache serves every caller; only a caller who sees every area
may mark the list of areas rebuilt.

``visit_list_cache`` (migration 0025) keeps, the same way, the per-area figures of the
county lists that would otherwise aggregate every household or visit per call (never
visited at all, due now, per worker): :func:`cached_figures`, whose figures are a JSON
object per area.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, text

__all__ = ["cached_figures", "cached_rows"]

_COLUMNS = ("area", "households", "visited", "due", "done")


class _Row:
    """One area's figures (the attribute names of the computing query's rows)."""

    __slots__ = _COLUMNS

    def __init__(self, **kw: Any) -> None:
        for k in _COLUMNS:
            setattr(self, k, kw[k])


def _store(
    conn: Connection, rows: list[Any], versions: dict[str, int], glob: int,
    period: tuple[dt.date, dt.date], special: bool,
) -> None:  # fmt: skip
    if not rows:
        return
    conn.execute(
        text(
            "INSERT INTO visit_coverage_cache (area, period_start, period_end, special, "
            "version, global_version, households, visited, due, done) VALUES (:area, :a, :b, "
            ":sp, :v, :g, :households, :visited, :due, :done) "
            "ON CONFLICT (area, period_start, period_end, special) DO UPDATE SET "
            "version = EXCLUDED.version, global_version = EXCLUDED.global_version, "
            "households = EXCLUDED.households, visited = EXCLUDED.visited, "
            "due = EXCLUDED.due, done = EXCLUDED.done, computed_at = now()"
        ),
        [
            {"area": r.area, "a": period[0], "b": period[1], "sp": special,
             "v": versions[r.area], "g": glob, "households": r.households,
             "visited": r.visited, "due": r.due, "done": r.done}
            for r in rows
        ],
    )  # fmt: skip


def _versions(conn: Connection, prefix: str) -> dict[str, int]:
    return dict(
        conn.execute(
            text(
                "SELECT area, version FROM visit_area_state "
                "WHERE area LIKE :p || '%' AND area <> '*'"
            ),
            {"p": prefix},
        ).all()
    )


def _global(conn: Connection) -> tuple[int, int]:
    """(global version, the global version at which the areas were last listed)."""
    glob, listed = conn.execute(
        text("SELECT version, listed FROM visit_area_state WHERE area = '*'")
    ).one()
    return int(glob), int(listed)


def _listed(conn: Connection, areas: list[str], glob: int, mark: bool) -> None:
    """State rows for ``areas`` (new ones); ``mark``: the list of areas is rebuilt at
    ``glob`` (only after a computation of every area of the store)."""
    if areas:
        conn.execute(
            text(
                "INSERT INTO visit_area_state (area) SELECT unnest(CAST(:a AS text[])) "
                "ON CONFLICT (area) DO NOTHING"
            ),
            {"a": areas},
        )
    if mark:
        conn.execute(
            text("UPDATE visit_area_state SET listed = :g WHERE area = '*' AND version = :g"),
            {"g": glob},
        )


def cached_rows(
    conn: Connection,
    *,
    prefix: str,
    complete: bool,
    special: bool,
    period: tuple[dt.date, dt.date],
    compute: Callable[[list[str] | None], list[Any]],
) -> list[Any]:
    """The rows of every area under ``prefix`` (ordered by area), from the cache where
    fresh, recomputed by ``compute(areas)`` (``None``: every area) where not.

    Parameters
    ----------
    complete
        The caller sees every area of the store (scope ``all``): only then may a full
        computation mark the list of areas rebuilt.
    special
        The caller has the ``special`` permission (the figures' variant).
    """
    glob, listed = _global(conn)
    if listed != glob:  # households changed: the areas themselves may have
        versions = _versions(conn, prefix)  # before computing: newer visits leave it stale
        rows = compute(None)
        _listed(conn, [r.area for r in rows], glob, False)
        # an area without a state row before the computation is stored as stale (-1)
        _store(conn, rows, {r.area: versions.get(r.area, -1) for r in rows}, glob, period,
               special)  # fmt: skip
        _listed(conn, [], glob, complete and prefix == "")
        return rows
    cached = conn.execute(
        text(
            "SELECT s.area, s.version, c.households, c.visited, c.due, c.done "
            "FROM visit_area_state s LEFT JOIN visit_coverage_cache c ON c.area = s.area "
            "AND c.period_start = :a AND c.period_end = :b AND c.special = :sp "
            "AND c.version = s.version AND c.global_version = :g "
            "WHERE s.area LIKE :p || '%' AND s.area <> '*' ORDER BY s.area"
        ),
        {"a": period[0], "b": period[1], "sp": special, "g": glob, "p": prefix},
    ).all()
    stale = [r.area for r in cached if r.households is None]
    fresh: dict[str, Any] = {}
    if stale:
        versions = {r.area: int(r.version) for r in cached if r.households is None}
        computed = compute(stale)
        _store(conn, computed, versions, glob, period, special)
        fresh = {r.area: r for r in computed}
    out: list[Any] = []
    for r in cached:
        if r.households is not None:
            out.append(_Row(area=r.area, households=r.households, visited=r.visited,
                            due=r.due, done=r.done))  # fmt: skip
        elif r.area in fresh:
            out.append(fresh[r.area])
    return out


_STORE_FIGURES = text(
    "INSERT INTO visit_list_cache (area, list, key, special, version, global_version, figures) "
    "SELECT f.area, :list, :key, :sp, f.version, :g, f.figures::jsonb FROM unnest(CAST(:areas "
    "AS text[]), CAST(:versions AS bigint[]), CAST(:figures AS text[])) AS f(area, version, "
    "figures) ON CONFLICT (area, list, key, special) DO UPDATE SET version = EXCLUDED.version, "
    "global_version = EXCLUDED.global_version, figures = EXCLUDED.figures, computed_at = now()"
)


def cached_figures(
    conn: Connection,
    *,
    name: str,
    key: str,
    prefix: str,
    complete: bool,
    special: bool,
    compute: Callable[[list[str] | None], dict[str, Any]],
) -> dict[str, Any]:
    """The figures (a JSON object) of every area under ``prefix`` for list ``name`` and
    argument ``key``, by area, from ``visit_list_cache`` where fresh, recomputed by
    ``compute(areas)`` (``None``: every area; it answers ``{area: figures}``) where not.
    An area ``compute`` does not answer (no household left) is stored as ``{}``.

    The figures of an area must depend only on the area's households and visits (and the
    ``special`` variant), never on the caller's scope: an area lies wholly inside or
    outside any scope, so one cache serves every caller.
    """
    glob, listed = _global(conn)
    params = {"list": name, "key": key, "sp": special, "g": glob, "p": prefix}
    if listed != glob:  # households changed: the areas themselves may have
        versions = _versions(conn, prefix)  # before computing: newer visits leave it stale
        out = compute(None)
        _listed(conn, sorted(out), glob, False)
        todo = {a: versions.get(a, -1) for a in out}
    else:
        cached = conn.execute(
            text(
                "SELECT s.area, s.version, c.figures FROM visit_area_state s "
                "LEFT JOIN visit_list_cache c ON c.area = s.area AND c.list = :list "
                "AND c.key = :key AND c.special = :sp AND c.version = s.version "
                "AND c.global_version = :g WHERE s.area LIKE :p || '%' AND s.area <> '*'"
            ),
            params,
        ).all()
        out = {r.area: r.figures for r in cached if r.figures is not None}
        todo = {r.area: int(r.version) for r in cached if r.figures is None}
        if todo:
            computed = compute(sorted(todo))
            out.update({a: computed.get(a, {}) for a in todo})
    if todo:
        conn.execute(
            _STORE_FIGURES,
            {**params, "areas": list(todo), "versions": list(todo.values()),
             "figures": [json.dumps(out[a]) for a in todo]},
        )  # fmt: skip
    if listed != glob:
        _listed(conn, [], glob, complete and prefix == "")
    return {a: f for a, f in out.items() if f}
