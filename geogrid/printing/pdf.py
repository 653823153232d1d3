"""HTML → PDF with WeasyPrint: templates, the embedded font, QR codes and photos, offline.

Every resource of a printed page is inside the HTML (``data:`` URIs); the URL fetcher
refuses anything else, so rendering never touches the network or the file system beyond
the system fonts (Noto Sans CJK from Debian's ``fonts-noto-cjk``, embedded and subset).
"""

from __future__ import annotations

import base64
import io
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from geogrid.errors import InvalidInput, NotFound
from geogrid.settings import Settings

__all__ = [
    "FONT_FAMILY",
    "PAPERS",
    "check_paper",
    "data_uri",
    "photo_uri",
    "public_grid_url",
    "qr_png",
    "render_pdf",
    "template",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"
#: The CJK font every printed page uses (fontconfig name).
FONT_FAMILY = "Noto Sans CJK SC"
#: Paper sizes (portrait width, height in mm).
PAPERS: dict[str, tuple[float, float]] = {"A3": (297.0, 420.0), "A4": (210.0, 297.0)}


def check_paper(paper: str) -> str:
    """``paper`` (``A3``/``A4``, any case) normalised, else :class:`InvalidInput`.

    >>> check_paper("a3")
    'A3'
    """
    p = str(paper).upper()
    if p not in PAPERS:
        raise InvalidInput(
            f"paper must be A3 or A4, not {str(paper)[:20]!r}", detail={"paper": str(paper)[:20]}
        )
    return p


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def template(name: str, **context: Any) -> str:
    """Render the template ``name`` of ``geogrid/printing/templates``."""
    return _env().get_template(name).render(font=FONT_FAMILY, **context)


def data_uri(data: bytes, mime: str) -> str:
    """A ``data:`` URI.

    >>> data_uri(b"<svg/>", "image/svg+xml")
    'data:image/svg+xml;base64,PHN2Zy8+'
    """
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_BASE = re.compile(r"https?://[A-Za-z0-9.\-]+(?::\d{1,5})?(?:/[\w\-./~%]*)?")


def public_grid_url(base_url: str, grid_code: str | None) -> str:
    """The public page of a grid, ``<base>/public/grid/<code>`` (no code: the public map).

    >>> public_grid_url("http://127.0.0.1:8000/", "420117105201003")
    'http://127.0.0.1:8000/public/grid/420117105201003'
    >>> public_grid_url("https://gg.example/town", None)
    'https://gg.example/town/public'
    """
    base = base_url.strip()
    if not _BASE.fullmatch(base):
        raise InvalidInput(f"base URL must be http(s)://host[:port][/path], not {base[:60]!r}")
    page = f"{base.rstrip('/')}/public"
    return f"{page}/grid/{grid_code}" if grid_code else page


def qr_png(url: str) -> bytes:
    """A QR code of ``url`` as PNG (error correction M, 4-module quiet zone)."""
    import segno

    buf = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buf, kind="png", scale=8, border=4)
    return buf.getvalue()


_MIMES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})


def photo_uri(settings: Settings, name: str, photo: str | None) -> str:
    """A staff photo as a ``data:`` URI, or a placeholder avatar when none is on file."""
    from PIL import Image, UnidentifiedImageError

    from geogrid.planner.photos import photo_path, placeholder_photo

    path = photo_path(settings, photo, thumb=True)
    if path is not None:
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as img:  # the type from the bytes, not the name
                mime = Image.MIME.get(img.format or "", "")
            if mime in _MIMES:
                return data_uri(data, mime)
        except (NotFound, InvalidInput, OSError, UnidentifiedImageError):
            pass  # a missing or unreadable file gets the placeholder, like no photo at all
    return data_uri(placeholder_photo(name).encode("utf-8"), "image/svg+xml")


def render_pdf(html: str) -> bytes:
    """Render ``html`` to PDF bytes, fetching nothing but ``data:`` URIs."""
    import weasyprint
    from PIL import ImageFile

    # importing WeasyPrint makes Pillow load truncated images silently, for the whole
    # process; the file store refuses them (geogrid.files), so geogrid keeps it off
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    fetcher = weasyprint.URLFetcher(allowed_protocols={"data"})
    return bytes(weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf())
