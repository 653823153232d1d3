"""Plans created in the background, with progress."""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine

from geogrid.errors import (
    GeogridError,
    NotFound,
    log_summary,
)
from geogrid.plans.create import create_plan

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed"]


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
    """Runs :func:`create_plan` in a worker thread and tracks progress by job id.

    The thread spends its time in the partitioner (a process pool when ``jobs`` is not 1)
    and in the database, never on the caller's event loop. Jobs live in memory: a
    restart forgets them (the plans they created stay).

    Parameters
    ----------
    engine
        Database engine.
    jobs
        Worker processes per plan (passed to :func:`create_plan`).
    workers
        Plans created at the same time.
    keep
        Finished jobs remembered.
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
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plan-job")
        self._lock = threading.Lock()
        self._jobs: dict[str, PlanJob] = {}
        self._futures: dict[str, Future[None]] = {}

    def submit(self, town_code: str, **kwargs: Any) -> PlanJob:
        """Queue :func:`create_plan` for ``town_code`` (``kwargs`` as for it)."""
        job = PlanJob(id=uuid.uuid4().hex, town_code=town_code)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._futures[job.id] = self._pool.submit(self._run, job, kwargs)
        return self.get(job.id)

    def _run(self, job: PlanJob, kwargs: dict[str, Any]) -> None:
        def progress(done: int, total: int, code: str | None) -> None:
            with self._lock:
                job.done, job.total, job.village_code = done, total, code

        with self._lock:
            job.status = "running"
        try:
            plan_id = create_plan(
                self.engine, job.town_code, jobs=self.jobs, progress=progress, **kwargs
            )
        except Exception as exc:  # reported through the job, never lost
            error_type, error = job_error(exc)
            if isinstance(exc, GeogridError):
                log.warning("plan job %s failed: %s", job.id, exc.message)
            else:  # the message may hold SQL and its parameters: the log gets a summary
                log.error("plan job %s failed: %s", job.id, log_summary(exc))
            with self._lock:
                job.status = "failed"
                job.error, job.error_type = error, error_type
                job.finished_at = datetime.now().astimezone()
            return
        with self._lock:
            job.status = "done"
            job.plan_id = plan_id
            job.finished_at = datetime.now().astimezone()

    def get(self, job_id: str) -> PlanJob:
        """A snapshot of a job; :class:`NotFound` if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist.", detail={"job_id": job_id})
            return PlanJob(**asdict(job))

    def wait(self, job_id: str, timeout: float | None = None) -> PlanJob:
        """Block until a job finishes (tests, CLI); returns its final snapshot."""
        fut = self._futures.get(job_id)
        if fut is None:
            return self.get(job_id)
        fut.result(timeout=timeout)
        return self.get(job_id)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        for j in sorted(finished, key=lambda j: j.created_at)[: max(0, len(finished) - self.keep)]:
            self._jobs.pop(j.id, None)
            self._futures.pop(j.id, None)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop accepting jobs; wait for running ones by default."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
