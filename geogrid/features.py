"""OGC API – Features collections: their definitions and documents.

Every collection is a fixed definition (:data:`COLLECTIONS`): its ``FROM`` clause, a
feature id, its public properties (never a personal field: households are only counted),
its query-parameter filters and its temporal property, if any. SQL identifiers come only
from these definitions. Requests are validated by :mod:`geogrid.ogcapi.query` and pages
built by :mod:`geogrid.ogcapi.items` (re-exported here: :func:`parse_items_query`,
:func:`items_page`, :func:`get_feature`, :func:`reject_unknown`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from geogrid.errors import NotFound
from geogrid.ogcapi import InvalidParameterValue
from geogrid.ogcapi.crs import CRS84, SUPPORTED

__all__ = [
    "COLLECTIONS",
    "CONFORMANCE",
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Collection",
    "InvalidParameterValue",
    "Property",
    "collection_document",
    "get_collection",
    "link",
]

DEFAULT_LIMIT: Final = 10
MAX_LIMIT: Final = 10_000
GEOJSON: Final = "application/geo+json"
JSON: Final = "application/json"
SCHEMA_JSON: Final = "application/schema+json"
#: Link relation of a collection's queryables (OGC API – Features – Part 3).
REL_QUERYABLES: Final = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

_F1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
_F3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
#: Conformance classes implemented: Part 1 (core, GeoJSON, OpenAPI 3.0), Part 2 (CRS),
#: Part 3 (queryables, filter, features-filter) with CQL2 text and JSON, the advanced
#: comparison operators (LIKE, BETWEEN, IN) and the spatial operators.
CONFORMANCE: Final = (
    f"{_F1}core",
    f"{_F1}geojson",
    f"{_F1}oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    f"{_F3}queryables",
    f"{_F3}queryables-query-parameters",
    f"{_F3}filter",
    f"{_F3}features-filter",
    f"{_CQL2}basic-cql2",
    f"{_CQL2}cql2-text",
    f"{_CQL2}cql2-json",
    f"{_CQL2}advanced-comparison-operators",
    f"{_CQL2}basic-spatial-functions",
    f"{_CQL2}spatial-functions",
)

#: Times and dates written without an offset are in China Standard Time.
LOCAL_TZ: Final = ZoneInfo("Asia/Shanghai")

_MOVED = {
    "parse_items_query": "geogrid.ogcapi.query",
    "reject_unknown": "geogrid.ogcapi.query",
    "parse_datetime": "geogrid.ogcapi.query",
    "ItemsQuery": "geogrid.ogcapi.query",
    "items_page": "geogrid.ogcapi.items",
    "get_feature": "geogrid.ogcapi.items",
}


def __getattr__(name: str) -> Any:
    """Request parsing and pages moved to :mod:`geogrid.ogcapi` (they import this module)."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def now_rfc3339() -> str:
    """The current time, RFC 3339 in UTC (``timeStamp`` of pages)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        """The queryables (OGC API – Features – Part 3): every public property, usable in
        ``filter`` and as a ``?name=value`` equality filter."""
        return {p.name: p for p in self.properties}


def _str(name: str, sql: str | None = None, *, q: bool = False, d: str = "") -> Property:
    return Property(name, sql or f"t.{name}", "string", q, d)


def _int(name: str, sql: str | None = None, *, q: bool = False, d: str = "") -> Property:
    return Property(name, sql or f"t.{name}", "integer", q, d)


_REPORTED_AT = Property("reported_at", "t.reported_at", "date-time", False, "time reported")
_LAST_INSPECTED = Property("last_inspected", "t.last_inspected", "date", False, "last inspection")

#: 1 when a case's current step deadline has passed (geogrid.cases.machine.TIMED_STATUSES).
_OVERDUE = (
    "coalesce(t.status IN ('reported', 'accepted', 'verified', 'registered', 'dispatched', "
    "'in_progress', 'handled', 'checked', 'evaluated') AND t.due_at < now(), false)::int"
)
_GROUP_HOUSEHOLDS = "(SELECT count(*) FROM households h WHERE h.group_id = t.id)"
#: Key units and inspection points: due dates judged on the local day (geogrid.fieldwork).
_TODAY = "(now() AT TIME ZONE 'Asia/Shanghai')::date"
_OVERDUE_FILINGS = (
    f"(SELECT count(*) FROM key_unit_dues d WHERE d.unit_id = t.id AND d.due_date < {_TODAY})::int"
)
_DUE_STATE = (
    f"CASE WHEN t.next_due IS NULL THEN 'unknown' WHEN t.next_due < {_TODAY} THEN 'overdue' "
    f"WHEN t.next_due <= {_TODAY} + 7 THEN 'due' ELSE 'ok' END"
)
_VILLAGE_HOUSEHOLDS = "(SELECT count(*) FROM households h WHERE h.village_code = t.code)"
#: Basic grids of the active plans, with their identifying properties.
_ACTIVE_GRIDS = (
    "FROM grids t JOIN plans p ON p.id = t.plan_id AND p.status = 'active' WHERE t.level = 3"
)
_GRID_KEYS = (
    _str("code", q=True, d="15-digit grid code"),
    _str("name"),
    _str("village_code", q=True),
    _str("town_code", "p.town_code", q=True),
)
#: Visit coverage of a grid this quarter (geogrid.fieldwork.coverage; 0025's counting
#: function sees every visit and answers a number only).
_QUARTER = f"date_trunc('quarter', {_TODAY})::date"
_AREA_HOUSEHOLDS = "(SELECT count(*) FROM households h WHERE h.scope_key = t.code)::int"
_AREA_VISITED = f"geogrid_area_visited(t.code, {_QUARTER}, {_TODAY})"
_COVERAGE = f"round(100.0 * {_AREA_VISITED} / nullif({_AREA_HOUSEHOLDS}, 0))::int"
_GROUPS_WITHOUT_TERRITORY = (
    "(SELECT string_agg(g.group_no::text, ',' ORDER BY g.group_no) FROM villager_groups g "
    "WHERE g.village_code = t.code AND g.geom IS NULL)"
)

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
                _str(
                    "groups_without_territory",
                    _GROUPS_WITHOUT_TERRITORY,
                    d="group numbers of the village's villager groups that have no territory "
                    "yet (comma-separated; they are not in the groups collection)",
                ),
            ),
            layer="villages",
        ),
        Collection(
            id="groups",
            title="Villager groups (村民小组)",
            description=(
                "Villager-group territories (supplied or derived); households as a count "
                "only. A group with no territory yet is not a feature here: the villages "
                "collection lists it (groups_without_territory)."
            ),
            # a feature is a territory: GeoJSON could carry a group without one as
            # "geometry": null (RFC 7946 3.2), but the OGC API - Features 1.0 schema
            # (featureGeoJSON.yaml) forbids it and GIS clients draw polygon layers
            from_sql="FROM villager_groups t WHERE t.geom IS NOT NULL",
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
            from_sql=_ACTIVE_GRIDS,
            fid="t.code",
            order=("t.code",),
            geometry_type="MultiPolygon",
            properties=(
                *_GRID_KEYS,
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
                _str("grid_code", q=True, d="grid the case was reported in"),
                _str("description", d="public description"),
                # the workflow (geogrid.cases): no personal data
                _str("category_code", q=True, d="category dictionary code"),
                _int("priority", q=True, d="1 urgent, 2 normal, 3 low"),
                _str("current_grid_code", q=True, d="grid of the active plan now"),
                Property("due_at", "t.due_at", "date-time", False, "current step deadline"),
                _int("overdue", _OVERDUE, q=True, d="1 when the current step is overdue"),
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
                _int("overdue_filings", _OVERDUE_FILINGS, d="filings past their due date"),
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
                Property("next_due", "t.next_due", "date", False, "next inspection due"),
                _str("due_state", _DUE_STATE, d="overdue, due (within 7 days), ok or unknown"),
            ),
            time=_LAST_INSPECTED,
            layer="inspection_points",
        ),
        Collection(
            id="visit_coverage",
            title="Visit coverage per grid (民情走访覆盖率)",
            description="This quarter's household visit coverage per basic grid: numbers only.",
            from_sql=_ACTIVE_GRIDS,
            fid="t.code",
            order=("t.code",),
            geometry_type="MultiPolygon",
            properties=(
                *_GRID_KEYS,
                Property("period_start", _QUARTER, "date", False, "first day of the quarter"),
                _int("households", _AREA_HOUSEHOLDS, d="households of the grid"),
                _int("visited", _AREA_VISITED, d="households visited this quarter"),
                _int(
                    "never_visited",
                    f"({_AREA_HOUSEHOLDS} - {_AREA_VISITED})",
                    d="households not visited this quarter",
                ),
                _int("coverage_percent", _COVERAGE, d="visited ÷ households, in percent"),
            ),
            layer="visit_coverage",
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
# Documents
# ---------------------------------------------------------------------------


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    """A link object of OGC API documents."""
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


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
        "crs": list(SUPPORTED),
        "storageCrs": CRS84,
        "extent": extent if extent is not None else _extent(conn, coll),
        "links": [
            link(f"{base}/collections/{coll.id}", "self", JSON, coll.title),
            link(f"{base}/collections/{coll.id}/items", "items", GEOJSON, f"{coll.title} items"),
            link(
                f"{base}/collections/{coll.id}/queryables",
                REL_QUERYABLES,
                SCHEMA_JSON,
                f"{coll.title}: queryables",
            ),
        ],
    }


def collection_extent(conn: Connection, coll: Collection) -> dict[str, Any]:
    """The collection's spatial (CRS84) and, where it has time, temporal extent."""
    return _extent(conn, coll)


def layer_versions(conn: Connection) -> dict[str, int]:
    """Per-layer data versions (bumped by triggers): a cache key for extents."""
    return {
        str(k): int(v)
        for k, v in conn.execute(text("SELECT layer, version FROM layer_versions_now")).all()
    }
