"""Printed matter: 网格化图谱 posters and household contact cards (PDF, offline).

Maps are drawn here as SVG (outlines projected to the local metric CRS, a round scale,
north arrow and scale bar), laid out in HTML templates and rendered by WeasyPrint with the
Noto Sans CJK font embedded; every image is inlined and nothing is fetched.
"""

from geogrid.printing.cards import check_grid_code, render_cards
from geogrid.printing.data import parse_code
from geogrid.printing.pdf import PAPERS, check_paper, public_grid_url
from geogrid.printing.poster import Printed, render_poster

__all__ = [
    "PAPERS",
    "Printed",
    "check_grid_code",
    "check_paper",
    "parse_code",
    "public_grid_url",
    "render_cards",
    "render_poster",
]
