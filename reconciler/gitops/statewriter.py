"""Authoring commits to the state repository on behalf of a person.

The author of every commit is the caller (a token's subject, or the CLI user), never a bot, so
``git log`` of the state repository tells who changed what. A write that touches a protected
environment (production by default) does not land on the main branch: it goes to a
change-request branch that a second person merges.

The server names every change request (a random id): a client's request id is only a
correlation id in the ``Request-Id`` trailer. A write joins an existing request only when it
says so (``change_request``) and only when its caller opened that request; joining after an
approval makes the approval stale (``reconciler.gitops.changerequests``).
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
from reconciler.gitops.changerequests import PREFIX, SUBJECT_TRAILER, ChangeRequests, identity
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
    change_request_id: str = ""  # the request the commit went to (named by the server)


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
        subject: str | None = None,
        request_id: str | None = None,
        change_request: str | None = None,
        via: str = "cli",
        pr: bool = False,
    ) -> WriteResult:
        """Validate and commit ``op``; to a change-request branch when it touches a protected
        environment (``changes.touched_protected``), when asked (``pr``), or when joining the
        caller's own open request ``change_request``.

        ``subject`` is the token's (recorded as a trailer: the identity reviews compare);
        ``request_id`` is the client's correlation id, never a branch name.
        """
        request_id = request_id or uuid.uuid4().hex[:12]
        caller = identity(subject, author.email)
        requests = ChangeRequests(self.repo, self.branch, self.secrets)
        policy = self.secrets()
        if change_request is not None:
            joined = requests.joinable(change_request, caller)
            cr_id, protected = joined.id, True
            files = self.repo.read_tree(joined.head)
            changes.validated(files, op.apply(files), self.repo.display_url, policy)
        else:
            before = self.current()
            files = self.repo.read_tree(before.commit)
            after = changes.validated(files, op.apply(files), self.repo.display_url, policy)
            protected = pr or bool(changes.touched_protected(before, after))
            cr_id = uuid.uuid4().hex[:12] if protected else ""
        target = PREFIX + cr_id if protected else self.branch
        message = op.message(request_id, via)
        if subject is not None:
            message += f"{SUBJECT_TRAILER}: {subject}\n"
        if protected:
            message += f"Change-Request: {cr_id}\n"

        def build(head_files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            # Runs after each fetch: the request may have been merged, closed or taken meanwhile.
            if change_request is not None:
                requests.joinable(cr_id, caller, fetch=False)
            elif protected and target in self.repo.branches():
                raise OdooOpsError(
                    f"change request {cr_id} exists already",
                    code="conflict",
                    remediation="run the command again (a new id is drawn)",
                )
            edit = op.apply(head_files)
            if head_files == files:  # nobody wrote meanwhile: already validated above
                return edit, message
            after = changes.validated(head_files, edit, self.repo.display_url, policy)
            head = load_state(head_files, "head", self.repo.display_url, policy)
            if not protected and changes.touched_protected(head, after):
                raise OdooOpsError(
                    f"{op.target} became protected while this write was in flight",
                    code="conflict",
                    remediation="run the command again",
                )
            return edit, message

        opens = protected and change_request is None
        commit = self.repo.commit_with(
            target, build, author, create_branch_from=self.branch if opens else None
        )
        url = ""
        if opens and self.forge is not None:
            title, _, body = message.partition("\n")
            try:
                url = self.forge.open_change_request(
                    target,
                    self.branch,
                    title,
                    f"{body.strip()}\n\nProposed by {author.name} <{author.email}>.",
                )
            except ForgeError as exc:  # the branch is pushed: review can still happen in git
                log.warning("change request %s: %s", cr_id, exc.render())
        return WriteResult(commit, target, protected, request_id, op.target, url, cr_id)
