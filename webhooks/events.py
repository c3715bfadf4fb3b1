"""Deliveries parsed into the few facts a reconciler needs.

Push: which repository and branch moved, to which commit (or was deleted). Only a ref under
``refs/heads/`` is a branch: a pushed tag (``refs/tags/...``) is a ``TagEvent``, and any other
ref a plain ``Event``, so no tag is ever mistaken for a branch called ``refs/tags/v1``. Pull
request: opened/updated/closed, head branch and commit, merged or not. Everything else is an
``Event`` that only triggers a pass. The delivery id (the idempotency key: a redelivery keeps
it) is kept so the receiver can drop duplicates.

A delivery is signed by a forge, but its body is still read as untrusted JSON: a field of the
wrong type reads as empty, never as a crash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhooks.signatures import InvalidDelivery, forge_of, header

ZERO = "0" * 40
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"


@dataclass(frozen=True)
class Event:
    forge: str
    kind: str
    delivery: str
    repository: str


@dataclass(frozen=True)
class PushEvent(Event):
    branch: str
    after: str
    deleted: bool


@dataclass(frozen=True)
class TagEvent(Event):
    """A tag was pushed, moved or deleted (``kind`` is ``tag_push``, GitLab's name for it)."""

    tag: str
    after: str
    deleted: bool


@dataclass(frozen=True)
class PullRequestEvent(Event):
    action: str  # opened, synchronize, reopened, closed, labeled, unlabeled, edited
    number: int
    head_branch: str
    head_sha: str
    base_branch: str
    merged: bool
    url: str = ""  # the request's web page
    author: str = ""  # the forge account that opened it
    labels: tuple[str, ...] = ()
    fork: bool = False  # its head branch lives in another repository

    @property
    def closed(self) -> bool:
        return self.action == "closed"


_GITLAB_ACTIONS = {
    "open": "opened",
    "reopen": "reopened",
    "update": "synchronize",
    "close": "closed",
    "merge": "closed",
}


def parse(headers: Mapping[str, str], body: bytes) -> Event:
    """Parse an (already verified) delivery."""
    forge = forge_of(headers)
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidDelivery(
            "delivery body is not JSON",
            remediation="set the webhook content type to application/json",
        ) from exc
    if not isinstance(doc, dict):
        raise InvalidDelivery(
            "delivery body is not a JSON object",
            remediation="set the webhook content type to application/json",
        )
    delivery = (
        header(headers, "X-GitHub-Delivery")
        or header(headers, "X-Gitea-Delivery")
        or header(headers, "X-Gitlab-Event-UUID")
        or ""
    )
    if forge == "gitlab":
        return _gitlab(doc, delivery)
    kind = (
        header(headers, "X-Gitea-Event") if forge == "gitea" else header(headers, "X-GitHub-Event")
    ) or ""
    repo = _text(_object(doc, "repository"), "clone_url")
    if kind == "push":
        after = _text(doc, "after")
        deleted = doc.get("deleted") is True or after == ZERO
        return _push(forge, delivery, repo, _text(doc, "ref"), after, deleted)
    if kind == "pull_request":
        pr = _object(doc, "pull_request")
        head, base = _object(pr, "head"), _object(pr, "base")
        head_repo = _text(_object(head, "repo"), "full_name")
        return PullRequestEvent(
            forge,
            kind,
            delivery,
            repo,
            _text(doc, "action"),
            _number(doc, "number"),
            _text(head, "ref"),
            _text(head, "sha"),
            _text(base, "ref"),
            pr.get("merged") is True,
            url=_text(pr, "html_url"),
            author=_text(_object(pr, "user"), "login"),
            labels=_names(pr.get("labels"), "name"),
            # A head repository other than the base's (or none: a deleted fork) is a fork.
            fork=head_repo.lower() != _text(_object(base, "repo"), "full_name").lower(),
        )
    return Event(forge, kind, delivery, repo)


def _gitlab(doc: Mapping[str, Any], delivery: str) -> Event:
    kind = _text(doc, "object_kind")
    repo = _text(_object(doc, "project"), "git_http_url")
    if kind in ("push", "tag_push"):
        after = _text(doc, "after")
        return _push("gitlab", delivery, repo, _text(doc, "ref"), after, after == ZERO)
    if kind == "merge_request":
        attrs = _object(doc, "object_attributes")
        action = _text(attrs, "action")
        return PullRequestEvent(
            "gitlab",
            "pull_request",
            delivery,
            repo,
            _GITLAB_ACTIONS.get(action, action),
            _number(attrs, "iid"),
            _text(attrs, "source_branch"),
            _text(_object(attrs, "last_commit"), "id"),
            _text(attrs, "target_branch"),
            action == "merge",
            url=_text(attrs, "url"),
            author=_text(_object(doc, "user"), "username"),
            labels=_names(doc.get("labels"), "title"),
            fork=attrs.get("source_project_id") != attrs.get("target_project_id"),
        )
    return Event("gitlab", kind, delivery, repo)


def _push(forge: str, delivery: str, repo: str, ref: str, after: str, deleted: bool) -> Event:
    """A push, by the kind of ref it moved: a branch, a tag, or something else."""
    if ref.startswith(BRANCH_PREFIX) and len(ref) > len(BRANCH_PREFIX):
        branch = ref.removeprefix(BRANCH_PREFIX)
        return PushEvent(forge, "push", delivery, repo, branch, after, deleted)
    if ref.startswith(TAG_PREFIX) and len(ref) > len(TAG_PREFIX):
        tag = ref.removeprefix(TAG_PREFIX)
        return TagEvent(forge, "tag_push", delivery, repo, tag, after, deleted)
    return Event(forge, "push", delivery, repo)


def _object(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _names(items: Any, key: str) -> tuple[str, ...]:
    """Label names of a list of label objects; anything else reads as no label."""
    if not isinstance(items, list):
        return ()
    return tuple(t for item in items if isinstance(item, dict) and (t := _text(item, key)))


def _number(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
