"""Household ingestion.

For notebooks: :func:`geocode_register` reads and geocodes a register into a
GeoDataFrame (writing nothing), :func:`load_register` stores it, and
:func:`import_households` does both as ``geogrid import households`` does.

The pure, database-free parts are re-exported too:
:mod:`geogrid.ingest.readers` reads CSV, Excel, GeoPackage, Shapefile and GeoJSON
registers into frames with canonical column names (:mod:`geogrid.ingest.columns`);
:mod:`geogrid.ingest.address` splits rural addresses into their parts. Geocoding and
loading into PostGIS live in :mod:`geogrid.ingest.geocode` and :mod:`geogrid.ingest.load`.
"""

from __future__ import annotations

from geogrid.ingest.address import (
    ADDRESS_FIELDS,
    ParsedAddress,
    clean_address,
    cn_to_int,
    normalise_address,
    parse_address,
    parse_addresses,
    parse_group,
)
from geogrid.ingest.columns import CANONICAL_FIELDS, map_columns, parse_column_maps
from geogrid.ingest.load import (
    ImportReport,
    geocode_register,
    import_households,
    load_register,
)
from geogrid.ingest.readers import RegisterFrame, detect_encoding, read_register

__all__ = [
    "ADDRESS_FIELDS",
    "CANONICAL_FIELDS",
    "ImportReport",
    "ParsedAddress",
    "RegisterFrame",
    "clean_address",
    "cn_to_int",
    "detect_encoding",
    "geocode_register",
    "import_households",
    "load_register",
    "map_columns",
    "normalise_address",
    "parse_address",
    "parse_addresses",
    "parse_column_maps",
    "parse_group",
    "read_register",
]
