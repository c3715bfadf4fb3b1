"""Pull/merge requests on GitHub, GitLab and Gitea for change requests of protected writes.

On a plain git remote OdooOps keeps change requests itself (``changerequests.py``); when the
state repository lives on a forge and a token is configured, the change-request branch also
gets a real pull request (GitHub, Gitea) or merge request (GitLab) through the forge's
documented REST API, so reviewers use the tool they already have.
"""

from __future__ import annotations

import urllib.parse
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

    def open_change_request(self, branch: str, base: str, title: str, body: str) -> str:
        """Open the pull/merge request; returns its web URL."""
        api = self.api.rstrip("/")
        if self.kind == "gitlab":
            project = urllib.parse.quote(self.repo, safe="")
            url = f"{api}/projects/{project}/merge_requests"
            headers = {"PRIVATE-TOKEN": self.token}
            payload: dict[str, Any] = {
                "source_branch": branch,
                "target_branch": base,
                "title": title,
                "description": body,
            }
            link = "web_url"
        else:
            url = f"{api}/repos/{self.repo}/pulls"
            headers = (
                {
                    "Authorization": f"Bearer {self.token}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                }
                if self.kind == "github"
                else {"Authorization": f"token {self.token}"}
            )
            payload = {"head": branch, "base": base, "title": title, "body": body}
            link = "html_url"
        try:
            resp = httpx.post(url, json=payload, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            raise ForgeError(
                f"{self.kind} at {api} is unreachable: {type(exc).__name__}",
                remediation=f"curl -sI {api}",
            ) from None
        if resp.status_code >= 300:
            raise ForgeError(
                f"{self.kind} refused to open a {'merge' if self.kind == 'gitlab' else 'pull'} "
                f"request for {branch} ({resp.status_code}): {resp.text[:300]}",
                retryable=resp.status_code >= 500,
                remediation=f"check the token's rights on {self.repo}; the branch {branch} is "
                "pushed and can be proposed by hand",
            )
        try:
            return str(resp.json()[link])
        except (ValueError, KeyError, TypeError):
            return ""
