"""Shared set-up of the OGC API tests: the sample town with overlays and an active plan,
served in-process (TestClient) and on loopback (uvicorn, for GDAL and ogctests), with a
log of the requests the live server saw."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api import create_app
from geogrid import store
from geogrid.overlays import assign_grids, import_overlay
from geogrid.settings import Settings

#: both test servers sign tokens alike, so one sign-in works on either
SECRET = "ogc-tests-" + "k" * 40


@dataclass
class Served:
    client: TestClient
    engine: Engine
    url: str
    town_bbox: tuple[float, float, float, float]

    def count(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar_one())

    def column(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(text(sql), params)]


def get_json(served: Served, path: str, status: int = 200, **params: Any) -> Any:
    """GET ``path`` with ``params``; the JSON body, once the status is ``status``."""
    r = served.client.get(path, params=params)
    assert r.status_code == status, (path, params, r.status_code, r.text[:500])
    return r.json()


def follow(served: Served, href: str) -> dict[str, Any]:
    """Follow a link of a page (absolute URL) with the served client."""
    parts = urlsplit(href)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return get_json(served, parts.path, **params)  # type: ignore[no-any-return]


def make_active_plan(conn: Connection) -> None:
    """An active plan: two level-3 grids per village (its polygon split at the centroid)."""
    town = conn.execute(text("SELECT code FROM admin_areas WHERE level = 'town'")).scalar_one()
    plan = conn.execute(
        text("INSERT INTO plans (town_code, name, status) VALUES (:t, 'p', 'active') RETURNING id"),
        {"t": town},
    ).scalar_one()
    conn.execute(
        text(
            """
            INSERT INTO grids (plan_id, code, level, village_code, geom, households, population)
            SELECT :p, v.code || lpad(h.n::text, 3, '0'), 3, v.code,
                   ST_Multi(ST_CollectionExtract(ST_Intersection(v.geom, CASE h.n
                       WHEN 1 THEN ST_MakeEnvelope(-180, -90, ST_X(ST_Centroid(v.geom)), 90, 4326)
                       ELSE ST_MakeEnvelope(ST_X(ST_Centroid(v.geom)), -90, 180, 90, 4326) END),
                       3)), 100 * h.n, 300 * h.n
            FROM admin_areas v CROSS JOIN (VALUES (1), (2)) h(n)
            WHERE v.level = 'village'
            """
        ),
        {"p": plan},
    )


@contextmanager
def served_town(
    pg: Any, template: str, sample_town: Any, tmp: Path, account_maker: Any, *, public: bool
) -> Iterator[Served]:
    """A fresh copy of the sample town with key units, inspection points, cases and an
    active plan, and a TestClient signed in as a county-wide town leader. ``public``:
    every publishable layer is made public (anonymous clients such as ogctests)."""
    name = pg.create_database(template=template)
    url = pg.url(name)
    engine = store.make_engine(url)
    try:
        for kind, path in (
            ("key_units", sample_town.key_units),
            ("inspection_points", sample_town.inspection_points),
            ("cases", sample_town.cases),
        ):
            import_overlay(engine, path, kind, rejects_path=tmp / f"{kind}.rejects.csv")  # type: ignore[arg-type]
        with engine.begin() as conn:
            make_active_plan(conn)
            assign_grids(conn)
            if public:
                from geogrid.access import embed

                for layer in embed.PUBLISHABLE:
                    embed.set_public(conn, layer=layer, public=True, by=None)
            row = conn.execute(
                text(
                    "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                    "(SELECT ST_Extent(geom) e FROM admin_areas WHERE level = 'town') s"
                )
            ).one()
        app = create_app(Settings(home=tmp / "home", secret_key=SECRET), database_url=url)
        with TestClient(app) as client:
            # a town leader with the whole county in scope sees every collection
            client.headers.update(account_maker(url, "town_leader", "all").headers(client))
            yield Served(client, engine, url, tuple(float(v) for v in row))  # type: ignore[arg-type]
    finally:
        engine.dispose()
        pg.drop_database(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """A server on loopback: its ``/ogc`` URL and every request target it received."""

    url: str
    seen: list[str] = field(default_factory=list)


@contextmanager
def live_server(database_url: str, home: Path) -> Iterator[Live]:
    """The real app served by uvicorn on a free loopback port (stopped afterwards)."""
    import uvicorn

    app = create_app(Settings(home=home, secret_key=SECRET), database_url=database_url)
    port = free_port()
    live = Live(f"http://127.0.0.1:{port}/ogc")

    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode()
            live.seen.append(scope["path"] + (f"?{query}" if query else ""))
        await app(scope, receive, send)

    server = uvicorn.Server(
        uvicorn.Config(recorded, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)
