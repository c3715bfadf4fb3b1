"""What the API needs of the daemon: the ``ControlPlane`` protocol and its terminal type.

Routes see the daemon only through this protocol (``reconciler.api.controlplane`` implements
it over the engine and the state writer), so the API can be tested and benchmarked against an
in-memory plane and never reaches a driver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from reconciler.core.model import DesiredEnvironment, EnvKey, StateConfig
from reconciler.core.planner import Plan
from reconciler.core.promotion import Release
from reconciler.engine.buildqueue import BuildQueue
from reconciler.engine.history import Histories
from reconciler.engine.images import ImageCollector
from reconciler.engine.jobs import JobStore, Progress
from reconciler.engine.status import DaemonStatus, EnvironmentStatus
from reconciler.gitops import changes
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.gitsource import Author, CommitInfo, GitSource
from reconciler.gitops.statewriter import WriteResult
from webhooks.events import PullRequestEvent


class DataPlane(Protocol):
    """The data operations the API starts (``reconciler.data.operations.DataOps``)."""

    def environment(self, key: EnvKey) -> DesiredEnvironment:
        """The environment as the last pass resolved it; ``environment_not_found`` or
        ``environment_held`` otherwise (the API asks before it starts a job)."""
        ...

    def backups(self, key: EnvKey) -> list[dict[str, Any]]: ...

    def backup(self, key: EnvKey, reason: str, progress: Progress) -> dict[str, Any]: ...

    def restore(
        self,
        target_key: EnvKey,
        backup_id: str,
        source_key: EnvKey | None = None,
        *,
        confirm: bool = False,
        progress: Progress,
    ) -> dict[str, Any]: ...

    def clone(
        self, source_key: EnvKey, target_key: EnvKey, progress: Progress
    ) -> dict[str, Any]: ...

    def request_rollback(self, key: EnvKey, confirm: bool = False) -> dict[str, Any]:
        """Mark the data an update replaced to be put back; returns its record (``revision``:
        what the environment is then pinned to). ``nothing_kept``, ``confirm_required``."""
        ...

    def cancel_rollback(self, key: EnvKey) -> None:
        """Take the mark back (the pin could not be committed)."""
        ...

    def export(self, key: EnvKey, out: BinaryIO) -> dict[str, Any]: ...

    def import_dump(
        self, key: EnvKey, path: Path, *, confirm: bool = False, progress: Progress
    ) -> dict[str, Any]: ...

    def mail_list(self, key: EnvKey, limit: int, query: str | None) -> list[dict[str, Any]]: ...

    def mail_get(self, key: EnvKey, mail_id: str) -> dict[str, Any]: ...

    def admin_credentials(self, key: EnvKey) -> dict[str, Any]:
        """The Odoo administrator's ``login`` and ``password`` (``verified``: the database
        holds that password)."""
        ...

    def rotate_admin_password(self, key: EnvKey) -> dict[str, Any]:
        """A new administrator password, in the secret store and the database."""
        ...

    def golden_status(self, key: EnvKey) -> dict[str, Any]:
        """The golden copy of a production environment; ``golden_not_production``."""
        ...

    def refresh_golden(self, key: EnvKey, reason: str, progress: Progress) -> dict[str, Any]:
        """Make the golden copy of a production environment again."""
        ...


class Terminal(Protocol):
    """A process with stdin, with or without a TTY (``ShellSession`` of the Docker driver)."""

    tty: bool

    def read(self) -> tuple[int, bytes]:
        """The next output chunk and its stream (1 stdout, 2 stderr; always 1 with a TTY);
        ``b""`` once the process has ended."""
        ...

    def write(self, data: bytes) -> None: ...

    def close_input(self) -> None:
        """End of input: the process reads end-of-file (with a TTY: Ctrl-D is typed)."""
        ...

    def exit_code(self) -> int | None: ...

    def resize(self, columns: int, rows: int) -> None: ...

    def close(self) -> None: ...


class ControlPlane(Protocol):
    """What the API needs of the daemon (``reconciler.api.controlplane.DaemonControlPlane``)."""

    def statuses(self) -> Mapping[str, EnvironmentStatus]: ...

    def events(self, key: EnvKey) -> list[dict[str, Any]]: ...

    def daemon_status(self) -> DaemonStatus: ...

    def state(self) -> StateConfig | None: ...

    def plan(self) -> Plan: ...

    def routes(self) -> dict[str, Any]:
        """The proxy's route table and certificates (``Routes.describe``)."""
        ...

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
        """Commit ``op`` as ``author`` for the token ``subject`` (``StateWriter.submit``)."""
        ...

    def check_write(self, op: changes.Operation | changes.FileOperation) -> None:
        """Raise what ``write`` would refuse ``op`` for now; commit nothing
        (``StateWriter.check``)."""
        ...

    def trigger(self) -> None: ...

    def retry(self) -> None:
        """An operator's explicit request (``odooops reconcile``): a pass now, and the
        environments held after a failure that waiting cannot fix run again too."""
        ...

    def state_repository(self) -> str:
        """The state repository's URL (credentials hidden): its pushes concern the daemon."""
        ...

    def audit(
        self, limit: int, visible: Callable[[frozenset[str]], bool] | None = None
    ) -> list[CommitInfo]:
        """The newest ``limit`` commits of main, only those whose changed paths are
        ``visible`` when given."""
        ...

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> AsyncIterator[str]:
        """Log lines, read on the event loop (a followed stream holds no thread)."""
        ...

    def change_requests(self) -> ChangeRequests: ...

    def images(self) -> ImageCollector | None:
        """The daemon's image collector; None where no daemon runs (a git-only API)."""
        ...

    def shell(self, key: EnvKey, kind: str, tty: bool = True) -> Terminal: ...

    def record_session(self, entry: Mapping[str, str]) -> None: ...

    def sessions(self, limit: int) -> list[dict[str, str]]: ...

    def data(self) -> DataPlane: ...

    def jobs(self) -> JobStore: ...

    def builds(self) -> BuildQueue | None:
        """The daemon's image builds; None where no daemon runs (a git-only API)."""
        ...

    def pull_request(self, event: PullRequestEvent) -> None:
        """A signed pull-request delivery of a watched repository: an application
        repository's opens, extends or closes its preview; the state repository's is
        reviewed (validate and plan of its head). Queued: returns at once."""
        ...

    def release(self, key: EnvKey) -> Release | None:
        """What ``key`` runs (``reconciler.engine.releases``); None when the daemon has no
        status for it. ``not_found`` where no daemon runs (a git-only API)."""
        ...

    def app_repository(self, project: str) -> GitSource:
        """The mirror of ``project``'s application repository, with the project's credentials
        (a branch is pushed through it). ``not_found`` where no daemon runs."""
        ...

    def histories(self) -> Histories | None:
        """Deployment histories and rollbacks; None where no daemon runs (a git-only API)."""
        ...
