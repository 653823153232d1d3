"""Kept-alive connections spread evenly over the worker processes of ``geogrid serve``.

With ``--workers N`` every worker accepts from one listening socket, and a kept-alive
connection stays with the worker that accepted it for as long as it lives. Which worker
that is, is chance: when 50 clients connected at once, one worker took 33 connections and
the other 17. Each worker runs the same number of requests at once (its turns), so both
served about as many requests per second, and the clients of the crowded one waited
nearly twice as long: on the cases bench at 50 clients, transitions had a mean of 135 ms
(p95 201 ms) there and 72 ms (p95 105 ms) on the other.

So each worker counts its *active* connections (those that sent a request in the last
:data:`WINDOW_S` seconds), publishes the count every :data:`PERIOD_S` seconds in a small
file of a folder the workers share (``GEOGRID_HOME/run/balance``, emptied by ``geogrid
serve``), and reads the others'. A worker holding more than its share (the total over the
live workers, rounded up) answers that many of its next requests with ``Connection:
close``: an orderly end of the connection after a complete answer (RFC 9112, 9.6), after
which the client opens a new one, which the less busy worker tends to accept first (its
event loop gets to the listening socket sooner). Counts are published again before more
are closed, so the connections settle within a second or two and then nothing is closed.

A worker whose file has not changed for :data:`STALE_S` seconds (gone, or stuck) is left
out of the share. One worker (``geogrid serve`` without ``--workers``) balances nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: Seconds after its last request a connection no longer counts as active.
WINDOW_S = 2.0
#: Seconds between two publications of a worker's count (and readings of the others').
PERIOD_S = 0.5
#: Seconds without a publication after which a worker is left out of the share.
STALE_S = 5.0
#: The environment variable naming the shared folder (set by ``geogrid serve``).
ENV = "GEOGRID_BALANCE_DIR"
_PREFIX = "conns-"


def prepare_dir(home: Path) -> Path:
    """Empty (create) the shared folder under ``home`` and name it in the environment the
    workers started next inherit (counts of an earlier run would be read as live)."""
    path = home / "run" / "balance"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in path.glob(f"{_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    os.environ[ENV] = str(path)
    return path


class Balancer:
    """One worker's side of the balance (see the module docs).

    Parameters
    ----------
    folder
        The folder the workers share.
    name
        This worker's name in it (its process id).
    clock
        Seconds, monotonic (the counts' window and the period).
    wall
        Seconds since the epoch (the files' modification times, for :data:`STALE_S`).
    """

    def __init__(
        self,
        folder: Path,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.path = folder / f"{_PREFIX}{name or os.getpid()}"
        self.clock = clock
        self.wall = wall
        self._seen: dict[object, float] = {}
        #: connections to close now (this worker's count above its share at the last look)
        self.excess = 0
        #: (this worker's active connections, all workers', live workers) at the last look
        self.last: tuple[int, int, int] = (0, 0, 1)
        self.closed = 0

    @classmethod
    def from_env(cls) -> Balancer | None:
        """The balancer of a worker of ``geogrid serve --workers N`` (``None`` otherwise)."""
        folder = os.environ.get(ENV)
        if not folder or not Path(folder).is_dir():
            return None
        return cls(Path(folder))

    def close_after(self, client: Sequence[object] | None) -> bool:
        """Count a request on connection ``client``; ``True`` when its answer should end the
        connection (``Connection: close``)."""
        if not client or len(client) < 2 or not client[1]:
            # no address, or one a proxy named (X-Forwarded-For: port 0): the proxy's
            # connections are not told apart, and it balances its own requests
            return False
        key = (client[0], client[1])
        if self.excess > 0 and key in self._seen:
            # only a connection seen before: a new one may be one just moved here
            self.excess -= 1
            self.closed += 1
            del self._seen[key]
            return True
        self._seen[key] = self.clock()
        return False

    def look(self) -> None:
        """Publish this worker's active connections, read the others', and set
        :attr:`excess`."""
        now = self.clock()
        cutoff = now - WINDOW_S
        self._seen = {k: t for k, t in self._seen.items() if t >= cutoff}
        mine = len(self._seen)
        self._publish(mine)
        total, live = mine, 1
        oldest = self.wall() - STALE_S
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.folder):
                if not entry.name.startswith(_PREFIX) or entry.path == str(self.path):
                    continue
                try:
                    if entry.stat().st_mtime < oldest:
                        continue
                    count = int(Path(entry.path).read_text(encoding="ascii") or 0)
                except (OSError, ValueError):  # gone meanwhile, or half written
                    continue
                total += max(0, count)
                live += 1
        self.last = (mine, total, live)
        self.excess = max(0, mine - math.ceil(total / live)) if live > 1 else 0

    def _publish(self, count: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")  # not read as a worker's count
        try:
            tmp.write_text(str(count), encoding="ascii")
            os.replace(tmp, self.path)  # readers see the old count or the new one
        except OSError:  # a full or removed folder: balance nothing rather than fail
            self.excess = 0

    def forget(self) -> None:
        """Take this worker out of the share (at shutdown)."""
        with contextlib.suppress(OSError):
            self.path.unlink()

    def start(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Look every :data:`PERIOD_S` seconds on ``loop``; returns the stop function."""
        handle: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal handle
            self.look()
            handle = loop.call_later(PERIOD_S, tick)

        tick()

        def stop() -> None:
            if handle is not None:
                handle.cancel()
            self.forget()

        return stop
