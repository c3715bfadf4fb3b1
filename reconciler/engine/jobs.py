"""Long data operations started through the API: run in the background, watched by id.

A copy or a restore of a real database takes minutes, far longer than an HTTP request should
stay open, so the API answers 202 with a job and its link at once; ``odooops ... --wait``
polls the job and draws its progress. Jobs are kept in the daemon's ledger (the newest
``KEPT``), written when one starts, changes phase and ends, so ``odooops jobs`` after a restart
still shows them; a job that was running when the daemon stopped is reported failed, as
``interrupted`` (its data move is finished or rolled back by the start-up recovery).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from reconciler.core.errors import ErrorInfo, OdooOpsError
from reconciler.engine.status import now

log = logging.getLogger("odooops.jobs")

KEPT = 200

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Job:
    id: str
    kind: str  # backup, restore, clone, import
    environment: str
    requested_by: str
    state: str = "running"  # running, succeeded, failed
    phase: str = "queued"
    done: int = 0
    total: int = 0
    started: str = field(default_factory=now)
    finished: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "environment": self.environment,
            "requested_by": self.requested_by,
            "state": self.state,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "started": self.started,
            "finished": self.finished,
            "result": self.result,
            "error": self.error,
            "links": {"self": f"/v1/jobs/{self.id}"},
        }


class JobRecords(Protocol):
    """Where jobs are kept across restarts (``reconciler.engine.ledger.Ledger``)."""

    def put_job(self, job_id: str, doc: Mapping[str, Any], started: str) -> None: ...

    def jobs(self, limit: int) -> list[dict[str, Any]]: ...

    def trim_jobs(self, keep: int) -> None: ...


class JobStore:
    """Runs jobs on a small pool and keeps their latest state."""

    def __init__(self, workers: int = 4, records: JobRecords | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = format(time.time_ns() // 1000, "x")
        self._records = records
        if records is not None:
            for doc in reversed(records.jobs(KEPT)):
                job = _job_of(doc)
                if job.state == "running":  # the daemon stopped under it
                    job = replace(
                        job,
                        state="failed",
                        finished=now(),
                        error={
                            "error": "interrupted",
                            "message": "the daemon stopped while this job ran; a data move it "
                            "had begun was finished or rolled back when the daemon started",
                            "remediation": f"odooops status {job.environment}; run it again "
                            "if needed",
                        },
                    )
                    records.put_job(job.id, job.to_dict(), job.started)
                self._jobs[job.id] = job

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(
        self,
        kind: str,
        environment: str,
        requested_by: str,
        work: Callable[[Progress], dict[str, Any]],
    ) -> Job:
        job = Job(f"{self._prefix}-{next(self._ids)}", kind, environment, requested_by)
        self._put(job)

        def progress(phase: str, done: int, total: int) -> None:
            self._update(job.id, phase=phase, done=done, total=total)

        def run() -> None:
            try:
                result = work(progress)
            except Exception as exc:  # a job's failure is its state, never a dead worker
                if not isinstance(exc, OdooOpsError):
                    log.exception("job %s (%s of %s) crashed", job.id, kind, environment)
                info = ErrorInfo.of(exc)
                self._update(
                    job.id,
                    state="failed",
                    finished=now(),
                    error={
                        "error": info.code,
                        "message": info.message,
                        "remediation": info.remediation,
                    },
                )
                return
            self._update(job.id, state="succeeded", phase="done", finished=now(), result=result)

        self._pool.submit(run)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, limit: int = 50) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))[:limit]

    def _put(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT:
                self._jobs.popitem(last=False)
        if self._records is not None:
            self._records.put_job(job.id, job.to_dict(), job.started)
            self._records.trim_jobs(KEPT)

    def _update(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return
            new = self._jobs[job_id] = replace(job, **fields)
        # Written when the job's state or phase changes, not on every byte of progress.
        if self._records is not None and (new.state, new.phase) != (job.state, job.phase):
            self._records.put_job(new.id, new.to_dict(), new.started)


def _job_of(doc: Mapping[str, Any]) -> Job:
    fields = {k: doc[k] for k in Job.__dataclass_fields__ if k in doc}
    return Job(**fields)


def wait(get: Callable[[], Job | None], timeout: float, poll: float = 0.2) -> Job | None:
    """Poll until the job ends or ``timeout`` passes (for ``?wait=true``)."""
    deadline = time.monotonic() + timeout
    job = get()
    while job is not None and job.state == "running" and time.monotonic() < deadline:
        time.sleep(poll)
        job = get()
    return job
