"""Printing without a database: the metric map frame, the scale bar, and the guards' zoos."""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

import pytest
import shapely
from pyproj import Geod

from geogrid.errors import InvalidInput
from geogrid.printing import check_grid_code, check_paper, parse_code, public_grid_url, svgmap
from geogrid.printing.i18n import check_lang
from geogrid.printing.svgmap import (
    Layer,
    MapFrame,
    Style,
    metric_crs,
    nice_scale,
    scale_bar_length,
    svg_map,
)


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [
        (114.3, 30.4, 4547),  # Wuhan: CGCS2000 3-degree Gauss-Krüger CM 114E
        (87.6, 43.8, 4538),  # Ürümqi: CM 87E
        (126.6, 45.8, 4551),  # Harbin: CM 126E
        (139.7, 35.7, 32654),  # Tokyo: outside China, WGS84 / UTM 54N
        (-3.7, 40.4, 32630),  # Madrid: UTM 30N
    ],
)
def test_metric_crs_is_the_local_zone(lon: float, lat: float, epsg: int) -> None:
    assert metric_crs(lon, lat).to_epsg() == epsg


@pytest.mark.parametrize(("lon", "lat"), [(114.3, 30.4), (87.6, 43.8), (139.7, 35.7)])
def test_paper_distances_match_the_ground_at_the_printed_scale(lon: float, lat: float) -> None:
    """1 km on the ground is 1 000 000 / N mm on paper at 1:N, east-west and north-south."""
    village = shapely.box(lon - 0.02, lat - 0.015, lon + 0.02, lat + 0.015)
    frame = MapFrame.fit([village], 250.0, 200.0)
    geod = Geod(ellps="GRS80")
    for lon2, lat2 in ((lon + 0.01, lat), (lon, lat + 0.01)):
        _, _, ground = geod.inv(lon, lat, lon2, lat2)
        line = frame.project(shapely.LineString([(lon, lat), (lon2, lat2)]))
        paper = line.length
        assert paper == pytest.approx(ground * 1000.0 / frame.scale, rel=2e-3)
    # the frame holds the whole village inside its margins
    x0, y0, x1, y1 = frame.project(village).bounds
    assert x0 >= 0 and x1 <= 250 and y0 >= 0 and y1 <= 200


def test_round_scales_and_bars() -> None:
    assert [nice_scale(x) for x in (900, 1000, 1001, 12600, 49000)] == [
        1000,
        1000,
        1250,
        15000,
        50000,
    ]
    for scale in (2500, 10000, 60000):
        metres = scale_bar_length(scale, 60)
        assert metres * 1000 / scale <= 60
        assert re.fullmatch(r"[125]0*", f"{metres:g}")


def test_svg_map_has_north_arrow_scale_bar_and_labels() -> None:
    grid = shapely.box(114.30, 30.40, 114.31, 30.41)
    frame = MapFrame.fit([grid], 200.0, 150.0)
    svg = svg_map(
        frame,
        [Layer(Style(fill="#c8e6c9"), [(grid, "一组 <&>")], label_size=4)],
        north="北",
        units=("米", "千米"),
    )
    assert svg.startswith("<svg") and 'viewBox="0 0 200.0 150.0"' in svg
    assert ">北</text>" in svg and ("米</text>" in svg or "千米</text>" in svg)
    assert "一组 &lt;&amp;&gt;" in svg and "<&>" not in svg  # labels are escaped
    assert "<path" in svg and "http://www.w3.org/2000/svg" in svg


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "15 digits"),
        ("4201171052", "15 digits"),  # too short
        ("4201171052010031", "15 digits"),  # too long
        ("42011710520100x", "15 digits"),  # not a digit
        ("４２０１１７１０５２０１", "15 digits"),  # full-width digits
        ("420117105201 03", "15 digits"),  # a space
    ],
)
def test_bad_codes_are_refused(code: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_code(code)


def test_codes_name_their_level() -> None:
    assert parse_code("420117105201003") == "grid"
    assert parse_code("420117105201") == "village"
    assert parse_code("420117105000") == "town"


@pytest.mark.parametrize("grid", ["420117105201", "420117105000", "x" * 15, "4201171052010031"])
def test_cards_need_a_grid_code(grid: str) -> None:
    with pytest.raises(InvalidInput, match="15-digit"):
        check_grid_code(grid)


@pytest.mark.parametrize("paper", ["A5", "Letter", "", "A3 ", "a33"])
def test_bad_paper_is_refused(paper: str) -> None:
    with pytest.raises(InvalidInput, match="A3 or A4"):
        check_paper(paper)


@pytest.mark.parametrize("lang", ["fr", "", "ZH", "zh-CN", "en "])
def test_bad_language_is_refused(lang: str) -> None:
    with pytest.raises(InvalidInput, match="unknown language"):
        check_lang(lang)


@pytest.mark.parametrize(
    "base",
    [
        "javascript:alert(1)",  # not http(s)
        "ftp://grid.example",  # not http(s)
        "grid.example.gov.cn",  # no scheme
        "https://grid example.cn",  # a space in the host
        "https://grid.example.cn/?q=1",  # a query
        'https://grid.example.cn/"><script>',  # markup
    ],
)
def test_bad_base_urls_are_refused(base: str) -> None:
    with pytest.raises(InvalidInput, match="base URL"):
        public_grid_url(base, "420117105201003")


def _village(lon: float, lat: float) -> shapely.Polygon:
    return shapely.box(lon - 0.02, lat - 0.015, lon + 0.02, lat + 0.015)


def test_transformers_are_built_once_per_zone() -> None:
    a = MapFrame.fit([_village(114.3, 30.4)], 250.0, 200.0)
    b = MapFrame.fit([_village(114.5, 30.6)], 180.0, 120.0)  # the same zone (CM 114E)
    c = MapFrame.fit([_village(87.6, 43.8)], 250.0, 200.0)  # another zone (CM 87E)
    assert a.crs == b.crs and a._to_metric is b._to_metric
    assert c.crs != a.crs and c._to_metric is not a._to_metric


def _drawn(lon: float, lat: float) -> str:
    frame = MapFrame.fit([_village(lon, lat)], 250.0, 200.0)
    ring = shapely.Polygon(
        [(lon + 0.001 * i, lat + 0.0007 * (i % 7)) for i in range(200)] + [(lon, lat)]
    )
    return frame.project(ring).wkt


def test_threads_share_the_cached_transformers_safely() -> None:
    places = [(114.3, 30.4), (114.4, 30.5), (87.6, 43.8), (126.6, 45.8)] * 6
    serial = [_drawn(*p) for p in places]
    with ThreadPoolExecutor(max_workers=6) as pool:  # as the API's thread pool draws posters
        assert list(pool.map(lambda p: _drawn(*p), places)) == serial


def _child(conn: Connection) -> None:
    conn.send((svgmap._from_wgs84.cache_info().currsize, _drawn(114.3, 30.4)))
    conn.close()


def test_forked_workers_build_their_own_transformers() -> None:
    here = _drawn(114.3, 30.4)
    assert svgmap._from_wgs84.cache_info().currsize >= 1
    ctx = multiprocessing.get_context("fork")  # as the archive export's workers
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child,))
    proc.start()
    cached_at_fork, there = parent.recv()
    proc.join(30)
    assert proc.exitcode == 0
    assert cached_at_fork == 0  # nothing of the parent's PROJ state is used in the child
    assert there == here
