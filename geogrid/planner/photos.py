"""Staff photos in the content-addressed file store (:mod:`geogrid.files`).

A photo uploaded for a staff member is checked and kept by :func:`geogrid.files.store_file`
(type sniffed from the bytes, decoded again with Pillow, a thumbnail made); the staff row
then holds ``photo = "sha256:<hex>"``. Older rows may hold a plain file name of the photo
folder (``GEOGRID_PHOTO_DIR``), which :mod:`tiles.pages` serves.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.files import IMAGE_TYPES, StoredFile, file_path, sniff_type, store_file

__all__ = [
    "MAX_PHOTO_BYTES",
    "PHOTO_PREFIX",
    "photo_type",
    "set_staff_photo",
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
    try:
        path = file_path(home, photo[len(PHOTO_PREFIX) :], thumb=thumb)
    except (NotFound, InvalidInput):
        return None
    return path if path.is_file() else None


def photo_type(path: Path) -> str:
    """The image type of a stored photo, sniffed from its first bytes."""
    with path.open("rb") as f:
        return sniff_type(f.read(16)) or "application/octet-stream"
