"""Webhook signatures, parsing, relevance and the receiver's bounded body (pure: no services)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import tracemalloc
from collections.abc import Iterator, MutableMapping

import pytest
from starlette.applications import Starlette

from reconciler.api.errors import error_response
from reconciler.core.errors import OdooOpsError
from webhooks import (
    Event,
    InvalidDelivery,
    PullRequestEvent,
    PushEvent,
    TagEvent,
    concerns,
    parse,
    repository_id,
    verify,
)
from webhooks.receiver import MAX_BODY_BYTES, webhook_route

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


# ------------------------------------------------------------------------- refs and repositories


@pytest.mark.parametrize(
    ("headers", "doc"),
    [
        ({"X-GitHub-Event": "push"}, {"ref": "refs/tags/v1.0", "after": "e" * 40}),
        ({"X-Gitea-Event": "push"}, {"ref": "refs/tags/v1.0", "after": "e" * 40}),
        ({"X-Gitlab-Event": "Tag Push Hook"}, {"object_kind": "tag_push", "ref": "refs/tags/v1.0"}),
    ],
    ids=["github", "gitea", "gitlab"],
)
def test_a_pushed_tag_is_a_tag_event_never_a_branch(
    headers: dict[str, str], doc: dict[str, object]
) -> None:
    event = parse(headers, json.dumps({**doc, "after": "e" * 40}).encode())
    assert isinstance(event, TagEvent) and not isinstance(event, PushEvent)
    assert (event.kind, event.tag, event.deleted) == ("tag_push", "v1.0", False)


@pytest.mark.parametrize("ref", ["refs/notes/commits", "refs/pull/7/head", "main", "refs/heads/"])
def test_a_push_of_any_other_ref_names_no_branch(ref: str) -> None:
    event = parse({"X-GitHub-Event": "push"}, json.dumps({"ref": ref}).encode())
    assert type(event) is Event and event.kind == "push"


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b'{"ref": ["refs/heads/main"], "repository": "x", "deleted": "no"}',
        b'{"pull_request": [], "number": "seven", "repository": {"clone_url": 5}}',
        b"[" * 100_000,
    ],
    ids=["a list", "wrong types", "wrong nested types", "too deep"],
)
def test_a_signed_but_malformed_body_is_refused_or_read_as_empty_never_a_crash(
    body: bytes,
) -> None:
    for kind in ("push", "pull_request"):
        try:
            event = parse({"X-GitHub-Event": kind}, body)
        except InvalidDelivery as exc:
            assert exc.code == "invalid_webhook"
        else:
            assert event.repository == ""


@pytest.mark.parametrize(
    ("delivered", "declared"),
    [
        ("https://github.com/acme/addons.git", "https://github.com/acme/addons.git"),
        ("https://github.com/Acme/Addons.git", "git@github.com:acme/addons"),
        ("https://github.com/acme/addons", "ssh://git@github.com:22/acme/addons.git/"),
        (
            "https://gitlab.example.com/acme/addons.git",
            "https://ci:tok@gitlab.example.com/acme/addons",
        ),
        (
            "https://gitlab.example.com/acme/addons.git",
            "https://***@gitlab.example.com/acme/addons",
        ),
        ("file:///srv/git/addons.git", "/srv/git/addons"),
    ],
)
def test_one_repository_written_two_ways_is_the_same_repository(
    delivered: str, declared: str
) -> None:
    assert repository_id(delivered) == repository_id(declared)
    assert concerns(
        PushEvent("github", "push", "d", delivered, "main", "a" * 40, False), [declared]
    )


@pytest.mark.parametrize(
    ("delivered", "declared"),
    [
        ("https://github.com/acme/addons.git", "https://github.com/acme/addons-old.git"),
        ("https://github.com/acme/addons.git", "https://gitlab.com/acme/addons.git"),
        ("https://github.com/evil/acme/addons.git", "https://github.com/acme/addons.git"),
        ("", "https://github.com/acme/addons.git"),
    ],
)
def test_another_repository_is_not_watched(delivered: str, declared: str) -> None:
    event = PushEvent("github", "push", "d", delivered, "main", "a" * 40, False)
    assert not concerns(event, [declared])


def test_a_tag_of_a_watched_repository_concerns_nothing() -> None:
    url = "https://github.com/acme/addons.git"
    assert not concerns(TagEvent("github", "tag_push", "d", url, "v1", "a" * 40, False), [url])


# ------------------------------------------------------------------------------ bounded body


def _post(
    app: Starlette, body: Iterator[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, int]:
    """POST ``body`` chunk by chunk through the ASGI interface, without ever holding it whole;
    returns the answer's status and how many bytes the app pulled before answering."""
    pulled = 0
    status = [0]

    async def receive() -> dict[str, object]:
        nonlocal pulled
        chunk = next(body, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: MutableMapping[str, object]) -> None:
        if message["type"] == "http.response.start":
            status[0] = int(message["status"])  # type: ignore[call-overload]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/webhooks/github",
        "raw_path": b"/v1/webhooks/github",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-github-event", b"push"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8089),
    }
    asyncio.run(app(scope, receive, send))
    return status[0], pulled


def _app() -> Starlette:
    def refuse(event: Event) -> bool:
        raise AssertionError("an unsigned delivery reached the event handler")

    return Starlette(
        routes=[webhook_route(lambda: SECRET, refuse)],
        exception_handlers={OdooOpsError: error_response},  # type: ignore[dict-item]
    )


def test_an_endless_unsigned_body_is_refused_after_the_limit_with_memory_bounded() -> None:
    """The 600 MB POST of the issue: the receiver stops reading past 25 MiB and answers 413."""
    chunk = b"x" * 2**20
    endless = (chunk for _ in range(600))  # 600 MiB, made lazily from one chunk
    tracemalloc.start()
    try:
        status, pulled = _post(_app(), endless, [])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert pulled <= MAX_BODY_BYTES + len(chunk)
    assert peak < 2 * MAX_BODY_BYTES  # what was read, once, and no copy of the rest


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read() -> None:
    declared = str(600 * 2**20).encode()
    status, pulled = _post(_app(), iter([b"x" * 1024] * 10), [(b"content-length", declared)])
    assert (status, pulled) == (413, 0)


def test_a_body_within_the_limit_goes_on_to_the_signature_check() -> None:
    status, _ = _post(_app(), iter([b"{}"]), [(b"x-hub-signature-256", b"sha256=" + b"0" * 64)])
    assert status == 401


@pytest.mark.parametrize(
    ("headers", "doc", "want"),
    [
        (
            {"X-GitHub-Event": "pull_request"},
            {
                "action": "labeled",
                "number": 9,
                "pull_request": {
                    "head": {"ref": "f", "sha": "s", "repo": {"full_name": "bob/erp"}},
                    "base": {"ref": "main", "repo": {"full_name": "acme/erp"}},
                    "html_url": "https://github.test/acme/erp/pull/9",
                    "user": {"login": "bob"},
                    "labels": [{"name": "preview"}, {"name": 3}, "x"],
                },
                "repository": {"clone_url": "u"},
            },
            ("https://github.test/acme/erp/pull/9", "bob", ("preview",), True),
        ),
        (
            {"X-Gitea-Event": "pull_request"},
            {
                "action": "opened",
                "number": 2,
                "pull_request": {
                    "head": {"ref": "f", "sha": "s", "repo": {"full_name": "acme/erp"}},
                    "base": {"ref": "main", "repo": {"full_name": "acme/erp"}},
                    "html_url": "https://gitea.test/acme/erp/pulls/2",
                    "user": {"login": "ann"},
                    "labels": [],
                },
                "repository": {"clone_url": "u"},
            },
            ("https://gitea.test/acme/erp/pulls/2", "ann", (), False),
        ),
        (
            {"X-Gitlab-Event": "Merge Request Hook"},
            {
                "object_kind": "merge_request",
                "project": {"git_http_url": "u"},
                "user": {"username": "cy"},
                "labels": [{"title": "preview"}],
                "object_attributes": {
                    "action": "open",
                    "iid": 4,
                    "url": "https://gitlab.test/acme/erp/-/merge_requests/4",
                    "source_branch": "f",
                    "target_branch": "main",
                    "source_project_id": 8,
                    "target_project_id": 7,
                    "last_commit": {"id": "s"},
                },
            },
            ("https://gitlab.test/acme/erp/-/merge_requests/4", "cy", ("preview",), True),
        ),
    ],
)
def test_a_pull_request_says_who_opened_it_its_labels_and_whether_it_is_a_fork(
    headers: dict[str, str], doc: dict[str, object], want: tuple[object, ...]
) -> None:
    event = parse(headers, json.dumps(doc).encode())
    assert isinstance(event, PullRequestEvent)
    assert (event.url, event.author, event.labels, event.fork) == want
