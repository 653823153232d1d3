"""Load the EPSG:4490 (CGCS2000) transform when the pool opens a lasting connection.

A PostgreSQL backend pays its first ``ST_Transform`` between EPSG:4326 and EPSG:4490
once: PostGIS opens PROJ's database and searches the candidate operations of the pair
(~0.2–0.3 s on the bench machine; every later transform of the pair costs microseconds,
and another pair, such as a Gauss-Krüger zone, ~0.1 s more). CGCS2000 is the CRS Chinese
GIS clients ask for first, so the pool's lasting connections load it when they are
opened: at the server's start-up warm-up (:meth:`tiles.service.TileService.warm` opens
them) or when a request opens one, never on an *overflow* connection (closed again after
its request: it would pay the load for every burst of traffic).
"""

from __future__ import annotations

import logging
from typing import Any, Final

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool

__all__ = ["WARM_SQL", "install_transform_warmup"]

log = logging.getLogger(__name__)

#: One point of the served area transformed to CGCS2000 (the result is not used).
WARM_SQL: Final = (
    "SELECT ST_Transform(ST_SetSRID(ST_MakePoint(114.0, 30.0), 4326), 4490) IS NOT NULL"
)


def _lasting(pool: Any) -> bool:
    """Whether the connection being opened stays in the pool (not an overflow one): a
    QueuePool counts a new connection in ``overflow()`` before it connects."""
    return not isinstance(pool, QueuePool) or pool.overflow() <= 0


def install_transform_warmup(engine: Engine) -> None:
    """Run :data:`WARM_SQL` on every lasting connection ``engine``'s pool opens.

    Parameters
    ----------
    engine
        The web server's engine (:func:`geogrid.store.make_serving_engine`).
    """
    pool = engine.pool

    def warm(dbapi_connection: Any, _record: Any) -> None:
        if not _lasting(pool):
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(WARM_SQL)
            cursor.fetchall()
        except psycopg.Error as exc:  # an optimisation only (PostGIS may come later)
            log.warning("transform warm-up skipped: %s", str(exc).splitlines()[0])
        finally:
            cursor.close()
            dbapi_connection.rollback()  # leave the connection as it came: no transaction

    event.listen(engine, "connect", warm)
