"""Pages of features and single features as GeoJSON: parameterised SQL over a collection.

SQL identifiers come only from the collection definitions (:mod:`geogrid.features`);
every request value is bound. The spatial filter is ``ST_Intersects`` alone: PostGIS
adds the index condition ``geom && box`` itself (GiST) and estimates its selectivity once;
an explicit ``&&`` besides was counted twice, so the planner expected ~15x too few rows in
a box and sorted every one of them for a page instead of walking the sort-key index. The
box is built in ``bbox-crs`` and transformed to the stored CRS; output
geometries are transformed to ``crs`` (integer SRIDs) and written in its axis order.
A page is sought by keyset from a cursor when the request carries one (``next``/``prev``
links always do), by ``OFFSET`` otherwise.

``numberMatched`` is optional in OGC API – Features but must be exact when given. Counting
every match of a broad filter reads every matching row (most of a filtered page's time on
a large table), so the count is bounded: a first page that holds every match needs no
count at all; otherwise ``count(*)`` over at most :data:`COUNT_BOUND` + 1 matching rows
gives the exact number when there are at most :data:`COUNT_BOUND`, and ``numberMatched``
is left out when there are more, or when the planner expects more (then the count is
not run). It is never estimated: an estimate only decides whether to count.

A page reads about ``limit`` rows (an index walk) and a bounded count at most the bound:
work that parallel workers and JIT compilation only slow down (starting workers and
compiling took longer than the query on bench/bench_ogc.py; the planner turns both on for
filtered pages because it costs a filtered index walk as if it read the whole index), so
both are off for the request's transaction (:data:`_SMALL_QUERIES`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError

from geogrid.errors import NotFound
from geogrid.features import (
    GEOJSON,
    JSON,
    LOCAL_TZ,
    Collection,
    link,
    now_rfc3339,
)
from geogrid.ogcapi import InvalidParameterValue
from geogrid.ogcapi.crs import STORAGE, Crs
from geogrid.ogcapi.paging import encode_cursor, keyset_clause, order_by
from geogrid.ogcapi.query import ItemsQuery

#: Media type of the pages (the ``html`` conformance class).
HTML: Final = "text/html"

__all__ = ["COUNT_BOUND", "feature_sql", "get_feature", "items_page", "where_clauses"]

#: ``numberMatched`` is exact up to this many matches and absent beyond (bench/bench_ogc.py:
#: an indexed count of this many rows costs less than a page; whole sample towns fit).
COUNT_BOUND: Final = 10_000
#: The count is not even tried when the planner expects more than this many times the
#: bound (bench: a bounded count of a broad filter without an index is a partial
#: sequential scan, up to 10x a page's time).
ESTIMATE_SLACK: Final = 1

#: Decimal digits of coordinates: 1e-7° ≈ 1 cm; 1 mm in a projected CRS.
DIGITS_DEGREES: Final = 7
DIGITS_METRES: Final = 3


def geometry_sql(crs: Crs) -> str:
    """The stored geometry as ``crs`` wants it (transformed, axes in its order)."""
    geom = "t.geom"
    if crs.srid != STORAGE.srid:
        geom = f"ST_Transform({geom}, {crs.srid})"
    if crs.flip:
        geom = f"ST_FlipCoordinates({geom})"
    return geom


def _rfc3339(sql: str) -> str:
    """A timestamptz as RFC 3339 in UTC (``2025-01-01T00:49:33Z``)."""
    return f"to_char({sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def feature_sql(
    coll: Collection, crs: Crs = STORAGE, properties: Sequence[str] | None = None
) -> str:
    """``json_build_object`` of one feature (only ``properties`` when given)."""
    chosen = [p for p in coll.properties if properties is None or p.name in properties]
    props = ", ".join(
        f"'{p.name}', {_rfc3339(p.sql) if p.type == 'date-time' else p.sql}" for p in chosen
    )
    digits = DIGITS_DEGREES if crs.geographic else DIGITS_METRES
    return (
        f"json_build_object('type', 'Feature', 'id', {coll.fid}, "
        f"'geometry', ST_AsGeoJSON({geometry_sql(crs)}, {digits})::json, "
        f"'properties', json_build_object({props}))"
    )


def _box(crs: Crs, names: tuple[str, str, str, str]) -> str:
    env = f"ST_MakeEnvelope({', '.join(':' + n for n in names)}, {crs.srid})"
    return env if crs.srid == STORAGE.srid else f"ST_Transform({env}, {STORAGE.srid})"


def where_clauses(coll: Collection, q: ItemsQuery) -> tuple[list[str], dict[str, Any]]:
    """The request's filters (bbox, datetime, properties, CQL2) as SQL and bound values."""
    clauses: list[str] = []
    binds: dict[str, Any] = {}
    if q.bbox is not None:
        x0, y0, x1, y1 = q.bbox
        env = _box(q.bbox_crs, ("bx0", "by0", "bx1", "by1"))
        if x0 <= x1 or not q.bbox_crs.geographic:
            clauses.append(f"ST_Intersects(t.geom, {env})")
            binds.update(bx0=x0, by0=y0, bx1=x1, by1=y1)
        else:  # crossing the antimeridian: two boxes
            env2 = _box(q.bbox_crs, ("bx2", "by0", "bx3", "by1"))
            clauses.append(f"(ST_Intersects(t.geom, {env}) OR ST_Intersects(t.geom, {env2}))")
            binds.update(bx0=x0, by0=y0, bx1=180.0, by1=y1, bx2=-180.0, bx3=x1)
    if q.datetime is not None and coll.time is not None:
        col, tf = coll.time.sql, q.datetime
        is_date = coll.time.type == "date"
        # a date is the whole local day: it meets [lo, hi] when day ≥ lo's day, ≤ hi's;
        # an exclusive end is a local midnight (the end of a date): days before it
        if tf.lo is not None:
            clauses.append(f"{col} >= :t_lo")
            binds["t_lo"] = tf.lo.astimezone(LOCAL_TZ).date() if is_date else tf.lo
        if tf.hi is not None:
            clauses.append(f"{col} {'<' if tf.hi_exclusive else '<='} :t_hi")
            binds["t_hi"] = tf.hi.astimezone(LOCAL_TZ).date() if is_date else tf.hi
    for i, (name, value) in enumerate(q.filters.items()):
        clauses.append(f"{coll.queryables[name].sql} = :p{i}")
        binds[f"p{i}"] = value
    if q.cql is not None:
        clauses.append(q.cql[0])
        binds.update(q.cql[1])
    return clauses, binds


def and_where(base_from: str, clauses: list[str]) -> str:
    """``base_from`` (``FROM … [WHERE …]``) with ``clauses`` added."""
    if not clauses:
        return base_from
    glue = " AND " if " WHERE " in base_from else " WHERE "
    return base_from + glue + " AND ".join(clauses)


#: Restricts a scoped collection (cases) to a user's scope: a bound code prefix.
_SCOPE_CLAUSE = "coalesce(t.grid_code, t.village_code) LIKE :scope_prefix || '%'"

#: Is every row of the collection inside the scope? True when no town or village of the
#: store lies outside the prefix (rows reference villages; grid codes start with theirs)
#: and no row lies outside every village (migration 0012): the scope test is then
#: redundant. Run in the same snapshot as the page (a REPEATABLE READ transaction).
_COVERS_ALL = (
    "SELECT geogrid_prefix_covers_all(:scope_prefix) AND NOT EXISTS "
    "(SELECT 1 {from_} t.grid_code IS NULL AND t.village_code IS NULL)"
)


def _scoped(
    conn: Connection,
    coll: Collection,
    clauses: list[str],
    binds: dict[str, Any],
    scope_prefix: str | None,
) -> None:
    if not scope_prefix:
        return
    glue = " AND " if " WHERE " in coll.from_sql else " WHERE "
    covers = conn.execute(
        text(_COVERS_ALL.format(from_=coll.from_sql + glue)), {"scope_prefix": scope_prefix}
    ).scalar()
    if not covers:
        clauses.append(_SCOPE_CLAUSE)
        binds["scope_prefix"] = scope_prefix


def _keys(coll: Collection, q: ItemsQuery) -> list[tuple[str, bool]]:
    return [(p.sql, desc) for p, desc in q.sortby] + [(k, False) for k in coll.order]


def _page_sql(coll: Collection, q: ItemsQuery, where_from: str, backward: bool) -> str:
    keys = _keys(coll, q)
    aliases = [f"k{i}" for i in range(len(keys))]
    selected = ", ".join(f"{sql} AS {a}" for (sql, _), a in zip(keys, aliases, strict=True))
    order = list(coll.order)
    tie = aliases[len(q.sortby) :]
    in_page = f"({', '.join(order)}) IN (SELECT {', '.join(tie)} FROM page)"
    by_alias = [(a, desc) for a, (_, desc) in zip(aliases, keys, strict=True)]
    return f"""
    -- one page: the sort keys are paged first (an index walk from the cursor, or OFFSET);
    -- features are built for the page's rows only, found by their (unique) keys: the
    -- filters are not evaluated a second time
    WITH page AS (
        SELECT {selected}
        {where_from}
        ORDER BY {order_by(keys, backward=backward)}
        LIMIT :limit OFFSET :offset
    )
    SELECT f, {", ".join(aliases)} FROM (
        SELECT ({feature_sql(coll, q.crs, q.properties)})::text AS f, {selected}
        {and_where(coll.from_sql, [in_page])}
    ) q
    ORDER BY {order_by(by_alias)}
    """


#: Transaction-local settings for page and bounded-count queries (see the module docstring).
_SMALL_QUERIES: Final = (
    "SELECT set_config('jit', 'off', true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)


def _bounded_count(
    conn: Connection, coll: Collection, clauses: list[str], binds: dict[str, Any], bound: int
) -> int | None:
    """The number of matches when at most ``bound``, else None (never an estimate).

    The planner's row estimate only decides whether to count: beyond ``ESTIMATE_SLACK``
    times the bound the count is skipped (it would read ``bound`` + 1 rows to say
    nothing). Otherwise ``count(*)`` reads at most ``bound`` + 1 matching rows.
    """
    where_from = and_where(coll.from_sql, clauses)
    plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) SELECT 1 {where_from}"), binds).scalar_one()
    if float(plan[0]["Plan"]["Plan Rows"]) > ESTIMATE_SLACK * max(bound, 1):
        return None
    sql = f"SELECT count(*) FROM (SELECT 1 {where_from} LIMIT :cap) n"
    n = int(conn.execute(text(sql), {**binds, "cap": bound + 1}).scalar_one())
    return n if n <= bound else None


def _url(base: str, params: Sequence[tuple[str, str]]) -> str:
    from urllib.parse import urlencode

    return f"{base}?{urlencode(list(params))}" if params else base


def items_page(
    conn: Connection,
    coll: Collection,
    q: ItemsQuery,
    *,
    base: str,
    scope_prefix: str | None = None,
    count_bound: int = COUNT_BOUND,
) -> bytes:
    """The GeoJSON FeatureCollection of one page, with paging links.

    Parameters
    ----------
    conn
        A connection to the store.
    coll
        The collection.
    q
        The validated request (:func:`geogrid.ogcapi.query.parse_items_query`).
    base
        The absolute URL of the API root, e.g. ``http://host/ogc``.
    scope_prefix
        Only rows whose grid (or village) code starts with this (a user's scope).
    count_bound
        ``numberMatched`` is given (exact) when at most this many features match and
        the planner does not expect more, or when the page holds the last match.

    Returns
    -------
    bytes
        UTF-8 JSON: ``type``, ``features``, ``numberMatched`` (see ``count_bound``;
        exact whenever present), ``numberReturned``,
        ``timeStamp``, ``links`` (``self``, ``alternate``, ``collection``, and ``next``
        / ``prev`` carrying a cursor when there are more or earlier features).
    """
    clauses, binds = where_clauses(coll, q)
    _scoped(conn, coll, clauses, binds, scope_prefix)
    conn.execute(text(_SMALL_QUERIES))
    backward = q.cursor is not None and q.cursor.backward
    page_clauses = list(clauses)
    page_binds = dict(binds)
    if q.cursor is not None:
        seek, seek_binds = keyset_clause(_keys(coll, q), q.cursor)
        page_clauses.append(seek)
        page_binds.update(seek_binds)
    sql = _page_sql(coll, q, and_where(coll.from_sql, page_clauses), backward)
    offset = 0 if q.cursor is not None else q.offset
    try:
        rows = conn.execute(text(sql), {**page_binds, "limit": q.limit + 1, "offset": offset}).all()
    except DataError:
        raise InvalidParameterValue(
            "invalid cursor: follow the next/prev links of a page", detail={"parameter": "cursor"}
        ) from None
    more = len(rows) > q.limit
    if more:
        rows = rows[1:] if backward else rows[:-1]
    if q.cursor is None and not more and (rows or not q.offset):
        matched: int | None = q.offset + len(rows)  # this page holds the last match
    else:
        matched = _bounded_count(conn, coll, clauses, binds, count_bound)
    links = _page_links(coll, q, base, rows, more=more, backward=backward)
    head = json.dumps(
        {
            "type": "FeatureCollection",
            **({} if matched is None else {"numberMatched": matched}),
            "numberReturned": len(rows),
            "timeStamp": now_rfc3339(),
            "links": links,
        },
        ensure_ascii=False,
    )
    features = ",".join(r[0] for r in rows)
    return (head[:-1] + ', "features": [' + features + "]}").encode()


def _page_links(
    coll: Collection,
    q: ItemsQuery,
    base: str,
    rows: Sequence[Any],
    *,
    more: bool,
    backward: bool,
) -> list[dict[str, str]]:
    href = f"{base}/collections/{coll.id}/items"
    position = q.offset
    here = list(q.echo)
    if position:
        here.append(("offset", str(position)))
    if q.cursor is not None:
        here.append(
            ("cursor", encode_cursor(q.cursor.values, backward=backward, sort_key=q.sort_key))
        )
    links = [
        link(_url(href, here), "self", GEOJSON, "this page"),
        link(
            _url(href, [*[p for p in here if p[0] != "f"], ("f", "json")]),
            "alternate",
            JSON,
            "this page as JSON",
        ),
        link(
            _url(href, [*[p for p in here if p[0] not in ("f", "crs")], ("f", "html")]),
            "alternate",
            HTML,
            "this page as HTML (a map)",
        ),
        link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]
    has_next = more if not backward else True
    has_prev = (more if backward else position > 0 or q.cursor is not None) and bool(rows)
    if rows and has_next:
        after = encode_cursor(tuple(rows[-1][1:]), backward=False, sort_key=q.sort_key)
        params = [*q.echo, ("offset", str(position + len(rows))), ("cursor", after)]
        links.append(link(_url(href, params), "next", GEOJSON, "next page"))
    if has_prev:
        before = encode_cursor(tuple(rows[0][1:]), backward=True, sort_key=q.sort_key)
        prev = max(0, position - q.limit)
        params = [*q.echo, *([("offset", str(prev))] if prev else []), ("cursor", before)]
        links.append(link(_url(href, params), "prev", GEOJSON, "previous page"))
    elif not rows and position > 0:
        prev = max(0, position - q.limit)
        params = [*q.echo, *([("offset", str(prev))] if prev else [])]
        links.append(link(_url(href, params), "prev", GEOJSON, "previous page"))
    return links


def get_feature(
    conn: Connection,
    coll: Collection,
    feature_id: str,
    *,
    base: str,
    crs: Crs = STORAGE,
    scope_prefix: str | None = None,
) -> bytes:
    """One feature as GeoJSON (in ``crs``) with ``self``, ``alternate`` and ``collection``
    links.

    Raises
    ------
    geogrid.errors.NotFound
        When the collection has no such feature.
    """
    clauses, binds = [f"{coll.fid} = :fid"], {"fid": feature_id}
    _scoped(conn, coll, clauses, binds, scope_prefix)
    sql = f"SELECT {feature_sql(coll, crs)}::text {and_where(coll.from_sql, clauses)}"
    row = conn.execute(text(sql + " LIMIT 1"), binds).first()
    if row is None:
        raise NotFound(f"collection {coll.id!r} has no feature {feature_id!r}")
    href = f"{base}/collections/{coll.id}/items/{feature_id}"
    links = [
        link(href, "self", GEOJSON, "this feature"),
        link(f"{href}?f=json", "alternate", JSON, "this feature as JSON"),
        link(f"{href}?f=html", "alternate", HTML, "this feature as HTML (a map)"),
        link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]
    feature = row[0]
    return (feature[:-1] + ', "links": ' + json.dumps(links, ensure_ascii=False) + "}").encode()
