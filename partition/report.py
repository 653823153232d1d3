"""Quality report of a plan: a JSON-able dict and an offline HTML page with a map.

Offline assets
--------------
folium's ``Map`` loads Leaflet, jQuery, Bootstrap and Font Awesome from CDNs. The
report needs only Leaflet: :func:`write_html_report` replaces folium's
``default_js``/``default_css`` with ``{asset_base_url}/leaflet.js`` and
``{asset_base_url}/leaflet.css`` (default ``"assets"``, a relative path; the web layer
passes the URL where it serves its npm-installed Leaflet), or inlines both files when
``inline_assets`` names a folder holding them. No tile layer is added (no base map), so
the page contains no ``http(s)://`` URL at all, and no attribution control (whose prefix
links leafletjs.com).

Language
--------
The page is Chinese by default (``lang="en"`` for English); its labels come from the
shared message catalogue's ``print.report.*`` keys (``geogrid/messages/print.json``, read
as a data file: this package imports no web code), or from ``messages`` when the caller
passes the catalogue itself. Grids are named (``names``, else 村名第N网格), the map has a
title, a legend of the band classes and a metric scale bar.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from partition.exact import balance_cost
from partition.plan import Plan

__all__ = [
    "BAND_COLOURS",
    "band_class",
    "quality_report",
    "render_html_report",
    "report_messages",
    "write_html_report",
]

#: Band colours, the same on every page and map (CONTRACTS.md).
BAND_COLOURS = {"within": "#2e7d32", "near": "#f9a825", "outside": "#c62828"}
#: The message catalogue's folder (``geogrid/messages``), read as data.
MESSAGES_DIR = Path(__file__).resolve().parent.parent / "geogrid" / "messages"


def band_class(households: int, lo: int, hi: int) -> str:
    """Within the band, near its edge (within 10% of min or max), or outside it.

    >>> [band_class(h, 100, 200) for h in (99, 100, 109, 150, 181, 200, 201)]
    ['outside', 'near', 'near', 'within', 'near', 'near', 'outside']
    """
    if households < lo or households > hi:
        return "outside"
    if households <= lo * 1.1 or households >= hi * 0.9:
        return "near"
    return "within"


def report_messages(lang: str = "zh") -> dict[str, str]:
    """The report's labels in ``lang`` (``zh`` or ``en``) from ``geogrid/messages/print.json``.

    >>> report_messages("en")["print.report.col.households"]
    'Households'
    """
    if lang not in ("zh", "en"):
        raise ValueError(f"unknown language {lang!r}: choose zh or en")
    data = json.loads((MESSAGES_DIR / "print.json").read_text(encoding="utf-8"))
    return {key: texts[lang] for key, texts in data.items()}


def _num(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _bool(x: Any) -> bool | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return bool(x)


def quality_report(plan: Plan) -> dict[str, Any]:
    """Per-grid and plan-level quality metrics as a JSON-serialisable dict.

    Per grid: households, population, deviation from target, Polsby–Popper (metric
    CRS), area km², member groups, flags. Per village: grids, in-band share and the
    bound the group sizes allow. Totals: share of grids within the band, mean/max
    absolute deviation, mean Polsby–Popper, households moved (redraw) and unassigned.

    Examples
    --------
    >>> import numpy as np
    >>> from partition.synthetic import random_village
    >>> from partition.plan import partition_plan
    >>> v, hh = random_village(np.random.default_rng(0), n_groups=4)
    >>> r = quality_report(partition_plan(hh, v))
    >>> sorted(r) == ["grids", "params", "totals", "villages"]
    True
    """
    p = plan.params
    g = plan.grids
    dev = (g["households"] - p.target).astype(float)
    in_band = (g["households"] >= p.lo) & (g["households"] <= p.hi)
    grids = [
        {
            "code": str(r.code),
            "village_code": str(r.village_code),
            "grid_no": int(r.grid_no),
            "households": int(r.households),
            "population": int(r.population),
            "deviation": int(r.households - p.target),
            "polsby_popper": round(float(r.polsby_popper), 4),
            "area_km2": round(float(r.area_km2), 4),
            "groups": [s for s in str(r.groups).split(",") if s],
            "flags": [s for s in str(r.flags).split(",") if s],
        }
        for r in g.itertuples()
    ]
    villages = []
    for v in plan.villages.itertuples():
        vg = g[g["village_code"] == v.code]
        share = (
            float(((vg["households"] >= p.lo) & (vg["households"] <= p.hi)).mean())
            if len(vg)
            else None
        )
        villages.append(
            {
                "code": str(v.code),
                "name": str(v.name),
                "grids": len(vg),
                "households": int(vg["households"].sum()),
                "in_band_share": share,
                "bound_in_band_share": _num(v.bound_in_band_share),
                # reaching the bound proves the in-band share optimal for this village
                "meets_bound": None
                if share is None
                else bool(share >= float(v.bound_in_band_share) - 1e-9),
                "bound_mean_abs_dev": _num(v.bound_mean_abs_dev),
                "mean_abs_dev": float((vg["households"] - p.target).abs().mean())
                if len(vg)
                else None,
                "households_moved": _num(v.moved),
                # redraw: what a fresh partition would have moved; exact solver: proof, gap
                "households_moved_fresh": _num(getattr(v, "moved_fresh", None)),
                "balance_cost": balance_cost(
                    vg["households"].to_numpy(), p.target, p.lo, p.hi, p.objective().out_of_band
                ),
                "bound_cost": _num(getattr(v, "bound_cost", None)),
                "exact_proven": _bool(getattr(v, "exact_proven", None)),
                "exact_gap": _num(getattr(v, "exact_gap", None)),
                "exact_bound": _num(getattr(v, "exact_bound", None)),
                "notes": str(v.notes),
            }
        )
    bound_share = plan.villages["bound_in_band_share"]
    bound_in_band = sum(
        b * len(g[g["village_code"] == c])
        for c, b in zip(plan.villages["code"], bound_share, strict=True)
    )
    totals = {
        "villages": len(plan.villages),
        "grids": len(g),
        "households": int(g["households"].sum()),
        "unassigned_households": len(plan.unassigned),
        "share_in_band": float(in_band.mean()) if len(g) else None,
        "bound_share_in_band": float(bound_in_band / len(g)) if len(g) else None,
        "mean_abs_deviation": float(dev.abs().mean()) if len(g) else None,
        "max_abs_deviation": float(dev.abs().max()) if len(g) else None,
        "mean_polsby_popper": float(g["polsby_popper"].mean()) if len(g) else None,
        "oversized_grids": int(g["flags"].str.contains("oversized").sum()),
        "forced_imbalance_grids": int(g["flags"].str.contains("forced_imbalance").sum()),
        "households_moved": plan.households_moved,
        "households_moved_fresh": plan.households_moved_fresh,
        "villages_proven_optimal": int(
            sum(_bool(x) is True for x in plan.villages.get("exact_proven", pd.Series()))
        ),
    }
    params = {
        "target": p.target,
        "min": p.lo,
        "max": p.hi,
        "seed": p.seed,
        "split_large": p.split_large,
        "empty_village": p.empty_village,
    }
    return {"params": params, "totals": totals, "villages": villages, "grids": grids}


_STYLE = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Microsoft YaHei",sans-serif;margin:0}
#summary{padding:8px 16px;max-height:40vh;overflow:auto}
#summary h2{margin:4px 0;font-size:18px}
table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
td.t,th.t{text-align:left}
.flag{color:#b00}
"""

#: The title and legend boxes on a map (report and ``geogrid map export``).
_CHROME_STYLE = """
.gg-label{transform:translate(-50%,-50%);white-space:nowrap;font:600 12px sans-serif;
  color:#1d2327;text-shadow:0 0 3px #fff,0 0 3px #fff,0 0 2px #fff;pointer-events:none}
.gg-title{position:absolute;top:8px;left:50px;z-index:1000;background:#fff;padding:3px 10px;
  border-radius:4px;font:600 15px sans-serif;box-shadow:0 1px 4px rgba(0,0,0,.3)}
.gg-legend{background:#fff;padding:6px 10px;border-radius:4px;font:12px sans-serif;
  box-shadow:0 1px 4px rgba(0,0,0,.3);line-height:18px}
.gg-legend i{display:inline-block;width:14px;height:14px;margin-right:6px;vertical-align:-2px;
  border:1px solid #333;opacity:.75}
"""


def _msg(messages: Mapping[str, str], key: str, **values: Any) -> str:
    text = messages.get(key, key)
    for k, v in values.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def grid_names(plan: Plan, messages: Mapping[str, str]) -> dict[str, str]:
    """Each grid's name: 村名第N网格 (``print.report.grid_name``) from its village's name."""
    villages = dict(zip(plan.villages["code"], plan.villages["name"], strict=True))
    return {
        str(r.code): _msg(messages, "print.report.grid_name",
                          village=villages.get(r.village_code, r.village_code), n=int(r.grid_no))
        for r in plan.grids.itertuples()
    }  # fmt: skip


def _flag(messages: Mapping[str, str], flag: str) -> str:
    return messages.get(f"print.flag.{flag}", flag)


def _table(
    report: dict[str, Any], m: Mapping[str, str], names: Mapping[str, str], lang: str
) -> str:
    t, p = report["totals"], report["params"]
    sep, colon = ("；", "：") if lang == "zh" else ("; ", ": ")
    moved = t["households_moved"] if t["households_moved"] is not None else "–"
    facts = [
        (_msg(m, "print.report.in_band"),
         f"{_pct(t['share_in_band'])} ({_msg(m, 'print.report.bound')} "
         f"{_pct(t['bound_share_in_band'])})"),
        (_msg(m, "print.report.mean_dev"), _f(t["mean_abs_deviation"])),
        (_msg(m, "print.report.max_dev"), _f(t["max_abs_deviation"])),
        (_msg(m, "print.report.mean_pp"), _f(t["mean_polsby_popper"], 3)),
        (_msg(m, "print.report.unassigned"), t["unassigned_households"]),
        (_msg(m, "print.report.moved"), moved),
    ]  # fmt: skip
    summary = _msg(m, "print.report.summary", grids=t["grids"], households=t["households"])
    band = _msg(m, "print.report.band", target=p["target"], lo=p["min"], hi=p["max"])
    head = (
        f"<h2>{html.escape(_msg(m, 'print.report.title'))}</h2>"
        f"<p>{html.escape(summary)} · {html.escape(band)}</p>"
        "<p>" + sep.join(f"{html.escape(k)}{colon}{html.escape(str(v))}" for k, v in facts) + "</p>"
    )
    cols = ["name", "code", "households", "population", "deviation", "pp", "area", "groups",
            "flags"]  # fmt: skip
    th = "".join(
        f"<th class='{'t' if c in ('name', 'code', 'groups', 'flags') else ''}'>"
        f"{html.escape(_msg(m, 'print.report.col.' + c))}</th>"
        for c in cols
    )
    rows = "".join(
        "<tr>"
        f"<td class='t'>{html.escape(names.get(g['code'], g['code']))}</td>"
        f"<td class='t'>{html.escape(g['code'])}</td><td>{g['households']}</td>"
        f"<td>{g['population']}</td><td>{g['deviation']:+d}</td><td>{g['polsby_popper']:.3f}</td>"
        f"<td>{g['area_km2']:.3f}</td><td class='t'>{html.escape('、'.join(g['groups']))}</td>"
        f"<td class='t flag'>{html.escape('、'.join(_flag(m, f) for f in g['flags']))}</td></tr>"
        for g in report["grids"]
    )
    return head + f"<table><tr>{th}</tr>{rows}</table>"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _f(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def legend_html(m: Mapping[str, str], lo: int, hi: int, counts: Mapping[str, int]) -> str:
    """The band legend (colour, meaning, number of grids) as an HTML fragment."""
    rows = "".join(
        f"<div><i style='background:{BAND_COLOURS[c]}'></i>"
        f"{html.escape(_msg(m, 'print.band.' + c, lo=lo, hi=hi))} ({counts.get(c, 0)})</div>"
        for c in ("within", "near", "outside")
    )
    return f"<b>{html.escape(_msg(m, 'print.report.legend'))}</b>{rows}"


def add_map_chrome(
    fmap: Any, title: str, legend: str, labels: Sequence[tuple[float, float, str]] = ()
) -> None:
    """Add a title, a legend (HTML), a metric-only scale bar and text ``labels`` (lat, lon,
    text) to a folium map.

    No attribution control is added (its prefix would link leafletjs.com); the script runs
    after the map is made (a child of the map, rendered after it).
    """
    import branca.element
    import jinja2

    js = (
        "(function(){var map=" + fmap.get_name() + ";"
        "L.control.scale({metric:true,imperial:false,position:'bottomleft'}).addTo(map);"
        "var legend=L.control({position:'bottomright'});legend.onAdd=function(){"
        "var d=L.DomUtil.create('div','gg-legend');d.innerHTML=" + json.dumps(legend) + ";"
        "return d;};legend.addTo(map);"
        "var t=L.DomUtil.create('div','gg-title');t.textContent=" + json.dumps(title) + ";"
        "map.getContainer().appendChild(t);"
        "var els=[];"
        "(" + json.dumps([list(x) for x in labels], ensure_ascii=False) + ").forEach(function(l){"
        "var e=document.createElement('div');e.className='gg-label';e.textContent=l[2];"
        "els.push(e);L.marker([l[0],l[1]],{icon:L.divIcon({html:e,className:'',iconSize:null}),"
        "interactive:false,keyboard:false}).addTo(map);});"
        # labels that would overlap one already shown are hidden (until a zoom makes room)
        "function declutter(){var shown=[];els.forEach(function(e){e.style.visibility='';"
        "var r=e.getBoundingClientRect();if(shown.some(function(s){return !(r.right<s.left||"
        "r.left>s.right||r.bottom<s.top||r.top>s.bottom);})){e.style.visibility='hidden';}"
        "else{shown.push(r);}});}"
        "map.on('zoomend moveend',declutter);setTimeout(declutter,0);})();"
    )
    chrome = branca.element.MacroElement()
    chrome._template = jinja2.Template(
        "{% macro script(this, kwargs) %}{{ this.js }}{% endmacro %}"
        "{% macro header(this, kwargs) %}<style>{{ this.css }}</style>{% endmacro %}"
    )
    setattr(chrome, "js", js.replace("</", "<\\/"))  # noqa: B010 - a title cannot close the script
    setattr(chrome, "css", _CHROME_STYLE)  # noqa: B010
    fmap.add_child(chrome, name="gg_chrome")


def render_html_report(
    plan: Plan,
    *,
    asset_base_url: str = "assets",
    inline_assets: Path | None = None,
    lang: str = "zh",
    messages: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    title: str | None = None,
) -> str:
    """Render the HTML quality report (summary table + folium map of the grids).

    Parameters
    ----------
    plan
        The plan to report on.
    asset_base_url
        Where the page loads ``leaflet.js`` and ``leaflet.css`` from (relative path or
        the web layer's static URL). Ignored with ``inline_assets``.
    inline_assets
        A folder holding ``leaflet.js`` and ``leaflet.css`` to inline into the page.
    lang
        ``zh`` (default) or ``en``: the labels' language.
    messages
        ``{key: text}`` to use instead of :func:`report_messages` (``lang`` is then unused).
    names
        Grid code → name (e.g. the names planners gave them); default 村名第N网格.
    title
        The map's title; default the report's title.

    Returns
    -------
    str
        A standalone HTML page without any ``http(s)://`` URL.
    """
    import branca.element
    import folium

    m = dict(messages) if messages is not None else report_messages(lang)
    report = quality_report(plan)
    named = {**grid_names(plan, m), **(names or {})}
    g = plan.grids
    if len(g):
        minx, miny, maxx, maxy = g.total_bounds
        center = [(miny + maxy) / 2, (minx + maxx) / 2]
    else:
        minx = miny = maxx = maxy = 0.0
        center = [0.0, 0.0]
    fmap = folium.Map(
        location=center, tiles=None, zoom_start=13, attribution_control=False, height="70vh"
    )
    base = asset_base_url.rstrip("/")
    fmap.default_js = [("leaflet", f"{base}/leaflet.js")]
    fmap.default_css = [("leaflet_css", f"{base}/leaflet.css")]
    lo, hi = plan.params.lo, plan.params.hi
    counts: dict[str, int] = {}
    if len(g):
        data = g[["code", "households", "population", "groups", "flags", "geometry"]].copy()
        data["name"] = [named.get(str(c), str(c)) for c in data["code"]]
        data["deviation"] = data["households"] - plan.params.target
        data["band"] = [band_class(int(h), lo, hi) for h in data["households"]]
        data["flags"] = ["、".join(_flag(m, f) for f in str(x).split(",") if f)
                         for x in data["flags"]]  # fmt: skip
        counts = data["band"].value_counts().to_dict()

        def style(feature: dict[str, Any]) -> dict[str, Any]:
            colour = BAND_COLOURS[feature["properties"]["band"]]
            return {"color": "#333", "weight": 1, "fillColor": colour, "fillOpacity": 0.45}

        fields = ["name", "code", "households", "deviation", "groups", "flags"]
        keys = ["name", "code", "households", "deviation", "groups", "flags"]
        folium.GeoJson(
            json.loads(data.to_json()),
            name="grids",
            style_function=style,
            tooltip=folium.GeoJsonTooltip(
                fields=fields, aliases=[_msg(m, "print.report.col." + k) for k in keys]
            ),
        ).add_to(fmap)
        fmap.fit_bounds([[miny, minx], [maxy, maxx]])
    root = fmap.get_root()
    assert isinstance(root, branca.element.Figure)
    root.header.add_child(branca.element.Element(f"<style>{_STYLE}</style>"))
    root.html.add_child(
        branca.element.Element(f"<div id='summary'>{_table(report, m, named, lang)}</div>")
    )
    points = g.geometry.representative_point() if len(g) else []
    labels = [(p.y, p.x, named.get(str(c), str(c))) for c, p in zip(g["code"], points, strict=True)]
    add_map_chrome(fmap, title or _msg(m, "print.report.title"), legend_html(m, lo, hi, counts),
                   labels=labels)  # fmt: skip
    page = root.render()
    if inline_assets is not None:
        js = (Path(inline_assets) / "leaflet.js").read_text(encoding="utf-8")
        # the one link in leaflet.js is its attribution prefix, which this map does not show
        js = re.sub(r'href="https?://leafletjs\.com"', 'href="#"', js)
        css = (Path(inline_assets) / "leaflet.css").read_text(encoding="utf-8")
        page = page.replace(f'<script src="{base}/leaflet.js"></script>', f"<script>{js}</script>")
        page = page.replace(
            f'<link rel="stylesheet" href="{base}/leaflet.css"/>', f"<style>{css}</style>"
        )
    return page.replace("<html>", f'<html lang="{"zh-CN" if lang == "zh" else lang}">', 1)


def write_html_report(
    plan: Plan,
    path: Path | str,
    *,
    asset_base_url: str = "assets",
    inline_assets: Path | None = None,
    lang: str = "zh",
    messages: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Write :func:`render_html_report` to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    out.write_text(
        render_html_report(plan, asset_base_url=asset_base_url, inline_assets=inline_assets,
                           lang=lang, messages=messages, names=names, title=title),
        encoding="utf-8",
    )  # fmt: skip
    return out
