"""Read replicas (issue 15 §3): a real streaming standby of a private cluster, made by
``geogrid db replica add`` (pg_basebackup -R), serving tiles and OGC items through the real
app while the primary takes writes; a write visible on the replica within a bound; a
replica stopped mid-load with no failed read; a paused (lagging) replica out of rotation
with tiles and ETags still those of the primary's versions; the CLI and the guards.

The primary is a cluster of its own (not the session's ``pg``): replication changes its
settings and ``pg_hba.conf``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api import create_app
from geogrid import store
from geogrid.cluster import PrivateCluster
from geogrid.errors import ConfigurationError
from geogrid.ops import replica
from geogrid.ops.replica_pool import ReadRouter, parse_urls
from geogrid.ops.restore import libpq_dsn
from geogrid.settings import Settings
from tests.conftest import make_home
from tests.ops_support import geogrid_env, run_cli
from tiles.layers import lonlat_to_tile

#: A write on the primary is visible on the standby within this many seconds (loopback).
VISIBLE_WITHIN_S = 2.0
MAX_LAG_S = 1.0


@dataclass
class Primary:
    settings: Settings
    url: str
    env: dict[str, str]
    tile: tuple[int, int, int]  # a villages tile (z, x, y) holding a village
    village: str  # that village's code
    bbox: str

    def replica_url(self, name: str = "r1") -> str:
        return replica.url(self.settings, name)


#: A town of 3 x 3 square villages around (114.3, 30.4) (the boundaries are all we serve).
_TOWN_SQL = """
INSERT INTO admin_areas (code, level, name, geom) VALUES ('420117105000', 'town', '复制镇',
  ST_Multi(ST_MakeEnvelope(114.27, 30.37, 114.33, 30.43, 4326)));
INSERT INTO admin_areas (code, level, name, parent_code, geom)
SELECT '420117105' || lpad((i * 3 + j + 1)::text, 3, '0'), 'village', '村' || (i * 3 + j + 1),
  '420117105000', ST_Multi(ST_MakeEnvelope(114.27 + 0.02 * i, 30.37 + 0.02 * j,
                                           114.29 + 0.02 * i, 30.39 + 0.02 * j, 4326))
FROM generate_series(0, 2) i, generate_series(0, 2) j;
"""


@pytest.fixture(scope="module")
def primary() -> Iterator[Primary]:
    """A private cluster with the schema and a town's villages (public), and one
    streaming standby ``r1`` made by the CLI."""
    from geogrid.access.embed import set_public

    home = make_home("geogrid-replica-")
    settings = Settings(home=home, database_url=None, cluster_fsync=False)
    env = {"home": str(home), "cluster_fsync": "false"}
    cluster = PrivateCluster(settings)
    try:
        cluster.start()
        url = cluster.url()
        store.upgrade(url)
        with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
            conn.execute(_TOWN_SQL)
        engine = store.make_engine(url)
        with engine.begin() as conn:
            set_public(conn, layer="villages", public=True, by=None)
            code, lon, lat, bbox = conn.execute(
                text(
                    "SELECT code, ST_X(p), ST_Y(p), concat_ws(',', ST_XMin(e), ST_YMin(e), "
                    "ST_XMax(e), ST_YMax(e)) FROM (SELECT code, ST_PointOnSurface(geom) p, "
                    "ST_Extent(geom) OVER () e FROM admin_areas WHERE level = 'village') q "
                    "ORDER BY code LIMIT 1"
                )
            ).one()
        engine.dispose()
        with geogrid_env(**env):
            out = run_cli("db", "replica", "add", "--name", "r1")
        assert "replica r1 streaming" in out
        x, y = lonlat_to_tile(lon, lat, 14)
        yield Primary(settings, url, env, (14, x, y), code, bbox)
    finally:
        for rep in replica.load(settings):
            replica.remove(settings, rep.name)
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def site(primary: Primary) -> Iterator[tuple[TestClient, Any]]:
    """The real app with GEOGRID_REPLICA_URLS naming ``r1`` (max lag 1 s)."""
    settings = Settings(
        home=primary.settings.home, database_url=None, cluster_fsync=False,
        replica_urls=[primary.replica_url()], replica_max_lag_s=MAX_LAG_S,
    )  # fmt: skip
    app = create_app(settings, database_url=primary.url)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:  # /metrics: this machine
        yield client, app


def _rename(primary: Primary, name: str) -> float:
    """Rename the village on the primary; the commit's time (monotonic)."""
    with psycopg.connect(libpq_dsn(primary.url), autocommit=True) as conn:
        conn.execute("UPDATE admin_areas SET name = %s WHERE code = %s", (name, primary.village))
    return time.monotonic()


def _on_standby(primary: Primary, sql: str, *args: Any) -> Any:
    with psycopg.connect(libpq_dsn(primary.replica_url()), autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
    return None if row is None else row[0]


def _wait(condition: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def _in_rotation(site: tuple[TestClient, Any]) -> tuple[TestClient, ReadRouter]:
    """The client and the app's router, once its replica is (back) in rotation."""
    client, app = site
    reads: ReadRouter = app.state.reads
    assert _wait(lambda: bool(reads.healthy()), 20), reads.replicas[0].reason
    return client, reads


def _tile_url(primary: Primary) -> str:
    z, x, y = primary.tile
    return f"/tiles/villages/{z}/{x}/{y}.mvt"


def _item_url(primary: Primary) -> str:
    return f"/ogc/collections/villages/items/{primary.village}"


def test_replica_serves_tiles_and_items_while_the_primary_takes_writes(
    primary: Primary, site: tuple[TestClient, Any]
) -> None:
    client, app = site
    reads: ReadRouter = app.state.reads
    assert _wait(lambda: bool(reads.healthy()), 10), reads.replicas[0].reason
    before = reads.replicas[0].reads
    for i in range(6):
        name = f"复制村{i}"
        committed = _rename(primary, name)
        # the write reaches the standby within the stated bound
        assert _wait(
            lambda n=name: _on_standby(primary, "SELECT name FROM admin_areas WHERE code = %s",
                                       primary.village) == n,
            VISIBLE_WITHIN_S,
        ), f"not on the standby within {VISIBLE_WITHIN_S} s"  # fmt: skip
        assert time.monotonic() - committed < VISIBLE_WITHIN_S
        time.sleep(0.3)  # the version poller's interval
        item = client.get(_item_url(primary))
        assert item.status_code == 200
        assert item.json()["properties"]["name"] == name  # never an older name
        tile = client.get(_tile_url(primary))
        assert tile.status_code == 200 and tile.content
        page = client.get("/ogc/collections/villages/items", params={"bbox": primary.bbox})
        assert page.status_code == 200 and page.json()["features"]
    assert reads.replicas[0].reads > before  # served by the standby, not only the primary
    metrics = client.get("/metrics").text
    assert f'geogrid_replica_in_rotation{{replica="{reads.replicas[0].name}"}} 1.0' in metrics
    assert "geogrid_replica_lag_seconds{" in metrics and "geogrid_replica_lag_bytes{" in metrics


#: Plain reads sent to replicas with a bounded staleness (api.reads): path -> status.
_BOUNDED = {
    "/public": 200,
    "/public/grids.geojson": 200,
    "/public/find?address=复制村1组1号": 200,
    "/api/assessment/public/grids/420117105001001": 200,
}


def test_public_pages_dashboard_and_ogc_tiles_read_from_the_replica(
    primary: Primary, site: tuple[TestClient, Any], account_maker: Any
) -> None:
    client, reads = _in_rotation(site)
    leader = account_maker(primary.url, "town_leader", "420117105000").headers(client)
    rep = reads.replicas[0]
    for path, status in [*_BOUNDED.items(), ("/api/dashboard/cases", 200)]:
        before = rep.reads
        r = client.get(path, headers=leader if "dashboard" in path else {})
        assert r.status_code == status, (path, r.text)
        assert rep.reads == before + 1, path  # answered by the standby
        # the bound: GEOGRID_REPLICA_MAX_LAG_S, checked in the read's own snapshot
        assert r.headers["x-geogrid-staleness"] == f"{MAX_LAG_S:g}", path
    d = client.get("/api/dashboard/cases", headers=leader).json()
    assert d["area"]["code"] == "420117105000"  # read on the standby, the town is there
    missing = client.get("/public/grid/420117105001001")
    assert missing.status_code == 404  # a domain error raised on the standby stays itself
    # OGC API – Tiles: a tile not cached yet, and the tile set's bounds, on the standby
    z, x, y = primary.tile
    before = rep.reads
    tile = client.get(f"/ogc/collections/villages/tiles/WebMercatorQuad/{z - 1}/{y // 2}/{x // 2}")
    assert tile.status_code == 200 and tile.content and tile.headers["etag"]
    assert rep.reads == before + 1
    ref = client.get(f"/tiles/villages/{z - 1}/{x // 2}/{y // 2}.mvt")
    assert ref.headers["etag"] == tile.headers["etag"] and ref.content == tile.content
    tileset = client.get("/ogc/collections/villages/tiles/WebMercatorQuad")
    assert tileset.status_code == 200
    west, south = tileset.json()["boundingBox"]["lowerLeft"]
    assert abs(west - 114.27) < 1e-3 and abs(south - 30.37) < 1e-3
    # tiles and items keep their version rule: no staleness header there
    assert "x-geogrid-staleness" not in tile.headers
    # without replicas the header is absent
    with TestClient(
        create_app(
            Settings(home=primary.settings.home, database_url=None, cluster_fsync=False),
            database_url=primary.url,
        )
    ) as alone:
        r = alone.get("/public/grids.geojson")
        assert r.status_code == 200 and "x-geogrid-staleness" not in r.headers


def test_a_replica_stopped_mid_load_fails_no_read(
    primary: Primary, site: tuple[TestClient, Any]
) -> None:
    client, reads = _in_rotation(site)
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            west = float(primary.bbox.split(",")[0]) + (i % 50) * 1e-5  # uncached pages
            box = ",".join([str(west), *primary.bbox.split(",")[1:]])
            r = client.get("/ogc/collections/villages/items", params={"bbox": box})
            statuses.append(r.status_code)
            statuses.append(client.get(_item_url(primary)).status_code)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1.0)
        served = reads.replicas[0].reads
        assert replica.stop(primary.settings, "r1")
        time.sleep(1.5)
        assert not reads.healthy()  # out of rotation
        replica.start(primary.settings, "r1")
        assert _wait(lambda: bool(reads.healthy()), 20), reads.replicas[0].reason
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(30)
    assert len(statuses) > 20
    assert set(statuses) == {200}, [s for s in statuses if s != 200]
    assert reads.replicas[0].reads > served  # back in service after the restart


def test_a_lagging_replica_leaves_rotation_and_tiles_keep_the_primary_versions(
    primary: Primary, site: tuple[TestClient, Any]
) -> None:
    client, reads = _in_rotation(site)
    only_primary = create_app(
        Settings(home=primary.settings.home, database_url=None, cluster_fsync=False),
        database_url=primary.url,
    )
    with TestClient(only_primary) as reference:
        old_etag = client.get(_tile_url(primary)).headers["etag"]
        _on_standby(primary, "SELECT pg_wal_replay_pause()")
        try:
            behind = reads.behind
            name = "滞后村"
            _rename(primary, name)
            time.sleep(0.3)  # the version poller's interval
            # the replica has not replayed the new version: the answer comes from the primary
            tile, ref = client.get(_tile_url(primary)), reference.get(_tile_url(primary))
            assert tile.status_code == ref.status_code == 200
            assert tile.headers["etag"] == ref.headers["etag"]
            assert tile.content == ref.content
            assert client.get(_item_url(primary)).json()["properties"]["name"] == name
            # (sent to the primary because the replica had not reached the version, or
            # because the checker had already seen its lag)
            assert reads.behind > behind or not reads.healthy()
            # the old ETag is not answered 304 under the new version
            assert tile.headers["etag"] != old_etag
            stale = client.get(_tile_url(primary), headers={"If-None-Match": old_etag})
            assert stale.status_code == 200 and stale.content == ref.content
            # plain reads: the replica's replay lag (in its snapshot) is over the bound, or
            # it is out of rotation already: the primary answers, stating no staleness
            served = reads.replicas[0].reads
            for path, status in _BOUNDED.items():
                r = client.get(path)
                assert r.status_code == status and r.headers["x-geogrid-staleness"] == "0"
            assert reads.replicas[0].reads == served
            # the checker takes the paused replica out of rotation
            assert _wait(lambda: not reads.healthy(), 10), reads.replicas[0].reason
            assert "lags" in reads.replicas[0].reason
            metrics = client.get("/metrics").text
            assert (
                f'geogrid_replica_in_rotation{{replica="{reads.replicas[0].name}"}} 0.0' in metrics
            )
        finally:
            _on_standby(primary, "SELECT pg_wal_replay_resume()")
    assert _wait(lambda: bool(reads.healthy()), 20), reads.replicas[0].reason
    tile = client.get(_tile_url(primary))
    assert tile.status_code == 200 and tile.headers["etag"] == ref.headers["etag"]


def test_a_server_that_is_not_a_standby_is_never_in_rotation(primary: Primary) -> None:
    engine = store.make_engine(primary.url)
    try:
        router = ReadRouter(engine, [primary.url], make_engine=store.make_engine, interval=0)
        try:
            assert not router.healthy()
            assert "not a standby" in router.replicas[0].reason
            assert router.run(lambda c: c.execute(text("SELECT 1")).scalar()) == 1
            assert router.primary_reads == 1 and router.replicas[0].reads == 0
        finally:
            router.close()
        down = primary.url.rsplit(":", 1)[0] + ":1/geogrid"  # nothing listens on port 1
        router = ReadRouter(engine, [down], make_engine=store.make_engine, interval=0)
        try:
            assert not router.healthy() and router.replicas[0].reason.startswith("down")
        finally:
            router.close()
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("not a url", "not a PostgreSQL URL"),
        ("mysql://u:p@h/db", "not a PostgreSQL URL"),
        ("postgresql:///db", "not a PostgreSQL URL"),  # no host
        ("postgresql://u:p@h:5432", "names no database"),
    ],
)
def test_replica_urls_that_are_not_postgresql_urls_are_refused(bad: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why):
        parse_urls([bad])


def test_settings_split_replica_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOGRID_REPLICA_URLS", "postgresql://a@h1/db, postgresql://b@h2/db")
    assert Settings().replica_urls == ["postgresql://a@h1/db", "postgresql://b@h2/db"]


def test_cli_list_urls_stop_start(primary: Primary) -> None:
    with geogrid_env(**primary.env):
        listing = run_cli("db", "replica", "list")
        assert "r1" in listing and "streaming" in listing and "yes" in listing
        assert run_cli("db", "replica", "urls").strip() == primary.replica_url()
        assert "stopped" in run_cli("db", "replica", "stop", "r1")
        assert "stopped" in run_cli("db", "replica", "list")
        assert "running" in run_cli("db", "replica", "start", "r1")
        assert _wait(lambda: "streaming" in run_cli("db", "replica", "list"), 20)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--name", "R!"], "replica name"),
        (["--name", "r1"], "exists already"),
        (["--port", "80"], "between 1024 and 65535"),
        (["--allow", "not-an-address"], "not an address"),
    ],
)
def test_cli_add_refuses(primary: Primary, args: list[str], why: str) -> None:
    with geogrid_env(**primary.env):
        assert why in run_cli("db", "replica", "add", *args, code=1)


def test_cli_add_refuses_a_used_port_and_a_non_empty_datadir(
    primary: Primary, tmp_path: Path
) -> None:
    (tmp_path / "junk").write_text("x")
    port = PrivateCluster(primary.settings).load_state().port  # type: ignore[union-attr]
    with geogrid_env(**primary.env):
        assert "in use" in run_cli("db", "replica", "add", "--port", str(port), code=1)
        assert "not empty" in run_cli("db", "replica", "add", "--datadir", str(tmp_path), code=1)
        assert "no replica 'nope'" in run_cli("db", "replica", "remove", "nope", code=1)
    with geogrid_env(**primary.env, database_url=primary.url):
        assert "private cluster" in run_cli("db", "replica", "list", code=1)


def test_cli_add_and_remove_a_second_replica(primary: Primary) -> None:
    datadir = Path(primary.settings.home) / "elsewhere" / "r2data"  # the server user enters it
    with geogrid_env(**primary.env):
        assert "replica r2 streaming" in run_cli("db", "replica", "add", "--datadir", str(datadir))
        listing = run_cli("db", "replica", "list")
        assert "r2" in listing and "r1" in listing
        assert "removed" in run_cli("db", "replica", "remove", "r2")
        assert "r2" not in run_cli("db", "replica", "list")
    assert not datadir.exists()


def test_allow_widens_listen_addresses_for_a_standby_elsewhere(primary: Primary) -> None:
    """``--allow`` for another machine: the primary listens on this machine's address on
    the route there too (it listened on 127.0.0.1 only), and the hba line is written."""
    import socket

    far = "192.0.2.77" if replica.listen_address_for("192.0.2.77") != "*" else "10.255.0.7"
    local = replica.listen_address_for(far)
    assert replica.widened_listen("127.0.0.1", [far]) == f"127.0.0.1, {local}"
    assert replica.widened_listen(f"127.0.0.1, {local}", [far]) is None  # nothing to add
    replica.prepare_primary(primary.settings, [far])
    cluster = PrivateCluster(primary.settings)
    auto = (cluster.datadir / "postgresql.auto.conf").read_text()
    assert f"listen_addresses = '127.0.0.1, {local}'" in auto
    with psycopg.connect(libpq_dsn(primary.url)) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == (f"127.0.0.1, {local}",)
        (hba,) = conn.execute("SHOW hba_file").fetchone()  # type: ignore[misc]
    assert replica.hba_line(far) in Path(hba).read_text()
    if local != "*":  # the server accepts connections there now
        port = cluster.load_state().port  # type: ignore[union-attr]
        socket.create_connection((local, port), timeout=5).close()
    replica.prepare_primary(primary.settings, [far])  # idempotent: no second line
    assert Path(hba).read_text().count(replica.hba_line(far)) == 1
