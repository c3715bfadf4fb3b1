"""Webhook signatures and parsing for GitHub, GitLab and Gitea (pure)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from webhooks import InvalidDelivery, PullRequestEvent, PushEvent, parse, verify

SECRET = "It's a Secret to Everybody"


def test_github_documented_test_vector_verifies() -> None:
    """GitHub's docs: this secret and body give this signature."""
    sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": f"sha256={sig}"}
    assert verify(headers, b"Hello, World!", SECRET) == "github"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-GitHub-Event": "push"},
        {"X-Gitea-Event": "push", "X-Gitea-Signature": "0" * 64},
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "wrong"},
        {"Content-Type": "application/json"},
    ],
    ids=["github-wrong", "github-missing", "gitea-wrong", "gitlab-wrong", "no-forge"],
)
def test_forged_or_unsigned_deliveries_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidDelivery) as info:
        verify(headers, b"{}", SECRET)
    assert info.value.code == "invalid_webhook"
    assert info.value.remediation


def test_gitea_signature_is_bare_hex_and_wins_over_github_headers() -> None:
    body = b'{"ref": "refs/heads/main"}'
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Gitea-Event": "push", "X-GitHub-Event": "push", "X-Gitea-Signature": sig}
    assert verify(headers, body, SECRET) == "gitea"


def test_gitlab_token_is_the_shared_secret() -> None:
    assert (
        verify({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}, b"{}", SECRET) == "gitlab"
    )


def test_github_push_of_a_deleted_branch() -> None:
    body = json.dumps(
        {
            "ref": "refs/heads/feature/x",
            "before": "a" * 40,
            "after": "0" * 40,
            "deleted": True,
            "repository": {"clone_url": "https://github.com/acme/addons.git"},
        }
    )
    event = parse({"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}, body.encode())
    assert event == PushEvent(
        "github", "push", "d-1", "https://github.com/acme/addons.git", "feature/x", "0" * 40, True
    )


def test_github_pull_request_closed_and_merged() -> None:
    body = json.dumps(
        {
            "action": "closed",
            "number": 7,
            "pull_request": {
                "head": {"ref": "feature/x", "sha": "b" * 40},
                "base": {"ref": "main"},
                "merged": True,
            },
            "repository": {"clone_url": "u"},
        }
    )
    event = parse({"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-2"}, body.encode())
    assert isinstance(event, PullRequestEvent)
    assert (event.action, event.number, event.head_branch, event.merged) == (
        "closed",
        7,
        "feature/x",
        True,
    )


def test_gitlab_merge_request_update_is_a_synchronize() -> None:
    body = json.dumps(
        {
            "object_kind": "merge_request",
            "project": {"git_http_url": "u"},
            "object_attributes": {
                "action": "update",
                "iid": 3,
                "source_branch": "feature/y",
                "target_branch": "main",
                "last_commit": {"id": "c" * 40},
            },
        }
    )
    event = parse({"X-Gitlab-Event": "Merge Request Hook"}, body.encode())
    assert isinstance(event, PullRequestEvent)
    assert (event.action, event.head_branch, event.head_sha) == (
        "synchronize",
        "feature/y",
        "c" * 40,
    )


def test_gitlab_push_to_a_branch() -> None:
    body = json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/main",
            "after": "d" * 40,
            "project": {"git_http_url": "u"},
        }
    )
    event = parse({"X-Gitlab-Event": "Push Hook"}, body.encode())
    assert event == PushEvent("gitlab", "push", "", "u", "main", "d" * 40, False)


def test_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidDelivery):
        parse({"X-GitHub-Event": "push"}, b"payload=%7B%7D")
