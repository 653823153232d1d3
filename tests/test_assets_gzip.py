"""Web assets answered gzip-compressed (api/assets.py): smaller first loads for the field app
over poor signal, byte-identical after decoding, cached by version (ETag, 304), and never
compressed when the client does not accept it, for small files, or for images."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tiles import pages as tp

LEAFLET = "/assets/npm/leaflet/dist/leaflet.js"
APP = "/assets/static/field/app.js"


@pytest.fixture(scope="module")
def client(pg, tmp_path_factory) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    from api import create_app
    from geogrid import store
    from geogrid.settings import Settings

    name = pg.create_database()
    url = pg.url(name)
    store.upgrade(url)
    app = create_app(Settings(home=tmp_path_factory.mktemp("assets")), database_url=url)
    try:
        with TestClient(app) as c:
            yield c
    finally:
        pg.drop_database(name)


def _raw(client: TestClient, url: str, encoding: str) -> tuple[int, dict[str, str], bytes]:
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as r:
        return r.status_code, dict(r.headers), b"".join(r.iter_raw())


@pytest.mark.parametrize("url", [LEAFLET, APP])
def test_text_assets_are_gzipped_and_identical_once_decoded(client: TestClient, url: str) -> None:
    status, headers, body = _raw(client, url, "gzip, deflate, br")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert "javascript" in headers["content-type"]
    plain = (
        tp.npm_asset("leaflet", "dist/leaflet.js") if url == LEAFLET else tp.static_asset(
            "field/app.js")
    ).read_bytes()  # fmt: skip
    assert gzip.decompress(body) == plain
    assert len(body) < len(plain) / 2  # minified JS still shrinks by well over half
    # the same version answers 304 to its ETag; another ETag gets the body
    etag = headers["etag"]
    again = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": 'W/"x"'})
    assert other.status_code == 200 and other.content == plain


@pytest.mark.parametrize("encoding", ["identity", "", "gzip;q=0", "br"])
def test_clients_that_do_not_accept_gzip_get_the_file(client: TestClient, encoding: str) -> None:
    status, headers, body = _raw(client, LEAFLET, encoding)
    assert status == 200 and "content-encoding" not in headers
    assert body == tp.npm_asset("leaflet", "dist/leaflet.js").read_bytes()


def test_images_are_not_compressed(client: TestClient) -> None:
    status, headers, body = _raw(client, "/assets/npm/leaflet/dist/images/marker-icon.png", "gzip")
    assert status == 200 and "content-encoding" not in headers
    assert body[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_refused_path_stays_refused(client: TestClient) -> None:
    for bad in ("/assets/static/..%2F..%2Fpyproject.toml", "/assets/npm/leaflet/package.json"):
        r = client.get(bad, headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 404 and "content-encoding" not in r.headers
