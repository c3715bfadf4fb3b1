"""A forge's REST API for pull requests and comments, in-process on loopback (a test fixture).

Answers GitHub's, Gitea's and GitLab's documented shapes for what previews use: the list of open
requests, one request, a request's comments (GitLab: notes), posting one and editing one. It
can also fail on purpose (``mode``: ``error`` answers 500, ``hang`` never answers in time) to
show that a forge in trouble removes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeForge:
    def __init__(self, kind: str, repo: str = "acme/erp") -> None:
        self.kind, self.repo = kind, repo
        self.pulls: dict[int, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}  # id -> {"number", "body"}
        self.calls: list[tuple[str, str]] = []
        self.statuses: list[dict[str, Any]] = []  # commit statuses posted, oldest first
        self.mode = "ok"  # ok, error (500), hang (answers after the client gave up)
        self._ids = itertools.count(100)
        self._lock = threading.Lock()
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = urllib.parse.urlsplit(self.path).path
                with forge._lock:
                    forge.calls.append((method, path))
                    mode = forge.mode
                if mode == "hang":
                    time.sleep(3)
                if mode != "ok":
                    self._send(500, {"message": "internal error"})
                    return
                status, doc = forge.route(method, path, body)
                self._send(status, doc)

            def _send(self, status: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (hang)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PATCH(self) -> None:
                self._answer("PATCH")

            def do_PUT(self) -> None:
                self._answer("PUT")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.api = f"http://127.0.0.1:{self.server.server_address[1]}" + (
            "/api/v4" if kind == "gitlab" else "/api/v1" if kind == "gitea" else ""
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------------- the requests
    def pull(
        self,
        number: int,
        state: str = "open",
        head: str = "",
        base: str = "main",
        author: str = "alice",
        labels: tuple[str, ...] = (),
        fork: bool = False,
    ) -> None:
        """Declare (or change) request ``number`` in this forge's own shape."""
        url = f"https://{self.kind}.test/{self.repo}/pull/{number}"
        head = head or f"feature/pr-{number}"
        if self.kind == "gitlab":
            doc: dict[str, Any] = {
                "iid": number,
                "state": {"open": "opened"}.get(state, state),
                "source_branch": head,
                "target_branch": base,
                "sha": "a" * 40,
                "web_url": url,
                "author": {"username": author},
                "labels": list(labels),
                "source_project_id": 2 if fork else 1,
                "target_project_id": 1,
            }
        else:
            doc = {
                "number": number,
                "state": "open" if state == "open" else "closed",
                "merged": state == "merged",
                "merged_at": "2026-12-05T00:00:00Z" if state == "merged" else None,
                "head": {
                    "ref": head,
                    "sha": "a" * 40,
                    "repo": {"full_name": "someone/erp" if fork else self.repo},
                },
                "base": {"ref": base, "repo": {"full_name": self.repo}},
                "html_url": url,
                "user": {"login": author},
                "labels": [{"name": label} for label in labels],
            }
        with self._lock:
            self.pulls[number] = doc

    def delivery(
        self, action: str, number: int, clone_url: str, secret: str, delivery_id: str
    ) -> tuple[bytes, dict[str, str]]:
        """The webhook delivery of ``action`` (opened, synchronize, closed, merged) on request
        ``number`` as this forge sends it: its JSON body and its headers, signed with
        ``secret`` as this forge signs (GitHub's and Gitea's HMAC of the body, GitLab's
        token)."""
        doc = self.pulls[number]
        if self.kind == "gitlab":
            gitlab = {"opened": "open", "synchronize": "update", "closed": "close"}
            body = json.dumps(
                {
                    "object_kind": "merge_request",
                    "project": {"git_http_url": clone_url},
                    "user": doc["author"],
                    "labels": [{"title": t} for t in doc["labels"]],
                    "object_attributes": {
                        **doc,
                        "action": gitlab.get(action, "merge"),
                        "url": doc["web_url"],
                        "last_commit": {"id": doc["sha"]},
                    },
                }
            ).encode()
            return body, {
                "X-Gitlab-Event": "Merge Request Hook",
                "X-Gitlab-Token": secret,
                "X-Gitlab-Event-UUID": delivery_id,
                "Content-Type": "application/json",
            }
        body = json.dumps(
            {
                "action": "closed" if action == "merged" else action,
                "number": number,
                "pull_request": doc,
                "repository": {"clone_url": clone_url},
            }
        ).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if self.kind == "github":
            return body, {
                "X-GitHub-Event": "pull_request",
                "X-Hub-Signature-256": f"sha256={digest}",
                "X-GitHub-Delivery": delivery_id,
                "Content-Type": "application/json",
            }
        return body, {
            "X-Gitea-Event": "pull_request",
            "X-Gitea-Signature": digest,
            "X-Gitea-Delivery": delivery_id,
            "Content-Type": "application/json",
        }

    def comments_on(self, number: int) -> list[str]:
        with self._lock:
            return [c["body"] for c in self.comments.values() if c["number"] == number]

    # ---------------------------------------------------------------------------- routes
    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        base = self.api.split("://", 1)[1].split("/", 1)
        prefix = "/" + base[1] if len(base) > 1 else ""
        rest = path.removeprefix(prefix)
        if self.kind == "gitlab":
            quoted = urllib.parse.quote(self.repo, safe="")
            rest = rest.removeprefix(f"/projects/{quoted}")
            rest = re.sub(r"^/merge_requests", "/pulls", rest)
            rest = re.sub(r"^/pulls/(\d+)/notes", r"/issues/\1/comments", rest)
            rest = re.sub(r"^/issues/\d+/comments/(\d+)$", r"/issues/comments/\1", rest)
        else:
            rest = rest.removeprefix(f"/repos/{self.repo}")
        with self._lock:
            if method == "POST" and (m := re.fullmatch(r"/statuses/([0-9a-f]{40})", rest)):
                self.statuses.append({"sha": m[1], **body})
                return 201, {"id": len(self.statuses)}
            if method == "GET" and rest == "/pulls":
                wanted = "opened" if self.kind == "gitlab" else "open"
                return 200, [p for p in self.pulls.values() if p["state"] == wanted]
            if method == "GET" and (m := re.fullmatch(r"/pulls/(\d+)", rest)):
                found = self.pulls.get(int(m[1]))
                return (200, found) if found else (404, {"message": "not found"})
            if m := re.fullmatch(r"/issues/(\d+)/comments", rest):
                number = int(m[1])
                if method == "GET":
                    return 200, [
                        {"id": int(i), "body": c["body"]}
                        for i, c in self.comments.items()
                        if c["number"] == number
                    ]
                comment_id = str(next(self._ids))
                self.comments[comment_id] = {"number": number, "body": body["body"]}
                return 201, {"id": int(comment_id)}
            if m := re.fullmatch(r"/issues/comments/(\d+)", rest):
                if m[1] not in self.comments:
                    return 404, {"message": "not found"}
                self.comments[m[1]]["body"] = body["body"]
                return 200, {"id": int(m[1])}
        return 404, {"message": f"no route {method} {path}"}
