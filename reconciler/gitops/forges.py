"""Pull/merge requests on GitHub, GitLab and Gitea for change requests of protected writes.

On a plain git remote OdooOps keeps change requests itself (``changerequests.py``); when the
state repository lives on a forge and a token is configured, the change-request branch also
gets a real pull request (GitHub, Gitea) or merge request (GitLab) through the forge's
documented REST API, so reviewers use the tool they already have.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler.core.errors import OdooOpsError

KINDS = ("github", "gitlab", "gitea")


class ForgeError(OdooOpsError):
    code = "forge_failed"
    retryable = True


@dataclass(frozen=True)
class Forge:
    kind: str  # github, gitlab, gitea
    api: str  # https://api.github.com, https://gitlab.example/api/v4, https://gitea.example/api/v1
    repo: str  # owner/name (GitLab: the project's full path)
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown forge {self.kind!r}; one of {', '.join(KINDS)}")

    def headers(self) -> dict[str, str]:
        """How each forge takes a token."""
        if self.kind == "gitlab":
            return {"PRIVATE-TOKEN": self.token}
        if self.kind == "github":
            return {
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        return {"Authorization": f"token {self.token}"}

    def repo_path(self, gitlab: str, other: str) -> str:
        """An API path under the repository: GitLab's by the project's encoded path."""
        api = self.api.rstrip("/")
        if self.kind == "gitlab":
            return f"{api}/projects/{urllib.parse.quote(self.repo, safe='')}/{gitlab}"
        return f"{api}/repos/{self.repo}/{other}"

    def post(self, url: str, payload: dict[str, Any], refused: Callable[[int, str], str],
             remediation: str, timeout: float = 30) -> httpx.Response:  # fmt: skip
        """POST to the forge; ``ForgeError`` when it cannot be reached or says no."""
        try:
            resp = httpx.post(url, json=payload, headers=self.headers(), timeout=timeout)
        except httpx.HTTPError as exc:
            api = self.api.rstrip("/")
            raise ForgeError(
                f"{self.kind} at {api} is unreachable: {type(exc).__name__}",
                remediation=f"curl -sI {api}",
            ) from None
        if resp.status_code >= 300:
            raise ForgeError(
                refused(resp.status_code, resp.text[:300]),
                retryable=resp.status_code >= 500,
                remediation=remediation,
            )
        return resp

    def open_change_request(self, branch: str, base: str, title: str, body: str) -> str:
        """Open the pull/merge request; returns its web URL."""
        if self.kind == "gitlab":
            payload: dict[str, Any] = {
                "source_branch": branch,
                "target_branch": base,
                "title": title,
                "description": body,
            }
            link = "web_url"
        else:
            payload = {"head": branch, "base": base, "title": title, "body": body}
            link = "html_url"
        kind = "merge" if self.kind == "gitlab" else "pull"
        resp = self.post(
            self.repo_path("merge_requests", "pulls"),
            payload,
            lambda code, text: (
                f"{self.kind} refused to open a {kind} request for {branch} ({code}): {text}"
            ),
            f"check the token's rights on {self.repo}; the branch {branch} is pushed and can "
            "be proposed by hand",
        )
        try:
            return str(resp.json()[link])
        except (ValueError, KeyError, TypeError):
            return ""


# Our three states in each forge's words (GitLab calls a failure "failed").
_STATES = {
    "github": {"pending": "pending", "success": "success", "failure": "failure"},
    "gitea": {"pending": "pending", "success": "success", "failure": "failure"},
    "gitlab": {"pending": "pending", "success": "success", "failure": "failed"},
}


def set_commit_status(
    forge: Forge, sha: str, state: str, context: str, description: str, target_url: str = ""
) -> None:
    """Post a commit status (``pending``, ``success`` or ``failure``) on ``sha``: GitHub's and
    Gitea's ``POST /repos/{repo}/statuses/{sha}``, GitLab's ``POST /projects/{id}/statuses/
    {sha}``. One status per ``context``; a newer one of the same context replaces it on the
    forge."""
    payload: dict[str, Any] = {
        "state": _STATES[forge.kind][state],
        "description": description[:140],  # GitHub's limit
        "name" if forge.kind == "gitlab" else "context": context,
    }
    if target_url:
        payload["target_url"] = target_url
    forge.post(
        forge.repo_path(f"statuses/{sha}", f"statuses/{sha}"),
        payload,
        lambda code, text: f"{forge.kind} refused the commit status of {sha[:12]} ({code}): {text}",
        f"check that the token of repository.forge may set commit statuses on {forge.repo}",
        timeout=15,
    )
