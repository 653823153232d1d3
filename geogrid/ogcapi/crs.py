"""Coordinate reference systems served by OGC API – Features – Part 2 (CRS by reference).

Geometries are stored in EPSG:4326 with longitude first (PostGIS' convention, i.e. CRS84
coordinates). A request may name another CRS for its output (``crs``), its ``bbox``
(``bbox-crs``) or the geometry literals of its filter (``filter-crs``); each is one of
:data:`SUPPORTED`: CRS84, EPSG:4326 and EPSG:4490 (CGCS2000, latitude first), EPSG:3857
and the CGCS2000 Gauss-Krüger zones covering China (3° and 6°, with and without the zone
number in the false easting; northing first).

Transformations run in PostGIS with **integer** SRIDs (a text SRID is ~1,000× slower);
the axis order of each CRS is a property of the CRS (:attr:`Crs.flip`): coordinates of a
northing/latitude-first CRS are swapped with ``ST_FlipCoordinates`` after the transform
(output) or before it (input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from geogrid.ogcapi import InvalidParameterValue

__all__ = ["CRS84", "STORAGE", "SUPPORTED", "Crs", "parse_crs", "uri"]

CRS84: Final = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_EPSG: Final = "http://www.opengis.net/def/crs/EPSG/0/"


@dataclass(frozen=True)
class Crs:
    """A supported CRS.

    Attributes
    ----------
    uri
        The OGC URI (``http://www.opengis.net/def/crs/EPSG/0/4490``).
    srid
        PostGIS SRID (an integer; CRS84 is 4326 with longitude first).
    flip
        Whether the CRS's first axis is latitude or northing (coordinates are written and
        read as ``y, x``).
    geographic
        Degrees (True) or metres.
    """

    uri: str
    srid: int
    flip: bool
    geographic: bool

    @property
    def is_storage(self) -> bool:
        """Whether coordinates need no transform (CRS84, the stored order)."""
        return self.srid == 4326 and not self.flip


def uri(code: int) -> str:
    """The OGC URI of EPSG ``code``.

    >>> uri(4490)
    'http://www.opengis.net/def/crs/EPSG/0/4490'
    """
    return f"{_EPSG}{code}"


def _gauss_kruger() -> list[int]:
    # 6° zones 13–23 (4491–4501) and by central meridian (4502–4512); 3° zones 25–45
    # (4513–4533) and by central meridian (4534–4554): every CGCS2000 GK CRS over China
    return [*range(4491, 4513), *range(4513, 4555)]


def _table() -> dict[str, Crs]:
    out = {CRS84: Crs(CRS84, 4326, False, True)}
    out[uri(4326)] = Crs(uri(4326), 4326, True, True)
    out[uri(4490)] = Crs(uri(4490), 4490, True, True)
    out[uri(3857)] = Crs(uri(3857), 3857, False, False)
    for code in _gauss_kruger():
        out[uri(code)] = Crs(uri(code), code, True, False)
    return out


#: Every CRS a request may name, by URI (CRS84 first: the default).
SUPPORTED: Final[dict[str, Crs]] = _table()
#: The CRS of the stored coordinates.
STORAGE: Final = SUPPORTED[CRS84]

_ALIASES = {
    "CRS84": CRS84,
    "OGC:CRS84": CRS84,
    "[OGC:CRS84]": CRS84,
    "urn:ogc:def:crs:OGC:1.3:CRS84": CRS84,
    "urn:ogc:def:crs:OGC::CRS84": CRS84,
}


def parse_crs(value: str, parameter: str) -> Crs:
    """The CRS a parameter names (an OGC URI, ``EPSG:n``, ``[EPSG:n]`` or a URN).

    Raises
    ------
    geogrid.errors.InvalidInput
        An unsupported or malformed CRS (the ``parameter`` is named).

    >>> parse_crs("EPSG:4490", "crs").srid, parse_crs("EPSG:4490", "crs").flip
    (4490, True)
    >>> parse_crs("http://www.opengis.net/def/crs/OGC/1.3/CRS84", "crs").flip
    False
    """
    text = value.strip()
    text = _ALIASES.get(text, text)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    for prefix in ("EPSG:", "urn:ogc:def:crs:EPSG::", "https://www.opengis.net/def/crs/EPSG/0/"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            text = uri(int(text[len(prefix) :]))
    found = SUPPORTED.get(text)
    if found is None:
        raise InvalidParameterValue(
            f"unsupported {parameter}={value!r}: use one of the collection's CRS URIs "
            f"(CRS84, EPSG:4326, EPSG:4490, EPSG:3857, CGCS2000 Gauss-Krüger EPSG:4491–4554)",
            detail={"parameter": parameter},
        )
    return found
