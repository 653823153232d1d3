"""The importer's forked pools (``geogrid.ingest.load.fork_pool``: row preparation and the
COPY encoders) die with the process that made them, like the village pool
(tests/test_partition_pool.py, whose unguarded control shows the check can fail)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.test_partition_pool import _alive

PARENT = textwrap.dedent(
    """
    import os, time
    from geogrid.ingest.load import fork_pool

    def pid(_):
        return os.getpid()

    def sleep(_):
        time.sleep(60)

    with fork_pool(2) as pool:
        print(" ".join(map(str, sorted(set(pool.map(pid, range(8)))))), flush=True)
        list(pool.map(sleep, range(2)))
    """
)


def test_import_pool_workers_die_with_their_parent() -> None:
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, env=env,
                            text=True)  # fmt: skip
    workers: list[int] = []
    try:
        assert proc.stdout is not None
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers and os.getpid() not in workers
        time.sleep(0.5)  # the workers sleep in their task now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p for p in workers if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
