"""Background data jobs: progress, result, structured failure."""

from __future__ import annotations

import threading
from pathlib import Path

from reconciler.core.errors import OdooOpsError
from reconciler.engine.jobs import JobStore, Progress, wait
from reconciler.engine.ledger import Ledger


def test_a_job_reports_progress_then_its_result() -> None:
    store = JobStore(workers=1)
    gate = threading.Event()

    def work(progress: Progress) -> dict[str, object]:
        progress("copying tables", 5, 10)
        gate.wait(5)
        return {"strategy": "stream"}

    job = store.submit("clone", "acme/staging", "ann", work)
    running = wait(lambda: store.get(job.id), 0.2, poll=0.01)
    assert running is not None and running.state == "running"
    gate.set()
    done = wait(lambda: store.get(job.id), 5, poll=0.01)
    assert done is not None and done.state == "succeeded"
    assert done.result == {"strategy": "stream"} and done.to_dict()["links"]["self"].endswith(
        job.id
    )
    store.close()


def test_a_failing_job_keeps_the_structured_error() -> None:
    store = JobStore(workers=1)

    def work(progress: Progress) -> dict[str, object]:
        raise OdooOpsError("no backup x", code="backup_not_found", remediation="odooops db backups")

    job = store.submit("restore", "acme/staging", "ann", work)
    done = wait(lambda: store.get(job.id), 5, poll=0.01)
    assert done is not None and done.state == "failed"
    assert done.error == {
        "error": "backup_not_found",
        "message": "no backup x",
        "remediation": "odooops db backups",
    }
    assert [j.id for j in store.list()] == [job.id]
    store.close()


def test_jobs_outlive_a_restart_and_a_running_one_is_reported_interrupted(tmp_path: Path) -> None:
    """``odooops jobs`` after a restart still lists them; what ran is failed: interrupted."""
    ledger = Ledger(tmp_path / "ledger.db")
    first = JobStore(workers=1, records=ledger)
    gate = threading.Event()
    done = first.submit("backup", "acme/prod", "ann", lambda progress: {"id": "b1"})
    assert (finished := wait(lambda: first.get(done.id), 5, poll=0.01)) is not None
    assert finished.state == "succeeded"
    hung = first.submit("restore", "acme/staging", "ann", lambda progress: gate.wait(5) and {})
    first.close()  # the daemon is killed while the restore runs

    second = JobStore(workers=1, records=Ledger(tmp_path / "ledger.db"))
    jobs = {j.id: j for j in second.list()}
    assert jobs[done.id].state == "succeeded" and jobs[done.id].result == {"id": "b1"}
    assert jobs[hung.id].state == "failed"
    assert jobs[hung.id].error is not None and jobs[hung.id].error["error"] == "interrupted"
    gate.set()
    second.close()
