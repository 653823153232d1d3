"""OGC API – Features helpers beyond Part 1: CRS (Part 2), CQL2 filters (Part 3), sorting
and keyset paging. The collections themselves live in :mod:`geogrid.features`."""

from __future__ import annotations

from geogrid.errors import InvalidInput

__all__ = ["InvalidParameterValue"]


class InvalidParameterValue(InvalidInput):
    """A query parameter is unknown or its value is invalid (OGC exception code, HTTP 400)."""
