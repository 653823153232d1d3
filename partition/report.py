"""Quality report of a plan: a JSON-able dict and an offline HTML page with a map.

Offline assets
--------------
folium's ``Map`` loads Leaflet, jQuery, Bootstrap and Font Awesome from CDNs. The
report needs only Leaflet: :func:`write_html_report` replaces folium's
``default_js``/``default_css`` with ``{asset_base_url}/leaflet.js`` and
``{asset_base_url}/leaflet.css`` (default ``"assets"``, a relative path; the web layer
passes the URL where it serves its npm-installed Leaflet), or inlines both files when
``inline_assets`` names a folder holding them. No tile layer is added (no base map), so
the page contains no ``http(s)://`` URL at all.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from partition.exact import balance_cost
from partition.plan import Plan

__all__ = ["quality_report", "render_html_report", "write_html_report"]


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
body{font-family:sans-serif;margin:0}
#summary{padding:8px 16px;max-height:40vh;overflow:auto}
table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
.flag{color:#b00}
"""


def _table(report: dict[str, Any]) -> str:
    t = report["totals"]
    head = (
        f"<h3>Grid plan: {t['grids']} grids, {t['households']} households</h3>"
        f"<p>within band: {_pct(t['share_in_band'])} (bound {_pct(t['bound_share_in_band'])}); "
        f"mean |dev| {_f(t['mean_abs_deviation'])}, max |dev| {_f(t['max_abs_deviation'])}; "
        f"mean Polsby–Popper {_f(t['mean_polsby_popper'], 3)}; "
        f"unassigned households {t['unassigned_households']}; "
        f"moved {t['households_moved'] if t['households_moved'] is not None else '–'}</p>"
    )
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(g['code'])}</td><td>{g['households']}</td><td>{g['population']}</td>"
        f"<td>{g['deviation']:+d}</td><td>{g['polsby_popper']:.3f}</td><td>{g['area_km2']:.3f}</td>"
        f"<td>{html.escape(','.join(g['groups']))}</td>"
        f"<td class='flag'>{html.escape(','.join(g['flags']))}</td></tr>"
        for g in report["grids"]
    )
    return (
        head + "<table><tr><th>grid</th><th>households</th><th>population</th><th>deviation</th>"
        "<th>Polsby–Popper</th><th>km²</th><th>groups</th><th>flags</th></tr>" + rows + "</table>"
    )


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _f(x: float | None, nd: int = 1) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def render_html_report(
    plan: Plan,
    *,
    asset_base_url: str = "assets",
    inline_assets: Path | None = None,
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

    Returns
    -------
    str
        A standalone HTML page without any ``http(s)://`` URL.
    """
    import branca.element
    import folium

    report = quality_report(plan)
    g = plan.grids
    if len(g):
        minx, miny, maxx, maxy = g.total_bounds
        center = [(miny + maxy) / 2, (minx + maxx) / 2]
    else:
        minx = miny = maxx = maxy = 0.0
        center = [0.0, 0.0]
    fmap = folium.Map(location=center, tiles=None, zoom_start=13, control_scale=True)
    base = asset_base_url.rstrip("/")
    fmap.default_js = [("leaflet", f"{base}/leaflet.js")]
    fmap.default_css = [("leaflet_css", f"{base}/leaflet.css")]
    if len(g):
        data = g[["code", "households", "population", "groups", "flags", "geometry"]].copy()
        data["deviation"] = data["households"] - plan.params.target
        lo, hi = plan.params.lo, plan.params.hi

        def style(feature: dict[str, Any]) -> dict[str, Any]:
            h = feature["properties"]["households"]
            color = "#2b8a3e" if lo <= h <= hi else "#c92a2a"
            return {"color": "#333", "weight": 1, "fillColor": color, "fillOpacity": 0.35}

        folium.GeoJson(
            json.loads(data.to_json()),
            name="grids",
            style_function=style,
            tooltip=folium.GeoJsonTooltip(
                fields=["code", "households", "deviation", "groups", "flags"]
            ),
        ).add_to(fmap)
        fmap.fit_bounds([[miny, minx], [maxy, maxx]])
    root = fmap.get_root()
    assert isinstance(root, branca.element.Figure)
    root.header.add_child(branca.element.Element(f"<style>{_STYLE}</style>"))
    root.html.add_child(branca.element.Element(f"<div id='summary'>{_table(report)}</div>"))
    page = root.render()
    if inline_assets is not None:
        js = (Path(inline_assets) / "leaflet.js").read_text(encoding="utf-8")
        css = (Path(inline_assets) / "leaflet.css").read_text(encoding="utf-8")
        page = page.replace(f'<script src="{base}/leaflet.js"></script>', f"<script>{js}</script>")
        page = page.replace(
            f'<link rel="stylesheet" href="{base}/leaflet.css"/>', f"<style>{css}</style>"
        )
    return page


def write_html_report(
    plan: Plan,
    path: Path | str,
    *,
    asset_base_url: str = "assets",
    inline_assets: Path | None = None,
) -> Path:
    """Write :func:`render_html_report` to ``path`` (UTF-8) and return the path."""
    out = Path(path)
    out.write_text(
        render_html_report(plan, asset_base_url=asset_base_url, inline_assets=inline_assets),
        encoding="utf-8",
    )
    return out
