"""Helpers shared by the key-unit and inspection services: versions (ETags and the 412
error), the local day, points, area filters, pages and photo references."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import Connection, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.plans import StaleVersion

#: China Standard Time: the days filings and inspections fall due on.
LOCAL: Final = dt.timezone(dt.timedelta(hours=8))
MAX_PHOTOS: Final = 10
MAX_NOTE: Final = 2000
_AREA: Final = re.compile(r"\d{12}|\d{15}")
_SHA: Final = re.compile(r"[0-9a-f]{64}")


def make_etag(kind: str, record_id: int, version: int) -> str:
    """The weak entity tag of one version of an editable record.

    >>> make_etag("key_unit", 12, 3)
    'W/"key_unit-12-3"'
    """
    return f'W/"{kind}-{record_id}-{version}"'


def parse_etag(value: str, kind: str, record_id: int) -> int | None:
    """The version an ``If-Match`` value names for the record (``None``: not its ETag).

    >>> parse_etag('W/"key_unit-12-3"', "key_unit", 12)
    3
    >>> parse_etag('"key_unit-1-3"', "key_unit", 12) is None
    True
    """
    m = re.fullmatch(rf'(?:W/)?"{re.escape(kind)}-{record_id}-(\d{{1,9}})"', value.strip())
    return int(m.group(1)) if m else None


def stale(kind: str, record_id: int, expected: int, current: BaseModel) -> StaleVersion:
    """The 412 error: the record changed since the caller read it; ``detail.current`` holds
    the record as GET shows it, so the field app can show the conflict to a person."""
    return StaleVersion(
        f"{kind.replace('_', ' ')} {record_id} changed: you saw version {expected}, it is at "
        f"{getattr(current, 'version', '?')}; reload it and try again",
        detail={"detail": {"current": current.model_dump(mode="json")}},
    )


def today_local() -> dt.date:
    """Today in China (the working calendar's days)."""
    return dt.datetime.now(LOCAL).date()


def check_point(lon: Any, lat: Any) -> tuple[float, float]:
    """A WGS84 point from two numbers, or :class:`InvalidInput`.

    >>> check_point("114.3", 30.5)
    (114.3, 30.5)
    """
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        raise InvalidInput("lon and lat must be numbers (WGS84 degrees)") from None
    if not (abs(x) <= 180 and abs(y) <= 90):  # also refuses NaN
        raise InvalidInput("lon must be within ±180 and lat within ±90 (WGS84 degrees)")
    return x, y


def area_filter(area: str | None) -> str | None:
    """The code prefix of a town, village or grid filter (validated).

    >>> area_filter("420117105000"), area_filter("420117105201003")
    ('420117105', '420117105201003')
    """
    if area is None:
        return None
    if not _AREA.fullmatch(area):
        raise InvalidInput("grid must be a 12-digit town or village code or a 15-digit grid code")
    return area[:9] if area.endswith("000") and len(area) == 12 else area


def scoped_row(
    conn: Connection, select: str, alias: str, record_id: int, prefix: str, *, what: str,
    lock: bool = False,
) -> Any:  # fmt: skip
    """The row ``select … WHERE alias.id = :id`` when it lies in the scope ``prefix`` (locked
    with ``lock``), else :class:`NotFound` — out of scope and missing look alike."""
    scope = f"(:scope_prefix = '' OR {alias}.scope_key LIKE :scope_prefix || '%')"
    row = conn.execute(
        text(
            f"{select} WHERE {alias}.id = :id AND {scope}"
            f"{f' FOR UPDATE OF {alias}' if lock else ''}"
        ),
        {"id": record_id, "scope_prefix": prefix},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no {what} {record_id} in your scope")
    return row


def check_page(limit: int, offset: int, most: int) -> None:
    """Refuse a page size outside ``1..most`` or a negative offset."""
    if not 1 <= limit <= most:
        raise InvalidInput(f"limit must be between 1 and {most}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")


def check_note(note: str | None) -> str | None:
    """A note of at most :data:`MAX_NOTE` characters (blank: none)."""
    v = (note or "").strip()
    if len(v) > MAX_NOTE:
        raise InvalidInput(f"a note has at most {MAX_NOTE} characters")
    return v or None


def check_files(
    conn: Connection, shas: Sequence[str], *, what: str = "photo", images: bool = True
) -> list[str]:
    """Photos (or a signature) named by the sha256 their upload returned: each must be in the
    file store and, with ``images``, be an image. Duplicates are dropped, order kept."""
    clean = list(dict.fromkeys(shas))
    if len(clean) > MAX_PHOTOS:
        raise InvalidInput(f"at most {MAX_PHOTOS} {what}s per record")
    for sha in clean:
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise InvalidInput(f"a {what} is named by the sha256 its upload returned")
    if not clean:
        return clean
    known: dict[str, str] = dict(
        conn.execute(
            text("SELECT sha256, mime FROM stored_files WHERE sha256 = ANY(:s)"), {"s": clean}
        ).all()
    )
    for sha in clean:
        if sha not in known:
            raise InvalidInput(
                f"no uploaded {what} {sha[:12]}…: upload it first (POST /api/cases/files)"
            )
        if images and not str(known[sha]).startswith("image/"):
            raise InvalidInput(f"the {what} {sha[:12]}… is not an image")
    return clean
