"""Self-contained offline map files with folium: every script and style inlined.

folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs by default. Here the
map's (and each plugin's) ``default_js``/``default_css`` are emptied and the files it really
needs are inlined instead: Leaflet from ``node_modules`` (installed by ``scripts/setup.sh``)
and plugin scripts from the folium wheel. Leaflet's CSS images become ``data:`` URIs. The
result opens from ``file://`` on an intranet PC with no request at all.

The plan map is Chinese by default (``lang="en"`` for English, from the shared message
catalogue): a title, named grids coloured by the plan's band (within, near the edge,
outside), a legend, a metric scale bar and no attribution prefix.

Used by ``geogrid map export`` and by the leader notebook.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import folium
import shapely.geometry
from sqlalchemy import Connection, Engine, text

from geogrid.assets import find_node_modules
from geogrid.errors import ConfigurationError, NotFound
from geogrid.printing.i18n import messages
from partition.report import BAND_COLOURS, add_map_chrome, band_class, legend_html

__all__ = [
    "PlanLabel",
    "export_plan_map",
    "external_urls",
    "inline_plugin",
    "offline_map",
    "plan_label",
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


_GRIDS_SQL = """
SELECT g.code, coalesce(g.name, g.code) AS name, g.households, g.population,
       g.metrics - 'units' AS metrics, v.name AS village, ST_AsGeoJSON(g.geom, 6)::json AS geometry
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


@dataclass(frozen=True)
class PlanLabel:
    """A plan's printed title and its grids' names."""

    title: str
    names: dict[str, str]


def plan_label(conn: Connection, plan_id: int, catalogue: Mapping[str, str]) -> PlanLabel:
    """The title of plan ``plan_id`` (``print.export.title``) and its basic grids' names.

    Raises
    ------
    NotFound
        When the plan does not exist.
    """
    from geogrid.i18n import fill

    plan = conn.execute(
        text("SELECT name, status FROM plans WHERE id = :p"), {"p": plan_id}
    ).one_or_none()
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist.", detail={"plan_id": plan_id})
    status = catalogue.get(f"print.status.{plan.status}", str(plan.status))
    values = {"plan": plan.name, "id": plan_id, "status": status}
    rows = conn.execute(
        text("SELECT code, name FROM grids WHERE plan_id = :p AND level = 3 AND name IS NOT NULL"),
        {"p": plan_id},
    ).all()
    return PlanLabel(
        fill(catalogue["print.export.title"], values), {str(c): str(n) for c, n in rows}
    )


def plan_map(
    conn: Connection,
    plan_id: int,
    *,
    node_modules: Path | str | None = None,
    lang: str = "zh",
) -> folium.Map:
    """An offline folium map of plan ``plan_id``: named grids coloured by the plan's band,
    a title, a legend, a metric scale bar and popups with the grids' metrics.

    Raises
    ------
    NotFound
        When the plan does not exist or has no basic grids.
    InvalidInput
        An unknown language.
    """
    m = messages(lang)
    label = plan_label(conn, plan_id, m)
    params = conn.execute(text("SELECT params FROM plans WHERE id = :p"), {"p": plan_id}).scalar()
    params = params or {}
    target = float(params.get("target", 150))
    lo, hi = int(params.get("min", 100)), int(params.get("max", 200))
    rows = conn.execute(text(_GRIDS_SQL), {"plan": plan_id}).all()
    if not rows:
        raise NotFound(f"plan {plan_id} has no basic grids to draw.", detail={"plan_id": plan_id})
    features = []
    counts: dict[str, int] = {}
    for r in rows:
        metrics = dict(r.metrics or {})
        deviation = metrics.get("deviation", int(r.households) - target)
        band = band_class(int(r.households), lo, hi)
        counts[band] = counts.get(band, 0) + 1
        flags = [m.get(f"print.flag.{f}", str(f)) for f in metrics.get("flags", [])]
        props = {
            "code": r.code,
            "name": r.name,
            "village": r.village or "",
            "households": int(r.households),
            "population": int(r.population),
            "deviation": _fmt(deviation),
            "polsby_popper": _fmt(metrics.get("polsby_popper")),
            "groups": _fmt(metrics.get("groups", [])),
            "flags": _fmt(flags),
            "fill": BAND_COLOURS[band],
        }
        features.append({"type": "Feature", "geometry": r.geometry, "properties": props})
    fc = {"type": "FeatureCollection", "features": features}
    fmap = offline_map(node_modules=node_modules, prefer_canvas=True)
    col = "print.report.col."
    fields = ["name", "code", "village", "households", "population", "deviation",
              "polsby_popper", "groups", "flags"]  # fmt: skip
    aliases = (
        [m[col + k] for k in ("name", "code")]
        + [m["print.col.village"]]
        + [m[col + k] for k in ("households", "population", "deviation", "pp", "groups", "flags")]
    )
    layer = folium.GeoJson(
        fc,
        name=label.title,
        style_function=lambda f: {
            "color": "#1f4e9c",  # GG.GRID_STROKE, as on the map pages
            "weight": 1.2,
            "fillColor": f["properties"]["fill"],
            "fillOpacity": 0.5,
        },
        highlight_function=lambda f: {"weight": 3, "color": "#ff7f00"},
        tooltip=folium.GeoJsonTooltip(
            fields=["name", "households"], aliases=[m[col + "name"], m[col + "households"]]
        ),
        popup=folium.GeoJsonPopup(fields=fields, aliases=aliases),
    ).add_to(fmap)
    (s, w), (n, e) = layer.get_bounds()
    fmap.fit_bounds([[float(s or 0), float(w or 0)], [float(n or 0), float(e or 0)]])
    names = []  # each grid's name on the map, at a point inside it
    for f in features:
        p = shapely.geometry.shape(f["geometry"]).representative_point()
        names.append((p.y, p.x, str(f["properties"]["name"])))
    add_map_chrome(fmap, label.title, legend_html(m, lo, hi, counts), labels=names)
    return fmap


def export_plan_map(
    engine: Engine,
    plan_id: int,
    out: Path | str,
    *,
    node_modules: Path | str | None = None,
    lang: str = "zh",
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
    lang
        ``zh`` (default) or ``en``: the title, legend and popups' language.

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
        m = plan_map(conn, plan_id, node_modules=node_modules, lang=lang)
    page = (
        m.get_root()
        .render()
        .replace("<html>", f'<html lang="{"zh-CN" if lang == "zh" else lang}">', 1)
    )
    links = external_urls(page)
    if links:
        raise ConfigurationError(f"exported map still links the network: {links[:3]}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
