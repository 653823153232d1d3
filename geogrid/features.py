"""OGC API – Features collections: definitions, request parsing and parameterised SQL.

The web layer (``api.routes.ogc``) is thin: it hands the raw query string to
:func:`parse_items_query` and calls :func:`items_page` / :func:`get_feature` /
:func:`collection_document`. Everything that must follow the specification lives here
(OGC API – Features – Part 1: Core, 17-069r4):

* every collection is a fixed definition (:data:`COLLECTIONS`): its ``FROM`` clause, a
  feature id, its public properties (never a personal field: households are only
  counted), its queryable properties and its temporal property, if any;
* SQL identifiers come only from these definitions; every request value is bound;
  the spatial filter is ``geom && ST_MakeEnvelope(…, 4326)`` (GiST) plus
  ``ST_Intersects``; geometries are written by ``ST_AsGeoJSON`` with CRS84 axis order
  (EPSG:4326 stored as lon, lat);
* the feature array is built by PostgreSQL (``json_agg``) and wrapped, not re-parsed;
* unknown or invalid query parameters raise :class:`InvalidParameterValue` (HTTP 400);
  ``limit`` above :data:`MAX_LIMIT` is clamped, as the standard asks.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput, NotFound

__all__ = [
    "COLLECTIONS",
    "CONFORMANCE",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Collection",
    "InvalidParameterValue",
    "ItemsQuery",
    "Property",
    "collection_document",
    "get_collection",
    "get_feature",
    "items_page",
    "parse_datetime",
    "parse_items_query",
    "reject_unknown",
]

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 10_000
CRS84: Final = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GEOJSON: Final = "application/geo+json"
JSON: Final = "application/json"

#: Conformance classes implemented (Part 1: Core, GeoJSON, OpenAPI 3.0).
CONFORMANCE: Final = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
)

#: Times and dates written without an offset are in China Standard Time.
LOCAL_TZ: Final = ZoneInfo("Asia/Shanghai")

#: Decimal digits of coordinates in GeoJSON (1e-7° ≈ 1 cm).
DIGITS: Final = 7


class InvalidParameterValue(InvalidInput):
    """A query parameter is unknown or its value is invalid (OGC exception code, HTTP 400)."""


PropType = Literal["string", "integer", "date-time", "date"]


@dataclass(frozen=True)
class Property:
    """A public property of a collection.

    Attributes
    ----------
    name
        The property name in GeoJSON (and the query parameter when queryable).
    sql
        An SQL expression over the collection's ``FROM`` clause (alias ``t``).
    type
        JSON Schema type (``date-time``/``date`` are strings with that format).
    queryable
        Whether ``?name=value`` filters on it (equality).
    """

    name: str
    sql: str
    type: PropType = "string"
    queryable: bool = False
    description: str = ""


@dataclass(frozen=True)
class Collection:
    """A feature collection served at ``/ogc/collections/{id}``.

    ``from_sql`` is a fixed ``FROM … WHERE …`` clause (alias ``t``, no user input);
    ``fid`` the SQL expression of the feature id; ``order`` the unique sort key that
    makes ``offset`` paging stable; ``time`` the temporal property, if any.
    """

    id: str
    title: str
    description: str
    from_sql: str
    fid: str
    order: tuple[str, ...]
    geometry_type: str
    properties: tuple[Property, ...]
    time: Property | None = None
    layer: str = ""

    @property
    def queryables(self) -> dict[str, Property]:
        """The properties that may be used as ``?name=value`` filters."""
        return {p.name: p for p in self.properties if p.queryable}


def _str(name: str, sql: str | None = None, *, q: bool = False, d: str = "") -> Property:
    return Property(name, sql or f"t.{name}", "string", q, d)


def _int(name: str, sql: str | None = None, *, q: bool = False, d: str = "") -> Property:
    return Property(name, sql or f"t.{name}", "integer", q, d)


_REPORTED_AT = Property("reported_at", "t.reported_at", "date-time", False, "time reported")
_LAST_INSPECTED = Property("last_inspected", "t.last_inspected", "date", False, "last inspection")

_GROUP_HOUSEHOLDS = "(SELECT count(*) FROM households h WHERE h.group_id = t.id)"
_VILLAGE_HOUSEHOLDS = "(SELECT count(*) FROM households h WHERE h.village_code = t.code)"

#: The served collections. Every property listed here is public; personal fields
#: (head of household, phone, register number) are not and never may be.
COLLECTIONS: Final[dict[str, Collection]] = {
    c.id: c
    for c in (
        Collection(
            id="towns",
            title="Towns (乡镇/街道)",
            description="Town boundaries with their official 12-digit codes.",
            from_sql="FROM admin_areas t WHERE t.level = 'town'",
            fid="t.code",
            order=("t.code",),
            geometry_type="MultiPolygon",
            properties=(
                _str("code", q=True, d="12-digit town code"),
                _str("name", q=True),
                _str("county_code", "left(t.code, 6)", q=True, d="6-digit county code"),
            ),
            layer="towns",
        ),
        Collection(
            id="villages",
            title="Villages (行政村/社区)",
            description="Village boundaries; households as a count only.",
            from_sql="FROM admin_areas t WHERE t.level = 'village'",
            fid="t.code",
            order=("t.code",),
            geometry_type="MultiPolygon",
            properties=(
                _str("code", q=True, d="12-digit village code"),
                _str("name", q=True),
                _str("town_code", "t.parent_code", q=True),
                _int("households", _VILLAGE_HOUSEHOLDS, d="number of registered households"),
            ),
            layer="villages",
        ),
        Collection(
            id="groups",
            title="Villager groups (村民小组)",
            description="Villager-group territories; households as a count only.",
            from_sql="FROM villager_groups t",
            fid="t.village_code || '-' || t.group_no",
            order=("t.village_code", "t.group_no"),
            geometry_type="MultiPolygon",
            properties=(
                _str("village_code", q=True),
                _int("group_no", q=True),
                _str("name", q=True),
                _str("territory_source", q=True, d="supplied or derived"),
                _int("households", _GROUP_HOUSEHOLDS, d="number of registered households"),
            ),
            layer="groups",
        ),
        Collection(
            id="grids",
            title="Grids of the active plans (网格)",
            description="Basic (level-3) grids of each town's active plan.",
            from_sql=(
                "FROM grids t JOIN plans p ON p.id = t.plan_id AND p.status = 'active' "
                "WHERE t.level = 3"
            ),
            fid="t.code",
            order=("t.code",),
            geometry_type="MultiPolygon",
            properties=(
                _str("code", q=True, d="15-digit grid code"),
                _str("name"),
                _str("village_code", q=True),
                _str("town_code", "p.town_code", q=True),
                _int("plan_id", q=True),
                _int("households", d="number of households in the grid"),
                _int("population"),
            ),
            layer="grids",
        ),
        Collection(
            id="cases",
            title="Cases (事件)",
            description="Reported cases: public fields only.",
            from_sql="FROM cases t",
            fid="t.case_no",
            order=("t.case_no",),
            geometry_type="Point",
            properties=(
                _str("case_no", q=True),
                _str("category", q=True),
                _str("status", q=True),
                _REPORTED_AT,
                _str("village_code", q=True),
                _str("grid_code", q=True),
                _str("description", d="public description"),
            ),
            time=_REPORTED_AT,
            layer="cases",
        ),
        Collection(
            id="key_units",
            title="Key units (重点单位)",
            description="Schools, petrol stations, care homes, factories, markets…",
            from_sql="FROM key_units t",
            fid="t.unit_no",
            order=("t.unit_no",),
            geometry_type="Point",
            properties=(
                _str("unit_no", q=True),
                _str("name", q=True),
                _str("unit_type", q=True),
                _int("risk_level", q=True, d="1 low – 3 high"),
                _str("address"),
                _str("village_code", q=True),
                _str("grid_code", q=True),
            ),
            layer="key_units",
        ),
        Collection(
            id="inspection_points",
            title="Fire inspection points (消防检查点)",
            description="Inspection points with their schedule and last inspection.",
            from_sql="FROM inspection_points t",
            fid="t.point_no",
            order=("t.point_no",),
            geometry_type="Point",
            properties=(
                _str("point_no", q=True),
                _str("name", q=True),
                _str("schedule", q=True),
                _LAST_INSPECTED,
                _str(
                    "key_unit_no",
                    "(SELECT k.unit_no FROM key_units k WHERE k.id = t.key_unit_id)",
                ),
                _str("village_code", q=True),
                _str("grid_code", q=True),
            ),
            time=_LAST_INSPECTED,
            layer="inspection_points",
        ),
    )
}


def get_collection(collection_id: str) -> Collection:
    """The collection definition, or :class:`~geogrid.errors.NotFound`."""
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise NotFound(
            f"no collection {collection_id!r}; collections are {', '.join(COLLECTIONS)}"
        ) from None


# ---------------------------------------------------------------------------
# Request parsing
# ---------------------------------------------------------------------------

_FORMATS = ("json", "geojson")


def reject_unknown(params: Sequence[tuple[str, str]], allowed: Sequence[str], where: str) -> None:
    """Raise :class:`InvalidParameterValue` for a parameter not in ``allowed``.

    Also checks ``f`` (``json``/``geojson`` only) and that no parameter is repeated.

    >>> reject_unknown([("f", "json")], ["f"], "/ogc")
    >>> reject_unknown([("foo", "1")], ["f"], "/ogc")
    Traceback (most recent call last):
    ...
    geogrid.features.InvalidParameterValue: unknown query parameter 'foo' for /ogc; allowed: f
    """
    seen: set[str] = set()
    for name, value in params:
        if name not in allowed:
            raise InvalidParameterValue(
                f"unknown query parameter {name!r} for {where}; allowed: {', '.join(allowed)}",
                detail={"parameter": name},
            )
        if name in seen:
            raise InvalidParameterValue(
                f"query parameter {name!r} given more than once", detail={"parameter": name}
            )
        seen.add(name)
        if name == "f" and value not in _FORMATS:
            raise InvalidParameterValue(
                f"unsupported format f={value!r}; this service answers f=json (GeoJSON)",
                detail={"parameter": "f"},
            )


@dataclass(frozen=True)
class TimeFilter:
    """A closed, half-open or open interval; ``hi_exclusive`` when it ends at a day's end."""

    lo: dt.datetime | None
    hi: dt.datetime | None
    hi_exclusive: bool = False


def _instant(text_: str, *, end: bool) -> tuple[dt.datetime, bool]:
    """(datetime, exclusive end) for an RFC 3339 date-time or a date (a whole local day)."""
    value = text_.strip()
    if len(value) == 10:
        day = dt.date.fromisoformat(value)
        start = dt.datetime.combine(day, dt.time(0), LOCAL_TZ)
        if end:
            return start + dt.timedelta(days=1), True
        return start, False
    parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LOCAL_TZ)
    return parsed, False


def parse_datetime(value: str) -> TimeFilter:
    """Parse the ``datetime`` parameter: an instant or an interval (``..`` or empty = open).

    Dates stand for whole days in China Standard Time; date-times without an offset too.

    >>> f = parse_datetime("../2025-06-30")
    >>> f.lo, f.hi.isoformat(), f.hi_exclusive
    (None, '2025-07-01T00:00:00+08:00', True)
    >>> parse_datetime("2025-01-01T00:00:00Z/2025-02-01T00:00:00Z").hi.isoformat()
    '2025-02-01T00:00:00+00:00'
    """
    where = f"datetime={value!r}"
    try:
        if "/" in value:
            start, _, stop = value.partition("/")
            if "/" in stop:
                raise ValueError("more than one '/'")
            lo = None if start in ("", "..") else _instant(start, end=False)[0]
            hi, excl = (None, False) if stop in ("", "..") else _instant(stop, end=True)
            if lo is not None and hi is not None and (hi < lo or (excl and hi <= lo)):
                raise ValueError("the interval ends before it starts")
            return TimeFilter(lo, hi, excl)
        if value in ("", ".."):
            raise ValueError("an instant cannot be open")
        lo, _ = _instant(value, end=False)
        hi, excl = _instant(value, end=True)
        return TimeFilter(lo, hi, excl)
    except ValueError as exc:
        raise InvalidParameterValue(
            f"invalid {where}: {exc}; expected an RFC 3339 date-time or date, or an interval "
            "such as 2025-01-01T00:00:00Z/2025-06-30T23:59:59Z, ../2025-06-30 or 2025-01-01/..",
            detail={"parameter": "datetime"},
        ) from None


def _bbox(value: str) -> tuple[float, float, float, float]:
    parts = value.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) not in (4, 6) or not all(math.isfinite(n) for n in nums):
        raise InvalidParameterValue(
            f"invalid bbox={value!r}: expected 4 (or 6) comma-separated numbers "
            "minlon,minlat,maxlon,maxlat in CRS84",
            detail={"parameter": "bbox"},
        )
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    x0, y0, x1, y1 = nums
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise InvalidParameterValue(
            f"invalid bbox={value!r}: longitudes must be in [-180, 180] and latitudes in "
            "[-90, 90] (CRS84: longitude first)",
            detail={"parameter": "bbox"},
        )
    if y0 > y1:
        raise InvalidParameterValue(
            f"invalid bbox={value!r}: the lower latitude is above the upper one",
            detail={"parameter": "bbox"},
        )
    return x0, y0, x1, y1


#: Largest ``offset`` (PostgreSQL ``bigint``; beyond it the database would fail).
MAX_OFFSET = 2**63 - 1


def _int_param(name: str, value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = minimum - 1
    if not minimum <= n <= MAX_OFFSET:
        raise InvalidParameterValue(
            f"invalid {name}={value!r}: expected an integer from {minimum} to {MAX_OFFSET}",
            detail={"parameter": name},
        )
    return n


@dataclass(frozen=True)
class ItemsQuery:
    """A validated ``/items`` request."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    bbox: tuple[float, float, float, float] | None = None
    datetime: TimeFilter | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    #: the request's parameters as given (for next/prev/self links), limit clamped
    echo: tuple[tuple[str, str], ...] = ()


def parse_items_query(coll: Collection, params: Sequence[tuple[str, str]]) -> ItemsQuery:
    """Validate the query string of ``/collections/{id}/items``.

    Parameters
    ----------
    coll
        The collection.
    params
        The raw ``(name, value)`` pairs, in order.

    Raises
    ------
    InvalidParameterValue
        Unknown parameter, repeated parameter, bad ``f``, ``bbox``, ``limit``,
        ``offset``, ``datetime`` (also on a collection without time) or filter value.

    Examples
    --------
    >>> q = parse_items_query(COLLECTIONS["key_units"], [("risk_level", "3"), ("limit", "99999")])
    >>> q.limit, q.filters
    (10000, {'risk_level': 3})
    """
    allowed = ["f", "bbox", "limit", "offset", "datetime", *coll.queryables]
    reject_unknown(params, allowed, f"collection {coll.id!r}")
    values = dict(params)
    limit = min(_int_param("limit", values.get("limit", str(DEFAULT_LIMIT)), 1), MAX_LIMIT)
    offset = _int_param("offset", values.get("offset", "0"), 0)
    bbox = _bbox(values["bbox"]) if "bbox" in values else None
    time = None
    if "datetime" in values:
        if coll.time is None:
            raise InvalidParameterValue(
                f"collection {coll.id!r} has no temporal property: datetime is not allowed",
                detail={"parameter": "datetime"},
            )
        time = parse_datetime(values["datetime"])
    filters: dict[str, Any] = {}
    for name, prop in coll.queryables.items():
        if name not in values:
            continue
        raw = values[name]
        if prop.type == "integer":
            try:
                filters[name] = int(raw)
            except ValueError:
                raise InvalidParameterValue(
                    f"invalid {name}={raw!r}: expected an integer", detail={"parameter": name}
                ) from None
        else:
            filters[name] = raw
    echo = tuple((k, str(limit) if k == "limit" else v) for k, v in params if k != "offset")
    return ItemsQuery(limit, offset, bbox, time, filters, echo)


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------


def _where(coll: Collection, q: ItemsQuery) -> tuple[list[str], dict[str, Any]]:
    clauses: list[str] = []
    binds: dict[str, Any] = {}
    if q.bbox is not None:
        x0, y0, x1, y1 = q.bbox
        env = "ST_MakeEnvelope(:bx0, :by0, :bx1, :by1, 4326)"
        if x0 <= x1:
            clauses.append(f"(t.geom && {env} AND ST_Intersects(t.geom, {env}))")
            binds.update(bx0=x0, by0=y0, bx1=x1, by1=y1)
        else:  # crossing the antimeridian: two boxes
            env2 = "ST_MakeEnvelope(:bx2, :by0, :bx3, :by1, 4326)"
            clauses.append(
                f"((t.geom && {env} AND ST_Intersects(t.geom, {env})) OR "
                f"(t.geom && {env2} AND ST_Intersects(t.geom, {env2})))"
            )
            binds.update(bx0=x0, by0=y0, bx1=180.0, by1=y1, bx2=-180.0, bx3=x1)
    if q.datetime is not None and coll.time is not None:
        col, tf = coll.time.sql, q.datetime
        if coll.time.type == "date":
            # a date is the whole local day: it meets [lo, hi] when day ≥ lo's day, ≤ hi's
            if tf.lo is not None:
                clauses.append(f"{col} >= :t_lo")
                binds["t_lo"] = tf.lo.astimezone(LOCAL_TZ).date()
            if tf.hi is not None:
                # an exclusive end is a local midnight (the end of a date): days before it
                clauses.append(f"{col} {'<' if tf.hi_exclusive else '<='} :t_hi")
                binds["t_hi"] = tf.hi.astimezone(LOCAL_TZ).date()
        else:
            if tf.lo is not None:
                clauses.append(f"{col} >= :t_lo")
                binds["t_lo"] = tf.lo
            if tf.hi is not None:
                clauses.append(f"{col} {'<' if tf.hi_exclusive else '<='} :t_hi")
                binds["t_hi"] = tf.hi
    for i, (name, value) in enumerate(q.filters.items()):
        clauses.append(f"{coll.queryables[name].sql} = :p{i}")
        binds[f"p{i}"] = value
    return clauses, binds


def _and(base_from: str, clauses: list[str]) -> str:
    if not clauses:
        return base_from
    glue = " AND " if " WHERE " in base_from else " WHERE "
    return base_from + glue + " AND ".join(clauses)


def _feature_sql(coll: Collection) -> str:
    props = ", ".join(
        f"'{p.name}', {p.sql}" if p.type != "date-time" else f"'{p.name}', {_rfc3339(p.sql)}"
        for p in coll.properties
    )
    return (
        f"json_build_object('type', 'Feature', 'id', {coll.fid}, "
        f"'geometry', ST_AsGeoJSON(t.geom, {DIGITS})::json, "
        f"'properties', json_build_object({props}))"
    )


def _rfc3339(sql: str) -> str:
    """A timestamptz as RFC 3339 in UTC (``2025-01-01T00:49:33Z``)."""
    return f"to_char({sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


def _page_sql(coll: Collection, where_from: str) -> str:
    keys = ", ".join(f"{k} AS k{i}" for i, k in enumerate(coll.order))
    order = ", ".join(coll.order)
    agg_order = ", ".join(f"k{i}" for i in range(len(coll.order)))
    in_page = f"({order}) IN (SELECT {agg_order} FROM page)"
    return f"""
    -- one page: the sort keys are paged first (an index walk); features are built for the
    -- page's rows only (built before OFFSET, the skipped rows made deep pages cost seconds)
    WITH page AS (
        SELECT {keys}
        {where_from}
        ORDER BY {order}
        LIMIT :limit OFFSET :offset
    )
    SELECT count(*), COALESCE(json_agg(f ORDER BY {agg_order}), '[]'::json)::text
    FROM (
        SELECT {_feature_sql(coll)} AS f, {keys}
        {_and(where_from, [in_page])}
    ) q
    """


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _url(base: str, params: Sequence[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(list(params))}" if params else base


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def items_page(
    conn: Connection,
    coll: Collection,
    q: ItemsQuery,
    *,
    base: str,
    scope_prefix: str | None = None,
) -> bytes:
    """The GeoJSON FeatureCollection of one page, with paging links.

    Parameters
    ----------
    conn
        A connection to the store.
    coll
        The collection.
    q
        The validated request (:func:`parse_items_query`).
    base
        The absolute URL of the API root, e.g. ``http://host/ogc``.
    scope_prefix
        Only rows whose grid (or village) code starts with this (a user's scope).

    Returns
    -------
    bytes
        UTF-8 JSON: ``type``, ``features``, ``numberMatched``, ``numberReturned``,
        ``timeStamp``, ``links`` (``self``, ``alternate``, ``collection``, and ``next``
        / ``prev`` when there are more or earlier features).
    """
    clauses, binds = _where(coll, q)
    _scoped(conn, coll, clauses, binds, scope_prefix)
    where_from = _and(coll.from_sql, clauses)
    matched = int(conn.execute(text(f"SELECT count(*) {where_from}"), binds).scalar_one())
    returned, features = conn.execute(
        text(_page_sql(coll, where_from)), {**binds, "limit": q.limit, "offset": q.offset}
    ).one()
    href = f"{base}/collections/{coll.id}/items"
    page = [*q.echo, ("offset", str(q.offset))] if q.offset else list(q.echo)
    links = [
        _link(_url(href, page), "self", GEOJSON, "this page"),
        _link(
            _url(href, [*[p for p in page if p[0] != "f"], ("f", "json")]),
            "alternate",
            JSON,
            "this page as JSON",
        ),
        _link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]
    if q.offset + int(returned) < matched:
        links.append(
            _link(_url(href, [*q.echo, ("offset", str(q.offset + q.limit))]), "next", GEOJSON)
        )
    if q.offset > 0:
        prev = max(0, q.offset - q.limit)
        prev_params = [*q.echo, ("offset", str(prev))] if prev else list(q.echo)
        links.append(_link(_url(href, prev_params), "prev", GEOJSON))
    head = json.dumps(
        {
            "type": "FeatureCollection",
            "numberMatched": matched,
            "numberReturned": int(returned),
            "timeStamp": _now(),
            "links": links,
        },
        ensure_ascii=False,
    )
    return (head[:-1] + ', "features": ' + features + "}").encode()


def get_feature(
    conn: Connection,
    coll: Collection,
    feature_id: str,
    *,
    base: str,
    scope_prefix: str | None = None,
) -> bytes:
    """One feature as GeoJSON with ``self``, ``alternate`` and ``collection`` links.

    Raises
    ------
    geogrid.errors.NotFound
        When the collection has no such feature.
    """
    clauses, binds = [f"{coll.fid} = :fid"], {"fid": feature_id}
    _scoped(conn, coll, clauses, binds, scope_prefix)
    sql = f"SELECT {_feature_sql(coll)}::text {_and(coll.from_sql, clauses)}"
    row = conn.execute(text(sql + " LIMIT 1"), binds).first()
    if row is None:
        raise NotFound(f"collection {coll.id!r} has no feature {feature_id!r}")
    href = f"{base}/collections/{coll.id}/items/{feature_id}"
    links = [
        _link(href, "self", GEOJSON, "this feature"),
        _link(f"{href}?f=json", "alternate", JSON, "this feature as JSON"),
        _link(f"{base}/collections/{coll.id}", "collection", JSON, coll.title),
    ]
    feature = row[0]
    return (feature[:-1] + ', "links": ' + json.dumps(links, ensure_ascii=False) + "}").encode()


def _extent(conn: Connection, coll: Collection) -> dict[str, Any]:
    times = f"min({coll.time.sql}), max({coll.time.sql})" if coll.time else "NULL, NULL"
    row = conn.execute(
        text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), t0, t1 FROM ("
            f"SELECT ST_Extent(t.geom), {times} {coll.from_sql}) s(e, t0, t1)"
        )
    ).one()
    bbox = [float(v) for v in row[:4]] if row[0] is not None else [-180.0, -90.0, 180.0, 90.0]
    out: dict[str, Any] = {"spatial": {"bbox": [bbox], "crs": CRS84}}
    if coll.time is not None:

        def iso(v: Any) -> str | None:
            if v is None:
                return None
            if isinstance(v, dt.datetime):
                return v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return f"{v.isoformat()}T00:00:00+08:00"

        out["temporal"] = {
            "interval": [[iso(row[4]), iso(row[5])]],
            "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
        }
    return out


def collection_document(
    conn: Connection, coll: Collection, *, base: str, extent: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``/collections/{id}`` document: id, title, extent, item type, CRS, links.

    ``extent`` may be given from a cache (see :func:`collection_extent`).
    """
    return {
        "id": coll.id,
        "title": coll.title,
        "description": coll.description,
        "itemType": "feature",
        "crs": [CRS84],
        "extent": extent if extent is not None else _extent(conn, coll),
        "links": [
            _link(f"{base}/collections/{coll.id}", "self", JSON, coll.title),
            _link(f"{base}/collections/{coll.id}/items", "items", GEOJSON, f"{coll.title} items"),
        ],
    }


def collection_extent(conn: Connection, coll: Collection) -> dict[str, Any]:
    """The collection's spatial (CRS84) and, where it has time, temporal extent."""
    return _extent(conn, coll)


def layer_versions(conn: Connection) -> dict[str, int]:
    """Per-layer data versions (bumped by triggers): a cache key for extents."""
    return {
        str(k): int(v)
        for k, v in conn.execute(text("SELECT layer, version FROM layer_versions")).all()
    }
