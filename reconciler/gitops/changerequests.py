"""Change requests on a plain git remote: protected writes wait for a second person.

A change request is a branch ``odooops/change-<id>`` made by ``StateWriter``. Everything that
happens to it is a commit on that branch, so the audit trail stays in git: an approval is an
empty commit with an ``Approved-By`` trailer, closing one adds ``Closed-By``, merging applies
the branch's file changes to ``main`` (validated as a whole state, re-applied on a moving head
like any write) and then records ``Merged-As``. Approval must come from someone other than the
author: four eyes on production.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.errors import OdooOpsError
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, CommitInfo, GitSource

PREFIX = "odooops/change-"


class UnknownChangeRequest(OdooOpsError):
    code = "unknown_change_request"


class ChangeRequestRefused(OdooOpsError):
    code = "forbidden"


@dataclass(frozen=True)
class ChangeRequest:
    id: str
    branch: str
    title: str
    author: str  # "Name <email>" of the change itself
    author_email: str
    state: str  # open, merged, closed
    approvals: tuple[str, ...]
    files: tuple[str, ...]
    head: str
    merged_as: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "branch": self.branch,
            "title": self.title,
            "author": self.author,
            "state": self.state,
            "approvals": list(self.approvals),
            "files": list(self.files),
            "head": self.head,
            "merged_as": self.merged_as,
        }


class ChangeRequests:
    def __init__(self, repo: GitSource, main: str = "main") -> None:
        self.repo = repo
        self.main = main

    def list(self, fetch: bool = True) -> list[ChangeRequest]:
        if fetch:
            self.repo.fetch()
        return [self._load(b) for b in sorted(self.repo.branches()) if b.startswith(PREFIX)]

    def get(self, request_id: str, fetch: bool = True) -> ChangeRequest:
        if fetch:
            self.repo.fetch()
        branch = PREFIX + request_id.removeprefix(PREFIX)
        if branch not in self.repo.branches():
            raise UnknownChangeRequest(
                f"no change request {request_id}",
                remediation="odooops requests list --state-repo URL",
            )
        return self._load(branch)

    def _load(self, branch: str) -> ChangeRequest:
        head = self.repo.branches()[branch]
        base = self.repo.merge_base(self.main, head) or head
        commits = self.repo.history(head, limit=200, until=base)  # newest first
        change = next((c for c in reversed(commits) if not _is_event(c)), None)
        approvals = tuple(c.trailers["Approved-By"] for c in commits if "Approved-By" in c.trailers)
        merged = next((c.trailers["Merged-As"] for c in commits if "Merged-As" in c.trailers), "")
        closed = any("Closed-By" in c.trailers for c in commits)
        state = "merged" if merged else "closed" if closed else "open"
        return ChangeRequest(
            id=branch.removeprefix(PREFIX),
            branch=branch,
            title=change.summary if change else "(empty)",
            author=f"{change.author_name} <{change.author_email}>" if change else "",
            author_email=change.author_email if change else "",
            state=state,
            approvals=approvals,
            files=tuple(sorted(self.repo.changed_files(base, head))),
            head=head,
            merged_as=merged,
        )

    def approve(self, request_id: str, who: Author) -> ChangeRequest:
        cr = self._open_request(request_id)
        if who.email.lower() == cr.author_email.lower():
            raise ChangeRequestRefused(
                f"{who.email} wrote change request {cr.id} and cannot approve it",
                remediation=f"ask another person: odooops requests approve {cr.id} "
                "--state-repo URL",
            )
        self._event(
            cr, who, f"chore(review): approve {cr.id}", f"Approved-By: {who.name} <{who.email}>"
        )
        return self.get(cr.id, fetch=False)

    def close(self, request_id: str, who: Author) -> ChangeRequest:
        cr = self._open_request(request_id)
        self._event(
            cr, who, f"chore(review): close {cr.id}", f"Closed-By: {who.name} <{who.email}>"
        )
        return self.get(cr.id, fetch=False)

    def merge(self, request_id: str, who: Author) -> str:
        """Apply the change to main; returns the commit on main."""
        cr = self._open_request(request_id)
        if not any(
            a.split("<")[-1].rstrip(">").lower() != cr.author_email.lower() for a in cr.approvals
        ):
            raise ChangeRequestRefused(
                f"change request {cr.id} needs an approval by someone other than its author",
                remediation=f"odooops requests approve {cr.id} --state-repo URL (as another "
                "person)",
            )
        base = self.repo.merge_base(self.main, cr.head) or cr.head
        edit = self.repo.changed_files(base, cr.head)
        author_name, _, rest = cr.author.partition(" <")
        author = Author(author_name, rest.rstrip(">"))

        def build(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            changes.validated(files, edit, self.repo.display_url)
            approvers = "".join(f"Approved-By: {a}\n" for a in cr.approvals)
            return dict(edit), (
                f"{cr.title}\n\nChange-Request: {cr.id}\n{approvers}"
                f"Merged-By: {who.name} <{who.email}>\n"
            )

        landed = self.repo.commit_with(self.main, build, author)
        self._event(cr, who, f"chore(review): merged {cr.id}", f"Merged-As: {landed}")
        return landed

    def _open_request(self, request_id: str) -> ChangeRequest:
        cr = self.get(request_id)
        if cr.state != "open":
            raise ChangeRequestRefused(
                f"change request {cr.id} is {cr.state}",
                code="conflict",
                remediation="odooops requests list --state-repo URL",
            )
        return cr

    def _event(self, cr: ChangeRequest, who: Author, title: str, trailer: str) -> None:
        self.repo.commit_with(
            cr.branch, lambda files: ({}, f"{title}\n\n{trailer}\n"), who, allow_empty=True
        )


def _is_event(commit: CommitInfo) -> bool:
    return any(k in commit.trailers for k in ("Approved-By", "Closed-By", "Merged-As"))
