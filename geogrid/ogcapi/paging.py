"""Keyset (cursor) paging: a page starts after (or ends before) the sort key of a row.

A cursor is the sort key of the last row of a page (``next``) or of the first row
(``prev``), with the sort order it belongs to, as URL-safe base64 JSON. The next page is
``WHERE (keys) > (cursor) ORDER BY keys LIMIT n``: an index walk from the cursor, so a
deep page costs what the first one costs (``OFFSET`` reads and drops every skipped row).
Cursor values are bound, never written into SQL; a cursor made for another sort order,
or not made by this service, is a 400.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geogrid.ogcapi import InvalidParameterValue

__all__ = ["Cursor", "decode_cursor", "encode_cursor", "keyset_clause", "order_by"]


@dataclass(frozen=True)
class Cursor:
    """A position: the sort key of a row, and whether the page ends before it."""

    values: tuple[Any, ...]
    backward: bool = False


def _tag(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, dt.date):
        return {"d": v.isoformat()}
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


def _untag(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"dt"} and isinstance(v["dt"], str):
        return dt.datetime.fromisoformat(v["dt"])
    if isinstance(v, dict) and set(v) == {"d"} and isinstance(v["d"], str):
        return dt.date.fromisoformat(v["d"])
    if v is None or isinstance(v, str | int | float):
        return v
    raise ValueError("unexpected value")


def encode_cursor(values: Sequence[Any], *, backward: bool, sort_key: str) -> str:
    """The ``cursor`` parameter for a position.

    >>> c = encode_cursor(["4201", 3], backward=False, sort_key="")
    >>> decode_cursor(c, sort_key="", keys=2)
    Cursor(values=('4201', 3), backward=False)
    """
    doc = {"k": [_tag(v) for v in values], "b": int(backward), "s": sort_key}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, *, sort_key: str, keys: int) -> Cursor:
    """Read a ``cursor`` parameter made by :func:`encode_cursor` for this sort order.

    Raises
    ------
    InvalidParameterValue
        Not a cursor of this service, or one made for another ``sortby``.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
        values = tuple(_untag(v) for v in doc["k"])
        backward = bool(doc["b"])
        made_for = doc["s"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidParameterValue(
            "invalid cursor: follow the next/prev links of a page", detail={"parameter": "cursor"}
        ) from None
    if made_for != sort_key or len(values) != keys:
        raise InvalidParameterValue(
            "invalid cursor: it belongs to another sort order (sortby); follow the page's links",
            detail={"parameter": "cursor"},
        )
    return Cursor(values, backward)


def order_by(keys: Sequence[tuple[str, bool]], *, backward: bool = False) -> str:
    """``ORDER BY`` items for ``(sql, descending)`` keys (NULLs last going forward)."""
    items = []
    for sql, desc in keys:
        if backward:
            items.append(f"{sql} {'ASC' if desc else 'DESC'} NULLS FIRST")
        else:
            items.append(f"{sql} {'DESC' if desc else 'ASC'} NULLS LAST")
    return ", ".join(items)


def keyset_clause(
    keys: Sequence[tuple[str, bool]], cursor: Cursor, *, prefix: str = "ck"
) -> tuple[str, dict[str, Any]]:
    """The rows after (``backward``: before) ``cursor`` in the order of ``keys``.

    All ascending keys without NULLs compare as one row (``(a, b) > (:a, :b)``, which a
    B-tree index answers); otherwise the expanded form, NULLs sorting last.

    >>> keyset_clause([("t.code", False)], Cursor(("42",)))
    ('(t.code) > (:ck0)', {'ck0': '42'})
    """
    binds = {f"{prefix}{i}": v for i, v in enumerate(cursor.values)}
    names = [f":{prefix}{i}" for i in range(len(keys))]
    if not any(desc for _, desc in keys) and None not in cursor.values:
        cols = ", ".join(sql for sql, _ in keys)
        return f"({cols}) {'<' if cursor.backward else '>'} ({', '.join(names)})", binds
    ors = []
    for i, ((sql, desc), name, value) in enumerate(zip(keys, names, cursor.values, strict=True)):
        eqs = [
            f"{s} IS NULL" if v is None else f"{s} = {n}"
            for (s, _), n, v in zip(keys[:i], names[:i], cursor.values[:i], strict=True)
        ]
        if cursor.backward:
            step = f"{sql} IS NOT NULL" if value is None else f"{sql} {'>' if desc else '<'} {name}"
        else:
            step = (
                "FALSE"
                if value is None
                else f"({sql} {'<' if desc else '>'} {name} OR {sql} IS NULL)"
            )
        ors.append("(" + " AND ".join([*eqs, step]) + ")")
    return "(" + " OR ".join(ors) + ")", {k: v for k, v in binds.items() if v is not None}
