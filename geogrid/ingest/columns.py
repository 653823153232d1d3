"""Canonical register fields and the mapping of real-world headers onto them.

Townships name their columns in many ways (户号, 户编号, 户籍编号, household_id …).
:func:`match_header` maps one header to a canonical field, :func:`map_columns` maps a
whole header row (with user overrides from ``--map column=field``), and
:func:`parse_column_maps` parses those overrides.

Header matching ignores case, spaces, full-width forms and a trailing bracketed note
(``联系电话（手机）`` → ``联系电话``, ``经度(°)`` → ``经度``); a few exact headers keep their
brackets (``村(社区)``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from geogrid.errors import InvalidInput

__all__ = [
    "CANONICAL_FIELDS",
    "FIELD_ALIASES",
    "header_key",
    "map_columns",
    "match_header",
    "parse_column_maps",
]

#: Canonical field -> accepted headers, most specific first (an earlier alias wins
#: when two columns of one file claim the same field).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "town": ("乡镇", "乡镇(街道)", "镇", "乡", "街道", "所属乡镇", "镇街", "town", "township"),
    "register_no": (
        "户号",
        "户编号",
        "户籍编号",
        "户籍号",
        "户口编号",
        "household_id",
        "hh_id",
        "household_no",
        "register_no",
        "hhid",
    ),
    "head_name": ("户主姓名", "户主", "户主名", "姓名", "head_name", "head", "name"),
    "phone": (
        "联系电话",
        "电话",
        "手机",
        "手机号",
        "手机号码",
        "电话号码",
        "联系方式",
        "phone",
        "tel",
        "telephone",
        "mobile",
    ),
    "address": (
        "家庭住址",
        "详细地址",
        "住址",
        "地址",
        "户籍地址",
        "现住址",
        "居住地址",
        "address",
        "addr",
    ),
    "village": (
        "村(社区)",
        "所属村",
        "行政村",
        "村名",
        "村",
        "村委会",
        "社区",
        "村/社区",
        "village",
        "village_name",
    ),
    "village_code": (
        "村代码",
        "村编码",
        "村区划代码",
        "区划代码",
        "行政区划代码",
        "统计用区划代码",
        "village_code",
        "admin_code",
    ),
    "group": ("村民小组", "组别", "小组", "组", "所属组", "group", "group_no"),
    "population": (
        "家庭人口",
        "人口",
        "人数",
        "户人口",
        "家庭人数",
        "members",
        "population",
        "persons",
    ),
    "lon": ("经度", "lon", "lng", "long", "longitude", "x", "x坐标"),
    "lat": ("纬度", "lat", "latitude", "y", "y坐标"),
    "crs": ("坐标系", "坐标系统", "crs", "srs", "epsg"),
    "seq": ("序号", "no", "no.", "seq", "#"),
}

#: The canonical fields, in a stable order.
CANONICAL_FIELDS: tuple[str, ...] = tuple(FIELD_ALIASES)

_SPACES = re.compile(r"\s+")
_TRAILING_NOTE = re.compile(r"\([^()]*\)$")


def header_key(header: object) -> str:
    """Normalise a header for matching: NFKC (full-width → half-width), no spaces, lower case.

    >>> header_key(" 村（社区） "), header_key("Household_ID"), header_key("经 度")
    ('村(社区)', 'household_id', '经度')
    """
    text = unicodedata.normalize("NFKC", str(header))
    return _SPACES.sub("", text).lower().lstrip("*").rstrip(":")


_ALIAS_INDEX: dict[str, tuple[str, int]] = {}
for _field, _aliases in FIELD_ALIASES.items():
    for _rank, _alias in enumerate(_aliases):
        _ALIAS_INDEX.setdefault(header_key(_alias), (_field, _rank))


def _match(header: object) -> tuple[str, int] | None:
    key = header_key(header)
    if not key:
        return None
    hit = _ALIAS_INDEX.get(key)
    if hit is None:
        stripped = _TRAILING_NOTE.sub("", key)
        if stripped and stripped != key:
            hit = _ALIAS_INDEX.get(stripped)
    return hit


def match_header(header: object) -> str | None:
    """The canonical field a header stands for, or ``None``.

    >>> match_header("户主姓名"), match_header("联系电话（手机）"), match_header("备注")
    ('head_name', 'phone', None)
    """
    hit = _match(header)
    return hit[0] if hit else None


def parse_column_maps(items: Iterable[str]) -> dict[str, str]:
    """Parse ``column=field`` overrides (the CLI's ``--map``).

    Parameters
    ----------
    items
        Strings such as ``"户主=head_name"``; the column is the file's header as
        written, the field one of :data:`CANONICAL_FIELDS`.

    Returns
    -------
    dict
        ``{column: field}``.

    Raises
    ------
    geogrid.errors.InvalidInput
        On a missing ``=``, an empty side, an unknown field or a column given twice.

    Examples
    --------
    >>> parse_column_maps(["户主=head_name", " 门牌地址 = address "])
    {'户主': 'head_name', '门牌地址': 'address'}
    """
    out: dict[str, str] = {}
    for item in items:
        column, sep, field = item.rpartition("=")
        column, field = column.strip(), field.strip()
        if not sep or not column or not field:
            raise InvalidInput(
                f"--map {item!r}: expected COLUMN=FIELD, e.g. 户主=head_name",
                detail={"map": item},
            )
        if field not in FIELD_ALIASES:
            raise InvalidInput(
                f"--map {item!r}: unknown field {field!r}; "
                f"known fields are {', '.join(CANONICAL_FIELDS)}",
                detail={"map": item, "fields": list(CANONICAL_FIELDS)},
            )
        if column in out:
            raise InvalidInput(f"--map: column {column!r} is mapped twice", detail={"map": item})
        out[column] = field
    return out


def _find_override(column: str, headers: Sequence[str]) -> str | None:
    if column in headers:
        return column
    key = header_key(column)
    for header in headers:
        if header_key(header) == key:
            return header
    return None


def map_columns(
    headers: Sequence[str],
    overrides: Mapping[str, str] | None = None,
    *,
    source: str = "the file",
) -> dict[str, str]:
    """Map a header row onto canonical fields.

    Each field is taken by at most one column: overrides first, then the column whose
    header is the most specific alias (``户主姓名`` beats ``姓名``), then the leftmost.

    Parameters
    ----------
    headers
        The file's headers, as written.
    overrides
        ``{column: field}`` from :func:`parse_column_maps`; a column matches its header
        exactly or after :func:`header_key` normalisation.
    source
        How to name the file in error messages.

    Returns
    -------
    dict
        ``{header: field}`` for the mapped columns, in header order.

    Raises
    ------
    geogrid.errors.InvalidInput
        When an override names a column the file does not have, or a field unknown.

    Examples
    --------
    >>> map_columns(["序号", "姓名", "户主姓名", "住址", "备注"])
    {'序号': 'seq', '户主姓名': 'head_name', '住址': 'address'}
    >>> map_columns(["序号", "门牌"], {"门牌": "address"})
    {'序号': 'seq', '门牌': 'address'}
    """
    chosen: dict[str, tuple[str, tuple[int, int]]] = {}  # field -> (header, rank)
    for column, field in (overrides or {}).items():
        if field not in FIELD_ALIASES:
            raise InvalidInput(
                f"unknown field {field!r} for column {column!r}; "
                f"known fields are {', '.join(CANONICAL_FIELDS)}",
            )
        header = _find_override(column, headers)
        if header is None:
            raise InvalidInput(
                f"{source}: --map names column {column!r}, which is not in the header "
                f"({', '.join(map(str, headers))})",
                detail={"column": column, "headers": list(map(str, headers))},
            )
        chosen[field] = (header, (-1, 0))
    overridden = {header for header, _ in chosen.values()}
    for position, header in enumerate(headers):
        if header in overridden:
            continue
        hit = _match(header)
        if hit is None:
            continue
        field, rank = hit
        current = chosen.get(field)
        if current is None or (rank, position) < current[1]:
            chosen[field] = (header, (rank, position))
    by_header = {header: field for field, (header, _) in chosen.items()}
    return {header: by_header[header] for header in headers if header in by_header}
