"""Pull requests on the state repository, reviewed the way Atlantis and Argo CD users expect.

When a pull request is opened on the state repository (or its branch moves), the daemon runs
``odooops validate`` and ``odooops plan`` of its head: what would change if it were merged.
The verdict is a commit status on the head (``odooops/plan``: success when the state is valid,
failure with the first problems otherwise) and the plan is a comment on the request, edited in
place on each push. Change requests the platform opens for protected writes are pull requests
too, so reviewers see their plan before they approve.

Reviewing is read-only: nothing is built, started or fetched beyond the state repository's
branch (see ``Engine.review``). Posting is best effort: a forge that fails is logged and the
request is reviewed again on its next delivery.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from reconciler.core.errors import InvalidState, OdooOpsError
from reconciler.core.model import StateConfig
from reconciler.core.planner import Plan
from reconciler.engine.previews import Comments
from reconciler.engine.queue import WorkQueue
from reconciler.gitops.forges import Forge, set_commit_status
from webhooks.events import PullRequestEvent
from webhooks.repositories import repository_id

log = logging.getLogger("odooops.reviews")

CONTEXT = "odooops/plan"
MARKER = "<!-- odooops-plan -->"
MAX_COMMENT = 60_000  # forges cap a comment at 65,536 characters
Review = Callable[[str], tuple[str, StateConfig | InvalidState, Plan | None]]


def verdict(result: StateConfig | InvalidState, the_plan: Plan | None) -> tuple[str, str, str]:
    """``(state, description, comment)`` of a reviewed head (pure)."""
    if isinstance(result, InvalidState):
        problems = [str(p) for p in result.problems] or [result.message]
        text = "\n".join(problems)
        summary = f"invalid: {len(result.problems) or 1} problem(s); {problems[0]}"
        return "failure", summary, _comment("is **invalid** (`odooops validate`)", text)
    assert the_plan is not None
    rendered = the_plan.render()
    return "success", rendered.splitlines()[-1], _comment("is valid; if merged:", rendered)


def _comment(headline: str, body: str) -> str:
    if len(body) > MAX_COMMENT:
        body = body[:MAX_COMMENT] + "\n... (cut; run odooops plan for the whole plan)"
    return f"**OdooOps**: this state {headline}\n\n```\n{body}\n```"


class Reviews:
    def __init__(
        self,
        review: Review,
        forge: Forge | None,
        state_url: str,
        comments: Comments,
    ) -> None:
        self._review = review
        self.forge = forge
        self._state_id = repository_id(state_url)
        self.comments = comments
        self._heads: dict[int, tuple[str, str]] = {}  # number -> (branch, sha), newest
        self.queue: WorkQueue[int] = WorkQueue("reviews", self._run, workers=1)
        self.reviewed: dict[int, tuple[str, str]] = {}  # number -> (head commit, state)

    def start(self) -> None:
        self.queue.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.stop(timeout)

    def deliver(self, event: PullRequestEvent) -> bool:
        """Queue a review when ``event`` is an open request of the state repository (from
        a branch of it: a fork's branch is not fetched)."""
        if repository_id(event.repository) != self._state_id or event.closed:
            return False
        if self.forge is None or event.fork or not event.head_branch or event.number <= 0:
            return False
        self._heads[event.number] = (event.head_branch, event.head_sha)
        self.queue.put(event.number, f"delivery {event.action}")
        return True

    def _run(self, number: int, reasons: tuple[str, ...]) -> float | None:
        branch, sha = self._heads[number]
        assert self.forge is not None
        try:
            if sha:
                set_commit_status(self.forge, sha, "pending", CONTEXT, "planning")
            head, result, the_plan = self._review(branch)
            state, description, body = verdict(result, the_plan)
            set_commit_status(self.forge, head, state, CONTEXT, description)
            self.reviewed[number] = (head, state)
            self._comment(number, body)
        except OdooOpsError as exc:
            log.warning("review of state request %s: %s", number, exc.render())
            return 60.0 if exc.retryable else None
        return None

    def _comment(self, number: int, body: str) -> None:
        assert self.forge is not None
        request = f"state-repository|{self.forge.kind}|{number}"
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        known = self.comments.preview_comment(request)
        if known is not None and known[1] == digest:
            return
        comment_id = self.forge.comment(number, MARKER, body, known[0] if known else "")
        self.comments.put_preview_comment(request, comment_id, digest)
