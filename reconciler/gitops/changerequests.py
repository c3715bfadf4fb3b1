"""Change requests on a plain git remote: protected writes wait for a second person.

A change request is a branch ``odooops/change-<id>`` whose id the server chooses
(``StateWriter``), never a client. Everything that happens to it is a commit on that branch, so
the audit trail stays in git:

- a *change* commit made for a token carries ``OdooOps-Subject: S``; the first one names the
  request's *owner*, and only the owner may add changes later (``StateWriter.submit`` with
  ``change_request``);
- an *approval* is an empty commit ``Approved-By: NAME <EMAIL> (subject S) at COMMIT`` naming
  the change it approved. It counts only while that commit is still the request's last change:
  any change after an approval makes every earlier approval stale;
- closing adds ``Closed-By``; merging applies exactly the approved content to ``main`` (validated
  as a whole state, re-applied on a moving head like any write) and then records ``Merged-As``.
  A request whose branch moved after its approval is refused (``approval_stale``).

Four eyes: the approver must differ from every author of the request's changes, both as an
identity and by email. The identity of a token's write is its subject; git has no subjects, so a
commit without ``OdooOps-Subject`` (a direct push, the CLI's ``--state-repo`` mode) is identified
by its author email written ``<email>``, which no token subject can spell (``auth`` refuses angle
brackets in subjects).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.core.errors import OdooOpsError
from reconciler.core.secretrefs import SecretPolicy
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, CommitInfo, GitSource

PREFIX = "odooops/change-"
SUBJECT_TRAILER = "OdooOps-Subject"
# Far more commits than any request has; the oldest one names the owner.
_MAX_COMMITS = 1000
_APPROVAL = re.compile(r"(?P<by>.*) \(subject (?P<subject>\S+)\) at (?P<commit>[0-9a-f]{40})")


class UnknownChangeRequest(OdooOpsError):
    code = "unknown_change_request"


class ChangeRequestRefused(OdooOpsError):
    code = "forbidden"


def identity(subject: str | None, email: str) -> str:
    """Who wrote or reviewed: the token subject, else ``<email>`` (direct git access)."""
    return subject or f"<{email.lower()}>"


@dataclass(frozen=True)
class Approval:
    """One ``Approved-By`` trailer: who, as which identity, and the change commit approved."""

    by: str  # "Name <email>"
    subject: str
    commit: str

    @property
    def email(self) -> str:
        return self.by.rpartition("<")[2].rstrip(">").lower()

    def trailer(self) -> str:
        return f"{self.by} (subject {self.subject}) at {self.commit}"

    @classmethod
    def parse(cls, text: str) -> Approval:
        """An approval of the current format; older ones (no commit) parse as naming none."""
        match = _APPROVAL.fullmatch(text.strip())
        if match is None:
            return cls(text.strip(), "", "")
        return cls(match["by"], match["subject"], match["commit"])

    def to_dict(self) -> dict[str, str]:
        return {"by": self.by, "subject": self.subject, "commit": self.commit}


@dataclass(frozen=True)
class ChangeRequest:
    id: str
    branch: str
    title: str
    author: str  # "Name <email>" of its first change
    author_email: str
    owner: str  # the identity that opened it: only it may add changes
    state: str  # open, merged, closed
    approvals: tuple[Approval, ...]  # of the last change, still valid
    stale_approvals: tuple[Approval, ...]  # of an earlier change, or of the old format
    files: tuple[str, ...]
    head: str
    last_change: str  # the newest change commit (events excluded): what an approval names
    authors: tuple[tuple[str, str, str], ...] = ()  # (identity, name, email) of every change
    merged_as: str = ""

    @property
    def author_identities(self) -> frozenset[str]:
        return frozenset(who for who, _, _ in self.authors)

    @property
    def author_emails(self) -> frozenset[str]:
        return frozenset(email.lower() for _, _, email in self.authors)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "branch": self.branch,
            "title": self.title,
            "author": self.author,
            "owner": self.owner,
            "state": self.state,
            "approvals": [a.to_dict() for a in self.approvals],
            "stale_approvals": len(self.stale_approvals),
            "files": list(self.files),
            "head": self.head,
            "last_change": self.last_change,
            "merged_as": self.merged_as,
        }


class ChangeRequests:
    def __init__(
        self,
        repo: GitSource,
        main: str = "main",
        secrets: Callable[[], SecretPolicy] = SecretPolicy,
    ) -> None:
        self.repo = repo
        self.main = main
        self.secrets = secrets

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

    def joinable(self, request_id: str, caller: str, fetch: bool = True) -> ChangeRequest:
        """The open request ``caller`` may add a change to: only the one it opened."""
        cr = self._open_request(request_id, fetch)
        if cr.owner != caller:
            raise ChangeRequestRefused(
                f"change request {cr.id} was opened by someone else: only its owner may add "
                "changes to it",
                remediation="send the write without change_request (or --request): it opens "
                "a change request of its own",
            )
        return cr

    def _load(self, branch: str) -> ChangeRequest:
        head = self.repo.branches()[branch]
        base = self.repo.merge_base(self.main, head) or head
        commits = self.repo.history(head, limit=_MAX_COMMITS, until=base)  # newest first
        made = [c for c in commits if not _is_event(c)]
        last = made[0].sha if made else ""
        first = made[-1] if made else None
        valid: list[Approval] = []
        stale: list[Approval] = []
        newer_than_last = True
        for commit in commits:
            if commit.sha == last:
                newer_than_last = False
            if "Approved-By" not in commit.trailers:
                continue
            approval = Approval.parse(commit.trailers["Approved-By"])
            current = newer_than_last and approval.commit == last and bool(last)
            (valid if current else stale).append(approval)
        merged = next((c.trailers["Merged-As"] for c in commits if "Merged-As" in c.trailers), "")
        closed = any("Closed-By" in c.trailers for c in commits)
        state = "merged" if merged else "closed" if closed else "open"
        return ChangeRequest(
            id=branch.removeprefix(PREFIX),
            branch=branch,
            title=first.summary if first else "(empty)",
            author=f"{first.author_name} <{first.author_email}>" if first else "",
            author_email=first.author_email if first else "",
            owner=_identity_of(first) if first else "",
            state=state,
            approvals=tuple(valid),
            stale_approvals=tuple(stale),
            files=tuple(sorted(self.repo.changed_files(base, head))),
            head=head,
            last_change=last,
            authors=tuple(
                dict.fromkeys((_identity_of(c), c.author_name, c.author_email) for c in made)
            ),
            merged_as=merged,
        )

    def approve(self, request_id: str, who: Author, subject: str | None = None) -> ChangeRequest:
        """Approve the request's last change as ``subject`` (a token's; None: git access)."""
        cr = self._open_request(request_id)
        approver = identity(subject, who.email)
        if not cr.last_change:
            raise ChangeRequestRefused(
                f"change request {cr.id} holds no change to approve",
                code="conflict",
                remediation=f"odooops requests close {cr.id} --state-repo URL",
            )
        if approver in cr.author_identities or who.email.lower() in cr.author_emails:
            raise ChangeRequestRefused(
                f"{approver} ({who.email}) wrote change request {cr.id} and cannot approve it",
                remediation=f"ask another person: odooops requests approve {cr.id} "
                "--state-repo URL",
            )
        approval = Approval(f"{who.name} <{who.email}>", approver, cr.last_change)
        self._event(
            cr, who, f"chore(review): approve {cr.id}", f"Approved-By: {approval.trailer()}"
        )
        return self.get(cr.id, fetch=False)

    def close(self, request_id: str, who: Author, subject: str | None = None) -> ChangeRequest:
        cr = self._open_request(request_id)
        closer = identity(subject, who.email)
        self._event(
            cr,
            who,
            f"chore(review): close {cr.id}",
            f"Closed-By: {who.name} <{who.email}> (subject {closer})",
        )
        return self.get(cr.id, fetch=False)

    def merge(self, request_id: str, who: Author, subject: str | None = None) -> str:
        """Apply the approved change to main; returns the commit on main.

        Only what was approved is applied (the diff up to the approved commit), and only when
        nothing changed after the approval: a request extended or altered since is refused.
        """
        cr = self._open_request(request_id)
        approvals = [
            a
            for a in cr.approvals
            if a.subject not in cr.author_identities and a.email not in cr.author_emails
        ]
        if not approvals and cr.stale_approvals:
            raise ChangeRequestRefused(
                f"change request {cr.id} changed after its approval: its last change is "
                f"{cr.last_change[:12]}, approvals name an earlier state",
                code="approval_stale",
                remediation=f"review it again: odooops requests show {cr.id} --state-repo URL, "
                f"then odooops requests approve {cr.id} --state-repo URL (as someone other "
                "than its authors)",
            )
        if not approvals:
            raise ChangeRequestRefused(
                f"change request {cr.id} needs an approval by someone other than its authors",
                remediation=f"odooops requests approve {cr.id} --state-repo URL (as another "
                "person)",
            )
        if self.repo.tree_id(cr.head) != self.repo.tree_id(cr.last_change):
            raise ChangeRequestRefused(
                f"change request {cr.id} changed after its approval: a review commit on its "
                "branch alters files",
                code="approval_stale",
                remediation=f"close it and open a new one: odooops requests close {cr.id} "
                "--state-repo URL",
            )
        base = self.repo.merge_base(self.main, cr.last_change) or cr.last_change
        edit = self.repo.changed_files(base, cr.last_change)
        author_name, _, rest = cr.author.partition(" <")
        author = Author(author_name, rest.rstrip(">"))
        merger = identity(subject, who.email)
        co_authors = "".join(
            f"Co-Authored-By: {name} <{email}>\n"
            for name, email in dict.fromkeys((n, e) for _, n, e in cr.authors)
            if f"{name} <{email}>" != cr.author
        )

        def build(files: dict[str, bytes]) -> tuple[dict[str, bytes | None], str]:
            changes.validated(files, edit, self.repo.display_url, self.secrets())
            approvers = "".join(f"Approved-By: {a.trailer()}\n" for a in approvals)
            return dict(edit), (
                f"{cr.title}\n\nChange-Request: {cr.id}\nApproved-Commit: {cr.last_change}\n"
                f"{approvers}{co_authors}Merged-By: {who.name} <{who.email}> (subject {merger})\n"
            )

        landed = self.repo.commit_with(self.main, build, author)
        self._event(cr, who, f"chore(review): merged {cr.id}", f"Merged-As: {landed}")
        return landed

    def _open_request(self, request_id: str, fetch: bool = True) -> ChangeRequest:
        cr = self.get(request_id, fetch)
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


def _identity_of(commit: CommitInfo) -> str:
    return identity(commit.trailers.get(SUBJECT_TRAILER), commit.author_email)


def _is_event(commit: CommitInfo) -> bool:
    return any(k in commit.trailers for k in ("Approved-By", "Closed-By", "Merged-As"))
