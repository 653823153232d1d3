"""Prometheus metrics of the web server (``prometheus_client``), one or several processes.

Series (all prefixed ``geogrid_``):

``http_request_duration_seconds{route, method, status}``
    A histogram of the time to answer, per route *template* (``/api/plans/{plan_id}``;
    ``unmatched`` when no route matched), method (``other`` for non-standard ones) and
    status class (``2xx``...); its ``_count`` series is the request count. No raw path,
    query, id or personal value is ever a label. (One histogram and no separate counter:
    one update per request, not two.)
``db_pool_size``, ``db_pool_max_overflow``, ``db_pool_checked_out``
    The SQLAlchemy pool of every live server process, summed (checked out: connections in
    use now; size + max overflow: how many a process may open).
``tile_cache_requests_total{result}``
    Tile cache lookups, ``hit`` or ``miss`` (hit rate = hit / (hit + miss)).
``plan_jobs{status}``
    Background plan jobs per status, read from the database at scrape time (the queue:
    ``queued`` and ``running``).
``replica_lag_seconds{replica}``, ``replica_lag_bytes{replica}``, ``replica_in_rotation{replica}``
    With ``GEOGRID_REPLICA_URLS``: each replica's replay lag (seconds, and bytes behind the
    primary's WAL) and whether it serves reads (1) or is out of rotation (0), as its last
    health check found, and ``replica_reads_total{replica}`` it answered
    (:mod:`geogrid.ops.replica_pool`; the scraped process's view).

Several workers (``geogrid serve --workers N``): ``PROMETHEUS_MULTIPROC_DIR`` (a folder
under ``GEOGRID_HOME``, emptied at start by :func:`prepare_multiprocess_dir`) is set before
any worker starts; each process then writes its values to files there and a scrape, which
any worker may answer, sums them. Gauges of processes that died are dropped at scrape time.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, event

from geogrid.ops.jobs_store import pid_alive

__all__ = [
    "CONTENT_TYPE",
    "ENV",
    "Metrics",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
]

#: The environment variable prometheus_client reads (before its first import).
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets (seconds): tiles and reads in milliseconds, plan pages in seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}
_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def multiprocess_dir(home: Path) -> Path:
    """Where the server processes under ``home`` (``GEOGRID_HOME``) keep their metrics."""
    return home / "run" / "metrics"


def prepare_multiprocess_dir(home: Path) -> Path:
    """Empty (create) :func:`multiprocess_dir` and name it in the environment, so that the
    worker processes started next (which inherit it) write their metrics there.

    Call before any worker starts: values left by an earlier run would be counted again.
    """
    path = multiprocess_dir(home)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    os.environ[ENV] = str(path)
    return path


def _multiprocess_path() -> Path | None:
    """The folder when this process writes multiprocess values (the variable was set
    before prometheus_client was first imported), else ``None``."""
    path = os.environ.get(ENV)
    if not path or values.ValueClass is values.MutexValue:
        return None
    return Path(path)


class _Families:
    """A collector yielding what a function returns (for one exposition)."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self.produce = produce

    def collect(self) -> Iterable[Metric]:
        return self.produce()


class Metrics:
    """The server's metrics: cheap to update on every request, exposed by :meth:`render`.

    One per app. In multiprocess mode the values live in the shared folder; otherwise in
    this object's own registry (so several apps in one process, as in tests, never mix).
    """

    def __init__(self) -> None:
        self.path = _multiprocess_path()
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.path else self.registry
        live: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.path else {}
        self.latency = Histogram(
            "geogrid_http_request_duration_seconds", "Time to answer a request (seconds), "
            "by route template, method and status class.", ["route", "method", "status"],
            buckets=BUCKETS, registry=reg,
        )  # fmt: skip
        self.pool_size = Gauge(
            "geogrid_db_pool_size", "Pooled database connections kept open (all processes).",
            registry=reg, **live,
        )  # fmt: skip
        self.pool_overflow = Gauge(
            "geogrid_db_pool_max_overflow", "Connections the pools may open beyond their size "
            "under load (all processes).", registry=reg, **live,
        )  # fmt: skip
        self.pool_out = Gauge(
            "geogrid_db_pool_checked_out", "Database connections in use now (all processes).",
            registry=reg, **live,
        )  # fmt: skip
        self.tile_cache = Counter(
            "geogrid_tile_cache_requests", "Tile cache lookups by result (hit or miss).",
            ["result"], registry=reg,
        )  # fmt: skip
        self._hit = self.tile_cache.labels("hit")
        self._miss = self.tile_cache.labels("miss")
        self._seen_tiles = (0, 0)
        self._children: dict[tuple[str, str, int], Any] = {}
        #: the read router (``geogrid.ops.replica_pool.ReadRouter``), set by the app
        self.replicas: Any = None

    # -- updates (every request: keep them cheap) -------------------------------------

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.latency.labels(
                route,
                method if method in _METHODS else "other",
                _STATUS_CLASS.get(status // 100, "other"),
            )
        child.observe(seconds)

    def observe_tile_cache(self, hits: int, misses: int) -> None:
        """Carry the tile cache's own hit and miss counters (since the last call) over."""
        seen_hits, seen_misses = self._seen_tiles
        if hits != seen_hits or misses != seen_misses:
            self._seen_tiles = (hits, misses)
            if hits > seen_hits:
                self._hit.inc(hits - seen_hits)
            if misses > seen_misses:
                self._miss.inc(misses - seen_misses)

    def instrument_engine(self, engine: Engine) -> None:
        """Follow ``engine``'s pool: its size, and connections checked out and in."""
        pool: Any = engine.pool
        size = getattr(pool, "size", None)
        self.pool_size.inc(size() if callable(size) else 0)
        self.pool_overflow.inc(max(0, int(getattr(pool, "_max_overflow", 0))))
        out = self.pool_out
        event.listen(engine, "checkout", lambda *_: out.inc())
        event.listen(engine, "checkin", lambda *_: out.dec())

    # -- exposition -----------------------------------------------------------------

    def render(self, plan_jobs: Mapping[str, int] | None = None) -> bytes:
        """The text exposition of every process's metrics, plus ``plan_jobs`` counts."""
        registry = CollectorRegistry(auto_describe=False)
        if self.path is not None:
            self._drop_dead_processes()
            multiprocess.MultiProcessCollector(registry, str(self.path))
        else:
            registry.register(_Families(self.registry.collect))
        if plan_jobs is not None:
            jobs = GaugeMetricFamily(
                "geogrid_plan_jobs", "Background plan jobs by status (queued and running: "
                "the queue), from the database.", labels=["status"],
            )  # fmt: skip
            for status, n in plan_jobs.items():
                jobs.add_metric([status], n)
            registry.register(_Families(lambda: [jobs]))
        if self.replicas is not None:
            registry.register(_Families(lambda: _replica_families(self.replicas.gauges())))
        return generate_latest(registry)

    def _drop_dead_processes(self) -> None:
        """Forget the live-summed gauges of processes that died (a restarted worker)."""
        assert self.path is not None
        for entry in os.listdir(self.path):
            match = _LIVE_FILE.fullmatch(entry)
            if match and not pid_alive(int(match.group(1))):
                multiprocess.mark_process_dead(int(match.group(1)), str(self.path))


def _replica_families(
    rows: Iterable[tuple[str, bool, float | None, int | None, int]],
) -> list[Metric]:
    """Gauges of the read replicas: lag (seconds, bytes) and rotation."""
    seconds = GaugeMetricFamily("geogrid_replica_lag_seconds", "Replica replay lag (seconds) "
                                "at its last health check.", labels=["replica"])  # fmt: skip
    size = GaugeMetricFamily("geogrid_replica_lag_bytes", "WAL bytes the replica has not "
                             "replayed yet.", labels=["replica"])  # fmt: skip
    rotation = GaugeMetricFamily("geogrid_replica_in_rotation", "1 when the replica serves "
                                 "reads, 0 when out of rotation.", labels=["replica"])  # fmt: skip
    served = CounterMetricFamily("geogrid_replica_reads", "Reads the replica answered "
                                 "(this process).", labels=["replica"])  # fmt: skip
    for name, live, lag_s, lag_b, reads in rows:
        if lag_s is not None:
            seconds.add_metric([name], lag_s)
        if lag_b is not None:
            size.add_metric([name], lag_b)
        rotation.add_metric([name], 1 if live else 0)
        served.add_metric([name], reads)
    return [seconds, size, rotation, served]
