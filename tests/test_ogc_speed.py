"""numberMatched of OGC item pages: exact when given, absent when counting would cost too much.

``numberMatched`` is optional in OGC API – Features; geogrid counts matches only up to a
bound (:data:`geogrid.ogcapi.items.COUNT_BOUND`) and leaves the member out beyond it. These
tests check, for filters whose true counts come from SQL written here, that a page's
``numberMatched`` is never wrong: the exact count when it is given, absent when the count
is over the bound (unless the page itself ends the matches), present under the default
bound, on first pages, offset pages and cursor pages. One database per module; reads only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from geogrid.features import COLLECTIONS
from geogrid.ogcapi.items import COUNT_BOUND, items_page
from geogrid.ogcapi.query import parse_items_query
from tests.ogc_support import Served, follow, served_town
from tests.ogc_support import get_json as _get

ITEMS = "/ogc/collections/cases/items"


@pytest.fixture(scope="module")
def served(pg, _town_template, sample_town, tmp_path_factory, account_maker) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("ogc-speed")
    with served_town(pg, _town_template, sample_town, tmp, account_maker, public=False) as s:
        yield s


def _filters(served: Served) -> list[tuple[str, int]]:
    """(CQL2 text, true count by SQL): broad, narrow and empty filters on cases."""
    category = served.column(
        "SELECT category FROM cases GROUP BY category ORDER BY count(*) DESC LIMIT 1"
    )[0]
    since = served.column(
        "SELECT to_char(percentile_disc(0.5) WITHIN GROUP (ORDER BY reported_at) "
        "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM cases"
    )[0]
    count = served.count
    return [
        ("case_no LIKE '%'", count("SELECT count(*) FROM cases")),
        (
            f"category = '{category}'",
            count("SELECT count(*) FROM cases WHERE category = :c", c=category),
        ),
        (
            f"reported_at >= TIMESTAMP('{since}')",
            count(
                "SELECT count(*) FROM cases WHERE reported_at >= CAST(:s AS timestamptz)", s=since
            ),
        ),
        ("category = 'no such category'", 0),
    ]


def _page(served: Served, bound: int, **params: Any) -> dict[str, Any]:
    """A page from geogrid's own items_page with ``bound`` (on a real connection)."""
    coll = COLLECTIONS["cases"]
    q = parse_items_query(coll, [(k, str(v)) for k, v in params.items()])
    with served.engine.connect() as conn:
        body = items_page(conn, coll, q, base="http://t/ogc", count_bound=bound)
    return json.loads(body)


def test_the_sample_town_is_under_the_default_bound(served: Served) -> None:
    # otherwise the tests that compare numberMatched with SQL counts would not see one
    assert served.count("SELECT count(*) FROM cases") <= COUNT_BOUND


@pytest.mark.parametrize("limit", [3, 10_000])
def test_number_matched_is_exact_or_absent_over_and_under_the_bound(
    served: Served, limit: int
) -> None:
    for cql, true in _filters(served):
        for bound in sorted({0, max(0, true - 1), true, true + 1}):
            for offset in (0, 2, true + 5):
                body = _page(served, bound, filter=cql, limit=limit, offset=offset)
                returned = len(body["features"])
                assert body["numberReturned"] == returned == max(0, min(limit, true - offset))
                _exact_or_absent(body, true, bound, (cql, bound, offset, limit))


def _exact_or_absent(body: dict[str, Any], true: int, bound: int, where: Any) -> None:
    """Never a wrong number; never a number over the bound but for a page that ends the
    matches (its offset plus its features is then the exact count)."""
    assert body.get("numberMatched", true) == true, where
    returned = len(body["features"])
    offset = int(dict(_self_params(body)).get("offset", 0))
    ends = offset + returned == true and (returned > 0 or offset == 0)
    if true > bound and not ends:
        assert "numberMatched" not in body, where


def _self_params(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The query parameters of a page's self link."""
    self_ = next(x for x in body["links"] if x["rel"] == "self")
    return parse_qsl(urlsplit(self_["href"]).query)


def test_cursor_pages_never_carry_a_wrong_number(served: Served) -> None:
    for cql, true in _filters(served)[:2]:
        for bound in (true - 1, true):
            body = _page(served, bound, filter=cql, limit=max(1, true // 3))
            pages = 1
            _exact_or_absent(body, true, bound, (cql, bound, 1))
            while (nxt := next((x for x in body["links"] if x["rel"] == "next"), None)) is not None:
                body = _page(served, bound, **dict(parse_qsl(urlsplit(nxt["href"]).query)))
                pages += 1
                _exact_or_absent(body, true, bound, (cql, bound, pages))
                if true > bound:  # a cursor page never holds the whole count
                    assert "numberMatched" not in body
            assert pages >= 3


def test_served_pages_count_exactly_under_the_default_bound(served: Served) -> None:
    for cql, true in _filters(served):
        first = _get(served, ITEMS, filter=cql, limit=2)
        assert first["numberMatched"] == true, cql
        nxt = next((x for x in first["links"] if x["rel"] == "next"), None)
        if nxt is not None:
            assert follow(served, nxt["href"])["numberMatched"] == true, cql


def _first_transform_ms(engine: Any, point: int) -> float:
    """The time of a fresh pooled connection's first CGCS2000 transform (a point it has
    not transformed before), after the connection is open."""
    import time

    from sqlalchemy import text

    engine.dispose()  # the next connection is a new backend
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        start = time.perf_counter()
        conn.execute(
            text("SELECT ST_AsText(ST_Transform(ST_SetSRID(ST_MakePoint(:x, 30), 4326), 4490))"),
            {"x": 110 + point / 10},
        )
        return (time.perf_counter() - start) * 1000


def test_pooled_connections_open_with_the_cgcs2000_transform_loaded(served: Served) -> None:
    """A backend's first EPSG:4326 → 4490 transform loads PROJ's operation (~0.2 s); the
    serving engine's lasting connections pay it when the pool opens them, so a request's
    first CGCS2000 page does not (overflow connections are left cold)."""
    from geogrid import store
    from geogrid.ogcapi.warm import install_transform_warmup

    cold = store.make_serving_engine(served.url, pool_size=1, max_overflow=0)
    warm = store.make_serving_engine(served.url, pool_size=1, max_overflow=1)
    install_transform_warmup(warm)
    try:
        before = sorted(_first_transform_ms(cold, i) for i in range(3))[1]
        after = sorted(_first_transform_ms(warm, i) for i in range(3))[1]
        assert after * 4 < before, (before, after)
        with warm.connect():  # the lasting connection is busy: the next one overflows
            assert warm.pool.overflow() == 0  # type: ignore[attr-defined]
            with warm.connect() as extra:
                assert warm.pool.overflow() == 1  # type: ignore[attr-defined]
                from sqlalchemy import text

                extra.execute(text("SELECT 1"))
    finally:
        cold.dispose()
        warm.dispose()
