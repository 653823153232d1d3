"""Contact cards for every household of a grid: the grid's staff card, ten to an A4 page.

A card carries the grid's staff (post, name, duty phone), the QR code of the grid's public
page and the household's house number — nothing else about the household.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection

from geogrid.errors import InvalidInput
from geogrid.printing.data import card_households, print_place
from geogrid.printing.i18n import check_lang, labels
from geogrid.printing.pdf import data_uri, public_grid_url, qr_png, render_pdf, template
from geogrid.printing.poster import Printed

__all__ = ["CARDS_PER_PAGE", "check_grid_code", "render_cards"]

#: Cards per A4 page (2 columns × 5 rows of 90 × 54 mm).
CARDS_PER_PAGE = 10
#: Staff lines a card has room for (leader first).
STAFF_LINES = 4


def check_grid_code(grid_code: str) -> str:
    """``grid_code`` when it is a 15-digit basic grid code, else :class:`InvalidInput`.

    >>> check_grid_code("420117105201")
    Traceback (most recent call last):
    ...
    geogrid.errors.InvalidInput: cards need a 15-digit grid code, not '420117105201'
    """
    if not (isinstance(grid_code, str) and re.fullmatch(r"[0-9]{15}", grid_code) is not None):
        raise InvalidInput(
            f"cards need a 15-digit grid code, not {str(grid_code)[:40]!r}",
            detail={"grid": str(grid_code)[:40]},
        )
    return grid_code


def render_cards(
    conn: Connection,
    grid_code: str,
    *,
    lang: str = "zh",
    base_url: str,
    scope_prefix: str = "",
) -> Printed:
    """Render one contact card per household of a basic grid (active plan) as PDF.

    Parameters
    ----------
    conn
        A connection that may read grids, staff and households' non-personal columns.
    grid_code
        15-digit code of a basic grid of the town's active plan.
    lang
        ``zh`` (default) or ``en``.
    base_url
        Where the public pages are served (the QR code's URL starts with it).
    scope_prefix
        The reader's scope prefix, bound into the household query.

    Raises
    ------
    InvalidInput
        Not a 15-digit grid code, bad language or base URL.
    NotFound
        No active plan has the grid.
    """
    check_lang(lang)
    check_grid_code(grid_code)
    t = labels(lang)
    place = print_place(conn, grid_code, lang=lang)
    homes = card_households(conn, grid_code, scope_prefix=scope_prefix, lang=lang)
    url = public_grid_url(base_url, grid_code)
    qr = qr_png(url)
    staff = [
        {"role": t(f"role.{s.role}"), "name": s.name, "phone": s.phone or ""}
        for s in place.staff[:STAFF_LINES]
    ]
    sep = " " if lang == "zh" else ", "
    cards = [
        sep.join(x for x in (h.group, h.natural_village,
                             h.house_number and t("cards.house_no", n=h.house_number)) if x)
        for h in homes
    ]  # fmt: skip
    pages = [cards[i : i + CARDS_PER_PAGE] for i in range(0, len(cards), CARDS_PER_PAGE)]
    html = template(
        "cards.html",
        lang=lang,
        t=t,
        title=t("cards.title"),
        grid=f"{place.village_name or ''} {place.name}".strip()
        if place.village_name and not place.name.startswith(place.village_name)
        else place.name,
        staff=staff,
        pages=pages or [[]],
        qr=data_uri(qr, "image/png"),
        url=url,
    )
    return Printed(render_pdf(html), url, qr)
