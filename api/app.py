"""Application factory with a lifespan that opens (and closes) the database pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text

from api import errors
from api.deps import ConnDep
from api.routes import ogc, pages, plans, tiles
from geogrid import __version__, store
from geogrid.plans import PlanJobs
from geogrid.settings import Settings
from tiles.service import TileService


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> FastAPI:
    """Build the geogrid web application.

    Parameters
    ----------
    settings
        Configuration; default: read from the environment now (not at import).
    database_url
        Use this database (tests pass theirs); default: :func:`geogrid.store.database_url`.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_url or store.database_url(settings)
        app.state.settings = settings
        app.state.engine = store.make_engine(url, pool_size=10, max_overflow=10)
        app.state.tiles = TileService(app.state.engine)
        app.state.plan_jobs = PlanJobs(app.state.engine)
        try:
            yield
        finally:
            app.state.plan_jobs.shutdown(wait=False)
            app.state.engine.dispose()

    # /docs is served by api.routes.pages from local assets (the default loads a CDN).
    app = FastAPI(
        title="geogrid", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    errors.install(app)
    for module in (plans, ogc, tiles, pages):
        app.include_router(module.router)

    @app.get("/health", tags=["meta"])
    def health(conn: ConnDep) -> dict[str, str]:
        """Liveness and database reachability."""
        postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
        return {"status": "ok", "version": __version__, "postgis": str(postgis)}

    return app
