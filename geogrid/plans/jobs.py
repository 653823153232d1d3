"""Plans created in the background, with progress; the jobs live in the database."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine

from geogrid.errors import (
    GeogridError,
    NotFound,
    log_summary,
)
from geogrid.ops import jobs_store
from geogrid.plans.create import create_plan

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed"]
#: Seconds between progress writes of a running job (the first and the last always).
PROGRESS_EVERY_S = 0.5
INTERRUPTED_TYPE = jobs_store.INTERRUPTED[0]


@dataclass
class PlanJob:
    """A plan being created in the background (see :class:`PlanJobs`)."""

    id: str
    town_code: str
    status: JobStatus = "queued"
    done: int = 0
    total: int = 0
    village_code: str | None = None
    plan_id: int | None = None
    error: str | None = None
    error_type: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    finished_at: datetime | None = None


def job_error(exc: BaseException) -> tuple[str, str]:
    """``(code, description)`` reported for a failed job: clean, like every error body.

    A domain error keeps its class name and message; anything else (a database error
    whose message holds the SQL and its parameters, a bug) becomes ``InternalError``.

    >>> from geogrid.errors import InvalidInput
    >>> job_error(InvalidInput("target must be positive"))
    ('InvalidInput', 'target must be positive')
    >>> job_error(RuntimeError("SELECT secret"))[0]
    'InternalError'
    """
    if isinstance(exc, GeogridError):
        return type(exc).__name__, exc.message
    return (
        "InternalError",
        "the plan could not be created: an unexpected error (logged)",
    )


class PlanJobs:
    """Runs :func:`create_plan` in a worker thread; the job lives in the database.

    The thread spends its time in the partitioner (a process pool when ``jobs`` is not 1)
    and in the database, never on the caller's event loop. Each job is a row of
    ``plan_jobs`` (:mod:`geogrid.ops.jobs_store`): any server process answers its status,
    a restart does not forget it, and a job whose process died is reported failed
    (``JobInterrupted``) when this runner starts or when the job is read. The process that
    accepted a job runs it.

    Parameters
    ----------
    engine
        Database engine (the web role may read and write ``plan_jobs``).
    jobs
        Worker processes per plan (passed to :func:`create_plan`).
    workers
        Plans created at the same time by this process.
    keep
        Kept for callers; finished jobs are now pruned by age
        (:data:`geogrid.ops.jobs_store.KEEP_DAYS`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        jobs: int | None = None,
        workers: int = 1,
        keep: int = 200,
    ) -> None:
        self.engine = engine
        self.jobs = jobs
        self.keep = keep
        self.worker = jobs_store.worker_name()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plan-job")
        self._lock = threading.Lock()
        self._futures: dict[str, Future[None]] = {}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._pool.submit(self._recover_quietly)  # before any job of this runner

    def _recover_quietly(self) -> None:
        try:
            self.recover()
        except Exception as exc:  # the database may come up (or be migrated) later
            log.warning("plan job recovery skipped: %s", log_summary(exc))

    # -- the database ----------------------------------------------------------------

    def recover(self) -> int:
        """Report the jobs of processes that are gone as failed; return how many."""
        with self.engine.begin() as conn:
            n = jobs_store.recover(conn)
        if n:
            log.warning("%d plan job(s) were interrupted by a restart; reported failed", n)
        return n

    def _write(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        with self.engine.begin() as conn:
            fn(conn, *args, **kwargs)

    def _heartbeat(self) -> None:
        """Renew this process's unfinished jobs until none is left (or shutdown)."""
        while not self._stop.wait(jobs_store.HEARTBEAT_S):
            try:
                with self.engine.begin() as conn:
                    left = jobs_store.heartbeat(conn, self.worker)
            except Exception as exc:  # the database may be briefly away: try again
                log.warning("plan job heartbeat failed: %s", log_summary(exc))
                continue
            with self._lock:
                if left == 0 and not any(not f.done() for f in self._futures.values()):
                    self._beat = None
                    return

    # -- the API ---------------------------------------------------------------------

    def submit(self, town_code: str, **kwargs: Any) -> PlanJob:
        """Queue :func:`create_plan` for ``town_code`` (``kwargs`` as for it)."""
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            row = jobs_store.insert(conn, job_id=job_id, town_code=town_code, worker=self.worker)
        with self._lock:
            self._futures[job_id] = self._pool.submit(self._run, job_id, town_code, kwargs)
            self._forget_finished()
            if self._beat is None:
                self._beat = threading.Thread(
                    target=self._heartbeat, name="plan-job-heartbeat", daemon=True
                )
                self._beat.start()
        return _job(row)

    def _run(self, job_id: str, town_code: str, kwargs: dict[str, Any]) -> None:
        last = 0.0

        def progress(done: int, total: int, code: str | None) -> None:
            nonlocal last
            now = time.monotonic()
            if done in (0, total) or now - last >= PROGRESS_EVERY_S:
                last = now
                self._write(jobs_store.progress, job_id, done=done, total=total, village_code=code)

        try:
            self._write(jobs_store.start, job_id)
            plan_id = create_plan(
                self.engine, town_code, jobs=self.jobs, progress=progress, **kwargs
            )
        except Exception as exc:  # reported through the job, never lost
            error_type, error = job_error(exc)
            if isinstance(exc, GeogridError):
                log.warning("plan job %s failed: %s", job_id, exc.message)
            else:  # the message may hold SQL and its parameters: the log gets a summary
                log.error("plan job %s failed: %s", job_id, log_summary(exc))
            try:
                self._write(jobs_store.fail, job_id, error_type=error_type, error=error)
            except Exception as db_exc:  # the job stays unfinished: recovery reports it
                log.error("plan job %s: outcome not recorded: %s", job_id, log_summary(db_exc))
            return
        self._write(jobs_store.finish, job_id, plan_id=plan_id)

    def get(self, job_id: str) -> PlanJob:
        """A snapshot of a job (from any process); :class:`NotFound` if unknown."""
        with self.engine.begin() as conn:
            row = jobs_store.get(conn, job_id)
        if row is None:
            raise NotFound(f"job {job_id} does not exist.", detail={"job_id": job_id})
        return _job(row)

    def wait(self, job_id: str, timeout: float | None = None) -> PlanJob:
        """Block until a job finishes (tests, CLI); returns its final snapshot.

        A job of another process is polled in the database.
        """
        fut = self._futures.get(job_id)
        if fut is not None:
            fut.result(timeout=timeout)
            return self.get(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := self.get(job_id)).status in ("queued", "running"):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.status}")
            time.sleep(0.2)
        return job

    def _forget_finished(self) -> None:
        for key in [k for k, f in self._futures.items() if f.done()]:
            self._futures.pop(key, None)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop accepting jobs; wait for running ones by default.

        Without waiting, jobs that never started are reported failed at once (a running
        one finishes before the process exits, or is reported by the next start).
        """
        self._stop.set()
        with self._lock:
            queued = [k for k, f in self._futures.items() if not f.running() and not f.done()]
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        for job_id in queued if not wait else ():
            try:
                self._write(
                    jobs_store.fail,
                    job_id,
                    error_type=INTERRUPTED_TYPE,
                    error="the server stopped before this job started; start it again",
                )
            except Exception as exc:  # recovery reports it on the next start
                log.warning("plan job %s: not marked failed: %s", job_id, log_summary(exc))


def _job(row: dict[str, Any]) -> PlanJob:
    return PlanJob(
        id=row["id"], town_code=row["town_code"], status=row["status"], done=row["done"],
        total=row["total"], village_code=row["village_code"], plan_id=row["plan_id"],
        error=row["error"], error_type=row["error_type"], created_at=row["created_at"],
        finished_at=row["finished_at"],
    )  # fmt: skip
