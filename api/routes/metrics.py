"""``/metrics`` (Prometheus text format) and the request middleware feeding it and the logs.

:func:`install` adds :class:`Observe`, the outermost middleware: per request it takes the
request id (a UUID ``X-Request-ID`` from the client or a new one; echoed in the
response's ``X-Request-ID``), counts the answer by route template and status class,
times it, and writes one access line (INFO; see :mod:`geogrid.ops.logs`). It costs a few
microseconds (``bench/bench_workers.py --middleware`` measures it).

It also admits at most ``threads - THREAD_MARGIN`` requests at once per process (anyio's
worker threads: 40 by default); the others wait for a turn on the event loop, holding
nothing. Without that gate, 200 users at once deadlocked a worker until the pool's 30 s
timeout (bench/bench_workers.py: p50 90 s, 500s): every worker thread waited for a pooled
connection while the connections were held by requests waiting for a thread to run their
route or to give the connection back. With fewer requests in flight than threads, a
request holding a connection always finds a thread, so every wait for a connection ends.

Within that, a request runs only in one of ``GEOGRID_REQUEST_TURNS`` turns per process
(default 4), and gives its turn back when it ends or after ``GEOGRID_REQUEST_TURN_S``
(1 s), whichever comes first. The web server's Python runs on one core per process (the
GIL): a few requests keep it busy while others wait on the database, and more in flight
only make them wait for each other's threads, holding open transactions and pooled
connections meanwhile. On the cases bench at 50 clients, 32 requests in flight per process
took 9.0 ms of CPU per request and made 170 transitions/s; six took 5.8 ms and made 261/s
(bench/bench_cases.py, 2026-11-30). With the transition lane and clients ramped up
(2026-12-01), four turns gave a p95 of 134 ms and 400 transitions/s, six 144 ms and
387/s; before the lane, 150 and 162 ms. A long request (an export) gives its turn back
after a second and keeps only its place in the gate.

``/metrics`` answers only clients whose address is in ``GEOGRID_METRICS_ALLOW`` (default:
this machine); everyone else gets 403 in the usual error shape. Signing in changes
nothing: Prometheus scrapes anonymously, the address is the rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from ipaddress import IPv6Address, ip_address

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import allow
from api.balance import Balancer
from api.deps import ConnDep
from api.reads import staleness_header
from api.schemas import ErrorPublic
from geogrid.errors import Forbidden
from geogrid.ops import jobs_store
from geogrid.ops.logs import ACCESS_LOGGER, REQUEST_ID, request_id
from geogrid.ops.metrics import CONTENT_TYPE, Metrics
from geogrid.settings import Settings

router = APIRouter(tags=["meta"])

_access = logging.getLogger(ACCESS_LOGGER)
_HEADER = b"x-request-id"
_CLOSE = (b"connection", b"close")
#: Worker threads kept free of requests (lifespan work, thread hops of requests in flight).
THREAD_MARGIN = 8
#: Paths never queued: a load balancer's and Prometheus' questions are answered at once.
_UNGATED = frozenset({"/health", "/metrics"})


class Observe:
    """Request ids, metrics and the access line (a pure ASGI middleware: no body copies).

    Parameters
    ----------
    app
        The wrapped application.
    metrics
        Where requests are counted.
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, turns: int = 6, turn_s: float = 1.0
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.turns = turns
        self.turn_s = turn_s
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._gates = weakref.WeakKeyDictionary()
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._turns = weakref.WeakKeyDictionary()
        #: spreads kept-alive connections over the workers (``--workers N`` only)
        self.balancer = Balancer.from_env()
        self._stop_balancing: Callable[[], None] | None = None

    def gate(self) -> asyncio.Semaphore:
        """This event loop's admission gate (threads - :data:`THREAD_MARGIN` turns)."""
        loop = asyncio.get_running_loop()
        found = self._gates.get(loop)
        if found is None:
            threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
            found = self._gates[loop] = asyncio.Semaphore(max(4, threads - THREAD_MARGIN))
        return found

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One of this event loop's :attr:`turns`, given back when the request ends or
        once it has run :attr:`turn_s` seconds (a long request, an export, say, keeps
        its place in :meth:`gate` but no longer holds back the short ones)."""
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns[loop] = asyncio.Semaphore(self.turns)
        await turns.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                turns.release()

        timer = loop.call_later(self.turn_s, give_back)
        try:
            yield
        finally:
            timer.cancel()
            give_back()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                send = self._on_startup(scope, send)
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming = None
        for key, value in scope["headers"]:
            if key == _HEADER:
                incoming = value
                break
        rid = request_id(incoming)
        header = (_HEADER, rid.encode("ascii"))
        token = REQUEST_ID.set(rid)
        status = 500
        balancer = self.balancer

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
                stale = staleness_header(scope.get("state") or {})  # replica reads' bound
                if stale is not None:
                    message["headers"].append(stale)
                if balancer is not None and balancer.close_after(scope.get("client")):
                    message["headers"].append(_CLOSE)
            await send(message)

        try:
            if scope["path"] in _UNGATED:
                await self.app(scope, receive, send_with_id)
            else:
                async with self.gate(), self.turn():
                    await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.observe(route, method, status, seconds)
            tiles = getattr(scope["app"].state, "tiles", None) if "app" in scope else None
            if tiles is not None:
                self.metrics.observe_tile_cache(tiles.cache.hits, tiles.cache.misses)
            if _access.isEnabledFor(logging.INFO):
                ms = round(seconds * 1000, 2)
                _access.info(
                    "%s %s %d %.2f ms", method, route, status, ms,
                    extra={"route": route, "method": method, "status": status, "duration_ms": ms},
                )  # fmt: skip
            REQUEST_ID.reset(token)

    def _on_startup(self, scope: Scope, send: Send) -> Send:
        """Follow the database pool once the app's lifespan has opened it; balance the
        connections while the app runs."""

        async def watch(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                engine = getattr(scope["app"].state, "engine", None) if "app" in scope else None
                if engine is not None:
                    self.metrics.instrument_engine(engine)
                if self.balancer is not None and self._stop_balancing is None:
                    self._stop_balancing = self.balancer.start(asyncio.get_running_loop())
            elif message["type"].startswith("lifespan.shutdown") and self._stop_balancing:
                self._stop_balancing()
                self._stop_balancing = None
            await send(message)

        return watch


def install(app: FastAPI, settings: Settings) -> None:
    """Add :class:`Observe` (outermost: call after every other middleware) and the route."""
    metrics = app.state.metrics = Metrics()
    app.add_middleware(
        Observe, metrics=metrics, turns=settings.request_turns, turn_s=settings.request_turn_s
    )
    app.include_router(router)


def allowed(settings: Settings, host: str | None) -> bool:
    """Is a client at ``host`` in ``GEOGRID_METRICS_ALLOW``?

    >>> s = Settings(home="/tmp/gg", metrics_allow="10.0.0.0/8")
    >>> allowed(s, "10.1.2.3"), allowed(s, "127.0.0.1"), allowed(s, "testclient")
    (True, False, False)
    """
    if not host:
        return False
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in settings.metrics_allow)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(allow("ops.metrics"))],
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}},
              "description": "Prometheus text exposition format 0.0.4."},
        403: {"model": ErrorPublic,
              "description": "The client's address is not in GEOGRID_METRICS_ALLOW."},
    },
)  # fmt: skip
def metrics(request: Request, conn: ConnDep) -> Response:
    """Prometheus metrics: requests and latency per route template and status class, the
    database pool, tile cache hits and misses, background plan jobs by status. Only for
    the addresses in ``GEOGRID_METRICS_ALLOW`` (default: this machine)."""
    settings: Settings = request.app.state.settings
    client = request.client.host if request.client else None
    if not allowed(settings, client):
        raise Forbidden("metrics are served to the addresses in GEOGRID_METRICS_ALLOW only")
    metrics: Metrics = request.app.state.metrics
    body = metrics.render(jobs_store.counts(conn))
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
