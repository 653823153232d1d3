"""The printed 网格化图谱 poster of a grid, a village or a town (A3/A4 PDF)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection

from geogrid.printing.data import PrintPlace, print_place
from geogrid.printing.i18n import Labels, check_lang, labels
from geogrid.printing.pdf import (
    PAPERS,
    check_paper,
    data_uri,
    photo_uri,
    public_grid_url,
    qr_png,
    render_pdf,
    template,
)
from geogrid.printing.svgmap import Layer, MapFrame, Style, svg_map
from geogrid.settings import Settings

__all__ = ["Printed", "poster_html", "render_poster", "target_url"]

#: Fills of the grids of one village (village and town posters), pale enough for labels.
PALETTE = ("#cfe8d0", "#fde2b8", "#cde3f6", "#f6d2dc", "#e4dcf3", "#d9eec0", "#f9edb7", "#cfeee9")
FOCUS = Style(fill="#c8e6c9", stroke="#2e7d32", width=0.9, opacity=0.9)
FOCUS_LINE = Style(stroke="#2e7d32", width=0.9)
NEIGHBOUR = Style(fill="#eef1f4", stroke="#8a94a0", width=0.3)
GROUP = Style(stroke="#666", width=0.25, dash="1.2 0.8")
VILLAGE = Style(stroke="#37474f", width=0.8)
#: Map height per paper (mm); the width is the page's text width.
MAP_HEIGHT = {"A3": 245.0, "A4": 150.0}
MARGIN = {"A3": 12.0, "A4": 10.0}


@dataclass(frozen=True)
class Printed:
    """A rendered PDF with what tests and callers check it against."""

    pdf: bytes
    url: str
    qr: bytes


def target_url(base_url: str, place: PrintPlace) -> str:
    """Where a poster's QR code points: the grid's public page, or the public map."""
    return public_grid_url(base_url, place.code if place.kind == "grid" else None)


def _extent(place: PrintPlace) -> list[BaseGeometry]:
    """What the map must show: a grid with the grids around it (its whole village when
    that is not much larger), a village or town with all its grids."""
    shapes = [f.geom for f in place.focus]
    if place.kind != "grid":
        return shapes
    grid = shapes[0]
    around = [g.geom for g in place.grids if g.geom.intersects(grid.buffer(1e-5))]
    village = [v.geom for v in place.villages if v.code == place.code[:12]]
    near = shapely.union_all(shapes + around)
    if village and shapely.envelope(village[0]).area <= 2.5 * shapely.envelope(near).area:
        return shapes + around + village
    return shapes + around


def _swatch(style: Style) -> str:
    dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="9mm" height="5mm" viewBox="0 0 9 5">'
        f'<rect x="0.5" y="0.5" width="8" height="4" fill="{style.fill}" '
        f'fill-opacity="{style.opacity}" stroke="{style.stroke}" '
        f'stroke-width="{max(style.width, 0.3)}"{dash}/></svg>'
    )


def _layers(place: PrintPlace) -> tuple[list[Layer], list[tuple[Style, str]]]:
    focus_codes = {f.code for f in place.focus}
    others = [(g.geom, g.name if place.kind == "grid" else None)
              for g in place.grids if g.code not in focus_codes]  # fmt: skip
    village_lines = Layer(
        VILLAGE,
        [(v.geom, v.name if place.kind == "town" else None) for v in place.villages],
        label_size=3.6,
        label_weight="bold",
    )
    if place.kind == "grid":
        grid = place.focus[0].geom
        groups = [(g.geom, g.name if g.geom.representative_point().within(grid) else None)
                  for g in place.group_outlines]  # fmt: skip
        layers = [
            Layer(NEIGHBOUR, others, label_size=2.8, label_colour="#555"),
            Layer(FOCUS, [(grid, None)]),
            Layer(GROUP, groups, label_size=2.8, label_colour="#1b5e20", label_first=True),
            village_lines,
            Layer(FOCUS_LINE, [(grid, None)]),
        ]
        return layers, [(FOCUS, "legend.focus"), (NEIGHBOUR, "legend.neighbour"),
                        (GROUP, "legend.group"), (VILLAGE, "legend.village")]  # fmt: skip
    villages = sorted({f.village_code or "" for f in place.focus})
    fills = [PALETTE[(villages.index(f.village_code or "") if place.kind == "town"
                      else i) % len(PALETTE)] for i, f in enumerate(place.focus)]  # fmt: skip
    grid_style = Style(fill=PALETTE[0], stroke="#2e7d32", width=0.45, opacity=0.9)
    focus = Layer(
        grid_style,
        [(f.geom, f.name if place.kind == "village" else None) for f in place.focus],
        label_size=3.4,
        label_weight="bold",
        label_colour="#1b3a1d",
        fills=fills,
    )
    layers = [Layer(NEIGHBOUR, others), focus]
    legend = [(grid_style, "legend.grid")]
    if place.kind == "village":
        layers.append(
            Layer(GROUP, [(g.geom, g.name) for g in place.group_outlines], label_size=2.4,
                  label_colour="#555")
        )  # fmt: skip
        legend += [(NEIGHBOUR, "legend.neighbour"), (GROUP, "legend.group")]
    layers.append(village_lines)
    legend.append((VILLAGE, "legend.village"))
    return layers, legend


def _staff(place: PrintPlace, t: Labels, settings: Settings) -> list[dict[str, str]]:
    return [
        {
            "role": t(f"role.{s.role}"),
            "post": t("post", post=s.post),
            "name": s.name,
            "phone": s.phone or "",
            "duties": s.duties or "",
            "photo": photo_uri(settings, s.name, s.photo),
        }
        for s in place.staff
    ]


def poster_html(
    place: PrintPlace,
    *,
    paper: str,
    lang: str,
    base_url: str,
    settings: Settings,
    today: date | None = None,
) -> tuple[str, str, bytes]:
    """The poster's HTML, the QR code's URL and its PNG."""
    t = labels(lang)
    paper = check_paper(paper)
    page_w, _ = PAPERS[paper]
    width = page_w - 2 * MARGIN[paper]
    height = MAP_HEIGHT[paper]
    frame = MapFrame.fit(_extent(place), width, height)
    layers, legend = _layers(place)
    svg = svg_map(frame, layers, north=t("north"), units=(t("unit.m"), t("unit.km")))
    url = target_url(base_url, place)
    qr = qr_png(url)
    if place.kind == "grid":
        summary = t("poster.summary", households=place.households,
                    population=place.population, groups="、".join(place.groups) or "—")  # fmt: skip
    else:
        summary = t("poster.summary_area", grids=len(place.focus), households=place.households,
                    population=place.population)  # fmt: skip
    full_name = place.name
    village = place.village_name
    if place.kind == "grid" and village and not place.name.startswith(village):
        full_name = f"{village} {place.name}"
    html = template(
        "poster.html",
        lang=lang,
        paper=paper,
        margin=MARGIN[paper],
        t=t,
        place=place,
        title=t("poster.title", place=full_name),
        subtitle=t("poster.subtitle", town=place.town_name, plan=place.plan_name),
        summary=summary,
        map_svg=data_uri(svg.encode("utf-8"), "image/svg+xml"),
        map_width=width,
        map_height=height,
        scale=t("scale", denominator=f"{frame.scale:,}".replace(",", " ")),
        legend=[(data_uri(_swatch(s).encode(), "image/svg+xml"), t(k)) for s, k in legend],
        staff=_staff(place, t, settings),
        qr=data_uri(qr, "image/png"),
        url=url,
        printed=t("poster.printed", date=(today or date.today()).isoformat()),
    )
    return html, url, qr


def render_poster(
    conn: Connection,
    code: str,
    *,
    paper: str = "A3",
    lang: str = "zh",
    plan_id: int | None = None,
    base_url: str,
    settings: Settings,
) -> Printed:
    """Render the 网格化图谱 poster of a grid, village or town as PDF.

    Parameters
    ----------
    conn
        A connection that may read plans, grids, groups and staff.
    code
        15-digit grid, 12-digit village or town code.
    paper
        ``A3`` or ``A4`` (portrait).
    lang
        ``zh`` (default) or ``en``.
    plan_id
        The plan; default: the town's active plan.
    base_url
        Where the public pages are served (the QR code's URL starts with it).
    settings
        For the staff photo folder.

    Raises
    ------
    InvalidInput
        Bad code, paper, language or base URL.
    NotFound
        Unknown plan, or a code with no grid in the plan.
    """
    check_lang(lang)
    check_paper(paper)
    place = print_place(conn, code, plan_id=plan_id, lang=lang)
    html, url, qr = poster_html(place, paper=paper, lang=lang, base_url=base_url,
                                settings=settings)  # fmt: skip
    return Printed(render_pdf(html), url, qr)
