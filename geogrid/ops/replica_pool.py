"""Read routing: read-only traffic to streaming replicas, everything else to the primary.

``GEOGRID_REPLICA_URLS`` names hot standbys (PostgreSQL streaming replication; ``geogrid db
replica add`` makes them for the private cluster). The web server then holds a
:class:`ReadRouter`: the primary's engine, one engine per replica, and a checker thread
that every ``interval`` seconds asks each replica whether it is up, whether it is a
standby (``pg_is_in_recovery()``) and how far behind it replays (seconds since the last
replayed commit while received WAL waits to be replayed; bytes behind the primary's
current WAL position). A replica that is down, is not a standby, or lags more than
``GEOGRID_REPLICA_MAX_LAG_S`` is out of rotation until a later check finds it healthy.

What goes to replicas: tiles (also under OGC API – Tiles), the heat answers (``/api/heat``,
grid statistics), OGC API items, the public pages and their data (``/public...``, the
published assessment figures) and the leader's dashboard data (``/api/dashboard/...``),
i.e. reads that never write and need no read-your-writes. All writes, sign-in and
sessions, personal data (its reads are audited: writes), plans and everything else keep the
primary engine (``app.state.engine``).

**Bounded staleness** (public pages, dashboard data: plain reads with no layer version).
:meth:`ReadRouter.run_bounded` sends such a read to a replica in rotation only when the
replica's replay lag, measured as the first statement of the read's own snapshot, is at
most ``GEOGRID_REPLICA_MAX_LAG_S`` (else the primary answers); the response states the
bound in ``X-Geogrid-Staleness`` (seconds; 0 when the primary answered). These answers
carry no ETag and are not cached by the server.

**Consistency under lag** (tiles, heat answers, OGC items). Their caches and ETags are
keyed by layer versions (``layer_versions``, bumped by triggers on every change), and those
versions are read from the **primary** (the tile service's version poller, a few rows at
most every 0.25 s). A read sent to a replica runs in one ``REPEATABLE READ`` read-only
transaction that first reads the replica's own ``layer_versions`` rows for the layers
needed: only when the replica has reached the primary's versions is the answer made there
(and keyed by the versions of that same snapshot); otherwise it is made on the primary. So
a replica never answers under a new version with old data, and an answer is never older
than what the primary served a moment (the poll interval) before: no stated staleness
beyond the primary's own. The rotation's lag bound only decides where to try first.

Failures: a read failing on a replica with a connection error (the replica stopped or
restarted mid-request) or a recovery conflict is retried once on the primary and the
replica is taken out of rotation until its next healthy check, so no read fails because of
a replica. With no healthy replica every read goes to the primary.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from geogrid import store
from geogrid.errors import ConfigurationError
from geogrid.ops.replica import STANDBY_LAG_SQL
from geogrid.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two health checks of every replica.
CHECK_INTERVAL: Final = 1.0
_LSN_DIFF = text(
    "SELECT greatest(pg_wal_lsn_diff(CAST(:p AS pg_lsn), CAST(:r AS pg_lsn)), 0)::bigint"
)
_VERSIONS = text("SELECT layer, version FROM layer_versions_now WHERE layer = ANY(:names)")
_LAG = text(STANDBY_LAG_SQL)


def run_on(engine: Engine, fn: Callable[[Connection], T], *, snapshot: bool = True) -> T:
    """``fn(conn)`` in one transaction of ``engine``; ``snapshot``: ``REPEATABLE READ``,
    read-only (what a tile is made in: its versions and its rows from one snapshot)."""
    with engine.connect() as conn:
        if snapshot:
            conn = conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        with conn.begin():
            return fn(conn)


def parse_urls(urls: list[str]) -> list[str]:
    """Check and normalise ``GEOGRID_REPLICA_URLS`` (PostgreSQL URLs with a host).

    >>> parse_urls(["postgres://u:p@h:5433/db"])
    ['postgresql+psycopg://u:p@h:5433/db']
    """
    out = []
    for raw in urls:
        url = store.normalise_url(raw.strip())
        try:
            parsed = make_url(url)
        except ArgumentError:
            parsed = None
        if parsed is None or parsed.drivername != "postgresql+psycopg" or not parsed.host:
            raise ConfigurationError(
                f"GEOGRID_REPLICA_URLS: {store.mask_url(raw)!r} is not a PostgreSQL URL "
                "(expected postgresql://user:password@host:port/dbname)"
            )
        if not parsed.database:
            raise ConfigurationError(
                f"GEOGRID_REPLICA_URLS: {store.mask_url(raw)!r} names no database"
            )
        out.append(url)
    return out


@dataclass
class ReplicaState:
    """What the last check found about one replica."""

    name: str
    engine: Engine
    checker: Engine
    up: bool = False
    standby: bool = False
    lag_seconds: float | None = None
    lag_bytes: int | None = None
    in_rotation: bool = False
    reason: str = "not checked yet"
    reads: int = 0
    checked_at: float = 0.0


class ReadRouter:
    """The primary engine plus replica engines in rotation, with a health checker.

    Parameters
    ----------
    primary
        The primary's (serving) engine: writes, fallbacks.
    urls
        Replica URLs (see :func:`parse_urls`).
    make_engine
        Builds a replica's serving engine from its URL (same role and pool settings as the
        primary's).
    max_lag_s
        Replicas replaying further behind than this leave the rotation.
    interval
        Seconds between health checks (0: no thread; call :meth:`check` yourself).
    """

    def __init__(
        self,
        primary: Engine,
        urls: list[str],
        *,
        make_engine: Callable[[str], Engine],
        max_lag_s: float = 5.0,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self.primary = primary
        self.max_lag_s = max_lag_s
        self.replicas: list[ReplicaState] = []
        for url in parse_urls(urls):
            u = make_url(url)
            name = f"{u.host}:{u.port or 5432}/{u.database}"
            checker = store.make_engine(
                url, poolclass=NullPool, connect_args={"connect_timeout": 3}
            )
            self.replicas.append(ReplicaState(name, make_engine(url), checker))
        self.primary_reads = 0
        self.fallbacks = 0  #: reads retried on the primary after a replica failed
        self.behind = 0  #: reads sent to the primary: the replica had not reached the versions
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.replicas:
            self.check()
            if interval > 0:
                self._thread = threading.Thread(
                    target=self._loop, args=(interval,), name="geogrid-replica-check", daemon=True
                )
                self._thread.start()

    # -- health ----------------------------------------------------------------------

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception:  # the checker must outlive any one failure
                log.exception("replica check failed")

    def _primary_lsn(self) -> str | None:
        try:
            with self.primary.connect() as conn:
                return str(conn.execute(text("SELECT pg_current_wal_lsn()")).scalar())
        except DBAPIError:
            return None

    def check(self) -> None:
        """Check every replica now and update the rotation."""
        primary_lsn = self._primary_lsn()
        for rep in self.replicas:
            try:
                with rep.checker.connect() as conn:
                    standby, seconds, replay = conn.execute(text(STANDBY_LAG_SQL)).one()
                    lag_bytes = None
                    if primary_lsn is not None and replay is not None:
                        lag_bytes = conn.execute(
                            _LSN_DIFF, {"p": primary_lsn, "r": str(replay)}
                        ).scalar()
            except DBAPIError as exc:
                lines = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
                self._set(rep, up=False, standby=False, seconds=None, lag_bytes=None,
                          reason=f"down: {lines[0] if lines else 'no answer'}")  # fmt: skip
                continue
            seconds = None if seconds is None else float(seconds)
            if not standby:
                reason = "not a standby (pg_is_in_recovery() is false)"
            elif seconds is not None and seconds > self.max_lag_s:
                reason = f"lags {seconds:.1f} s (more than {self.max_lag_s:g} s)"
            else:
                reason = ""
            lag_b = None if lag_bytes is None else int(lag_bytes)
            self._set(rep, up=True, standby=bool(standby), seconds=seconds, lag_bytes=lag_b,
                      reason=reason)  # fmt: skip

    def _set(
        self,
        rep: ReplicaState,
        *,
        up: bool,
        standby: bool,
        seconds: float | None,
        lag_bytes: int | None,
        reason: str,
    ) -> None:
        with self._lock:
            was = rep.in_rotation
            rep.up, rep.standby, rep.lag_seconds, rep.lag_bytes = up, standby, seconds, lag_bytes
            rep.reason = reason or "healthy"
            rep.in_rotation = not reason
            rep.checked_at = time.monotonic()
        if was != rep.in_rotation:
            log.warning("replica %s %s rotation: %s", rep.name,
                        "back in" if rep.in_rotation else "out of", rep.reason)  # fmt: skip

    def healthy(self) -> list[ReplicaState]:
        """The replicas in rotation now."""
        return [r for r in self.replicas if r.in_rotation]

    def pick(self) -> ReplicaState | None:
        """The next replica in rotation (round robin), or ``None``."""
        live = self.healthy()
        if not live:
            return None
        return live[next(self._turn) % len(live)]

    def _out(self, rep: ReplicaState, why: str) -> None:
        with self._lock:
            rep.in_rotation = False
            rep.reason = why
        log.warning("replica %s out of rotation: %s", rep.name, why)

    # -- reads -----------------------------------------------------------------------

    def run(
        self,
        fn: Callable[[Connection], T],
        *,
        needs: Mapping[str, int] | None = None,
        snapshot: bool = True,
        primary: Connection | None = None,
    ) -> T:
        """``fn(conn)`` on a replica in rotation that has reached ``needs``, else the primary.

        Parameters
        ----------
        fn
            A read: it must not write (a replica refuses writes).
        needs
            Layer versions (read from the primary) the replica must have replayed.
        snapshot
            On the primary too, run ``fn`` in a ``REPEATABLE READ`` read-only transaction
            (on a replica it always is); otherwise in the connection's default one.
        primary
            A primary connection the request holds already, used instead of a new one.
        """
        ready = (lambda c: self._reached(c, needs)) if needs else None
        done, result = self._on_replica(fn, ready)
        if done:
            return result  # type: ignore[return-value]
        return self._on_primary(fn, snapshot=snapshot, primary=primary)

    def run_bounded(
        self, fn: Callable[[Connection], T], *, primary: Connection | None = None
    ) -> tuple[T, float]:
        """A plain read (no layer version to wait for) with bounded staleness.

        ``fn(conn)`` runs on a replica in rotation whose replay lag, measured in the read's
        own snapshot (its first statement), is at most ``max_lag_s``; else on the primary
        (``primary`` when given, in its transaction).

        Returns
        -------
        tuple
            The result and the staleness bound in seconds: the answer reflects the
            primary as of at most that long ago (``max_lag_s`` from a replica, 0 from the
            primary). The web server states it in ``X-Geogrid-Staleness``.
        """
        done, result = self._on_replica(fn, self._fresh)
        if done:
            return result, self.max_lag_s  # type: ignore[return-value]
        return self._on_primary(fn, snapshot=False, primary=primary), 0.0

    def _on_replica(
        self, fn: Callable[[Connection], T], ready: Callable[[Connection], bool] | None
    ) -> tuple[bool, T | None]:
        """``(True, fn(conn))`` on a replica in rotation for which ``ready(conn)`` holds
        (in the same snapshot); ``(False, None)`` when none could answer."""
        rep = self.pick()
        if rep is None:
            return False, None
        try:
            with rep.engine.connect() as conn:
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                with conn.begin():
                    if ready is None or ready(conn):
                        result = fn(conn)
                        rep.reads += 1
                        return True, result
            self.behind += 1
        except OperationalError as exc:  # down, restarting, or a recovery conflict
            self.fallbacks += 1
            first = str(exc.orig or exc).strip().splitlines()
            self._out(rep, f"read failed: {first[0] if first else 'connection error'}")
        return False, None

    def _on_primary(
        self, fn: Callable[[Connection], T], *, snapshot: bool, primary: Connection | None
    ) -> T:
        self.primary_reads += 1
        if primary is not None:
            return fn(primary)
        return run_on(self.primary, fn, snapshot=snapshot)

    @staticmethod
    def _reached(conn: Connection, needs: Mapping[str, int]) -> bool:
        rows = {str(k): int(v) for k, v in conn.execute(_VERSIONS, {"names": list(needs)})}
        return all(rows.get(name, 0) >= v for name, v in needs.items())

    def _fresh(self, conn: Connection) -> bool:
        """Is this standby's replay lag (in this snapshot) within ``max_lag_s``?"""
        standby, seconds, _ = conn.execute(_LAG).one()
        return bool(standby) and (seconds is None or float(seconds) <= self.max_lag_s)

    # -- reporting and shutdown ---------------------------------------------------------

    def gauges(self) -> list[tuple[str, bool, float | None, int | None, int]]:
        """Per replica: name, in rotation, lag seconds, lag bytes, reads served here."""
        return [(r.name, r.in_rotation, r.lag_seconds, r.lag_bytes, r.reads) for r in self.replicas]

    def close(self) -> None:
        """Stop the checker and close every replica connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for rep in self.replicas:
            rep.engine.dispose()
            rep.checker.dispose()


def for_app(primary: Engine, settings: Settings, *, pool_size: int) -> ReadRouter | None:
    """The web server's router from ``GEOGRID_REPLICA_URLS`` (``None`` when unset)."""
    if not settings.replica_urls:
        return None
    from geogrid.ogcapi.warm import install_transform_warmup

    def make(url: str) -> Engine:
        engine = store.make_serving_engine(url, pool_size=pool_size, role=settings.web_role)
        install_transform_warmup(engine)
        return engine

    return ReadRouter(
        primary, settings.replica_urls, make_engine=make, max_lag_s=settings.replica_max_lag_s
    )
