"""The village pool's forked workers die with the process that made them.

A server worker killed while it partitions must not leave its pool behind: forked workers
hold every descriptor of their parent (the server's listening socket too) and, sharing the
pool's pipes, never see an end of file, so an orphan would wait forever holding the port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PARENT = textwrap.dedent(
    """
    import multiprocessing as mp, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from partition.plan import _die_with_parent

    def pid_then_sleep(_):
        return os.getpid()

    def sleep(_):
        time.sleep(60)

    initializer = _die_with_parent if sys.argv[1] == "guarded" else None
    args = (os.getpid(),) if initializer else ()
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork"),
                             initializer=initializer, initargs=args) as pool:
        pids = set(pool.map(pid_then_sleep, range(8)))
        print(" ".join(map(str, sorted(pids))), flush=True)
        list(pool.map(sleep, range(2)))
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _orphans_after_killing_parent(mode: str) -> list[int]:
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers, "the pool reported no workers"
        time.sleep(0.5)  # the workers are now sleeping in their task
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        return [p for p in workers if _alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_pool_workers_die_with_their_parent() -> None:
    assert _orphans_after_killing_parent("guarded") == []


def test_without_the_guard_they_would_stay() -> None:
    """The check above can fail: unguarded forked workers outlive a killed parent."""
    left = _orphans_after_killing_parent("plain")
    try:
        assert left, "unguarded workers died too: the guard test proves nothing"
    finally:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
