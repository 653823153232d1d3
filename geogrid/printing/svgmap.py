"""Printed maps drawn as SVG: outlines projected to a local metric CRS, in paper millimetres.

The map is fitted to its box at a round representative fraction (1:5 000, 1:10 000, …), so
the scale bar and the printed ``1:N`` are exact on paper. Distances are those of the local
CRS: the CGCS2000 3-degree Gauss–Krüger zone inside China, else the WGS84 UTM zone.
"""

from __future__ import annotations

import functools
import html
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from partition._geo import utm_crs

__all__ = ["MapFrame", "Style", "metric_crs", "nice_scale", "scale_bar_length", "svg_map"]

#: CGCS2000 / 3-degree Gauss-Kruger CM 75E is EPSG:4534, CM 135E EPSG:4554.
_GK_FIRST, _GK_CM0 = 4534, 75


def metric_crs(lon: float, lat: float) -> CRS:
    """The local metric CRS for a place: a CGCS2000 3-degree Gauss–Krüger zone in China.

    >>> metric_crs(114.3, 30.4).to_epsg(), metric_crs(139.7, 35.7).to_epsg()
    (4547, 32654)
    """
    if 73.5 <= lon < 136.5 and 3.0 <= lat <= 54.0:
        return CRS.from_epsg(_GK_FIRST + round((lon - _GK_CM0) / 3))
    return utm_crs(lon, lat)


@functools.lru_cache(maxsize=16)
def _from_wgs84(crs: CRS) -> Transformer:
    """The EPSG:4326 → ``crs`` transformer, built once per process and target CRS (building
    one takes tens of milliseconds: a town export draws a map per grid in a few zones).

    Shared by threads (the API renders posters in its thread pool): since pyproj 3.1 a
    :class:`~pyproj.Transformer` makes its PROJ object per thread (``threading.local``), so
    one cached transformer is safe in every thread. Not shared with forked processes (the
    archive export's workers): the cache is emptied in the child, which builds its own
    rather than use PROJ state made in the parent.
    """
    return Transformer.from_crs(4326, crs, always_xy=True)


os.register_at_fork(after_in_child=_from_wgs84.cache_clear)


def nice_scale(needed: float) -> int:
    """The smallest round scale denominator (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) at
    least ``needed``.

    >>> nice_scale(7300), nice_scale(10000), nice_scale(21000), nice_scale(55000)
    (8000, 10000, 25000, 60000)
    """
    k = 10 ** math.floor(math.log10(max(needed, 1)))
    for m in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * k >= needed - 1e-9:
            return int(m * k)
    return int(10 * k)  # pragma: no cover - the loop always returns


def scale_bar_length(denominator: int, max_mm: float) -> float:
    """The longest round ground length (metres) whose bar is at most ``max_mm`` on paper.

    >>> scale_bar_length(10000, 60)
    500.0
    """
    most = max_mm * denominator / 1000.0
    k = 10 ** math.floor(math.log10(most))
    return float(max(m * k for m in (1, 2, 5) if m * k <= most))


@dataclass(frozen=True)
class Style:
    """How one layer is drawn (SVG presentation attributes, widths in mm)."""

    fill: str = "none"
    stroke: str = "#333"
    width: float = 0.3
    dash: str | None = None
    opacity: float = 1.0


@dataclass
class MapFrame:
    """A map box on paper: ``width``×``height`` mm showing ``bounds`` (metres) at 1:``scale``."""

    width: float
    height: float
    crs: CRS
    scale: int
    origin: tuple[float, float]  # ground (x, y) at the box's top-left corner
    _to_metric: Transformer

    @classmethod
    def fit(cls, geoms: Sequence[BaseGeometry], width: float, height: float) -> MapFrame:
        """Fit the outlines ``geoms`` (EPSG:4326) into a box with a 6 mm margin."""
        lon0, lat0, lon1, lat1 = shapely.union_all(list(geoms)).bounds
        crs = metric_crs((lon0 + lon1) / 2, (lat0 + lat1) / 2)
        tr = _from_wgs84(crs)
        xs, ys = tr.transform([lon0, lon1, lon0, lon1], [lat0, lat0, lat1, lat1])
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        margin = 6.0
        needed = max(
            (x1 - x0) * 1000.0 / max(width - 2 * margin, 1),
            (y1 - y0) * 1000.0 / max(height - 2 * margin, 1),
        )
        scale = nice_scale(needed)
        half_w = width / 2 * scale / 1000.0
        half_h = height / 2 * scale / 1000.0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return cls(width, height, crs, scale, (cx - half_w, cy + half_h), tr)

    @property
    def mm_per_metre(self) -> float:
        return 1000.0 / self.scale

    def project(self, geom: BaseGeometry) -> BaseGeometry:
        """``geom`` (EPSG:4326) in paper millimetres (y down), simplified to 0.2 mm."""
        k = self.mm_per_metre
        ox, oy = self.origin

        def paper(xy: np.ndarray) -> np.ndarray:
            x, y = self._to_metric.transform(xy[:, 0], xy[:, 1])
            return np.column_stack(((np.asarray(x) - ox) * k, (oy - np.asarray(y)) * k))

        return shapely.transform(geom, paper).simplify(0.2, preserve_topology=True)


def _ring(coords: Iterable[tuple[float, ...]]) -> str:
    pts = [f"{x:.1f} {y:.1f}" for x, y, *_ in coords]
    return "M" + " L".join(pts) + " Z"


def svg_path(geom: BaseGeometry) -> str:
    """SVG path data of a (multi)polygon's rings (already in paper units).

    >>> svg_path(shapely.box(0, 0, 1, 1))
    'M1.0 0.0 L1.0 1.0 L0.0 1.0 L0.0 0.0 L1.0 0.0 Z'
    """
    parts = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty or poly.geom_type != "Polygon":
            continue
        parts.append(_ring(poly.exterior.coords))
        parts.extend(_ring(r.coords) for r in poly.interiors)
    return " ".join(parts)


def _attrs(style: Style) -> str:
    dash = f' stroke-dasharray="{style.dash}"' if style.dash else ""
    return (
        f'fill="{style.fill}" fill-opacity="{style.opacity}" stroke="{style.stroke}" '
        f'stroke-width="{style.width}" stroke-linejoin="round"{dash}'
    )


@dataclass(frozen=True)
class Layer:
    """Outlines drawn in one style, each with an optional label."""

    style: Style
    shapes: Sequence[tuple[BaseGeometry, str | None]]
    label_size: float = 3.0
    label_colour: str = "#222"
    label_weight: str = "normal"
    fills: Sequence[str] | None = None
    #: this layer's labels are placed before other layers' (they win where labels collide)
    label_first: bool = False


def _label(
    frame_geom: BaseGeometry,
    text: str,
    size: float,
    colour: str,
    weight: str,
    placed: list[BaseGeometry],
) -> str:
    # only where it fits roughly: a label wider than its shape would cover the neighbours,
    # and none over a label placed before it (earlier layers win)
    x0, y0, x1, y1 = frame_geom.bounds
    width = len(text) * size * 0.95
    if width > (x1 - x0) * 1.4 or size > (y1 - y0):
        return ""
    p = frame_geom.representative_point()
    box = shapely.box(p.x - width / 2, p.y - size / 2, p.x + width / 2, p.y + size / 2)
    if any(box.intersects(b) for b in placed):
        return ""
    placed.append(box)
    at = (
        f'x="{p.x:.2f}" y="{p.y + size * 0.35:.2f}" font-size="{size}" text-anchor="middle" '
        f'font-weight="{weight}"'
    )
    # a white halo drawn first, then the text (paint-order is not reliably supported)
    return (
        f'<text {at} fill="#fff" stroke="#fff" stroke-width="{size * 0.22:.2f}" '
        f'stroke-linejoin="round">{html.escape(text)}</text>'
        f'<text {at} fill="{colour}">{html.escape(text)}</text>'
    )


def _north_arrow(x: float, y: float, label: str) -> str:
    return (
        f'<g transform="translate({x:.1f},{y:.1f})">'
        '<rect x="-6" y="-2" width="12" height="19" rx="1.5" fill="#fff" fill-opacity="0.85"/>'
        '<path d="M0 1 L4 13 L0 10.5 Z" fill="#222"/>'
        '<path d="M0 1 L-4 13 L0 10.5 Z" fill="#fff" stroke="#222" stroke-width="0.3"/>'
        f'<text x="0" y="16.5" font-size="3.2" text-anchor="middle" font-weight="bold">'
        f"{html.escape(label)}</text></g>"
    )


def _scale_bar(frame: MapFrame, x: float, y: float, units: tuple[str, str]) -> str:
    metres = scale_bar_length(frame.scale, min(60.0, frame.width * 0.3))
    length = metres * frame.mm_per_metre
    km = metres >= 1000

    def fmt(m: float) -> str:
        v = m / 1000 if km else m
        return f"{v:g}"

    unit = units[1] if km else units[0]
    seg = length / 4
    boxes = "".join(
        f'<rect x="{i * seg:.2f}" y="0" width="{seg:.2f}" height="1.6" '
        f'fill="{"#222" if i % 2 == 0 else "#fff"}" stroke="#222" stroke-width="0.25"/>'
        for i in range(4)
    )
    ticks = "".join(
        f'<text x="{i * seg * 2:.2f}" y="5" font-size="2.6" text-anchor="middle">'
        f"{fmt(metres * i / 2)}</text>"
        for i in range(3)
    )
    return (
        f'<g transform="translate({x:.1f},{y:.1f})">'
        f'<rect x="-3" y="-3.5" width="{length + 14:.2f}" height="10" rx="1" fill="#fff" '
        'fill-opacity="0.85"/>'
        f'{boxes}{ticks}<text x="{length + 2:.2f}" y="1.6" font-size="2.6">{html.escape(unit)}'
        "</text></g>"
    )


def svg_map(
    frame: MapFrame,
    layers: Sequence[Layer],
    *,
    north: str,
    units: tuple[str, str],
) -> str:
    """The SVG of a map: layers bottom to top, labels above all, north arrow, scale bar.

    Parameters
    ----------
    frame
        The box and its projection (:meth:`MapFrame.fit`).
    layers
        Outlines in EPSG:4326 with their styles and labels.
    north
        The north arrow's letter.
    units
        Scale-bar units for metres and kilometres (e.g. ``("米", "千米")``).
    """
    w, h = frame.width, frame.height
    body: list[str] = []
    labels: list[str] = []
    placed: list[BaseGeometry] = []
    pending: list[tuple[bool, BaseGeometry, str, Layer]] = []
    for layer in layers:
        for i, (geom, label) in enumerate(layer.shapes):
            g = frame.project(geom)
            if g.is_empty:
                continue
            style = layer.style
            if layer.fills is not None:
                style = Style(layer.fills[i], style.stroke, style.width, style.dash, style.opacity)
            body.append(f'<path d="{svg_path(g)}" {_attrs(style)} fill-rule="evenodd"/>')
            if label:
                pending.append((not layer.label_first, g, label, layer))
    for _, g, label, layer in sorted(pending, key=lambda x: x[0]):  # stable: layer order
        labels.append(
            _label(g, label, layer.label_size, layer.label_colour, layer.label_weight, placed)
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}mm" height="{h}mm" '
        f'viewBox="0 0 {w} {h}" font-family="Noto Sans CJK SC">'
        f'<defs><clipPath id="box"><rect width="{w}" height="{h}"/></clipPath></defs>'
        f'<rect width="{w}" height="{h}" fill="#fcfcfa"/>'
        f'<g clip-path="url(#box)">{"".join(body)}{"".join(labels)}</g>'
        f'<rect width="{w}" height="{h}" fill="none" stroke="#333" stroke-width="0.4"/>'
        f"{_north_arrow(w - 10, 5, north)}{_scale_bar(frame, 7, h - 9, units)}</svg>"
    )
