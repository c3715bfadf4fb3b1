"""Authoring commits to the state repository on behalf of a person.

The author of every commit is the caller (a token's subject, or the CLI user), never a bot, so
``git log`` of the state repository tells who changed what. A write that touches a protected
environment (production by default) does not land on the main branch: it goes to a
change-request branch that a second person merges.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.config import load_state
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import StateConfig
from reconciler.core.secretrefs import SecretPolicy
from reconciler.gitops import changes
from reconciler.gitops.forges import Forge, ForgeError
from reconciler.gitops.gitsource import Author, GitSource

log = logging.getLogger("odooops.statewriter")


@dataclass(frozen=True)
class WriteResult:
    commit: str
    branch: str
    change_request: bool
    request_id: str
    target: str  # the environment ("acme/qa") or the file ("policies.yaml") written
    url: str = ""  # the forge's pull/merge request, when one was opened


class StateWriter:
    """Commits validated writes; ``secrets`` gives the allowlist of secret references the
    daemon applies (asked at each write: named secrets come and go in its store)."""

    def __init__(
        self,
        repo: GitSource,
        branch: str = "main",
        forge: Forge | None = None,
        secrets: Callable[[], SecretPolicy] = SecretPolicy,
    ) -> None:
        self.repo = repo
        self.branch = branch
        self.forge = forge
        self.secrets = secrets

    def current(self) -> StateConfig:
        """The state at the head of the main branch (fetched now)."""
        self.repo.fetch()
        head = self.repo.resolve(self.branch)
        return load_state(self.repo.read_tree(head), head, self.repo.display_url, self.secrets())

    def submit(
        self,
        op: changes.Operation | changes.FileOperation,
        author: Author,
        *,
        request_id: str | None = None,
        via: str = "cli",
        pr: bool = False,
    ) -> WriteResult:
        """Validate and commit ``op``; to a change-request branch when it touches a protected
        environment (``changes.touched_protected``) or when asked."""
        request_id = request_id or uuid.uuid4().hex[:12]
        before = self.current()
        files = self.repo.read_tree(before.commit)
        policy = self.secrets()
        after = changes.validated(files, op.apply(files), self.repo.display_url, policy)
        protected = pr or bool(changes.touched_protected(before, after))
        target = f"odooops/change-{request_id}" if protected else self.branch

        def build(head_files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            edit = op.apply(head_files)
            if head_files == files:  # nobody wrote meanwhile: already validated above
                return edit, op.message(request_id, via)
            after = changes.validated(head_files, edit, self.repo.display_url, policy)
            head = load_state(head_files, "head", self.repo.display_url, policy)
            if not protected and changes.touched_protected(head, after):
                raise OdooOpsError(
                    f"{op.target} became protected while this write was in flight",
                    code="conflict",
                    remediation="run the command again",
                )
            return edit, op.message(request_id, via)

        commit = self.repo.commit_with(
            target, build, author, create_branch_from=self.branch if protected else None
        )
        url = ""
        if protected and self.forge is not None:
            message = op.message(request_id, via)
            title, _, body = message.partition("\n")
            try:
                url = self.forge.open_change_request(
                    target,
                    self.branch,
                    title,
                    f"{body.strip()}\n\nProposed by {author.name} <{author.email}>.",
                )
            except ForgeError as exc:  # the branch is pushed: review can still happen in git
                log.warning("change request %s: %s", request_id, exc.render())
        return WriteResult(commit, target, protected, request_id, op.target, url)
