"""The one router of ``/ogc``: OGC API – Features (:mod:`api.routes.ogc`) and OGC API –
Tiles (:mod:`api.routes.ogc_tiles`) add their routes to it."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/ogc", tags=["OGC API"])
