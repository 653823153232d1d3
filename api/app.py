"""Application factory with a lifespan that opens (and closes) the database pool."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api import auth, errors, security
from api.deps import ConnDep
from api.routes import admin, cases_lane, ogc, pages, people, plans, tiles
from api.routes import archives as archive_routes
from api.routes import assessment as assessment_routes
from api.routes import auth as auth_routes
from api.routes import calendar as calendar_routes
from api.routes import cases as case_routes
from api.routes import dashboard as dashboard_routes
from api.routes import desk as desk_routes
from api.routes import field as field_routes
from api.routes import grid_teams as grid_team_routes
from api.routes import inspections as inspection_routes
from api.routes import metrics as metrics_routes
from api.routes import open311 as open311_routes
from api.routes import printing as printing_routes
from api.routes import units as unit_routes
from api.routes import visits as visit_routes
from geogrid import __version__, store
from geogrid.ogcapi.warm import install_transform_warmup
from geogrid.ops import replica_pool
from geogrid.plans import PlanJobs
from geogrid.settings import Settings
from tiles.service import TileService

log = logging.getLogger(__name__)

#: Pooled database connections kept open (as many again may overflow under load).
POOL_SIZE = 10
#: Connections warmed at start-up (see :meth:`tiles.service.TileService.warm`).
WARM_CONNECTIONS = 4


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
        app.state.engine = store.make_serving_engine(
            url, pool_size=POOL_SIZE, role=settings.web_role or None
        )
        # lasting pooled connections load the CGCS2000 transform when opened (OGC API)
        install_transform_warmup(app.state.engine)
        app.state.tiles = TileService(app.state.engine)
        try:
            await anyio.to_thread.run_sync(app.state.tiles.warm, WARM_CONNECTIONS)
        except DBAPIError as exc:  # an optimisation only: the database may come up (or be
            # migrated) later, and /health tells
            log.warning("connection warm-up skipped: %s", str(exc.orig or exc).splitlines()[0])
        app.state.plan_jobs = PlanJobs(app.state.engine)
        # GEOGRID_REPLICA_URLS: tiles, heat answers and OGC items read from replicas
        reads = replica_pool.for_app(app.state.engine, settings, pool_size=POOL_SIZE)
        app.state.reads = reads
        app.state.tiles.reads = app.state.metrics.replicas = reads
        try:
            yield
        finally:
            if reads is not None:
                reads.close()
            app.state.plan_jobs.shutdown(wait=False)
            app.state.engine.dispose()

    # /docs is served by api.routes.pages from local assets (the default loads a CDN).
    app = FastAPI(
        title="geogrid", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    errors.install(app)
    security.install(app, settings)
    auth.install(app)
    pages.install(app)  # page errors as panels in the page's language
    metrics_routes.install(app, settings)  # /metrics, request ids, access log (outermost)
    # the case workflow first: requests are matched route by route in this order, and its
    # routes are the busiest (no other router has a path under /api/cases)
    app.include_router(case_routes.router)  # /api/cases: the case workflow
    for module in (auth_routes, admin, plans, people, ogc, tiles, pages, calendar_routes):
        app.include_router(module.router)
    app.include_router(printing_routes.router)  # /print: posters and contact cards
    app.include_router(open311_routes.router)  # /open311/v2: Open311 GeoReport v2
    app.include_router(desk_routes.router)  # /desk, /complain, /complain/status
    app.include_router(field_routes.router)  # /field/ and /api/field: the field app
    app.include_router(unit_routes.router)  # /api/key-units: key units and filings
    app.include_router(inspection_routes.router)  # /api/inspections: fire inspections
    app.include_router(assessment_routes.router)  # /api/assessment: 量化考核
    app.include_router(visit_routes.router)  # /api/visits: visit logs, plan, coverage
    app.include_router(visit_routes.followups_router)  # /api/followups: special follow-ups
    app.include_router(grid_team_routes.router)  # /api/grid-teams: 五个一 grid teams
    app.include_router(archive_routes.router)  # /api/archives: 一户一档·一组一本·一格一盒
    app.include_router(dashboard_routes.router)  # /leader/dashboard, /api/dashboard

    @app.get("/health", tags=["meta"], dependencies=[Depends(auth.allow("public.read"))])
    def health(conn: ConnDep) -> dict[str, str]:
        """Liveness and database reachability."""
        postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
        return {"status": "ok", "version": __version__, "postgis": str(postgis)}

    auth.check_routes(app)
    cases_lane.install(app)  # bearer-token case transitions and reads in one thread
    auth.document_access(app)
    open311_routes.document(app)  # GeoReport error arrays (after the other hooks)
    return app


def create_app_from_env() -> FastAPI:
    """The app with settings from the environment (``geogrid serve --workers N``)."""
    return create_app(Settings())
