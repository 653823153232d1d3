"""Staff photos in the content-addressed file store (:mod:`geogrid.files`).

A photo uploaded for a staff member is checked and kept by :func:`geogrid.files.store_file`
(type sniffed from the bytes, decoded again with Pillow, a thumbnail made); the staff row
then holds ``photo = "sha256:<hex>"``. Older rows may hold a plain file name of the photo
folder (``GEOGRID_PHOTO_DIR``), which :mod:`tiles.pages` serves.
"""

from __future__ import annotations

import re
from pathlib import Path

import markupsafe
from sqlalchemy import Connection, Engine, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.files import (
    IMAGE_TYPES,
    StoredFile,
    contained_file,
    file_path,
    sniff_type,
    store_file,
)
from geogrid.settings import Settings

__all__ = [
    "MAX_PHOTO_BYTES",
    "PHOTO_PREFIX",
    "photo_path",
    "photo_type",
    "placeholder_photo",
    "set_staff_photo",
    "staff_photo",
    "staff_photo_file",
    "staff_town",
]

PHOTO_PREFIX = "sha256:"
#: Largest photo accepted (bytes).
MAX_PHOTO_BYTES = 5 * 1024 * 1024


def _staff_town(conn: Connection, staff_id: int) -> tuple[str | None, str | None]:
    row = conn.execute(
        text("SELECT town_code, photo FROM staff WHERE id = :id"), {"id": staff_id}
    ).first()
    if row is None:
        raise NotFound(f"staff member {staff_id} does not exist.", detail={"staff_id": staff_id})
    return row[0], row[1]


def staff_town(conn: Connection, staff_id: int) -> str | None:
    """The town a staff member works in (the scope a photo upload is checked against)."""
    return _staff_town(conn, staff_id)[0]


def set_staff_photo(
    engine: Engine, home: Path, staff_id: int, data: bytes, *, filename: str
) -> StoredFile:
    """Check and keep a photo, and make it the staff member's photo.

    Raises
    ------
    NotFound
        Unknown staff member.
    geogrid.errors.InvalidInput
        Not an image (JPEG, PNG, WebP, GIF), too large, or not decodable.
    """
    with engine.connect() as conn:
        _staff_town(conn, staff_id)
    stored = store_file(
        home, data, filename=filename, allowed=IMAGE_TYPES, max_bytes=MAX_PHOTO_BYTES
    )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE staff SET photo = :p, updated_at = now() WHERE id = :id"),
            {"p": PHOTO_PREFIX + stored.sha256, "id": staff_id},
        )
    return stored


def staff_photo_file(
    conn: Connection, home: Path, staff_id: int, *, thumb: bool = False
) -> Path | None:
    """The stored photo (or its thumbnail) of a staff member; ``None`` when none is stored.

    Raises
    ------
    NotFound
        Unknown staff member.
    """
    _, photo = _staff_town(conn, staff_id)
    if not photo or not photo.startswith(PHOTO_PREFIX):
        return None
    return _stored(home, photo, thumb=thumb)


def _stored(home: Path, photo: str, *, thumb: bool) -> Path | None:
    try:
        path = file_path(home, photo[len(PHOTO_PREFIX) :], thumb=thumb)
    except (NotFound, InvalidInput):
        return None
    return path if path.is_file() else None


def photo_path(settings: Settings, photo: str | None, *, thumb: bool = False) -> Path | None:
    """The file of a ``staff.photo`` value, ``None`` when there is none: ``sha256:<hex>`` in
    the file store (its thumbnail with ``thumb`` when there is one), else a plain file name
    of ``GEOGRID_PHOTO_DIR``."""
    if not photo:
        return None
    if photo.startswith(PHOTO_PREFIX):
        small = _stored(settings.home, photo, thumb=True) if thumb else None
        return small or _stored(settings.home, photo, thumb=False)
    try:
        return staff_photo(settings, photo)
    except NotFound:
        return None


def photo_type(path: Path) -> str:
    """The image type of a stored photo, sniffed from its first bytes."""
    with path.open("rb") as f:
        return sniff_type(f.read(16)) or "application/octet-stream"


_PHOTO_NAME = re.compile(r"^[\w\-.]+\.(?:jpe?g|png|webp|gif)$", re.IGNORECASE)


def staff_photo(settings: Settings, name: str) -> Path:
    """A staff photo from ``GEOGRID_PHOTO_DIR`` (plain file names only)."""
    found = None
    if settings.photo_dir is not None and _PHOTO_NAME.fullmatch(name):
        found = contained_file(settings.photo_dir, name)
    if found is None:
        raise NotFound("no such photo")
    return found


def placeholder_photo(name: str) -> str:
    """An SVG avatar with the person's family name, for staff without a photo.

    >>> "<svg" in placeholder_photo("张三")
    True
    """
    initial = (name or "?")[0]
    hue = sum(map(ord, name or "?")) % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<rect width="96" height="96" rx="8" fill="hsl({hue},45%,55%)"/>'
        '<text x="48" y="62" font-size="44" text-anchor="middle" fill="#fff" '
        f'font-family="sans-serif">{markupsafe.escape(initial)}</text></svg>'
    )
