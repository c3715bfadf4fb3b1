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
from reconciler.core.previews import CLOSED, MERGED, OPEN, PullRequest

KINDS = ("github", "gitlab", "gitea")
READ_TIMEOUT = 15.0
"""Seconds a read of requests or a comment may take: the forge is then taken as failing."""


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
        return self.call("POST", url, payload, refused, remediation, timeout)

    def call(
        self,
        method: str,
        url: str,
        payload: dict[str, Any] | None,
        refused: Callable[[int, str], str],
        remediation: str,
        timeout: float = 30,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request to the forge; ``ForgeError`` (retryable unless the forge refused
        with a 4xx) when it cannot be reached or says no. The token is never in the error."""
        try:
            resp = httpx.request(
                method, url, json=payload, params=params, headers=self.headers(), timeout=timeout
            )
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

    # ------------------------------------------------------------------ pull requests
    def _pulls(self) -> str:
        return self.repo_path("merge_requests", "pulls")

    def open_requests(self, max_pages: int = 10) -> list[PullRequest]:
        """The open pull (merge) requests, newest pages first, up to ``max_pages`` of 100
        (50 on Gitea, its cap). ``ForgeError`` when the list cannot be read whole: a caller
        must never take a partial list for the open ones."""
        found: list[PullRequest] = []
        per_page = 50 if self.kind == "gitea" else 100
        state = "opened" if self.kind == "gitlab" else "open"
        size = "limit" if self.kind == "gitea" else "per_page"
        for page in range(1, max_pages + 1):
            resp = self.call(
                "GET",
                self._pulls(),
                None,
                lambda code, text: f"{self.kind} refused the list of requests ({code}): {text}",
                f"check that the token of repository.forge may read {self.repo}",
                timeout=READ_TIMEOUT,
                params={"state": state, size: per_page, "page": page},
            )
            items = _json(resp)
            if not isinstance(items, list):
                raise ForgeError(
                    f"{self.kind} answered the list of requests with no list",
                    remediation=f"check repository.forge api ({self.api}) and repo ({self.repo})",
                )
            found.extend(r for item in items if (r := self.parse_request(item)) is not None)
            if len(items) < per_page:
                return found
        raise ForgeError(
            f"{self.repo} has more than {max_pages * per_page} open requests; previews read "
            "at most that many",
            retryable=False,
            remediation="close old requests, or limit previews with previews.labels",
        )

    def request(self, number: int) -> PullRequest:
        """One request, open or not; ``ForgeError`` when it cannot be read."""
        resp = self.call(
            "GET",
            f"{self._pulls()}/{number}",
            None,
            lambda code, text: f"{self.kind} refused request {number} of {self.repo} ({code})",
            f"check that the token of repository.forge may read {self.repo}",
            timeout=READ_TIMEOUT,
        )
        found = self.parse_request(_json(resp))
        if found is None:
            raise ForgeError(
                f"{self.kind} answered request {number} of {self.repo} with something else",
                remediation=f"check repository.forge api ({self.api}) and repo ({self.repo})",
            )
        return found

    def parse_request(self, item: Any) -> PullRequest | None:
        """A request of the forge's API, or None when it is not one (read as untrusted)."""
        if not isinstance(item, dict):
            return None
        if self.kind == "gitlab":
            number, state = item.get("iid"), _str(item, "state")
            pr = PullRequest(
                "gitlab",
                number if isinstance(number, int) else 0,
                {"opened": OPEN, "merged": MERGED}.get(state, CLOSED if state else ""),
                _str(item, "source_branch"),
                _str(item, "sha"),
                _str(item, "target_branch"),
                _str(item, "web_url"),
                _str(_obj(item, "author"), "username"),
                tuple(x for x in item.get("labels") or () if isinstance(x, str)),
                item.get("source_project_id") != item.get("target_project_id"),
            )
        else:
            number, head, base = item.get("number"), _obj(item, "head"), _obj(item, "base")
            merged = item.get("merged") is True or bool(item.get("merged_at"))
            state = _str(item, "state")
            pr = PullRequest(
                self.kind,
                number if isinstance(number, int) else 0,
                OPEN if state == "open" else (MERGED if merged else (CLOSED if state else "")),
                _str(head, "ref"),
                _str(head, "sha"),
                _str(base, "ref"),
                _str(item, "html_url"),
                _str(_obj(item, "user"), "login"),
                tuple(
                    n
                    for x in item.get("labels") or ()
                    if isinstance(x, dict) and (n := _str(x, "name"))
                ),
                _str(_obj(head, "repo"), "full_name").lower()
                != _str(_obj(base, "repo"), "full_name").lower(),
            )
        if pr.number <= 0 or not pr.state or not pr.head:
            return None
        return pr

    def _comments(self, number: int) -> str:
        return self.repo_path(f"merge_requests/{number}/notes", f"issues/{number}/comments")

    def _comment(self, number: int, comment_id: str) -> str:
        return self.repo_path(
            f"merge_requests/{number}/notes/{comment_id}", f"issues/comments/{comment_id}"
        )

    def comment(self, number: int, marker: str, body: str, comment_id: str = "") -> str:
        """Post ``body`` on request ``number``, or update in place the comment ``comment_id``
        (or, without one, the platform's comment carrying ``marker``, found among the
        request's comments): one comment per preview, whatever the number of updates.
        Returns the comment's id."""
        refused = lambda code, text: f"{self.kind} refused the comment on {number} ({code})"  # noqa: E731
        remediation = f"check that the token of repository.forge may comment on {self.repo}"
        text = f"{body}\n\n{marker}"
        if not comment_id:
            comment_id = self._find_comment(number, marker)
        if comment_id:
            method = "PUT" if self.kind == "gitlab" else "PATCH"
            try:
                self.call(method, self._comment(number, comment_id), {"body": text}, refused,
                          remediation, timeout=READ_TIMEOUT)  # fmt: skip
                return comment_id
            except ForgeError as exc:
                if "(404)" not in exc.message:
                    raise  # deleted by hand: posted anew below
        resp = self.call("POST", self._comments(number), {"body": text}, refused, remediation,
                         timeout=READ_TIMEOUT)  # fmt: skip
        found = _json(resp)
        return str(found.get("id", "")) if isinstance(found, dict) else ""

    def _find_comment(self, number: int, marker: str) -> str:
        resp = self.call(
            "GET",
            self._comments(number),
            None,
            lambda code, text: f"{self.kind} refused the comments of {number} ({code})",
            f"check that the token of repository.forge may read {self.repo}",
            timeout=READ_TIMEOUT,
            params={"per_page": 100},
        )
        for item in _json(resp) or ():
            if isinstance(item, dict) and marker in _str(item, "body"):
                return str(item.get("id", ""))
        return ""


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _obj(doc: Any, key: str) -> dict[str, Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, dict) else {}


def _str(doc: Any, key: str) -> str:
    value = doc.get(key) if isinstance(doc, dict) else None
    return value if isinstance(value, str) else ""


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
        timeout=READ_TIMEOUT,
    )
