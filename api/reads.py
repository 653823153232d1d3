"""Plain reads sent to read replicas (public pages, dashboard data) with bounded staleness.

See :mod:`geogrid.ops.replica_pool` (``ReadRouter.run_bounded``). :func:`read` runs a
route's read on a replica when ``GEOGRID_REPLICA_URLS`` is set and one is fresh enough,
else on the request's primary connection; the bound it reports is sent as
``X-Geogrid-Staleness`` by the outermost middleware (:mod:`api.routes.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from fastapi import Request
from sqlalchemy import Connection

T = TypeVar("T")

#: Response header: the answer reflects the primary as of at most this many seconds ago.
STALENESS_HEADER: Final = "X-Geogrid-Staleness"
#: Where :func:`read` leaves the bound for the middleware (``request.state``).
STATE_KEY: Final = "read_staleness"


def read(request: Request, conn: Connection, fn: Callable[[Connection], T]) -> T:
    """``fn(c)`` on a replica within the lag bound, else on ``conn`` (the primary).

    Parameters
    ----------
    request
        The request (its app's read router; where the staleness bound is left).
    conn
        The request's primary connection.
    fn
        A read that writes nothing.
    """
    reads = getattr(request.app.state, "reads", None)
    if reads is None:
        return fn(conn)
    result, bound = reads.run_bounded(fn, primary=conn)
    request.state.read_staleness = max(bound, getattr(request.state, STATE_KEY, 0.0))
    return result


def staleness_header(state: dict[str, object]) -> tuple[bytes, bytes] | None:
    """The ``X-Geogrid-Staleness`` header for a request's ``scope["state"]`` (or ``None``)."""
    bound = state.get(STATE_KEY)
    if not isinstance(bound, float):
        return None
    return STALENESS_HEADER.lower().encode(), f"{bound:g}".encode()
