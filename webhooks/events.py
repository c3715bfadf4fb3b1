"""Deliveries parsed into the few facts a reconciler needs.

Push: which repository and branch moved, to which commit (or was deleted). Pull request:
opened/updated/closed, head branch and commit, merged or not. Everything else is an ``Event``
that only triggers a pass. The delivery id (the idempotency key: a redelivery keeps it) is kept
so the receiver can drop duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhooks.signatures import InvalidDelivery, forge_of, header

ZERO = "0" * 40


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
class PullRequestEvent(Event):
    action: str  # opened, synchronize, reopened, closed
    number: int
    head_branch: str
    head_sha: str
    base_branch: str
    merged: bool


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
        doc: dict[str, Any] = json.loads(body)
    except ValueError as exc:
        raise InvalidDelivery(
            "delivery body is not JSON",
            remediation="set the webhook content type to application/json",
        ) from exc
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
    repo = str(doc.get("repository", {}).get("clone_url", ""))
    if kind == "push":
        return PushEvent(
            forge,
            kind,
            delivery,
            repo,
            _branch(doc.get("ref", "")),
            str(doc.get("after", "")),
            bool(doc.get("deleted")) or doc.get("after") == ZERO,
        )
    if kind == "pull_request":
        pr = doc.get("pull_request", {})
        return PullRequestEvent(
            forge,
            kind,
            delivery,
            repo,
            str(doc.get("action", "")),
            int(doc.get("number", 0)),
            str(pr.get("head", {}).get("ref", "")),
            str(pr.get("head", {}).get("sha", "")),
            str(pr.get("base", {}).get("ref", "")),
            bool(pr.get("merged")),
        )
    return Event(forge, kind, delivery, repo)


def _gitlab(doc: Mapping[str, Any], delivery: str) -> Event:
    kind = str(doc.get("object_kind", ""))
    repo = str(doc.get("project", {}).get("git_http_url", ""))
    if kind == "push":
        after = str(doc.get("after", ""))
        return PushEvent(
            "gitlab", kind, delivery, repo, _branch(str(doc.get("ref", ""))), after, after == ZERO
        )
    if kind == "merge_request":
        attrs = doc.get("object_attributes", {})
        action = str(attrs.get("action", ""))
        return PullRequestEvent(
            "gitlab",
            "pull_request",
            delivery,
            repo,
            _GITLAB_ACTIONS.get(action, action),
            int(attrs.get("iid", 0)),
            str(attrs.get("source_branch", "")),
            str(attrs.get("last_commit", {}).get("id", "")),
            str(attrs.get("target_branch", "")),
            action == "merge",
        )
    return Event("gitlab", kind, delivery, repo)


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")
