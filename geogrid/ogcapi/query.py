"""The query string of ``/collections/{id}/items``, validated into an :class:`ItemsQuery`.

Every rule has its own 400 (:class:`~geogrid.ogcapi.InvalidParameterValue`, naming the
parameter): unknown or repeated parameters, ``f``, ``limit``, ``offset``, ``bbox`` (in
``bbox-crs``), ``datetime``, ``crs``, ``filter``/``filter-lang``/``filter-crs``,
``sortby``, ``properties``, ``cursor`` and the per-property equality filters.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from geogrid.features import DEFAULT_LIMIT, LOCAL_TZ, MAX_LIMIT, Collection, Property
from geogrid.ogcapi import InvalidParameterValue
from geogrid.ogcapi.cql import GEOMETRY, Field, compile_filter, parse_filter
from geogrid.ogcapi.crs import STORAGE, Crs, parse_crs
from geogrid.ogcapi.paging import Cursor, decode_cursor

__all__ = [
    "HTML_FORMATS",
    "MAX_OFFSET",
    "ItemsQuery",
    "TimeFilter",
    "fields_of",
    "parse_datetime",
    "parse_items_query",
    "reject_unknown",
]

#: Largest ``offset`` (PostgreSQL ``bigint``; beyond it the database would fail).
MAX_OFFSET: Final = 2**63 - 1
_FORMATS = ("json", "geojson")
#: ``f`` of the resources that are pages too (landing page, conformance, collections,
#: items, features): the ``html`` conformance class.
HTML_FORMATS: Final = (*_FORMATS, "html")
#: Parameters of ``/items`` besides the collection's property filters.
ITEMS_PARAMS: Final = (
    "f",
    "bbox",
    "bbox-crs",
    "limit",
    "offset",
    "cursor",
    "datetime",
    "crs",
    "filter",
    "filter-lang",
    "filter-crs",
    "sortby",
    "properties",
)


def reject_unknown(
    params: Sequence[tuple[str, str]],
    allowed: Sequence[str],
    where: str,
    formats: Sequence[str] = _FORMATS,
) -> None:
    """Raise :class:`InvalidParameterValue` for a parameter not in ``allowed``.

    Also checks ``f`` (one of ``formats``: ``json``/``geojson`` unless the resource is a
    page too, :data:`HTML_FORMATS`) and that no parameter is repeated.

    >>> reject_unknown([("f", "json")], ["f"], "/ogc")
    >>> reject_unknown([("foo", "1")], ["f"], "/ogc")
    Traceback (most recent call last):
    ...
    geogrid.ogcapi.InvalidParameterValue: unknown query parameter 'foo' for /ogc; allowed: f
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
        if name == "f" and value not in formats:
            raise InvalidParameterValue(
                f"unsupported format f={value!r}; this resource answers f="
                + " or f=".join(f for f in formats if f != "geojson"),
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


def _bbox(value: str, crs: Crs) -> tuple[float, float, float, float]:
    """``bbox`` in ``crs``'s axis order → (min east/lon, min north/lat, max, max)."""
    parts = value.split(",")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    order = "minlat,minlon,maxlat,maxlon" if crs.flip and crs.geographic else "minx,miny,maxx,maxy"
    if crs == STORAGE:
        order = "minlon,minlat,maxlon,maxlat in CRS84"
    if len(nums) not in (4, 6) or not all(math.isfinite(n) for n in nums):
        raise InvalidParameterValue(
            f"invalid bbox={value!r}: expected 4 (or 6) comma-separated numbers {order}",
            detail={"parameter": "bbox"},
        )
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    x0, y0, x1, y1 = (nums[1], nums[0], nums[3], nums[2]) if crs.flip else nums
    if crs.geographic and not (
        -180 <= x0 <= 180 and -180 <= x1 <= 180 and -90 <= y0 <= 90 and -90 <= y1 <= 90
    ):
        raise InvalidParameterValue(
            f"invalid bbox={value!r}: longitudes must be in [-180, 180] and latitudes in "
            f"[-90, 90] ({order})",
            detail={"parameter": "bbox"},
        )
    if y0 > y1 or (not crs.geographic and x0 > x1):
        raise InvalidParameterValue(
            f"invalid bbox={value!r}: the lower corner is above the upper one ({order})",
            detail={"parameter": "bbox"},
        )
    return x0, y0, x1, y1


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


def fields_of(coll: Collection) -> dict[str, Field]:
    """The collection's queryables for filters: every public property and the geometry."""
    out = {p.name: Field(p.sql, p.type) for p in coll.properties}
    out[GEOMETRY] = Field("t.geom", "geometry")
    return out


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
    crs: Crs = STORAGE
    bbox_crs: Crs = STORAGE
    #: the compiled ``filter``: SQL with placeholders only, and the bound values
    cql: tuple[str, dict[str, Any]] | None = None
    sortby: tuple[tuple[Property, bool], ...] = ()
    properties: tuple[str, ...] | None = None
    cursor: Cursor | None = None

    @property
    def sort_key(self) -> str:
        """The sort order as text (a cursor is only valid for the order it was made in)."""
        return ",".join(("-" if desc else "+") + p.name for p, desc in self.sortby)


def _sortby(coll: Collection, value: str) -> tuple[tuple[Property, bool], ...]:
    by_name = {p.name: p for p in coll.properties}
    out: list[tuple[Property, bool]] = []
    for raw in value.split(","):
        item = raw.strip()
        desc = item.startswith("-")
        name = item.lstrip("+- ")
        if name not in by_name or name in (p.name for p, _ in out):
            raise InvalidParameterValue(
                f"invalid sortby={value!r}: {name!r} is not a sortable property (or is "
                f"repeated); sortables: {', '.join(by_name)}; '-name' sorts descending",
                detail={"parameter": "sortby"},
            )
        out.append((by_name[name], desc))
    return tuple(out)


def _properties(coll: Collection, value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    known = [p.name for p in coll.properties]
    for name in names:
        if name not in known:
            raise InvalidParameterValue(
                f"invalid properties={value!r}: no property {name!r}; properties: "
                f"{', '.join(known)}",
                detail={"parameter": "properties"},
            )
    return tuple(n for n in known if n in names)


def _typed(prop: Property, raw: str) -> Any:
    """A ``?name=value`` equality filter's value as the property's type (bound as such)."""
    expected = {
        "integer": "an integer",
        "boolean": "true or false",
        "date": "an RFC 3339 date",
        "date-time": "an RFC 3339 date-time",
    }
    try:
        if prop.type == "integer":
            return int(raw)
        if prop.type == "boolean" and raw in ("true", "false"):
            return raw == "true"
        if prop.type == "date":
            return dt.date.fromisoformat(raw)
        if prop.type == "date-time" and len(raw) > 10:
            return _instant(raw, end=False)[0]
        if prop.type not in expected:
            return raw
    except ValueError:
        pass
    raise InvalidParameterValue(
        f"invalid {prop.name}={raw!r}: expected {expected[prop.type]}",
        detail={"parameter": prop.name},
    )


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
        Unknown parameter, repeated parameter, or an invalid value of any of them.

    Examples
    --------
    >>> from geogrid.features import COLLECTIONS
    >>> q = parse_items_query(COLLECTIONS["key_units"], [("risk_level", "3"), ("limit", "99999")])
    >>> q.limit, q.filters
    (10000, {'risk_level': 3})
    """
    reject_unknown(
        params, [*ITEMS_PARAMS, *coll.queryables], f"collection {coll.id!r}", HTML_FORMATS
    )
    values = dict(params)
    limit = min(_int_param("limit", values.get("limit", str(DEFAULT_LIMIT)), 1), MAX_LIMIT)
    offset = _int_param("offset", values.get("offset", "0"), 0)
    crs = parse_crs(values["crs"], "crs") if "crs" in values else STORAGE
    bbox_crs = parse_crs(values["bbox-crs"], "bbox-crs") if "bbox-crs" in values else STORAGE
    if "bbox-crs" in values and "bbox" not in values:
        raise InvalidParameterValue("bbox-crs given without bbox", detail={"parameter": "bbox-crs"})
    bbox = _bbox(values["bbox"], bbox_crs) if "bbox" in values else None
    time = None
    if "datetime" in values:
        if coll.time is None:
            raise InvalidParameterValue(
                f"collection {coll.id!r} has no temporal property: datetime is not allowed",
                detail={"parameter": "datetime"},
            )
        time = parse_datetime(values["datetime"])
    filters = {
        name: _typed(prop, values[name]) for name, prop in coll.queryables.items() if name in values
    }
    cql = None
    if "filter" in values:
        filter_crs = (
            parse_crs(values["filter-crs"], "filter-crs") if "filter-crs" in values else STORAGE
        )
        node = parse_filter(values["filter"], values.get("filter-lang", "cql2-text"))
        cql = compile_filter(node, fields_of(coll), crs=filter_crs, prefix="cq")
    elif "filter-lang" in values or "filter-crs" in values:
        name = "filter-lang" if "filter-lang" in values else "filter-crs"
        raise InvalidParameterValue(f"{name} given without filter", detail={"parameter": name})
    sortby = _sortby(coll, values["sortby"]) if "sortby" in values else ()
    props = _properties(coll, values["properties"]) if "properties" in values else None
    query = ItemsQuery(
        limit, offset, bbox, time, filters, (), crs, bbox_crs, cql, sortby, props, None
    )
    cursor = None
    if "cursor" in values:
        cursor = decode_cursor(values["cursor"], sort_key=query.sort_key, keys=_n_keys(coll, query))
    echo = tuple(
        (k, str(limit) if k == "limit" else v) for k, v in params if k not in ("offset", "cursor")
    )
    return ItemsQuery(
        limit, offset, bbox, time, filters, echo, crs, bbox_crs, cql, sortby, props, cursor
    )


def _n_keys(coll: Collection, q: ItemsQuery) -> int:
    return len(q.sortby) + len(coll.order)
