"""The tile service: validation, versions, cache, rendering, TileJSON (no web framework).

``api.routes.tiles`` is a thin HTTP skin over :class:`TileService`:

* **hit path** (no I/O): a version reading younger than the poll interval and a cached
  entry for ``(layer, versions, z, x, y, params)``;
* **miss path**: one ``REPEATABLE READ`` read-only transaction reads the layer versions
  and renders the tile from that same snapshot, so the cache key always names the data
  the bytes were made from; the tile is gzipped once and cached.

Heat-backed tiles first bring the pyramid up to date when cases changed (see
:mod:`tiles.heat`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Engine, text

from geogrid.errors import InvalidInput, NotFound
from geogrid.ops.replica_pool import run_on
from tiles import heat
from tiles.cache import CachedTile, Snapshot, TileCache, VersionWatcher, compress, make_etag
from tiles.layers import LAYERS, Layer, case_filter, tile_query, valid_tile
from tiles.params import CaseStates, TileParams, Window

#: Zooms whose queries differ in shape (pyramid bands, street zoom), run by :meth:`warm`.
WARM_ZOOMS = (8, 13, 15, 16, 22)

#: Cache-Control of tiles and heat answers: short, data can change at any time.
CACHE_CONTROL = "public, max-age=30"

_BOUNDS_SQL = text(
    """
    -- extent of the served area: all towns (else villages), in WGS84
    SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
    FROM (SELECT ST_Extent(geom) AS e FROM admin_areas WHERE level IN ('town', 'village')) q
    """
)


class TileService:
    """Serve MVT tiles, TileJSON and heat answers with a version-keyed cache.

    Parameters
    ----------
    engine
        The application's engine.
    cache
        The tile cache (default: 128 MB, 50,000 tiles).
    poll_interval
        Seconds a ``layer_versions`` reading is trusted (0: read on every request).
    """

    def __init__(
        self, engine: Engine, *, cache: TileCache | None = None, poll_interval: float = 0.25
    ) -> None:
        self.engine = engine
        #: read routing (``geogrid.ops.replica_pool.ReadRouter``): renders go to replicas
        #: that reached the versions read here from the primary; ``None``: all on the primary
        self.reads: Any = None
        self.cache = cache or TileCache()
        self.watcher = VersionWatcher(engine, poll_interval, on_change=self.cache.purge_stale)

    # ------------------------------------------------------------------ validation

    @staticmethod
    def layer(name: str) -> Layer:
        """The layer called ``name``; :class:`NotFound` otherwise."""
        layer = LAYERS.get(name)
        if layer is None:
            raise NotFound(
                f"no tile layer {name!r}; layers: {', '.join(LAYERS)}", detail={"layer": name}
            )
        return layer

    def check(self, name: str, z: int, x: int, y: int) -> Layer:
        """Validate a tile address; :class:`NotFound` for a tile that cannot exist."""
        layer = self.layer(name)
        if not valid_tile(z, x, y):
            raise NotFound(
                f"no tile {z}/{x}/{y}: z must be 0–22 and x, y between 0 and 2**z - 1",
                detail={"z": z, "x": x, "y": y},
            )
        if not layer.minzoom <= z <= layer.maxzoom:
            raise NotFound(
                f"layer {name!r} has tiles at zooms {layer.minzoom}–{layer.maxzoom}",
                detail={"z": z},
            )
        return layer

    # ------------------------------------------------------------------ warm-up

    def warm(self, connections: int) -> int:
        """Open ``connections`` pooled connections and run every layer's query once on each.

        A new PostgreSQL backend pays ~10–40 ms on its first tile: loading PostGIS and
        PROJ, filling its catalogue caches, planning each query for the first time. Doing
        that at start-up keeps it out of users' first requests. Each query runs on an empty
        tile (x = y = 0, at the antimeridian), so nothing is read. Returns the connections warmed.
        """
        with ExitStack() as stack:
            conns = [stack.enter_context(self.engine.connect()) for _ in range(connections)]
            for conn in conns:
                with conn.begin():
                    for layer in LAYERS.values():
                        for z in sorted({min(max(z, layer.minzoom), layer.maxzoom)
                                         for z in WARM_ZOOMS}):  # fmt: skip
                            sql, values = tile_query(layer, z, 0, 0, TileParams())
                            conn.execute(text(sql), values)
        self.watcher.current(force=True)  # the first version reading, too
        return len(conns)

    # ------------------------------------------------------------------ tiles

    @staticmethod
    def _key(
        layer: Layer, versions: Mapping[str, int], z: int, x: int, y: int, params: TileParams
    ) -> tuple[object, ...]:
        vs = tuple((name, versions.get(name, 0)) for name in layer.versions)
        return (layer.name, vs, z, x, y, layer.cache_params(params))

    def cached(self, name: str, z: int, x: int, y: int, params: TileParams) -> CachedTile | None:
        """The cached tile when it can be answered without any I/O, else ``None``."""
        layer = self.check(name, z, x, y)
        snap = self.watcher.fresh()
        if snap is None or (snap.heat_dirty and layer.needs_heat(z)):
            return None
        return self.cache.get(self._key(layer, snap.versions, z, x, y, params))

    def tile(self, name: str, z: int, x: int, y: int, params: TileParams) -> CachedTile:
        """The tile, from the cache or rendered now (blocking: run it in a thread)."""
        layer = self.check(name, z, x, y)
        snap = self.watcher.current()
        if layer.needs_heat(z):
            snap = self.ensure_heat(snap)
        key = self._key(layer, snap.versions, z, x, y, params)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        sql, values = tile_query(layer, z, x, y, params)

        def render(conn: Connection) -> tuple[tuple[object, ...], CachedTile | None, Any]:
            key = self._key(layer, self._versions(conn), z, x, y, params)
            hit = self.cache.get(key)
            return key, hit, None if hit is not None else conn.execute(text(sql), values).scalar()

        needs = {name: snap.versions.get(name, 0) for name in layer.versions}
        key, hit, body = self._read(render, needs)
        if hit is not None:
            return hit
        data = bytes(body or b"")
        tile = CachedTile(data, compress(data), make_etag(key))
        self.cache.put(key, tile)
        return tile

    def _read(self, fn: Any, needs: Mapping[str, int], snapshot: bool = True) -> Any:
        """``fn(conn)`` on a replica that reached ``needs`` (see :attr:`reads`), else here."""
        if self.reads is not None:
            return self.reads.run(fn, needs=needs, snapshot=snapshot)
        return run_on(self.engine, fn, snapshot=snapshot)

    @staticmethod
    def _versions(conn: Connection) -> dict[str, int]:
        rows = conn.execute(text("SELECT layer, version FROM layer_versions_now")).all()
        return {str(k): int(v) for k, v in rows}

    def ensure_heat(self, snap: Snapshot | None = None) -> Snapshot:
        """Refresh the heat pyramid if cases changed; the (new) version reading."""
        snap = snap or self.watcher.current()
        if not snap.heat_dirty:
            return snap
        with self.engine.begin() as conn:
            heat.refresh_heat(conn)
        return self.watcher.current(force=True)

    # ------------------------------------------------------------------ TileJSON

    def bounds(self) -> list[float]:
        """WGS84 bounds of the served area (cached per boundary version)."""
        snap = self.watcher.current()
        key: tuple[object, ...] = (
            "#bounds", (("towns", snap.versions.get("towns", 0)),), 0, 0, 0, ""
        )  # fmt: skip
        hit = self.cache.get(key)
        if hit is not None:
            return list(json.loads(hit.body))
        # on a replica that reached the towns version (OGC tile sets, TileJSON)
        needs = {"towns": snap.versions.get("towns", 0)}
        row = self._read(lambda conn: conn.execute(_BOUNDS_SQL).one(), needs, snapshot=False)
        box = (
            [round(float(v), 6) for v in row]
            if row[0] is not None
            else [-180.0, -85.0, 180.0, 85.0]
        )
        self.cache.put(key, CachedTile(json.dumps(box).encode(), None, ""))
        return box

    def tilejson(self, name: str, base_url: str, query: Mapping[str, str]) -> dict[str, Any]:
        """A TileJSON 3.0.0 document for layer ``name``.

        Parameters
        ----------
        name
            Layer id.
        base_url
            The server's root URL as the client reached it (``http://host:port/``).
        query
            Content parameters (``plan``, ``from``, ``to``, ``category``) to carry into the
            tile URL template; others are ignored.
        """
        layer = self.layer(name)
        keep = {"plan"} if "plan" in layer.uses else set()
        if "window" in layer.uses:
            keep |= {"from", "to", "category"}
        carried = {k: v for k, v in query.items() if k in keep and v}
        url = f"{base_url.rstrip('/')}/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt"
        if carried:
            url += "?" + urlencode(carried)
        b = self.bounds()
        centre_zoom = max(layer.minzoom, min(11, layer.maxzoom))
        return {
            "tilejson": "3.0.0",
            "name": layer.name,
            "description": layer.description,
            "version": "1.0.0",
            "scheme": "xyz",
            "tiles": [url],
            "minzoom": layer.minzoom,
            "maxzoom": layer.maxzoom,
            "bounds": b,
            "center": [round((b[0] + b[2]) / 2, 6), round((b[1] + b[3]) / 2, 6), centre_zoom],
            "vector_layers": [
                {
                    "id": layer.name,
                    "description": layer.description,
                    "minzoom": layer.minzoom,
                    "maxzoom": layer.maxzoom,
                    "fields": dict(layer.fields),
                }
            ],
        }

    # ------------------------------------------------------------------ heat answers

    def _cached_json(self, key: tuple[object, ...], make: Any) -> CachedTile:
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        body = self._read(make, dict(key[1]), snapshot=False).encode()  # type: ignore[call-overload]
        tile = CachedTile(body, compress(body), make_etag(key))
        self.cache.put(key, tile)
        return tile

    @staticmethod
    def _filtered(window: Window, states: CaseStates) -> tuple[heat.CaseFilter | None, str]:
        """The live case filter of a status/overdue request (``None``: the pyramid answers)
        and its cache-key text (the overdue filter names its time bucket)."""
        if not states.active:
            return None, ""
        where = case_filter(TileParams(window=window, states=states))
        return where, states.key(dt.datetime.now(dt.UTC))

    def heat_geojson(
        self,
        *,
        bbox: tuple[float, float, float, float],
        z: int,
        window: Window,
        states: CaseStates = CaseStates(),
    ) -> CachedTile:
        """Heat bins of a bbox as GeoJSON (see :func:`tiles.heat.heat_geojson`), cached;
        ``states`` (status, overdue) are counted live, as the heat tiles count them."""
        snap = self.ensure_heat()
        where, filtered = self._filtered(window, states)
        layers = ("heat", "cases") if where else ("heat",)
        vs = tuple((n, snap.versions.get(n, 0)) for n in layers)
        key = ("#api-heat", vs, z, 0, 0, f"{bbox}|{window.key()}|{filtered}")
        return self._cached_json(
            key,
            lambda conn: heat.heat_geojson(conn, bbox=bbox, z=z, window=window, case_filter=where),
        )

    def cases_by_grid(
        self,
        *,
        window: Window,
        plan: int | None = None,
        geometry: bool = True,
        states: CaseStates = CaseStates(),
    ) -> CachedTile:
        """Grids with case counts plus per-category ``totals`` (GeoJSON), cached; ``states``
        (status, overdue) narrow the cases counted (live, as the heat tiles count them)."""
        snap = self.ensure_heat()
        where, filtered = self._filtered(window, states)
        vs = tuple((n, snap.versions.get(n, 0)) for n in ("cases", "grids", "heat"))
        key = ("#api-cases-by-grid", vs, 0, 0, 0,
               f"plan={plan}|{window.key()}|geometry={geometry}|{filtered}")  # fmt: skip

        def make(conn: Connection) -> str:
            fc = heat.cases_by_grid(conn, window, plan=plan, geometry=geometry, case_filter=where)
            extra = {
                "totals": heat.category_totals(conn, window, where),
                "window": {
                    "from": window.start.isoformat(), "to": window.end.isoformat(),
                    "categories": list(window.categories) if window.categories else None,
                },
                "filter": {
                    "status": list(states.statuses) if states.statuses else None,
                    "overdue": states.overdue,
                },
            }  # fmt: skip
            # spliced, not parsed and re-serialised: 5 MB of grid polygons round-tripped
            # through Python's json cost ~0.25 s of CPU per new window
            assert fc.endswith("}")
            return fc[:-1] + ", " + json.dumps(extra, ensure_ascii=False)[1:]

        return self._cached_json(key, make)


def parse_bbox(value: str) -> tuple[float, float, float, float]:
    """``min_lon,min_lat,max_lon,max_lat`` → floats; :class:`InvalidInput` otherwise.

    >>> parse_bbox("114.2,30.3,114.4,30.5")
    (114.2, 30.3, 114.4, 30.5)
    """
    try:
        parts = tuple(float(p) for p in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4:
        raise InvalidInput(
            "bbox must be four numbers: min_lon,min_lat,max_lon,max_lat", detail={"bbox": value}
        )
    return parts[0], parts[1], parts[2], parts[3]
