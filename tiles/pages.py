"""Map pages: base-map configuration, local web assets, Jinja2 templates and page data.

Everything a browser needs is served by geogrid itself: Leaflet, Leaflet.VectorGrid and
swagger-ui come from ``node_modules`` (installed by ``scripts/setup.sh`` with ``npm ci``),
our own scripts and styles from ``tiles/static``. No page contains an ``http://`` or
``https://`` URL unless an operator configures an external base map (Tianditu, a GCJ-02
provider or an XYZ server); the default base map is ``none`` and makes no request at all.

GCJ-02 base maps: overlays are shifted **client-side** (``tiles/static/geogrid-map.js`` has
a JavaScript port of the WGS84→GCJ-02 formula used by :mod:`geogrid.coords`). GeoJSON
overlays are shifted vertex by vertex; vector-tile overlays are shifted tile by tile by the
offset at each tile's centre (the offset varies by < 1 px across one 256 px tile at any zoom).

This module imports no FastAPI: :mod:`api.routes.pages` serves what it renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import Connection, text

from geogrid import i18n
from geogrid.assets import find_node_modules
from geogrid.errors import ConfigurationError, InvalidInput, NotFound
from geogrid.files import contained_file
from geogrid.settings import Settings
from tiles.basemap import Tile, open_mbtiles

__all__ = [
    "EMBED_LAYERS",
    "NPM_PACKAGES",
    "PAGES",
    "basemap_config",
    "contained_file",
    "npm_asset",
    "page_config",
    "plan_groups",
    "public_grids",
    "render_page",
    "static_asset",
]

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"

#: npm packages whose files may be served, each limited to the folder browsers need.
NPM_PACKAGES: dict[str, str] = {
    "leaflet": "dist",
    "leaflet.vectorgrid": "dist",
    "swagger-ui-dist": "",
    "echarts": "dist",  # the leader's dashboard (/leader/dashboard)
    # the field app (/field/): IndexedDB and the service worker's Workbox modules
    "idb": "build",
    "workbox-sw": "build",
    "workbox-core": "build",
    "workbox-routing": "build",
    "workbox-strategies": "build",
    "workbox-expiration": "build",
}

#: Files every map page needs, relative to ``node_modules`` (checked at start-up).
REQUIRED_NPM_FILES = (
    "leaflet/dist/leaflet.js",
    "leaflet/dist/leaflet.css",
    "leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js",
    "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui-dist/swagger-ui.css",
)

#: Layers an ``/embed/{layer}`` page can show: public layers, or those an embed token names
#: (cases only aggregated, as the heat map: their points are never embedded).
EMBED_LAYERS: dict[str, str] = {
    "grids": "网格 Grids",
    "heat": "事件热力 Heat map",
    "key_units": "重点单位 Key units",
    "inspection_points": "消防巡查点 Inspection points",
    "villages": "行政村 Villages",
}

#: Pages listed on the index: (path, title, description).
PAGES: tuple[tuple[str, str, str], ...] = (
    ("/planner", "网格规划 Planner", "草案与现行方案对比、网格指标、调整村民小组归属"),
    ("/leader", "领导驾驶舱 Leader", "事件热力图、时间与类别筛选、各网格事件数"),
    ("/public", "网格化图谱 Public grid map", "每个网格的网格员：姓名、照片、电话、职责"),
    *(
        (f"/embed/{k}", f"嵌入 Embed: {v}", "供其他门户 iframe 嵌入的极简地图")
        for k, v in EMBED_LAYERS.items()
    ),
    ("/docs", "接口文档 API docs", "OpenAPI (Swagger UI, 本地资源)"),
)

_TIANDITU = (
    "https://t{s}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
    "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
    "&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={key}"
)


def basemap_config(settings: Settings) -> dict[str, Any]:
    """The base-map part of a page's configuration (what ``geogrid-map.js`` reads).

    Parameters
    ----------
    settings
        geogrid's settings (the ``basemap*`` and ``tianditu_key`` fields).

    Returns
    -------
    dict
        ``kind``, ``layers`` (URL templates with Leaflet options; empty for ``none``) and
        ``shift`` (``"gcj02"`` when overlays must be shifted to match the base map).

    Raises
    ------
    ConfigurationError
        When the chosen base map lacks its URL, folder or key.

    Examples
    --------
    >>> basemap_config(Settings(basemap="none"))
    {'kind': 'none', 'layers': [], 'shift': None}
    >>> basemap_config(Settings(basemap="xyz", basemap_dir="/srv/tiles"))["layers"][0]["url"]
    '/basemap/{z}/{x}/{y}.png'
    """
    kind = settings.basemap
    common = {"maxZoom": settings.basemap_max_zoom, "attribution": settings.basemap_attribution}
    if kind == "none":
        return {"kind": kind, "layers": [], "shift": None}
    if kind == "tianditu":
        if not settings.tianditu_key:
            raise ConfigurationError("GEOGRID_BASEMAP=tianditu needs GEOGRID_TIANDITU_KEY")
        key = settings.tianditu_key
        layers = [
            {
                "url": _TIANDITU.format(s="{s}", layer=layer, key=key),
                "subdomains": "01234567",
                **common,
                "attribution": settings.basemap_attribution or "天地图",
            }
            for layer in ("vec", "cva")
        ]
        return {"kind": kind, "layers": layers, "shift": None}
    if kind == "mbtiles":
        return {"kind": kind, "layers": [mbtiles_layer(settings)], "shift": None}
    if kind == "xyz" and settings.basemap_dir is not None:
        return {
            "kind": kind,
            "layers": [{"url": "/basemap/{z}/{x}/{y}.png", **common}],
            "shift": None,
        }
    if not settings.basemap_url:
        need = (
            "GEOGRID_BASEMAP_DIR or GEOGRID_BASEMAP_URL" if kind == "xyz" else "GEOGRID_BASEMAP_URL"
        )
        raise ConfigurationError(f"GEOGRID_BASEMAP={kind} needs {need}")
    layer = {"url": settings.basemap_url, "subdomains": "abc", **common}
    return {"kind": kind, "layers": [layer], "shift": "gcj02" if kind == "gcj02" else None}


def mbtiles_layer(settings: Settings) -> dict[str, Any]:
    """The page's base-map layer for ``GEOGRID_BASEMAP=mbtiles`` (raster or vector).

    Raises
    ------
    ConfigurationError
        When ``GEOGRID_BASEMAP_MBTILES`` is unset or the file is not a usable MBTiles file.
    """
    if settings.basemap_mbtiles is None:
        raise ConfigurationError("GEOGRID_BASEMAP=mbtiles needs GEOGRID_BASEMAP_MBTILES")
    mb = open_mbtiles(settings.basemap_mbtiles)
    return {
        "url": "/basemap/mbtiles/{z}/{x}/{y}",
        "maxZoom": settings.basemap_max_zoom,
        "maxNativeZoom": mb.maxzoom,
        "minNativeZoom": mb.minzoom,
        "attribution": settings.basemap_attribution or mb.attribution,
        **mb.public(),
    }


def mbtiles_tile(settings: Settings, z: int, x: int, y: int) -> Tile | None:
    """Tile ``z/x/y`` of the configured MBTiles base map (``None``: the file has none).

    Raises
    ------
    NotFound
        When no MBTiles base map is configured, or for coordinates outside zoom ``z``.
    """
    if settings.basemap != "mbtiles" or settings.basemap_mbtiles is None:
        raise NotFound("no MBTiles base map configured (GEOGRID_BASEMAP_MBTILES)")
    return open_mbtiles(settings.basemap_mbtiles).tile(z, x, y)


# -- web assets --------------------------------------------------------------------------


def missing_assets(settings: Settings | None = None) -> list[str]:
    """Required asset files that are absent (empty when the pages can be served)."""
    try:
        root = find_node_modules(settings.node_modules if settings else None)
    except ConfigurationError:
        return list(REQUIRED_NPM_FILES)
    return [f for f in REQUIRED_NPM_FILES if not (root / f).is_file()]


def npm_asset(package: str, path: str, settings: Settings | None = None) -> Path:
    """The file ``path`` of npm ``package``, restricted to the folders browsers need.

    Raises
    ------
    NotFound
        For a package not in :data:`NPM_PACKAGES`, a path outside its folder or a missing
        file.
    ConfigurationError
        When the assets are not installed at all.
    """
    if package not in NPM_PACKAGES:
        raise NotFound(f"no web asset package {package!r}")
    sub = NPM_PACKAGES[package]
    root = find_node_modules(settings.node_modules if settings else None) / package
    if sub:
        if not path.startswith(sub + "/"):
            raise NotFound(f"{package}: only files under {sub}/ are served")
        root, path = root / sub, path[len(sub) + 1 :]
    found = contained_file(root, path)
    if found is None:
        raise NotFound(f"no web asset {package}/{sub + '/' if sub else ''}{path}")
    return found


def static_asset(path: str) -> Path:
    """One of our own static files (``tiles/static``)."""
    found = contained_file(STATIC_DIR, path)
    if found is None:
        raise NotFound(f"no static file {path}")
    return found


def basemap_tile(settings: Settings, z: int, x: int, y: int) -> Path:
    """A tile of the local XYZ base-map folder (``GEOGRID_BASEMAP_DIR``)."""
    if settings.basemap_dir is None:
        raise NotFound("no local base map configured (GEOGRID_BASEMAP_DIR)")
    tile = contained_file(settings.basemap_dir, f"{z}/{x}/{y}.png")
    if tile is None:
        raise NotFound(f"no base-map tile {z}/{x}/{y}")
    return tile


# -- templates ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Asset:
    """URLs of the assets a page links (all under ``/assets``)."""

    leaflet_js: str = "/assets/npm/leaflet/dist/leaflet.js"
    leaflet_css: str = "/assets/npm/leaflet/dist/leaflet.css"
    vectorgrid_js: str = "/assets/npm/leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js"
    swagger_js: str = "/assets/npm/swagger-ui-dist/swagger-ui-bundle.js"
    swagger_css: str = "/assets/npm/swagger-ui-dist/swagger-ui.css"
    swagger_favicon: str = "/assets/npm/swagger-ui-dist/favicon-32x32.png"
    static: str = "/assets/static"


ASSETS = Asset()


def page_config(settings: Settings, page: str, **extra: Any) -> dict[str, Any]:
    """The JSON configuration embedded in a page (read by ``geogrid-map.js``).

    >>> page_config(Settings(basemap="none"), "leader")["basemap"]["kind"]
    'none'
    """
    return {"page": page, "basemap": basemap_config(settings), **extra}


def render_page(
    template: str,
    *,
    config: dict[str, Any],
    title: str,
    **context: Any,
) -> str:
    """Render ``tiles/templates/{template}`` with the page configuration embedded as JSON.

    Parameters
    ----------
    template
        Template file name, e.g. ``"planner.html"``.
    config
        Page configuration (see :func:`page_config`); embedded as
        ``<script type="application/json" id="gg-config">``.
    title
        Page title (in the page's language).
    context
        Further template variables, among them ``lang``, the page's language (``zh``
        by default, or ``en``): templates get ``t(key, **vars)`` in it and the page the
        merged catalogue (``<script type="application/json" id="gg-messages">``, read by
        ``i18n.js``); and ``lang_persist``, whether the page follows and remembers the
        visitor's language choice (default ``True``; ``False`` for embeds: they follow
        their URL only). Pages rendered without ``lang`` are Chinese and offer no switch.
    """
    lang_switch = "lang" in context  # a route that reads the language offers the switch
    lang = str(context.pop("lang", i18n.DEFAULT_LANG))
    lang_persist = bool(context.pop("lang_persist", True))
    catalogue = i18n.messages(lang)

    def translate(key: str, **values: Any) -> str:
        return i18n.t(key, lang, **values)

    return (
        _env()
        .get_template(template)
        .render(
            title=title,
            assets=ASSETS,
            config_json=_script_json({**config, "lang": lang}),
            messages_json=_script_json(catalogue),
            pages=PAGES,
            lang=lang,
            lang_persist=lang_persist,
            lang_switch=lang_switch,
            t=translate,
            **context,
        )
    )


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</`` can close it)."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


# -- page data (server-side joins; no personal data of residents) -----------------------


def _active_plan(conn: Connection, town_code: str | None) -> tuple[int, str] | None:
    sql = "SELECT id, name FROM plans WHERE status = 'active'"
    params: dict[str, Any] = {}
    if town_code:
        sql += " AND town_code = :town"
        params["town"] = town_code
    row = conn.execute(
        text(sql + " ORDER BY activated_at DESC NULLS LAST, id LIMIT 1"), params
    ).one_or_none()
    return (int(row.id), str(row.name)) if row else None


#: Public grid map: basic grids of the active plan with their staff. Only staff fields meant
#: for the public (name, duty phone, photo, duties, role, post) and the household *count*.
_PUBLIC_GRIDS_SQL = """
SELECT g.code, g.name, g.households, v.name AS village,
       ST_AsGeoJSON(ST_SimplifyPreserveTopology(g.geom, 0.00002), 6)::json AS geometry,
       COALESCE(
         (SELECT json_agg(json_build_object(
                    'id', s.id, 'name', s.name, 'phone', s.phone, 'photo', s.photo,
                    'duties', s.duties, 'role', a.role, 'post', a.post)
                  ORDER BY CASE a.role WHEN 'leader' THEN 0 WHEN 'guide' THEN 1 ELSE 2 END,
                           a.post, s.name)
            FROM staff_assignments a JOIN staff s ON s.id = a.staff_id
           WHERE a.grid_id = g.id), '[]'::json) AS staff
  FROM grids g
  LEFT JOIN admin_areas v ON v.code = g.village_code
 WHERE g.plan_id = :plan AND g.level = 3 AND g.geom IS NOT NULL
 ORDER BY g.code
"""


def public_grids(conn: Connection, *, town_code: str | None = None) -> dict[str, Any]:
    """GeoJSON of the active plan's grids with their responsible staff, for ``/public``.

    Carries no resident data: per grid only its code, name, village, household count and
    the staff posted there (name, duty phone, photo URL, duties, role, A/B post).

    Parameters
    ----------
    conn
        Database connection.
    town_code
        Limit to this town's active plan; default: the most recently activated plan.
    """
    active = _active_plan(conn, town_code)
    if active is None:
        return {"type": "FeatureCollection", "features": [], "plan": None}
    plan_id, plan_name = active
    features = []
    for row in conn.execute(text(_PUBLIC_GRIDS_SQL), {"plan": plan_id}):
        staff = [{**s, "photo_url": f"/public/photos/{s['id']}"} for s in (row.staff or [])]
        for s in staff:
            s.pop("photo", None)
        features.append(
            {
                "type": "Feature",
                "geometry": row.geometry,
                "properties": {
                    "code": row.code,
                    "name": row.name or row.code,
                    "village": row.village,
                    "households": int(row.households),
                    "staff": staff,
                },
            }
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "plan": {"id": plan_id, "name": plan_name},
    }


def staff_photo_name(conn: Connection, staff_id: int) -> tuple[str, str | None]:
    """The name and photo file name of staff member ``staff_id`` (for ``/public/photos``)."""
    row = conn.execute(
        text("SELECT name, photo FROM staff WHERE id = :id"), {"id": staff_id}
    ).one_or_none()
    if row is None:
        raise NotFound(f"no staff member {staff_id}")
    return str(row.name), row.photo


_PLAN_GROUPS_SQL = """
SELECT vg.id, vg.village_code, vg.group_no, COALESCE(vg.name, vg.group_no || '组') AS name,
       g.code AS grid_code,
       (SELECT count(*) FROM households h WHERE h.group_id = vg.id) AS households,
       ST_AsGeoJSON(ST_SimplifyPreserveTopology(vg.geom, 0.00001), 6)::json AS geometry
  FROM grid_groups gg
  JOIN grids g ON g.id = gg.grid_id
  JOIN villager_groups vg ON vg.id = gg.group_id
 WHERE gg.plan_id = :plan AND gg.part IS NULL AND vg.geom IS NOT NULL
 ORDER BY vg.village_code, vg.group_no
"""


def plan_groups(conn: Connection, plan_id: int) -> dict[str, Any]:
    """GeoJSON of the villager groups of plan ``plan_id`` with the grid each belongs to.

    The planner page draws these so that a group can be picked and moved; households
    appear only as a count per group.

    Raises
    ------
    NotFound
        When the plan does not exist.
    """
    if plan_id <= 0:
        raise InvalidInput("plan id must be positive")
    if conn.execute(text("SELECT 1 FROM plans WHERE id = :p"), {"p": plan_id}).first() is None:
        raise NotFound(f"no plan {plan_id}")
    features = [
        {
            "type": "Feature",
            "id": row.id,
            "geometry": row.geometry,
            "properties": {
                "id": row.id,
                "village_code": row.village_code,
                "group_no": row.group_no,
                "name": row.name,
                "grid_code": row.grid_code,
                "households": int(row.households),
            },
        }
        for row in conn.execute(text(_PLAN_GROUPS_SQL), {"plan": plan_id})
    ]
    return {"type": "FeatureCollection", "features": features}


def area_bounds(conn: Connection) -> list[float] | None:
    """``[west, south, east, north]`` of the towns (or villages) in the database, if any."""
    row = conn.execute(
        text(
            "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n "
            "FROM (SELECT ST_Extent(geom) AS e FROM admin_areas "
            "      WHERE level IN ('town', 'village') AND geom IS NOT NULL) q"
        )
    ).one()
    if row.w is None:
        return None
    return [round(float(v), 6) for v in (row.w, row.s, row.e, row.n)]


#: Distinct case categories by a loose index scan over ix_cases_category_reported_at
#: (fast with a million cases: one index probe per category).
_CATEGORIES_SQL = """
WITH RECURSIVE c(category) AS (
  (SELECT category FROM cases ORDER BY category LIMIT 1)
  UNION ALL
  SELECT (SELECT category FROM cases WHERE category > c.category ORDER BY category LIMIT 1)
    FROM c WHERE c.category IS NOT NULL
)
SELECT category FROM c WHERE category IS NOT NULL LIMIT 200
"""


def case_categories(conn: Connection) -> list[str]:
    """The case categories present, for the leader page's filter."""
    return [str(r.category) for r in conn.execute(text(_CATEGORIES_SQL))]
