"""The daemon's side of the API: its current view for reads, the state writer for writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from reconciler import changes
from reconciler.changerequests import ChangeRequests
from reconciler.engine import Engine
from reconciler.gitsource import Author, CommitInfo
from reconciler.model import EnvKey, StateConfig
from reconciler.planner import Plan
from reconciler.statewriter import StateWriter, WriteResult
from reconciler.status import DaemonStatus, EnvironmentStatus


class DaemonControlPlane:
    def __init__(self, engine: Engine, writer: StateWriter, trigger: Callable[[], None]) -> None:
        self.engine = engine
        self.writer = writer
        self._trigger = trigger

    def statuses(self) -> Mapping[str, EnvironmentStatus]:
        return self.engine.status.all()

    def daemon_status(self) -> DaemonStatus:
        return self.engine.status.daemon

    def state(self) -> StateConfig | None:
        return self.engine.last_good

    def plan(self) -> Plan:
        return self.engine.plan()[3]

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

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> Iterator[str]:
        return self.engine.docker.environment_logs(key, follow=follow, since=since, tail=tail)

    def change_requests(self) -> ChangeRequests:
        return ChangeRequests(self.writer.repo, self.writer.branch)
