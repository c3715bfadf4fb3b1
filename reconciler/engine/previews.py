"""Pull-request previews, as the daemon runs them: facts in, commits and comments out.

Facts about requests come from two sides. A signed delivery (``deliver``) is acted on at once;
polling each project's forge (``poll``, every few minutes) is the safety net for deliveries
that never came. Either way a request becomes a job on a keyed queue (one per request: never
two commits racing for one request), whose run decides (``core.previews.decide``) on the state
repository's head and commits the decision (``changes.PreviewOperation``) through the state
writer, as the platform (author OdooOps, the request in a ``Preview-Of`` trailer).

A preview is removed only on a definite fact: a delivery saying the request closed, or the
forge's API answering that it is closed or merged. A request missing from the list of open
ones is looked up alone first; a forge that fails or times out changes nothing, and the
request is looked up again later. A preview whose request stays unreadable goes when its
``expires`` passes (the sweeper's business, not this module's).

The preview's URL and health are posted on the request as one comment, updated in place
(``publish``): its id is kept in the ledger, so a restart edits the same comment.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from reconciler.core import previews
from reconciler.core.errors import InvalidState, OdooOpsError
from reconciler.core.model import EnvironmentSpec, EnvKey, Project, SecretRef, StateConfig
from reconciler.core.previews import CLOSED, MERGED, OPEN, PullRequest
from reconciler.engine.queue import WorkQueue
from reconciler.engine.status import EnvironmentStatus, Health
from reconciler.gitops import changes
from reconciler.gitops.forges import Forge
from reconciler.gitops.gitsource import Author
from reconciler.gitops.statewriter import WriteResult
from webhooks.events import PullRequestEvent
from webhooks.repositories import repository_id

log = logging.getLogger("odooops.previews")

AUTHOR = Author("OdooOps", "odooops@localhost")
RETRY_SECONDS = 60.0  # a request whose forge failed is looked at again after this

# A token for a forge API URL (checked against the hosts its secret is declared for).
Credential = Callable[[SecretRef, str], str]
RequestKey = tuple[str, str, int]  # project, forge, number


class Writer(Protocol):
    """What previews need of the state writer (``StateWriter``)."""

    def current(self) -> StateConfig: ...

    def submit(
        self,
        op: changes.PreviewOperation,
        author: Author,
        *,
        subject: str | None = ...,
        via: str = ...,
    ) -> WriteResult: ...


class Comments(Protocol):
    """Where comment ids and what was last posted are kept (the ledger)."""

    def preview_comment(self, request: str) -> tuple[str, str] | None: ...

    def put_preview_comment(self, request: str, comment_id: str, digest: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What one run did about one request (for the log and the tests)."""

    kind: str  # open, extend, close, refuse, none, failed
    key: EnvKey | None
    detail: str = ""
    commit: str = ""


class Previews:
    def __init__(
        self,
        writer: Writer,
        comments: Comments,
        credential: Credential,
        statuses: Callable[[], Mapping[str, EnvironmentStatus]],
        on_commit: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.writer = writer
        self.comments = comments
        self._credential = credential
        self._statuses = statuses
        self.on_commit = on_commit  # a pass, once a preview's commit is on the remote
        self._clock = clock
        self._facts: dict[RequestKey, PullRequest] = {}  # newest fact per request, not yet run
        self._lock = threading.Lock()
        self.outcomes: dict[RequestKey, Outcome] = {}
        # The previews the last publish saw, to tell their requests when one goes otherwise
        # than by its closing (its expiry, or its file removed by hand).
        self._seen: dict[EnvKey, EnvironmentSpec] = {}
        self._closed: set[EnvKey] = set()  # removed by a close: its comment says so already
        self.queue: WorkQueue[RequestKey] = WorkQueue("previews", self._run, workers=2)

    def start(self) -> None:
        self.queue.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.stop(timeout)

    # ------------------------------------------------------------------------- input
    def deliver(self, event: PullRequestEvent, state: StateConfig | None) -> list[str]:
        """Queue a signed delivery's request for each project whose repository it is (the
        projects concerned, [] when none: an unknown repository changes nothing). Without a
        previews policy a request opens nothing, but its closing still removes a preview
        left from when there was one."""
        if state is None or event.number <= 0:
            return []
        pr = PullRequest(
            event.forge,
            event.number,
            CLOSED if event.closed and not event.merged else (MERGED if event.closed else OPEN),
            event.head_branch,
            event.head_sha,
            event.base_branch,
            event.url,
            event.author,
            event.labels,
            event.fork,
        )
        wanted = repository_id(event.repository)
        projects = [p.name for p in state.projects.values() if repository_id(p.repo_url) == wanted]
        for project in projects:
            self._queue((project, pr.forge, pr.number), pr, f"delivery {event.action}")
        return projects

    def poll(self, state: StateConfig | None) -> None:
        """The safety net: every open request of each project's forge is queued with what
        the forge says of it, and every preview whose request is not among them is queued
        to be looked up alone (only a definite closed or merged removes it)."""
        if state is None:
            return
        for project in state.projects.values():
            # Without a policy, previews left from when there was one still close.
            if state.policies.previews is None and not previews.previews(
                state.environments, project.name
            ):
                continue
            try:
                forge = self._forge(project)
                if forge is None:
                    continue
                open_requests = forge.open_requests()
            except OdooOpsError as exc:
                log.warning("previews of %s: %s", project.name, exc.render())
                continue
            for pr in open_requests:
                self._queue((project.name, pr.forge, pr.number), pr, "poll")
            numbers = {forge.kind: frozenset(pr.number for pr in open_requests)}
            for spec in previews.sweep_closed(project.name, numbers, state.environments):
                assert spec.preview is not None
                self.queue.put((project.name, spec.preview.forge, spec.preview.number), "poll")

    def _queue(self, key: RequestKey, pr: PullRequest, reason: str) -> None:
        with self._lock:
            self._facts[key] = pr
        self.queue.put(key, reason)

    # --------------------------------------------------------------------------- runs
    def _run(self, key: RequestKey, reasons: tuple[str, ...]) -> float | None:
        project_name, forge_kind, number = key
        with self._lock:
            pr = self._facts.pop(key, None)
        try:
            state = self.writer.current()
            project = state.projects.get(project_name)
            if project is None:
                self.outcomes[key] = Outcome("none", None, "the project is gone")
                return None
            if pr is None:  # a preview missing from the open list: ask the forge
                forge = self._forge(project)
                if forge is None or forge.kind != forge_kind:
                    self.outcomes[key] = Outcome("none", None, "no forge to ask; kept")
                    return None
                pr = forge.request(number)
            return self._act(project, pr, state)
        except OdooOpsError as exc:
            # A forge or the state repository failing: nothing removed, asked again later.
            log.warning("preview of %s#%s (%s): %s", forge_kind, number, project_name, exc.render())
            self.outcomes[key] = Outcome("failed", None, exc.message)
            return RETRY_SECONDS if exc.retryable else None

    def _act(self, project: Project, pr: PullRequest, state: StateConfig) -> float | None:
        key = (project.name, pr.forge, pr.number)
        policy = state.policies.previews
        decision = previews.decide(project.name, policy, pr, state.environments, self._clock())
        if decision.kind in ("none", "refuse"):
            self.outcomes[key] = Outcome(decision.kind, decision.key, decision.reason)
            if decision.kind == "refuse":
                self._comment(project, pr, None, "refused", detail=decision.reason)
            return None
        assert decision.key is not None
        op = changes.PreviewOperation(
            decision.kind,
            decision.key,
            pr.forge,
            pr.number,
            decision.fields,
            limit=policy.max_per_project if policy is not None else 0,
            reason=decision.reason,
        )
        subject = f"{pr.forge}:{pr.author}" if pr.author else None
        try:
            result = self.writer.submit(op, AUTHOR, subject=subject, via="previews")
        except changes.PreviewGone as exc:  # another run or a person got there first
            self.outcomes[key] = Outcome("none", decision.key, exc.message)
            return None
        except InvalidState as exc:
            # The state refuses it (a copy-of naming no environment, say). The request's
            # readers may not see the state repository: its problems go to the log only.
            log.warning("preview %s refused by the state: %s", decision.key, exc.render())
            self.outcomes[key] = Outcome("failed", decision.key, exc.message)
            if decision.kind == "open":
                self._comment(
                    project,
                    pr,
                    None,
                    "refused",
                    detail=f"{pr.ref} gets no preview: the state repository refused it; the "
                    "platform's operators see why in the daemon's log",
                )
            return None
        log.info("preview %s: %s (%s)", decision.key, decision.kind, decision.reason)
        self.outcomes[key] = Outcome(decision.kind, decision.key, decision.reason, result.commit)
        self.on_commit()
        if decision.kind == "open":
            self._comment(project, pr, decision.key, "preparing")
        elif decision.kind == "close":
            self._closed.add(decision.key)
            self._comment(project, pr, decision.key, "removed", detail=decision.reason)
        return None

    # ----------------------------------------------------------------------- comments
    def publish(self, state: StateConfig | None) -> None:
        """Bring each preview's comment up to date with its status (ready with its URL, or
        failed with why), and tell the request of a preview that went otherwise than by its
        closing (its expiry, or by hand); a comment whose text would not change is not sent
        again."""
        if state is None:
            return
        statuses = self._statuses()
        current = {s.key: s for s in state.environments if s.preview is not None}
        for key, gone in self._seen.items():
            project = state.projects.get(key.project)
            if key in current or key in self._closed or project is None:
                continue
            detail = "its environment expired or its file was removed from the state repository"
            self._comment(project, _request_of(gone), key, "removed", detail=detail)
        self._seen = current
        self._closed &= set(current)
        for spec in state.environments:
            if spec.preview is None:
                continue
            project = state.projects.get(spec.key.project)
            status = statuses.get(str(spec.key))
            if project is None or status is None:
                continue
            phase, detail = _phase(status)
            if phase:
                pr = _request_of(spec)
                self._comment(project, pr, spec.key, phase, status.url, status.serving, detail)

    def _comment(
        self,
        project: Project,
        pr: PullRequest,
        key: EnvKey | None,
        phase: str,
        url: str = "",
        revision: str = "",
        detail: str = "",
    ) -> None:
        """Post or update the request's comment; best effort (a forge that fails is logged
        and the same text is tried again at the next publish)."""
        if project.forge is None or project.forge.kind != pr.forge:
            return
        body = previews.comment_body(key, phase, url, revision, detail)
        request = f"{project.name}|{pr.forge}|{pr.number}"
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        known = self.comments.preview_comment(request)
        if known is not None and known[1] == digest:
            return
        try:
            forge = self._forge(project)
            assert forge is not None
            comment_id = forge.comment(
                pr.number, previews.marker(project.name), body, known[0] if known else ""
            )
        except OdooOpsError as exc:
            log.warning("comment on %s: %s", pr.ref, exc.render())
            return
        self.comments.put_preview_comment(request, comment_id, digest)

    def _forge(self, project: Project) -> Forge | None:
        settings = project.forge
        if settings is None:
            return None
        token = self._credential(settings.token, settings.api)
        return Forge(settings.kind, settings.api, settings.repo, token)


def _phase(status: EnvironmentStatus) -> tuple[str, str]:
    """The comment's phase for a status: ready once healthy and in sync, failed when its
    Ready condition says so for a reason other than waiting; "" while it gets there."""
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    if status.health is Health.HEALTHY and ready is not None and ready.status:
        return "ready", ""
    if ready is not None and not ready.status and ready.reason not in ("Pending", "Progressing"):
        return "failed", f"{ready.reason}: {ready.message}"[:500]
    return "", ""


def _request_of(spec: EnvironmentSpec) -> PullRequest:
    p = spec.preview
    assert p is not None
    return PullRequest(p.forge, p.number, OPEN, p.head, "", p.base, p.url, p.author or "")


def describe(outcomes: Mapping[RequestKey, Outcome]) -> list[dict[str, Any]]:
    """The last outcome per request, for the API (newest decisions of the daemon)."""
    return [
        {
            "project": project,
            "request": f"{forge}#{number}",
            "outcome": o.kind,
            "environment": str(o.key) if o.key else None,
            "detail": o.detail,
            "commit": o.commit,
        }
        for (project, forge, number), o in sorted(outcomes.items())
    ]
