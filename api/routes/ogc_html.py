"""HTML answers of the OGC API (conformance class ``html`` of Part 1).

The landing page, conformance, collections, one collection, a page of items (a Leaflet map
of the page's features with its paging links) and one item are pages too: asked for with
``f=html``, or by a browser (``Accept`` preferring ``text/html`` to every JSON type; no
``f``). They are rendered with the pages' templates (``tiles/templates/ogc_*.html`` on
``base.html``), Chinese first from the message catalogue (``ogc.*``), load only our own
assets (Leaflet from ``/assets/npm``, ``ogc.js``), and link their JSON twins
(``rel=alternate``). The JSON answers link these pages the same way (:func:`html_link`).
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse

from geogrid.features import link
from geogrid.i18n import pick_lang, t
from tiles import pages as tp

__all__ = [
    "HTML",
    "HTML_CONFORMANCE",
    "html_link",
    "lang_of",
    "local",
    "page",
    "strip_lang",
    "wants_html",
    "with_format",
]

HTML: Final = "text/html"
#: Conformance class of HTML answers (OGC API – Features – Part 1).
HTML_CONFORMANCE: Final = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html"
_HTML_TYPES: Final = ("text/html", "application/xhtml+xml")


def _quality(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def prefers_html(accept: str) -> bool:
    """Whether an ``Accept`` header ranks HTML above every JSON type it names.

    Wildcards count for neither: a client that names no type gets JSON.

    >>> prefers_html("text/html,application/xhtml+xml,*/*;q=0.8")
    True
    >>> prefers_html("application/geo+json, text/html;q=0.5")
    False
    >>> prefers_html("*/*"), prefers_html("")
    (False, False)
    """
    html_q = json_q = 0.0
    for part in accept.split(","):
        kind, _, params = part.partition(";")
        kind = kind.strip().lower()
        q = _quality(params)
        if kind in _HTML_TYPES:
            html_q = max(html_q, q)
        elif kind == "application/json" or kind.endswith("+json"):
            json_q = max(json_q, q)
    return html_q > 0 and html_q > json_q


def wants_html(request: Request) -> bool:
    """``f=html``, or no ``f`` and an ``Accept`` header preferring HTML."""
    f = request.query_params.get("f")
    if f is not None:
        return f == "html"
    return prefers_html(request.headers.get("accept", ""))


def strip_lang(params: list[tuple[str, str]], html: bool) -> list[tuple[str, str]]:
    """The query without ``lang`` (a page's language, not a query parameter) on pages."""
    return [(k, v) for k, v in params if not (html and k == "lang")]


def with_format(href: str, params: list[tuple[str, str]], fmt: str) -> str:
    """``href`` with ``params`` (less ``f``, ``lang``, ``embed_token``) and ``f=fmt``."""
    kept = [(k, v) for k, v in params if k not in ("f", "lang", "embed_token")]
    return f"{href}?{urlencode([*kept, ('f', fmt)])}"


def local(href: str) -> str:
    """``href`` without scheme and host: pages link their own origin by path only."""
    parts = urlsplit(href)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def html_link(href: str, params: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """The ``alternate`` link of a JSON answer to its page."""
    return link(with_format(href, params or [], "html"), "alternate", HTML, "this document as HTML")


def lang_of(request: Request) -> str:
    """The page's language: ``?lang=``, then the remembered choice, then Chinese."""
    return pick_lang(request.query_params.get("lang"), request.cookies.get("gg_lang"))


def page(
    request: Request,
    template: str,
    *,
    title_key: str,
    title: str | None = None,
    data: Any = None,
    json_href: str,
    **context: Any,
) -> HTMLResponse:
    """Render ``tiles/templates/{template}`` in the visitor's language.

    Parameters
    ----------
    request
        The request (language: ``?lang=``, then the remembered choice).
    template
        An ``ogc_*.html`` template.
    title_key
        Catalogue key of the page title (``title`` overrides it, e.g. a collection's).
    data
        JSON for ``ogc.js`` (features of a map page), embedded in the page.
    json_href
        The URL of the same resource as JSON (the page's ``alternate`` link).
    context
        Further template variables.
    """
    lang = lang_of(request)
    settings = request.app.state.settings
    config = tp.page_config(settings, "ogc")
    body = tp.render_page(
        template,
        config=config,
        title=title or t(title_key, lang),
        lang=lang,
        json_href=local(json_href),
        data_json=json.dumps(data, ensure_ascii=False).replace("</", "<\\/"),
        base="/ogc",
        url=str(request.base_url).rstrip("/") + "/ogc",
        **context,
    )
    return HTMLResponse(body, headers={"Vary": "Accept"})
