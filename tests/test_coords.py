"""Tests for :mod:`geogrid.coords` and the ``geogrid coords`` CLI (no database)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from geogrid import coords
from geogrid.cli import build_app
from geogrid.coords import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    convert,
    detect_swapped,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    haversine_m,
    in_china,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from geogrid.errors import InvalidInput


@pytest.fixture(scope="module")
def china_points() -> tuple[np.ndarray, np.ndarray]:
    """20,000 random points over mainland China's bounding box (inside the GCJ rectangle)."""
    rng = np.random.default_rng(20250101)
    return rng.uniform(75.0, 134.0, 20_000), rng.uniform(18.0, 53.0, 20_000)


# Reference values published with wandergis/coordtransform (the standard algorithm).
REF_WGS = (116.404, 39.915)
REF_GCJ = (116.41024449916938, 39.91640428150164)
REF_BD_OF_GCJ_INPUT = (116.41036949371029, 39.92133699351021)  # gcj02_to_bd09(116.404, 39.915)


def test_forward_reference_values() -> None:
    assert wgs84_to_gcj02(*REF_WGS) == pytest.approx(REF_GCJ, abs=1e-12)
    assert gcj02_to_bd09(116.404, 39.915) == pytest.approx(REF_BD_OF_GCJ_INPUT, abs=1e-12)
    # Tiananmen: WGS84 (116.397128, 39.916527) is about (116.40337, 39.91793) in GCJ-02.
    lon, lat = wgs84_to_gcj02(116.397128, 39.916527)
    assert haversine_m(lon, lat, 116.403372, 39.917931) < 0.5


def test_bd09_is_roughly_a_fixed_offset() -> None:
    lon, lat = gcj02_to_bd09(114.3, 30.4)
    assert lon - 114.3 == pytest.approx(0.0065, abs=0.0006)
    assert lat - 30.4 == pytest.approx(0.006, abs=0.0006)


def test_gcj_shift_is_hundreds_of_metres(china_points: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_points
    glon, glat = wgs84_to_gcj02(lon, lat)
    d = haversine_m(lon, lat, glon, glat)
    assert 100 < np.median(d) < 800


def test_round_trip_wgs_gcj(china_points: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_points
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    err = haversine_m(lon, lat, *back)
    assert err.max() < 0.5
    assert err.max() < 0.01  # centimetres in practice


def test_round_trip_gcj_wgs(china_points: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_points  # now read as GCJ-02 coordinates
    back = wgs84_to_gcj02(*gcj02_to_wgs84(lon, lat))
    assert haversine_m(lon, lat, *back).max() < 0.01


def test_round_trip_bd09(china_points: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china_points
    err = haversine_m(lon, lat, *bd09_to_gcj02(*gcj02_to_bd09(lon, lat)))
    assert err.max() < 0.01
    err = haversine_m(lon, lat, *bd09_to_wgs84(*wgs84_to_bd09(lon, lat)))
    assert err.max() < 0.01


def test_one_step_inverse_would_be_off_by_metres(
    china_points: tuple[np.ndarray, np.ndarray],
) -> None:
    # Guard that the test above is meaningful: the naive inverse (subtract the shift
    # computed at the GCJ point) is off by metres somewhere in China.
    lon, lat = china_points
    glon, glat = wgs84_to_gcj02(lon, lat)
    g2lon, g2lat = wgs84_to_gcj02(glon, glat)
    naive = (2 * glon - g2lon, 2 * glat - g2lat)
    assert haversine_m(lon, lat, *naive).max() > 1.0


def test_scalars_give_floats_and_arrays_give_arrays() -> None:
    lon, lat = wgs84_to_gcj02(114.3, 30.4)
    assert type(lon) is float
    assert type(lat) is float
    alon, alat = wgs84_to_gcj02(np.array([114.3, 114.4]), np.array([30.4, 30.5]))
    assert isinstance(alon, np.ndarray)
    assert alon.shape == (2,)
    assert alon[0] == lon
    assert alat[0] == lat
    # broadcasting a scalar latitude against a list of longitudes
    blon, blat = gcj02_to_wgs84([114.3, 114.4], 30.4)
    assert blon.shape == blat.shape == (2,)
    # 2-D arrays keep their shape
    mlon, _ = convert(np.full((3, 4), 114.3), np.full((3, 4), 30.4), "wgs84", "bd09")
    assert mlon.shape == (3, 4)


def test_nan_passes_through() -> None:
    lon, lat = gcj02_to_wgs84(np.array([114.3, np.nan]), np.array([30.4, np.nan]))
    assert np.isfinite(lon[0])
    assert np.isnan(lon[1])
    assert np.isnan(lat[1])


def test_out_of_china_unchanged() -> None:
    pts = (np.array([2.35, -74.0, 0.0, 139.7]), np.array([48.85, 40.7, 0.0, 35.7]))
    for fn in (wgs84_to_gcj02, gcj02_to_wgs84):
        lon, lat = fn(*pts)
        np.testing.assert_array_equal(lon, pts[0])
        np.testing.assert_array_equal(lat, pts[1])
    assert in_china(pts[0], pts[1]).tolist() == [False, False, False, False]
    assert in_china(114.3, 30.4) is True


def test_convert_aliases_and_noop() -> None:
    for alias in ("EPSG:4326", "4326", "WGS84", 4326, "cgcs2000", "EPSG:4490", 4490):
        assert convert(114.3, 30.4, alias, "wgs84") == (114.3, 30.4)
    gcj = wgs84_to_gcj02(114.3, 30.4)
    for alias in ("gcj02", "GCJ-02", "gcj", "mars"):
        assert convert(114.3, 30.4, "wgs84", alias) == gcj
    bd = wgs84_to_bd09(114.3, 30.4)
    for alias in ("bd09", "BD-09", "baidu"):
        assert convert(114.3, 30.4, "EPSG:4490", alias) == bd
    assert convert(114.3, 30.4, "gcj02", "gcj02") == (114.3, 30.4)
    lon, lat = convert(*bd, "bd09", "gcj02")
    assert haversine_m(lon, lat, *gcj) < 0.01


def test_unknown_crs_lists_accepted_names() -> None:
    with pytest.raises(InvalidInput, match="accepted names") as info:
        convert(114.3, 30.4, "EPSG:3857", "wgs84")
    assert "gcj02" in info.value.message
    assert "bd09" in info.value.message
    with pytest.raises(InvalidInput):
        coords.normalize_crs("utm50")


def test_detect_swapped() -> None:
    bbox = (113.0, 29.0, 116.0, 32.0)
    lon = np.array([114.3, 30.4, 0.0, np.nan, 114.3])
    lat = np.array([30.4, 114.3, 0.0, 30.4, 50.0])
    assert detect_swapped(lon, lat, bbox).tolist() == [False, True, False, False, False]


def test_cli_convert_plain_and_json() -> None:
    runner = CliRunner()
    app = build_app()
    result = runner.invoke(
        app, ["coords", "convert", "--from", "wgs84", "--to", "gcj02", "116.404", "39.915"]
    )
    assert result.exit_code == 0, result.output
    lon_s, lat_s = result.output.split()
    assert lon_s == f"{REF_GCJ[0]:.8f}"
    assert lat_s == f"{REF_GCJ[1]:.8f}"

    result = runner.invoke(
        app, ["coords", "convert", "--from", "gcj02", "--to", "wgs84", "--json", lon_s, lat_s]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert haversine_m(data["lon"], data["lat"], *REF_WGS) < 0.01


def test_cli_unknown_crs_is_an_invalid_input() -> None:
    result = CliRunner().invoke(
        build_app(), ["coords", "convert", "--from", "utm", "--to", "wgs84", "114", "30"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidInput)
