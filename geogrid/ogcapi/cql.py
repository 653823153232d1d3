"""CQL2 filters (OGC API – Features – Part 3) parsed by pygeofilter, compiled to bound SQL.

:func:`parse_filter` reads CQL2 text or CQL2 JSON into pygeofilter's AST;
:func:`compile_filter` walks that AST and emits an SQL boolean expression in which

* every identifier comes from the collection's definition (a :class:`Field` per public
  property, the geometry as ``geometry``) — an unknown property is a 400;
* every value is a placeholder (``:f0``, ``:f1``…) whose value is returned beside the SQL;
  no literal of the request is ever written into the SQL text;
* geometry literals are GeoJSON bound as text, read in ``filter-crs`` (axis order per
  CRS) and transformed to the stored CRS in PostGIS with an integer SRID.

Supported: ``AND``/``OR``/``NOT``, comparisons, ``LIKE`` (``%``, ``_``, ``\\`` escape),
``IN``, ``BETWEEN``, ``IS NULL``, booleans, ``T_AFTER``/``T_BEFORE``/``T_DURING``/
``T_EQUALS``/``T_INTERSECTS``/``T_DISJOINT`` on instants and intervals, and the spatial
predicates ``S_INTERSECTS``/``S_DISJOINT``/``S_CONTAINS``/``S_WITHIN``/``S_TOUCHES``/
``S_CROSSES``/``S_OVERLAPS``/``S_EQUALS``. Anything else is a 400 naming the construct.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from pygeofilter import ast, values

from geogrid.ogcapi import InvalidParameterValue
from geogrid.ogcapi.crs import STORAGE, Crs

__all__ = ["GEOMETRY", "LANGS", "Field", "compile_filter", "parse_filter"]

#: The name of the geometry queryable of every collection.
GEOMETRY: Final = "geometry"
#: Filter languages (the first is the default). ``cql-text`` is the draft name of CQL2 text
#: that GDAL's OAPIF driver (3.12) sends with the filters it pushes down.
LANGS: Final = ("cql2-text", "cql2-json", "cql-text")
#: Times and dates written without an offset are in China Standard Time.
LOCAL_TZ: Final = ZoneInfo("Asia/Shanghai")
#: Longest filter accepted (characters): a filter is a query, not a data upload.
MAX_FILTER: Final = 20_000


@dataclass(frozen=True)
class Field:
    """A queryable: its SQL expression over the collection (alias ``t``) and its type
    (``string``, ``integer``, ``date-time``, ``date`` or ``geometry``)."""

    sql: str
    type: str


def _bad(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"invalid filter: {message}", detail={"parameter": "filter"})


def _normalise_json(node: Any) -> Any:
    """Standard CQL2 JSON forms pygeofilter 0.4 reads differently: ``between`` with three
    arguments, and ``{"bbox": [...]}`` (read as an envelope with mislabelled axes)."""
    if isinstance(node, list):
        return [_normalise_json(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "bbox" in node and len(node) == 1:
        box = node["bbox"]
        if not isinstance(box, list) or len(box) not in (4, 6):
            raise _bad("a bbox has 4 or 6 numbers")
        if len(box) == 6:
            box = [box[0], box[1], box[3], box[4]]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
            raise _bad("a bbox has 4 or 6 numbers")
        x0, y0, x1, y1 = box
        ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        return {"type": "Polygon", "coordinates": [ring]}
    out = {k: _normalise_json(v) for k, v in node.items()}
    if str(out.get("op", "")).lower() == "between" and len(out.get("args", [])) == 3:
        args = out["args"]
        out["args"] = [args[0], [args[1], args[2]]]
    return out


def parse_filter(text: str, lang: str = "cql2-text") -> ast.Node:
    """Parse a ``filter`` parameter.

    Raises
    ------
    InvalidParameterValue
        An unknown ``filter-lang``, or a filter that is not valid in it (the parser's
        message, shortened).

    >>> parse_filter("risk_level >= 2")
    GreaterEqual(lhs=ATTRIBUTE risk_level, rhs=2)
    """
    if lang not in LANGS:
        raise InvalidParameterValue(
            f"unsupported filter-lang={lang!r}; use {' or '.join(LANGS[:2])}",
            detail={"parameter": "filter-lang"},
        )
    if len(text) > MAX_FILTER:
        raise _bad(f"longer than {MAX_FILTER} characters")
    if not text.strip():
        raise _bad("empty")
    try:
        if lang == "cql2-json":
            from pygeofilter.parsers.cql2_json import parse as parse_json

            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _bad(f"not JSON ({exc.msg} at character {exc.pos})") from None
            node = parse_json(_normalise_json(data))
        else:
            from pygeofilter.parsers.cql2_text import parse as parse_text

            node = parse_text(text)
    except InvalidParameterValue:
        raise
    except Exception as exc:  # the parsers raise lark errors, ValueError, KeyError, TypeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(f"not valid {lang}: {first[:200]}") from None
    if not isinstance(node, ast.Node):
        raise _bad("not a boolean expression")
    return node


_COMPARE: Final = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}
_SPATIAL: Final = {
    ast.GeometryIntersects: "ST_Intersects",
    ast.GeometryContains: "ST_Contains",
    ast.GeometryWithin: "ST_Within",
    ast.GeometryTouches: "ST_Touches",
    ast.GeometryCrosses: "ST_Crosses",
    ast.GeometryOverlaps: "ST_Overlaps",
    ast.GeometryEquals: "ST_Equals",
}


@dataclass
class _Compiler:
    fields: Mapping[str, Field]
    crs: Crs
    prefix: str
    binds: dict[str, Any] = field(default_factory=dict)

    # -- values -------------------------------------------------------------------------

    def bind(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.binds)}"
        self.binds[name] = value
        return f":{name}"

    def attr(self, node: Any) -> Field:
        if not isinstance(node, ast.Attribute):
            raise _bad(f"expected a property name, got {_show(node)}")
        found = self.fields.get(node.name)
        if found is None:
            raise InvalidParameterValue(
                f"invalid filter: unknown property {node.name!r}; queryables: "
                f"{', '.join(self.fields)}",
                detail={"parameter": "filter", "property": node.name},
            )
        return found

    def literal(self, value: Any, kind: str) -> str:
        """A placeholder for ``value`` read as a value of a property of type ``kind``."""
        if isinstance(value, ast.Node | values.Geometry | values.Envelope | values.Interval):
            raise _bad(f"expected a {kind} value (the property's type), got {_show(value)}")
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _bad(f"expected a number, got {_show(value)}")
            return self.bind(value)
        if kind == "string":
            if not isinstance(value, str):
                raise _bad(f"expected a string, got {_show(value)}")
            return self.bind(value)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _bad(f"expected true or false, got {_show(value)}")
            return self.bind(value)
        if kind in ("date-time", "date"):
            return self.bind(_instant(value, kind))
        raise _bad(f"a {kind} property cannot be compared with {_show(value)}")

    def operand(self, node: Any, kind: str) -> str:
        if isinstance(node, ast.Attribute):
            other = self.attr(node)
            if other.type != kind and {other.type, kind} != {"date", "date-time"}:
                raise _bad(f"{node.name!r} is a {other.type}, not a {kind}")
            return other.sql
        return self.literal(node, kind)

    def geometry(self, node: Any) -> str:
        """SQL of a geometry operand: the collection's geometry or a bound literal."""
        if isinstance(node, ast.Attribute):
            if self.attr(node).type != "geometry":
                raise _bad(f"{node.name!r} is not a geometry")
            return self.fields[node.name].sql
        if isinstance(node, ast.Function) and node.name.lower() == "bbox":
            nums = node.arguments
            if len(nums) == 6:
                nums = [nums[0], nums[1], nums[3], nums[4]]
            if len(nums) != 4 or not all(_number(v) for v in nums):
                raise _bad("BBOX takes 4 or 6 numbers")
            return self.envelope(*nums)
        if isinstance(node, values.Envelope):
            return self.envelope(node.x1, node.y1, node.x2, node.y2)
        if isinstance(node, values.Geometry):
            for part in node.geometry.get("geometries") or [node.geometry]:
                self.in_range(part.get("coordinates", []))
            sql = f"ST_SetSRID(ST_GeomFromGeoJSON({self.bind(json.dumps(node.geometry))}), "
            return self.to_storage(sql + f"{self.crs.srid})")
        raise _bad(f"expected a geometry, got {_show(node)}")

    def envelope(self, x0: float, y0: float, x1: float, y1: float) -> str:
        self.in_range([[x0, y0], [x1, y1]])
        box = ", ".join(self.bind(float(v)) for v in (x0, y0, x1, y1))
        return self.to_storage(f"ST_MakeEnvelope({box}, {self.crs.srid})")

    def in_range(self, coords: Any) -> None:
        """Refuse a literal's coordinates outside a geographic ``filter-crs``'s range
        (longitude ±180°, latitude ±90°, in the CRS's axis order): a box of metres read
        as degrees must be a 400, not a silent match of nothing (Part 3, filter-crs)."""
        if not self.crs.geographic:
            return
        if isinstance(coords, list | tuple) and coords and _number(coords[0]):
            lon, lat = (coords[1], coords[0]) if self.crs.flip else (coords[0], coords[1])
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                order = "latitude, longitude" if self.crs.flip else "longitude, latitude"
                raise _bad(
                    f"coordinates ({coords[0]}, {coords[1]}) are outside the range of "
                    f"{self.crs.uri} ({order} in degrees); name a projected CRS in filter-crs"
                )
            return
        if isinstance(coords, list | tuple):
            for part in coords:
                self.in_range(part)

    def to_storage(self, sql: str) -> str:
        if self.crs.flip:
            sql = f"ST_FlipCoordinates({sql})"
        if self.crs.srid != STORAGE.srid:
            sql = f"ST_Transform({sql}, {STORAGE.srid})"
        return sql

    # -- predicates ---------------------------------------------------------------------

    def visit(self, node: Any) -> str:
        if isinstance(node, ast.And | ast.Or):
            glue = " AND " if isinstance(node, ast.And) else " OR "
            return f"({self.visit(node.lhs)}{glue}{self.visit(node.rhs)})"
        if isinstance(node, ast.Not):
            return f"(NOT {self.visit(node.sub_node)})"
        if isinstance(node, ast.Include):
            return "FALSE" if node.not_ else "TRUE"
        if isinstance(node, bool):
            return "TRUE" if node else "FALSE"
        if isinstance(node, ast.Attribute):
            if self.attr(node).type != "boolean":
                raise _bad(f"{node.name!r} is not a boolean")
            return self.fields[node.name].sql
        op = _COMPARE.get(type(node))
        if op is not None:
            lhs, rhs = node.lhs, node.rhs
            if not isinstance(lhs, ast.Attribute):
                lhs, rhs = rhs, lhs
                op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
            f = self.attr(lhs)
            return f"({f.sql} {op} {self.operand(rhs, f.type)})"
        if isinstance(node, ast.Like):
            f = self.attr(node.lhs)
            if f.type != "string":
                raise _bad(f"LIKE needs a string property; {node.lhs.name!r} is a {f.type}")
            like = "ILIKE" if node.nocase else "LIKE"
            neg = "NOT " if node.not_ else ""
            return f"({f.sql} {neg}{like} {self.literal(node.pattern, 'string')} ESCAPE '\\')"
        if isinstance(node, ast.In):
            f = self.attr(node.lhs)
            if not node.sub_nodes:
                return "TRUE" if node.not_ else "FALSE"
            items = ", ".join(self.literal(v, f.type) for v in node.sub_nodes)
            return f"({f.sql} {'NOT ' if node.not_ else ''}IN ({items}))"
        if isinstance(node, ast.Between):
            f = self.attr(node.lhs)
            lo, hi = self.literal(node.low, f.type), self.literal(node.high, f.type)
            return f"({f.sql} {'NOT ' if node.not_ else ''}BETWEEN {lo} AND {hi})"
        if isinstance(node, ast.IsNull):
            f = self.attr(node.lhs)
            return f"({f.sql} IS {'NOT ' if node.not_ else ''}NULL)"
        if isinstance(node, ast.TemporalPredicate):
            return self.temporal(node)
        if isinstance(node, ast.GeometryDisjoint):
            return f"(NOT ST_Intersects({self.geometry(node.lhs)}, {self.geometry(node.rhs)}))"
        fn = _SPATIAL.get(type(node))
        if fn is not None:
            return f"{fn}({self.geometry(node.lhs)}, {self.geometry(node.rhs)})"
        raise _bad(f"{_show(node)} is not supported")

    def temporal(self, node: Any) -> str:
        lhs, rhs = node.lhs, node.rhs
        if not isinstance(lhs, ast.Attribute):
            raise _bad("a temporal predicate compares a property (first) with a time")
        f = self.attr(lhs)
        if f.type not in ("date-time", "date"):
            raise _bad(f"{lhs.name!r} is not a time")
        if isinstance(rhs, values.Interval):
            lo = None if rhs.start is None else self.literal(rhs.start, f.type)
            hi = None if rhs.end is None else self.literal(rhs.end, f.type)
        else:
            lo = hi = self.literal(rhs, f.type)
        col = f.sql

        def both(*conds: str | None) -> str:
            kept = [c for c in conds if c]
            return "(" + " AND ".join(kept) + ")" if kept else f"({col} IS NOT NULL)"

        if isinstance(node, ast.TimeAfter):
            return f"({col} > {hi})" if hi else "FALSE"
        if isinstance(node, ast.TimeBefore):
            return f"({col} < {lo})" if lo else "FALSE"
        if isinstance(node, ast.TimeDuring):
            return both(lo and f"{col} > {lo}", hi and f"{col} < {hi}")
        if isinstance(node, ast.TimeEquals):
            return f"({col} = {lo} AND {col} = {hi})" if lo and hi else "FALSE"
        if isinstance(node, ast.TimeOverlaps | ast.TimeDisjoint):
            # pygeofilter reads T_INTERSECTS as overlaps: an instant meets [lo, hi]
            inside = both(lo and f"{col} >= {lo}", hi and f"{col} <= {hi}")
            return f"(NOT {inside})" if isinstance(node, ast.TimeDisjoint) else inside
        raise _bad(f"{type(node).__name__} is not supported on instants")


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _instant(value: Any, kind: str) -> dt.datetime | dt.date:
    """A date or date-time literal as the property's type (local time without offset)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(f"expected TIMESTAMP('…') or DATE('…'), got {value!r}") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=LOCAL_TZ)
        return value.astimezone(LOCAL_TZ).date() if kind == "date" else value
    if isinstance(value, dt.date):
        if kind == "date":
            return value
        return dt.datetime.combine(value, dt.time(0), LOCAL_TZ)
    raise _bad(f"expected a time, got {_show(value)}")


def _show(node: Any) -> str:
    if isinstance(node, ast.Attribute):
        return f"property {node.name!r}"
    if isinstance(node, ast.Node):
        return type(node).__name__
    text = repr(node)
    return text if len(text) < 80 else text[:77] + "..."


def compile_filter(
    node: ast.Node, fields: Mapping[str, Field], *, crs: Crs = STORAGE, prefix: str = "f"
) -> tuple[str, dict[str, Any]]:
    """SQL (placeholders only) and its bound values for a parsed filter.

    Parameters
    ----------
    node
        The filter (:func:`parse_filter`).
    fields
        The collection's queryables by name.
    crs
        ``filter-crs``: the CRS of geometry literals (default CRS84).
    prefix
        Placeholder prefix (``:f0``, ``:f1``…), unique within the statement.

    Raises
    ------
    InvalidParameterValue
        An unknown property, a value of the wrong type, an unsupported construct.

    Examples
    --------
    >>> sql, binds = compile_filter(
    ...     parse_filter("name LIKE '张%' AND risk_level IN (2, 3)"),
    ...     {"name": Field("t.name", "string"), "risk_level": Field("t.risk_level", "integer")},
    ... )
    >>> sql
    "((t.name LIKE :f0 ESCAPE '\\\\') AND (t.risk_level IN (:f1, :f2)))"
    >>> binds
    {'f0': '张%', 'f1': 2, 'f2': 3}
    """
    compiler = _Compiler(fields, crs, prefix)
    return compiler.visit(node), compiler.binds
