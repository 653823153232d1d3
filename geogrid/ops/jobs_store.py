"""Background plan jobs in the database (table ``plan_jobs``, migration 0022).

Several ``geogrid serve`` workers share one database but not their memory: a job is a row,
so whichever worker a client's next request reaches answers its status, and a restart
does not forget it. The worker that accepted a job runs it (a thread of that process, see
:class:`geogrid.plans.PlanJobs`) and writes its progress and outcome here.

A job whose process is gone is *interrupted*: it is reported ``failed`` with the error
type ``JobInterrupted`` (the plan was not created; start it again) instead of staying
``running`` for ever. A process is gone when

* it ran on this host and its pid no longer runs the same process (the pid's start time
  is part of the worker's name, so a reused pid is not mistaken for it), or
* its heartbeat (renewed every :data:`HEARTBEAT_S` seconds while it has unfinished jobs)
  is older than :data:`STALE_S` seconds (another host, or a process frozen).

:func:`recover` applies the rule to every unfinished job (each worker calls it when it
starts); :func:`get` applies it to the job asked for.

Nothing personal is stored: a town code, counts, a plan id and a clean error summary.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from geogrid.models import Base

__all__ = [
    "HEARTBEAT_S",
    "INTERRUPTED",
    "STALE_S",
    "PlanJobRow",
    "counts",
    "fail",
    "finish",
    "get",
    "heartbeat",
    "insert",
    "is_alive",
    "pid_alive",
    "progress",
    "recover",
    "start",
    "worker_name",
]

#: Seconds between heartbeats of a worker's unfinished jobs.
HEARTBEAT_S = 15.0
#: A job without a heartbeat for this long is interrupted (whatever host ran it).
STALE_S = 120.0
#: Error type and message of an interrupted job.
INTERRUPTED = (
    "JobInterrupted",
    "the server process running this job stopped (a restart or a crash) before it "
    "finished; no plan was created: start it again",
)
#: Finished jobs older than this many days are deleted when a job is submitted.
KEEP_DAYS = 90

STATUSES = ("queued", "running", "done", "failed")


class PlanJobRow(Base):
    """ORM mirror of ``plan_jobs`` (the code uses SQL; a test checks they agree)."""

    __tablename__ = "plan_jobs"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        CheckConstraint("id ~ '^[0-9a-f]{32}$'", name="id"),
        Index(
            "ix_plan_jobs_unfinished",
            "status",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_plan_jobs_finished_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    town_code: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(Text, server_default="queued")
    done: Mapped[int] = mapped_column(Integer, server_default="0")
    total: Mapped[int] = mapped_column(Integer, server_default="0")
    village_code: Mapped[str | None] = mapped_column(String(12))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    error_type: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --------------------------------------------------------------------------- processes


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), else None.

    None too for a process that has exited but is not yet reaped (state ``Z``/``X``): a
    killed worker stays a pid until its supervisor waits for it, and runs nothing.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def worker_name(pid: int | None = None) -> str:
    """``host:pid:start`` naming a server process (``start``: the pid's start time).

    >>> worker_name().split(":")[1] == str(os.getpid())
    True
    """
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '-'}"


def pid_alive(pid: int) -> bool:
    """Does process ``pid`` run (on this host)?

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def is_alive(worker: str) -> bool | None:
    """Does ``worker`` still run? ``None`` when it ran on another host (unknown here).

    >>> is_alive(worker_name())
    True
    >>> is_alive("elsewhere.example:1:1") is None
    True
    """
    host, _, rest = worker.partition(":")
    if host != socket.gethostname():
        return None
    pid_text, _, start = rest.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    now = _start_time(pid)
    if now is None:  # no such process (or no /proc: ask the kernel)
        return False if Path("/proc/self/stat").exists() else pid_alive(pid)
    return start in ("-", now)


# --------------------------------------------------------------------------- writes

_COLS = (
    "id, town_code, status, done, total, village_code, plan_id, error, error_type, worker, "
    "created_at, started_at, heartbeat_at, finished_at"
)


def insert(conn: Connection, *, job_id: str, town_code: str, worker: str) -> dict[str, Any]:
    """Record a new queued job; prune finished jobs older than :data:`KEEP_DAYS` days."""
    conn.execute(
        text("DELETE FROM plan_jobs WHERE finished_at < now() - make_interval(days => :d)"),
        {"d": KEEP_DAYS},
    )
    row = conn.execute(
        text(
            f"INSERT INTO plan_jobs (id, town_code, worker) VALUES (:id, :t, :w) RETURNING {_COLS}"
        ),
        {"id": job_id, "t": town_code, "w": worker},
    ).one()
    return dict(row._mapping)


def start(conn: Connection, job_id: str) -> None:
    """Mark a job running."""
    conn.execute(
        text(
            "UPDATE plan_jobs SET status = 'running', started_at = now(), heartbeat_at = now() "
            "WHERE id = :id AND status = 'queued'"
        ),
        {"id": job_id},
    )


def progress(
    conn: Connection, job_id: str, *, done: int, total: int, village_code: str | None
) -> None:
    """Record a running job's progress (also a heartbeat)."""
    conn.execute(
        text(
            "UPDATE plan_jobs SET done = :d, total = :n, village_code = :v, heartbeat_at = now() "
            "WHERE id = :id AND status = 'running'"
        ),
        {"id": job_id, "d": done, "n": total, "v": village_code},
    )


def finish(conn: Connection, job_id: str, *, plan_id: int) -> None:
    """Mark a job done with the plan it created."""
    conn.execute(
        text(
            "UPDATE plan_jobs SET status = 'done', plan_id = :p, finished_at = now(), "
            "heartbeat_at = now() WHERE id = :id"
        ),
        {"id": job_id, "p": plan_id},
    )


def fail(conn: Connection, job_id: str, *, error_type: str, error: str) -> None:
    """Mark an unfinished job failed with a clean ``(error_type, error)``."""
    conn.execute(
        text(
            "UPDATE plan_jobs SET status = 'failed', error_type = :t, error = :e, "
            "finished_at = now() WHERE id = :id AND status IN ('queued', 'running')"
        ),
        {"id": job_id, "t": error_type, "e": error},
    )


def heartbeat(conn: Connection, worker: str) -> int:
    """Renew the heartbeat of ``worker``'s unfinished jobs; return how many it has."""
    return conn.execute(
        text(
            "UPDATE plan_jobs SET heartbeat_at = now() "
            "WHERE worker = :w AND status IN ('queued', 'running')"
        ),
        {"w": worker},
    ).rowcount


# --------------------------------------------------------------------------- reads


def _interrupt(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Fail the jobs among ``rows`` whose process is gone; return their ids."""
    gone = {
        r["id"]
        for r in rows
        if r["status"] in ("queued", "running") and (is_alive(r["worker"]) is False or r["stale"])
    }
    for job_id in sorted(gone):
        fail(conn, job_id, error_type=INTERRUPTED[0], error=INTERRUPTED[1])
    return gone


def get(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """The job ``job_id`` as a dict of its columns (interrupted first if its process is
    gone), or ``None``."""
    sql = text(
        f"SELECT {_COLS}, heartbeat_at < now() - make_interval(secs => :s) AS stale "
        "FROM plan_jobs WHERE id = :id"
    )
    row = conn.execute(sql, {"id": job_id, "s": STALE_S}).first()
    if row is None:
        return None
    found = dict(row._mapping)
    if _interrupt(conn, [found]):
        found = dict(conn.execute(sql, {"id": job_id, "s": STALE_S}).one()._mapping)
    found.pop("stale")
    return found


def recover(conn: Connection) -> int:
    """Fail every unfinished job whose process is gone; return how many."""
    rows = conn.execute(
        text(
            "SELECT id, status, worker, "
            "heartbeat_at < now() - make_interval(secs => :s) AS stale "
            "FROM plan_jobs WHERE status IN ('queued', 'running') FOR UPDATE SKIP LOCKED"
        ),
        {"s": STALE_S},
    ).mappings()
    return len(_interrupt(conn, [dict(r) for r in rows]))


def counts(conn: Connection) -> dict[str, int]:
    """Jobs per status (every status present, zero when none): the job-queue metric."""
    sql = text("SELECT status, count(*) FROM plan_jobs GROUP BY status")
    found: dict[str, int] = {str(s): int(n) for s, n in conn.execute(sql)}
    return {s: found.get(s, 0) for s in STATUSES}
