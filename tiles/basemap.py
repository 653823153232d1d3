"""Offline base maps from one MBTiles file (raster or vector), read with :mod:`sqlite3`.

An MBTiles file (https://github.com/mapbox/mbtiles-spec, 1.3) is an SQLite database with a
``metadata`` table (``name``/``value`` rows: ``format`` is ``png``, ``jpg``, ``webp`` or
``pbf``; ``minzoom``, ``maxzoom``, ``bounds``, ``attribution``, ``json`` with the vector
layers) and a ``tiles`` table (or view) of ``zoom_level``, ``tile_column``, ``tile_row``,
``tile_data``. Rows are numbered TMS-style, from the south: the XYZ tile ``y`` a browser asks
for is row ``2**z - 1 - y``. Vector tiles are usually stored gzip-compressed; they are
served as stored with ``Content-Encoding: gzip`` (browsers inflate them).

The file is opened read-only for each request (SQLite opens in microseconds), so a file
replaced on disk is picked up at once and no connection is shared between threads.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geogrid.errors import ConfigurationError, NotFound

__all__ = ["FORMATS", "MBTiles", "Tile", "open_mbtiles"]

#: Tile formats an MBTiles base map may hold, with their content types.
FORMATS: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "pbf": "application/x-protobuf",
}
_GZIP = b"\x1f\x8b"


@dataclass(frozen=True)
class Tile:
    """One tile's bytes, content type and content encoding (``gzip`` or ``None``)."""

    data: bytes
    media_type: str
    encoding: str | None = None


@dataclass(frozen=True)
class MBTiles:
    """An MBTiles file checked and described by :func:`open_mbtiles`."""

    path: Path
    format: str
    name: str = ""
    attribution: str = ""
    minzoom: int = 0
    maxzoom: int = 18
    bounds: tuple[float, float, float, float] | None = None
    vector_layers: list[str] = field(default_factory=list)

    @property
    def vector(self) -> bool:
        """Whether the tiles are Mapbox vector tiles (``pbf``)."""
        return self.format == "pbf"

    @property
    def media_type(self) -> str:
        return FORMATS[self.format]

    def tile(self, z: int, x: int, y: int) -> Tile | None:
        """The XYZ tile ``z/x/y`` (``None`` when the file has no such tile).

        Raises
        ------
        NotFound
            For coordinates outside the tile pyramid of zoom ``z``.
        ConfigurationError
            When the file can no longer be read.
        """
        n = 1 << z
        if not (0 <= x < n and 0 <= y < n):
            raise NotFound(f"no tile {z}/{x}/{y}: x and y must be below {n} at zoom {z}")
        row = n - 1 - y  # TMS rows count from the south
        with _connect(self.path) as conn:
            try:
                found = conn.execute(
                    "SELECT tile_data FROM tiles "
                    "WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                    (z, x, row),
                ).fetchone()
            except sqlite3.Error as exc:
                raise ConfigurationError(f"the MBTiles base map cannot be read: {exc}") from exc
        if found is None or not found[0]:
            return None
        data = bytes(found[0])
        encoding = "gzip" if self.vector and data[:2] == _GZIP else None
        return Tile(data, self.media_type, encoding)

    def public(self) -> dict[str, Any]:
        """What a page needs to draw it (no file paths)."""
        return {
            "format": self.format,
            "vector": self.vector,
            "minzoom": self.minzoom,
            "maxzoom": self.maxzoom,
            "bounds": list(self.bounds) if self.bounds else None,
            "vector_layers": self.vector_layers,
        }


class _Closing:
    """``sqlite3.Connection`` as a context manager that closes (sqlite3's only commits)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _connect(path: Path) -> _Closing:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"cannot open the MBTiles base map {path.name}: {exc}") from exc
    return _Closing(conn)


def open_mbtiles(path: Path) -> MBTiles:
    """Check an MBTiles file and read its metadata.

    Parameters
    ----------
    path
        The ``.mbtiles`` file (``GEOGRID_BASEMAP_MBTILES``).

    Raises
    ------
    ConfigurationError
        When the file is missing, not an SQLite database, has no ``metadata`` or ``tiles``
        table, names no tile format or one other than those of :data:`FORMATS`, or has
        zoom levels that are not integers in 0–30.
    """
    if not path.is_file():
        raise ConfigurationError(f"GEOGRID_BASEMAP_MBTILES: no file {path}")
    with _connect(path) as conn:
        try:
            meta = dict(conn.execute("SELECT name, value FROM metadata").fetchall())
            conn.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles LIMIT 1")
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"{path.name} is not an MBTiles file (metadata and tiles tables): {exc}"
            ) from exc
    fmt = str(meta.get("format") or "").strip().lower()
    if fmt not in FORMATS:
        raise ConfigurationError(
            f"{path.name}: metadata format {fmt or '(missing)'!r} is not one of "
            f"{', '.join(sorted(FORMATS))}"
        )
    minzoom, maxzoom = _zoom(meta, "minzoom", 0, path), _zoom(meta, "maxzoom", 18, path)
    return MBTiles(
        path=path,
        format="jpg" if fmt == "jpeg" else fmt,
        name=str(meta.get("name") or path.stem),
        attribution=str(meta.get("attribution") or ""),
        minzoom=minzoom,
        maxzoom=max(minzoom, maxzoom),
        bounds=_bounds(meta.get("bounds")),
        vector_layers=_vector_layers(meta.get("json")),
    )


def _zoom(meta: dict[str, Any], key: str, default: int, path: Path) -> int:
    raw = meta.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigurationError(f"{path.name}: metadata {key} {raw!r} is not a zoom") from None
    if not 0 <= value <= 30:
        raise ConfigurationError(f"{path.name}: metadata {key} {value} is outside 0–30")
    return value


def _bounds(raw: Any) -> tuple[float, float, float, float] | None:
    try:
        w, s, e, n = (float(v) for v in str(raw).split(","))
    except (TypeError, ValueError):
        return None
    ok = -180 <= w < e <= 180 and -90 <= s < n <= 90
    return (w, s, e, n) if ok else None


def _vector_layers(raw: Any) -> list[str]:
    try:
        layers = json.loads(raw).get("vector_layers", []) if raw else []
        return [str(layer["id"]) for layer in layers if isinstance(layer, dict) and "id" in layer]
    except (ValueError, AttributeError, TypeError):
        return []
