"""The daemon's side of the API: its current view for reads, the state writer for writes."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from reconciler.api.plane import Terminal
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey, StateConfig
from reconciler.core.planner import Plan
from reconciler.core.promotion import Release
from reconciler.data.operations import DataOps
from reconciler.engine.buildqueue import BuildQueue
from reconciler.engine.engine import Engine
from reconciler.engine.history import Histories
from reconciler.engine.images import ImageCollector
from reconciler.engine.jobs import JobStore
from reconciler.engine.previews import Previews
from reconciler.engine.releases import engine_release
from reconciler.engine.reviews import Reviews
from reconciler.engine.status import DaemonStatus, EnvironmentStatus
from reconciler.gitops import changes
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.gitsource import Author, CommitInfo, GitSource
from reconciler.gitops.statewriter import StateWriter, WriteResult
from webhooks.events import PullRequestEvent

# How far back a glob-limited token's audit looks for commits it may see.
AUDIT_SCAN = 2000
# How far back from a deployment's state commit the commit that changed its file is looked for.
HISTORY_SCAN = 500


class GitControlPlane:
    """What the control plane does in git: writes as commits, the audit trail, reviews."""

    def __init__(self, writer: StateWriter, trigger: Callable[[], None]) -> None:
        self.writer = writer
        self._trigger = trigger

    def write(
        self,
        op: changes.Operation | changes.FileOperation,
        author: Author,
        *,
        subject: str,
        request_id: str,
        pr: bool,
        change_request: str | None = None,
    ) -> WriteResult:
        return self.writer.submit(
            op,
            author,
            subject=subject,
            request_id=request_id,
            change_request=change_request,
            via="api",
            pr=pr,
        )

    def check_write(self, op: changes.Operation | changes.FileOperation) -> None:
        self.writer.check(op)

    def trigger(self) -> None:
        self._trigger()

    def retry(self) -> None:
        self._trigger()

    def state_repository(self) -> str:
        return self.writer.repo.url

    def audit(
        self, limit: int, visible: Callable[[frozenset[str]], bool] | None = None
    ) -> list[CommitInfo]:
        """Filtered audits read up to ``AUDIT_SCAN`` commits back to find ``limit`` visible."""
        repo = self.writer.repo
        repo.fetch()
        if visible is None:
            return repo.history(self.writer.branch, limit)
        shown: list[CommitInfo] = []
        for commit in repo.history(self.writer.branch, AUDIT_SCAN):
            if len(shown) == limit:
                break
            if visible(repo.touched(commit.sha)):
                shown.append(commit)
        return shown

    def images(self) -> ImageCollector | None:
        """Without a daemon no image is built or collected."""
        return None

    def change_requests(self) -> ChangeRequests:
        return ChangeRequests(self.writer.repo, self.writer.branch, self.writer.secrets)

    def builds(self) -> BuildQueue | None:
        return None

    def pull_request(self, event: PullRequestEvent) -> None:
        """Without a daemon there is no preview to open and no plan to post."""

    def histories(self) -> Histories | None:
        """Without a daemon nothing is deployed."""
        return None

    def commit_of(self, path: str, state_commit: str) -> CommitInfo | None:
        """The commit at or before ``state_commit`` that last changed ``path`` (the one that
        pinned or moved an environment), or None when it cannot be found."""
        repo = self.writer.repo
        try:
            if not repo.has_commit(state_commit):
                repo.fetch()
            for commit in repo.history(state_commit, HISTORY_SCAN):
                if path in repo.touched(commit.sha):
                    return commit
        except OdooOpsError:
            return None
        return None

    def routes(self) -> dict[str, Any]:
        """Without a daemon no proxy runs: no route is served."""
        return {"enabled": False, "domain": None, "proxy": None, "routes": []}

    def release(self, key: EnvKey) -> Release | None:
        raise _daemons("what an environment runs")

    def app_repository(self, project: str) -> GitSource:
        raise _daemons("the application repositories and their credentials")


class DaemonControlPlane(GitControlPlane):
    """The daemon's current view (status, plan, logs, shells) on top of the git side."""

    def __init__(
        self,
        engine: Engine,
        writer: StateWriter,
        trigger: Callable[[], None],
        previews: Previews | None = None,
        reviews: Reviews | None = None,
    ) -> None:
        super().__init__(writer, trigger)
        self.engine = engine
        self._previews = previews
        self._reviews = reviews
        self._sessions_lock = threading.Lock()
        self._jobs = JobStore(records=engine.ledger)

    def retry(self) -> None:
        self.engine.release()
        self._trigger()

    def data(self) -> DataOps:
        return self.engine.data

    def jobs(self) -> JobStore:
        return self._jobs

    def builds(self) -> BuildQueue:
        return self.engine.builds

    def pull_request(self, event: PullRequestEvent) -> None:
        if self._reviews is not None and self._reviews.deliver(event):
            return
        if self._previews is not None:
            self._previews.deliver(event, self.engine.last_good)

    def histories(self) -> Histories:
        engine = self.engine
        return Histories(engine.ledger, engine.docker, lambda: engine.data, self.commit_of)

    def close(self) -> None:
        self._jobs.close()

    def release(self, key: EnvKey) -> Release | None:
        return engine_release(self.engine, key)

    def app_repository(self, project: str) -> GitSource:
        config = self.engine.last_good
        if config is None or project not in config.projects:
            raise OdooOpsError(
                f"project {project!r} is not declared in the last valid state",
                code="not_found",
                remediation="odooops env list",
            )
        return self.engine.app_repo(config.projects[project])

    def statuses(self) -> Mapping[str, EnvironmentStatus]:
        return self.engine.status.all()

    def events(self, key: EnvKey) -> list[dict[str, Any]]:
        return self.engine.status.events(str(key))

    def daemon_status(self) -> DaemonStatus:
        return self.engine.status.daemon

    def state(self) -> StateConfig | None:
        return self.engine.last_good

    def plan(self) -> Plan:
        return self.engine.plan(fetch=False)[3]

    def routes(self) -> dict[str, Any]:
        return self.engine.routes.describe()

    def images(self) -> ImageCollector:
        return self.engine.images

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> AsyncIterator[str]:
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


def _daemons(what: str) -> OdooOpsError:
    return OdooOpsError(
        f"{what} is the daemon's: this API serves no daemon",
        code="not_found",
        remediation="log in to the daemon's API: odooops login --api URL --token X",
    )
