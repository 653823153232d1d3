"""The serving engine pings a pooled connection only after it sat idle (geogrid.store)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from geogrid import store


def _engine(db_url: str, idle_s: float):  # type: ignore[no-untyped-def]
    """A one-connection engine with the idle ping of a test-sized ``idle_s``."""
    engine = store.make_engine(db_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    store.ping_when_idle(engine, idle_s=idle_s)
    return engine


def _backend(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(db_url: str, pid: int) -> None:
    killer = store.make_engine(db_url)
    try:
        with killer.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        killer.dispose()
    time.sleep(0.2)


def test_a_connection_back_in_use_at_once_is_not_pinged(db_url: str) -> None:
    engine = _engine(db_url, idle_s=60)
    pings: list[int] = []
    original = engine.dialect.do_ping

    def counting(dbapi_conn):  # type: ignore[no-untyped-def]
        pings.append(1)
        return original(dbapi_conn)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    try:
        pid = _backend(engine)
        for _ in range(5):
            assert _backend(engine) == pid  # the same pooled connection
        assert pings == []  # fresh and then in use: never pinged
    finally:
        engine.dispose()


def test_an_idle_dead_connection_is_replaced_before_use(db_url: str) -> None:
    engine = _engine(db_url, idle_s=0.3)
    try:
        pid = _backend(engine)
        _kill(db_url, pid)
        time.sleep(0.4)  # idle longer than idle_s: pinged, found dead, replaced
        assert _backend(engine) != pid
    finally:
        engine.dispose()


def test_a_dead_connection_used_at_once_fails_without_the_ping(db_url: str) -> None:
    """The rule can fail: within idle_s nothing checks the connection, so a server-side
    kill reaches the request (which the API answers 503)."""
    engine = _engine(db_url, idle_s=60)
    try:
        pid = _backend(engine)
        _kill(db_url, pid)
        with pytest.raises(OperationalError):  # the driver's error for the dead connection
            _backend(engine)
        assert _backend(engine) != pid  # the pool dropped it: the next request works
    finally:
        engine.dispose()


def test_the_serving_engine_pings_only_when_idle(db_url: str) -> None:
    engine = store.make_serving_engine(db_url, pool_size=1, max_overflow=0)
    try:
        assert engine.pool._pre_ping is False  # type: ignore[attr-defined]
        pid = _backend(engine)
        _kill(db_url, pid)
        time.sleep(store.PING_IDLE_S + 0.2)
        assert _backend(engine) != pid  # idle, pinged, replaced: no error
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- direct_rows


def test_direct_rows_run_in_the_connections_transaction(db_url: str) -> None:
    """A statement run on the driver first still commits with ``conn.commit()``."""
    engine = store.make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS direct_probe (v int)"))
            conn.execute(text("TRUNCATE direct_probe"))
        with engine.connect() as conn:
            sql = store.driver_sql(text("INSERT INTO direct_probe VALUES (:v) RETURNING v * 2"))
            assert store.direct_rows(conn, sql, {"v": 21}) == [{"?column?": 42}]
            conn.commit()  # a no-op had SQLAlchemy not known of the driver's transaction
        with engine.connect() as conn:
            assert conn.execute(text("SELECT v FROM direct_probe")).scalars().all() == [21]
            sql = store.driver_sql(text("SELECT v FROM direct_probe WHERE v::text LIKE :p || '%'"))
            assert store.direct_rows(conn, sql, {"p": "2"}) == [{"v": 21}]  # % escaped
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS direct_probe"))
        engine.dispose()


def test_direct_rows_raise_sqlalchemy_errors(db_url: str) -> None:
    """A driver error comes as SQLAlchemy's (the API maps those: a lost database is a 503,
    never a 500 with the driver's text)."""
    from sqlalchemy.exc import DataError

    engine = store.make_engine(db_url)
    try:
        with engine.connect() as conn, pytest.raises(DataError):
            store.direct_rows(conn, store.driver_sql(text("SELECT 1 / :z")), {"z": 0})
    finally:
        engine.dispose()
