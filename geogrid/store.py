"""The PostGIS store: which database, engines, and schema migrations.

:func:`database_url` decides where data lives: ``GEOGRID_DATABASE_URL`` when set (nothing
is started), else the private cluster in ``GEOGRID_HOME`` (started on demand).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg.rows import dict_row
from sqlalchemy import Connection, Engine, TextClause, create_engine, event, text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from geogrid.cluster import PrivateCluster
from geogrid.errors import ConfigurationError
from geogrid.settings import Settings


def mask_url(url: str) -> str:
    """The URL with its password hidden, for messages and logs.

    >>> mask_url("postgresql+psycopg://u:secret@h:5432/db")
    'postgresql+psycopg://u:***@h:5432/db'
    """
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver whatever scheme the user wrote.

    >>> normalise_url("postgres://u:p@h/db")
    'postgresql+psycopg://u:p@h/db'
    """
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url(settings: Settings, *, start: bool = True) -> str:
    """The SQLAlchemy URL geogrid should use.

    Parameters
    ----------
    settings
        Settings; ``settings.database_url`` wins when set.
    start
        Start the private cluster if it is not running (the embedded default).
    """
    if settings.database_url:
        url = normalise_url(settings.database_url)
        try:
            make_url(url)
        except ArgumentError:
            raise ConfigurationError(
                f"GEOGRID_DATABASE_URL is not a database URL: {mask_url(url)!r} "
                "(expected postgresql://user:password@host:port/dbname)"
            ) from None
        return url
    cluster = PrivateCluster(settings)
    if start:
        cluster.start()
    return cluster.url()


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` (psycopg 3), with pool pre-ping."""
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(normalise_url(url), **kwargs)


#: Session settings of the web server's connections. psycopg prepares a statement on its
#: fifth execution and PostgreSQL then switches to a *generic* plan after five more; for
#: tile and bbox queries, whose best plan depends on the bound envelope, the generic plan
#: of the street-zoom cases tile is ~20x slower (3 → 85 ms, measured on the county bench).
#: Custom plans cost ~0.3 ms of planning each. JIT compilation is off: a request's queries
#: run for milliseconds, and on a 1M-case bbox page JIT spent 105 ms compiling a 35 ms scan.
SERVING_OPTIONS = "-c plan_cache_mode=force_custom_plan -c jit=off -c application_name=geogrid-api"


def make_serving_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 10, role: str | None = None
) -> Engine:
    """The web server's engine: a pool of connections that always plan per request.

    ``role``: the PostgreSQL role every connection runs as (``SET ROLE`` at connection
    start; see :mod:`geogrid.access.rls`): one that owns no table, so row-level security
    and the column grants of migration 0007 apply to everything the web server does.
    """
    options = SERVING_OPTIONS
    if role:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
            raise ConfigurationError(f"GEOGRID_WEB_ROLE is not a plain role name: {role!r}")
        options += f" -c role={role}"
    engine = make_engine(
        url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False,
        connect_args={"options": options},
    )  # fmt: skip
    ping_when_idle(engine)
    return engine


#: A pooled connection back in use within this many seconds is not pinged first.
PING_IDLE_S = 2.0


def ping_when_idle(engine: Engine, idle_s: float = PING_IDLE_S) -> None:
    """Ping a pooled connection before use only when it sat idle ``idle_s`` or longer.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round trip, and one
    more empty statement for the server, per request (on the cases bench, 6.5 % of the web
    server's samples waited on it). A connection used moments ago was alive moments ago;
    one that sat idle (a restarted server, a dropped link, an idle timeout) is pinged, and a
    dead one is replaced before the request sees it (``DisconnectionError``: the pool
    retries with a fresh connection). A server that dies between two close requests fails
    those in flight, as it would with any ping.
    """

    @event.listens_for(engine, "connect")
    def _connected(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(
        dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
    ) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < idle_s:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except psycopg.Error as exc:  # a ping fails only on a connection that is unusable
            raise DisconnectionError("the pooled connection is gone") from exc
        if not alive:
            raise DisconnectionError("the pooled connection is gone")


#: the SQL dialect whose bind style psycopg reads (``%(name)s``, ``%%`` for ``%``)
_PSYCOPG_DIALECT = psycopg_dialect.dialect()


def driver_sql(statement: TextClause) -> str:
    """``statement`` as psycopg runs it (compiled once, at import, by the caller)."""
    return str(statement.compile(dialect=_PSYCOPG_DIALECT))


def direct_rows(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run ``sql`` (from :func:`driver_sql`) on ``conn``'s psycopg connection, in its
    transaction: the rows as dicts.

    For the few statements every request of a hot path runs: SQLAlchemy's execution and
    result layers cost ~0.2 ms a statement of a wide row (its result metadata is built per
    execution), as much as the round trip. Errors are SQLAlchemy's, as ``conn.execute``
    raises them (a lost connection stays a 503, not a 500).
    """
    if not conn.in_transaction():
        conn.begin()  # SQLAlchemy must know of the transaction the driver opens
    raw = conn.connection.driver_connection
    try:
        with raw.cursor(row_factory=dict_row) as cur:  # type: ignore[union-attr]
            cur.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, dict(params), exc, psycopg.Error) from exc


def check_connection(url: str) -> str:
    """Connect once and return the server version; one clear error line otherwise."""
    dsn = make_url(normalise_url(url)).set(drivername="postgresql")
    try:
        with psycopg.connect(dsn.render_as_string(hide_password=False), connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        hint = ""
        if "password authentication failed" in reason:
            hint = "; check the user and password in the URL"
        elif "does not exist" in reason:
            hint = "; create the database first or fix its name in the URL"
        elif "Connection refused" in reason or "could not connect" in reason:
            hint = "; is the server running and listening on that host and port?"
        raise ConfigurationError(
            f"cannot connect to {mask_url(normalise_url(url))}: {reason}{hint}"
        ) from None


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at geogrid's packaged migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("geogrid") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Enable PostGIS and apply migrations up to ``revision``."""
    check_connection(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            if revision == "head":
                from geogrid.access.audit import ensure_partitions

                ensure_partitions(conn)  # the audit log's months ahead
    finally:
        engine.dispose()


def downgrade(url: str, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` for an empty schema)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database (``None`` when no migration ran)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest migration shipped with this geogrid."""
    return ScriptDirectory.from_config(alembic_config("postgresql://x/y")).get_current_head()


def postgis_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
        ).first()
        return None if row is None else str(row[0])


def migrations_path() -> Path:
    return Path(str(resources.files("geogrid") / "migrations"))
