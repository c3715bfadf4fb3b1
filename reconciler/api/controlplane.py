"""The daemon's side of the API: its current view for reads, the state writer for writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from reconciler.api.plane import Terminal
from reconciler.core.model import EnvKey, StateConfig
from reconciler.core.planner import Plan
from reconciler.data.operations import DataOps
from reconciler.engine.engine import Engine
from reconciler.engine.jobs import JobStore
from reconciler.engine.status import DaemonStatus, EnvironmentStatus
from reconciler.gitops import changes
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.gitsource import Author, CommitInfo
from reconciler.gitops.statewriter import StateWriter, WriteResult


class GitControlPlane:
    """What the control plane does in git: writes as commits, the audit trail, reviews."""

    def __init__(self, writer: StateWriter, trigger: Callable[[], None]) -> None:
        self.writer = writer
        self._trigger = trigger

    def write(
        self,
        op: changes.Operation | changes.FileOperation,
        author: Author,
        request_id: str,
        pr: bool,
    ) -> WriteResult:
        return self.writer.submit(op, author, request_id=request_id, via="api", pr=pr)

    def trigger(self) -> None:
        self._trigger()

    def audit(self, limit: int) -> list[CommitInfo]:
        self.writer.repo.fetch()
        return self.writer.repo.history(self.writer.branch, limit)

    def change_requests(self) -> ChangeRequests:
        return ChangeRequests(self.writer.repo, self.writer.branch)


class DaemonControlPlane(GitControlPlane):
    """The daemon's current view (status, plan, logs, shells) on top of the git side."""

    def __init__(self, engine: Engine, writer: StateWriter, trigger: Callable[[], None]) -> None:
        super().__init__(writer, trigger)
        self.engine = engine
        self._sessions_lock = threading.Lock()
        self._jobs = JobStore()

    def data(self) -> DataOps:
        return self.engine.data

    def jobs(self) -> JobStore:
        return self._jobs

    def close(self) -> None:
        self._jobs.close()

    def statuses(self) -> Mapping[str, EnvironmentStatus]:
        return self.engine.status.all()

    def events(self, key: EnvKey) -> list[dict[str, Any]]:
        return self.engine.status.events(str(key))

    def daemon_status(self) -> DaemonStatus:
        return self.engine.status.daemon

    def state(self) -> StateConfig | None:
        return self.engine.last_good

    def plan(self) -> Plan:
        return self.engine.plan()[3]

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> Iterator[str]:
        return self.engine.docker.environment_logs(key, follow=follow, since=since, tail=tail)

    def shell(self, key: EnvKey, kind: str, tty: bool = True) -> Terminal:
        return self.engine.open_shell(key, kind, tty)

    def record_session(self, entry: Mapping[str, str]) -> None:
        """Shell sessions go to an append-only JSON-lines log in the data directory."""
        path = self.engine.config.data_dir / "sessions.jsonl"
        with self._sessions_lock, path.open("a") as fh:
            fh.write(json.dumps(dict(entry), sort_keys=True) + "\n")

    def sessions(self, limit: int) -> list[dict[str, str]]:
        path = self.engine.config.data_dir / "sessions.jsonl"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()[-limit:]
        return [json.loads(line) for line in reversed(lines)]
