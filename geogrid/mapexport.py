"""Self-contained offline map files with folium: every script and style inlined.

folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs by default. Here the
map's (and each plugin's) ``default_js``/``default_css`` are emptied and the files it really
needs are inlined instead: Leaflet from ``node_modules`` (installed by ``scripts/setup.sh``)
and plugin scripts from the folium wheel. Leaflet's CSS images become ``data:`` URIs. The
result opens from ``file://`` on an intranet PC with no request at all.

Used by ``geogrid map export`` and by the leader notebook.
"""

from __future__ import annotations

import base64
import html
import re
from importlib import resources
from pathlib import Path
from typing import Any

import folium
from sqlalchemy import Connection, Engine, text

from geogrid.assets import find_node_modules
from geogrid.errors import ConfigurationError, NotFound

__all__ = [
    "deviation_colour",
    "export_plan_map",
    "external_urls",
    "inline_plugin",
    "offline_map",
    "plan_map",
]

#: Links that would make a browser fetch something from the network.
_EXTERNAL = re.compile(
    r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?|@import\s+["'])https?://""", re.I
)


def _script(source: str) -> str:
    return "<script>\n" + source.replace("</script", "<\\/script") + "\n</script>"


def _leaflet_css(dist: Path) -> str:
    """leaflet.css with its ``url(images/...)`` references turned into data URIs."""
    css = (dist / "leaflet.css").read_text(encoding="utf-8")

    def inline(m: re.Match[str]) -> str:
        name = m.group(1).strip("'\"")
        path = dist / name
        if not path.is_file():
            return m.group(0)
        mime = "image/svg+xml" if name.endswith(".svg") else "image/png"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f"url(data:{mime};base64,{data})"

    return re.sub(r"url\(([^)]+)\)", inline, css)


def offline_map(*, node_modules: Path | str | None = None, **kwargs: Any) -> folium.Map:
    """A :class:`folium.Map` with no base map and Leaflet inlined (no CDN links).

    Parameters
    ----------
    node_modules
        Where Leaflet is installed; see :func:`find_node_modules`.
    kwargs
        Passed to :class:`folium.Map` (``tiles`` defaults to ``None``: no base map).
    """
    dist = find_node_modules(node_modules) / "leaflet" / "dist"
    kwargs.setdefault("tiles", None)
    # No attribution control: its default prefix links leafletjs.com.
    kwargs.setdefault("attribution_control", False)
    m = folium.Map(**kwargs)
    m.default_js = []
    m.default_css = []
    header = m.get_root().header  # type: ignore[attr-defined]
    header.add_child(folium.Element(f"<style>\n{_leaflet_css(dist)}\n</style>"), name="leaflet_css")
    # The one external link in leaflet.js is its default attribution prefix (replaced below).
    js = re.sub(
        r'href="https?://leafletjs\.com"', 'href="#"', (dist / "leaflet.js").read_text("utf-8")
    )
    header.add_child(folium.Element(_script(js)), name="leaflet_js")
    return m


def inline_plugin(m: folium.Map, plugin: Any, *scripts: Path) -> Any:
    """Empty ``plugin``'s CDN links and inline ``scripts`` (default: folium's own copies).

    Each script is inlined once per map (by file name), after Leaflet.
    """
    plugin.default_js = []
    plugin.default_css = []
    if not scripts:
        known = {"HeatMap": "leaflet_heat.min.js"}
        name = known.get(type(plugin).__name__)
        if name is None:
            raise ConfigurationError(
                f"no local copy known for folium plugin {type(plugin).__name__}"
            )
        scripts = (Path(str(resources.files("folium") / "templates" / name)),)
    header = m.get_root().header  # type: ignore[attr-defined]
    for path in scripts:
        key = "inline_" + re.sub(r"\W", "_", Path(path).name)
        if key not in header._children:
            header.add_child(folium.Element(_script(Path(path).read_text("utf-8"))), name=key)
    return plugin


def external_urls(page: str) -> list[str]:
    """``src=``/``href=``/``url(``/``@import`` references to ``http(s)://`` in ``page``.

    Namespace strings such as ``http://www.w3.org/2000/svg`` inside scripts are not
    requests and are not reported.

    >>> external_urls('<script src="https://cdn.example/x.js"></script>')
    ['src="https://cdn.example/x.js']
    >>> external_urls("createElementNS('http://www.w3.org/2000/svg', 'svg')")
    []
    """
    return [page[m.start() : page.find('"', m.end()) if '"' in page[m.end() :] else m.end()]
            for m in _EXTERNAL.finditer(page)]  # fmt: skip


def deviation_colour(deviation: float | None, target: float) -> str:
    """Fill colour for a grid's deviation from the target household count.

    >>> deviation_colour(0, 150), deviation_colour(40, 150), deviation_colour(-40, 150)
    ('#f7f7f7', '#d73027', '#4575b4')
    """
    if deviation is None or target <= 0:
        return "#cccccc"
    pct = 100.0 * deviation / target
    for limit, colour in ((-20, "#4575b4"), (-10, "#91bfdb"), (10, "#f7f7f7"), (20, "#fc8d59")):
        if pct < limit or (limit == 10 and pct <= 10):
            return colour
    return "#d73027"


_GRIDS_SQL = """
SELECT g.code, g.name, g.households, g.population, g.metrics - 'units' AS metrics,
       v.name AS village, ST_AsGeoJSON(g.geom, 6)::json AS geometry
  FROM grids g LEFT JOIN admin_areas v ON v.code = g.village_code
 WHERE g.plan_id = :plan AND g.level = 3 AND g.geom IS NOT NULL
 ORDER BY g.code
"""


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return "、".join(str(x) for x in v) or "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return "—" if v is None else str(v)


def plan_map(
    conn: Connection, plan_id: int, *, node_modules: Path | str | None = None
) -> folium.Map:
    """An offline folium map of plan ``plan_id``: grids coloured by deviation, metric popups.

    Raises
    ------
    NotFound
        When the plan does not exist or has no basic grids.
    """
    plan = conn.execute(
        text("SELECT name, status, params FROM plans WHERE id = :p"), {"p": plan_id}
    ).one_or_none()
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist.")
    target = float((plan.params or {}).get("target", 150))
    rows = conn.execute(text(_GRIDS_SQL), {"plan": plan_id}).all()
    if not rows:
        raise NotFound(f"plan {plan_id} has no basic grids to draw.")
    features = []
    for r in rows:
        metrics = dict(r.metrics or {})
        deviation = metrics.get("deviation", int(r.households) - target)
        props = {
            "code": r.code,
            "name": r.name or r.code,
            "village": r.village or "",
            "households": int(r.households),
            "population": int(r.population),
            "deviation": _fmt(deviation),
            "polsby_popper": _fmt(metrics.get("polsby_popper")),
            "groups": _fmt(metrics.get("groups", [])),
            "flags": _fmt(metrics.get("flags", [])),
            "fill": deviation_colour(deviation, target),
        }
        features.append({"type": "Feature", "geometry": r.geometry, "properties": props})
    fc = {"type": "FeatureCollection", "features": features}
    m = offline_map(node_modules=node_modules, prefer_canvas=True, control_scale=True)
    fields = ["code", "name", "village", "households", "population", "deviation",
              "polsby_popper", "groups", "flags"]  # fmt: skip
    aliases = ["编号", "名称", "村", "户数", "人口", "偏差(户)", "Polsby–Popper", "小组", "提示"]
    layer = folium.GeoJson(
        fc,
        name=f"{plan.name} (#{plan_id}, {plan.status})",
        style_function=lambda f: {
            "color": "#1f4e9c",
            "weight": 1.5,
            "fillColor": f["properties"]["fill"],
            "fillOpacity": 0.6,
        },
        highlight_function=lambda f: {"weight": 3, "color": "#ff7f00"},
        tooltip=folium.GeoJsonTooltip(fields=["name", "households"], aliases=["网格", "户数"]),
        popup=folium.GeoJsonPopup(fields=fields, aliases=aliases),
    ).add_to(m)
    (s, w), (n, e) = layer.get_bounds()
    m.fit_bounds([[float(s or 0), float(w or 0)], [float(n or 0), float(e or 0)]])
    title = html.escape(f"{plan.name} — 网格方案 #{plan_id}（{plan.status}）")
    m.get_root().html.add_child(  # type: ignore[attr-defined]
        folium.Element(
            '<div style="position:fixed;top:8px;left:50px;z-index:1000;background:#fff;'
            f'padding:3px 8px;border-radius:4px;font:14px sans-serif">{title}</div>'
        )
    )
    return m


def export_plan_map(
    engine: Engine, plan_id: int, out: Path | str, *, node_modules: Path | str | None = None
) -> Path:
    """Write plan ``plan_id`` as one self-contained offline HTML file.

    Parameters
    ----------
    engine
        Database engine.
    plan_id
        The plan to draw.
    out
        Output ``.html`` path (parent folders are created).
    node_modules
        Where Leaflet is installed; see :func:`find_node_modules`.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ConfigurationError
        When the page would still link something on the network (a bug, never expected).
    """
    with engine.connect() as conn:
        m = plan_map(conn, plan_id, node_modules=node_modules)
    page = m.get_root().render()
    links = external_urls(page)
    if links:
        raise ConfigurationError(f"exported map still links the network: {links[:3]}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
