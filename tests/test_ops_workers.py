"""Background plan jobs in the database (migration 0022): any runner (any server process)
sees every job, and a job whose process is gone is reported failed, never lost or left
running. The real ``geogrid serve --workers 2`` tests are in test_ops_workers_serve.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from geogrid import store
from geogrid.ops import jobs_store
from geogrid.plans import PlanJobs

TOWN = "420117105000"


def _row(engine: Engine, job_id: str) -> dict[str, object]:
    with engine.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM plan_jobs WHERE id = :i"), {"i": job_id})
            .mappings()
            .one()
        )


def _unfinished(engine: Engine, worker: str, *, age_s: float = 0) -> str:
    """A running job of ``worker`` whose heartbeat is ``age_s`` seconds old."""
    job_id = uuid.uuid4().hex
    with engine.begin() as conn:
        jobs_store.insert(conn, job_id=job_id, town_code=TOWN, worker=worker)
        jobs_store.start(conn, job_id)
        conn.execute(
            text(
                "UPDATE plan_jobs SET heartbeat_at = now() - make_interval(secs => :a) "
                "WHERE id = :i"
            ),
            {"a": age_s, "i": job_id},
        )
    return job_id


def _dead_worker() -> str:
    """The name a server process had, once that process has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        name = jobs_store.worker_name(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return name


def test_a_job_submitted_by_one_runner_is_seen_by_another(town_url: str) -> None:
    a_engine, b_engine = store.make_engine(town_url), store.make_engine(town_url)
    a, b = PlanJobs(a_engine, jobs=1), PlanJobs(b_engine, jobs=1)
    try:
        job = a.submit(TOWN, name="seen elsewhere")
        assert job.status in ("queued", "running")
        seen = b.get(job.id)  # the other runner (process) has never heard of it in memory
        assert seen.id == job.id and seen.town_code == TOWN
        done = b.wait(job.id, timeout=120)  # polled in the database
        assert done.status == "done" and done.plan_id is not None, done
        assert done.total > 0 and done.done == done.total
        assert done.finished_at is not None and done.finished_at >= done.created_at
        assert a.get(job.id) == done
        with a_engine.connect() as conn:
            name = conn.execute(
                text("SELECT name FROM plans WHERE id = :p"), {"p": done.plan_id}
            ).scalar_one()
        assert name == "seen elsewhere"
        assert _row(a_engine, job.id)["worker"] == a.worker
    finally:
        a.shutdown()
        b.shutdown()
        a_engine.dispose()
        b_engine.dispose()


def test_a_failed_job_keeps_its_clean_error(town_url: str) -> None:
    engine = store.make_engine(town_url)
    runner = PlanJobs(engine, jobs=1)
    try:
        job = runner.submit(TOWN, cadres={"420117105201": 999})
        done = PlanJobs(engine).wait(job.id, timeout=60)
        assert done.status == "failed" and done.error_type == "InvalidInput"
        assert "999" in (done.error or "")
    finally:
        runner.shutdown()
        engine.dispose()


def test_jobs_of_processes_that_are_gone_are_reported_failed(engine: Engine) -> None:
    here = socket.gethostname()
    me = jobs_store.worker_name()
    dead = _unfinished(engine, _dead_worker())
    reused = _unfinished(engine, f"{here}:{me.split(':')[1]}:1")  # our pid, not our start
    silent = _unfinished(engine, "elsewhere.example:42:7", age_s=jobs_store.STALE_S + 5)
    alive = _unfinished(engine, me)
    remote = _unfinished(engine, "elsewhere.example:42:7", age_s=5)  # beats: alive
    # reading one job applies the rule to it alone
    with engine.begin() as conn:
        job = jobs_store.get(conn, dead)
    assert job is not None
    assert job["status"] == "failed" and job["error_type"] == "JobInterrupted"
    assert "start it again" in (job["error"] or "")
    assert _row(engine, reused)["status"] == "running"
    # recovery (each server process at start) applies it to every unfinished job
    with engine.begin() as conn:
        assert jobs_store.recover(conn) == 2
    for job_id in (reused, silent):
        row = _row(engine, job_id)
        assert row["status"] == "failed" and row["error_type"] == "JobInterrupted"
        assert row["finished_at"] is not None
    for job_id in (alive, remote):
        assert _row(engine, job_id)["status"] == "running"
    with engine.begin() as conn:
        assert jobs_store.recover(conn) == 0
        assert jobs_store.counts(conn) == {"queued": 0, "running": 2, "done": 0, "failed": 3}
    # a runner (a server process starting) recovers on its own
    again = _unfinished(engine, _dead_worker())
    runner = PlanJobs(engine)
    runner.shutdown()  # waits for the recovery it started
    assert _row(engine, again)["status"] == "failed"


@pytest.mark.parametrize(
    "worker",
    ["", "no-colons", "HOST:x:1", "HOST:-1:1", "HOST:999999999:1", "HOST:1:not-its-start"],
)
def test_is_alive_refuses_what_is_not_a_live_process_of_this_host(worker: str) -> None:
    assert jobs_store.is_alive(worker.replace("HOST", socket.gethostname())) is not True


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        name = jobs_store.worker_name(child.pid)
        assert jobs_store.is_alive(name) is True
        child.kill()
        deadline = time.monotonic() + 10  # the kernel makes it a zombie; nobody waits yet
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert jobs_store.is_alive(name) is False  # a zombie runs nothing
    finally:
        child.kill()
        child.wait()


def test_an_unknown_job_is_not_found(engine: Engine) -> None:
    from geogrid.errors import NotFound

    with pytest.raises(NotFound, match="does not exist"):
        PlanJobs(engine).get("0" * 32)


def test_shutdown_without_waiting_reports_jobs_that_never_started(town_url: str) -> None:
    engine = store.make_engine(town_url)
    runner = PlanJobs(engine, jobs=1)
    try:
        first = runner.submit(TOWN, name="runs")
        second = runner.submit(TOWN, name="never starts")
        runner.shutdown(wait=False)
        row = _row(engine, second.id)
        if row["status"] != "done":  # (the first may have been quick enough to let it run)
            assert row["status"] == "failed" and row["error_type"] == "JobInterrupted"
        assert _row(engine, first.id)["status"] in ("running", "done", "failed")
    finally:
        runner.shutdown()
        engine.dispose()
