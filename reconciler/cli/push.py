"""``odooops push``: the whole pipeline for the current branch, from the developer's clone.

It pushes the branch with the developer's own git (their credentials, their remote), asks the
daemon for a pass at once instead of waiting for its poll, and with ``--wait`` follows what the
push turned into: the build (its log streamed), the tests, the deployment. It exits non-zero
with the failing step's lines, as a CI job would, so it can end a script.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from reconciler.cli.console import err, out
from reconciler.cli.data import EXIT_FAILED, EXIT_OK, _client
from reconciler.core.errors import OdooOpsError

FIND_ENV_SECONDS = 120  # a branch rule's new environment appears after a pass


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="push a branch of the app repository and follow its build, tests and deploy (API)",
    )
    p.add_argument("branch", nargs="?", help="default: the branch checked out")
    p.add_argument("--to", dest="env", help="PROJECT/ENV to follow (default: the branch's)")
    p.add_argument("--remote", default="origin", help="the git remote to push to")
    p.add_argument("-C", dest="repo", type=Path, default=Path("."), help="the local clone")
    p.add_argument("--wait", action="store_true", help="follow it to the end (exit 1 if red)")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(func=cmd_push)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise OdooOpsError(
            f"git {' '.join(args)} failed: {done.stderr.strip()[-500:]}",
            code="git_failed",
            remediation=f"git -C {repo} status",
        )
    return done.stdout.strip()


def cmd_push(args: argparse.Namespace) -> int:
    branch = args.branch or _git(args.repo, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        raise OdooOpsError(
            "no branch is checked out (detached HEAD)",
            code="usage",
            remediation="odooops push BRANCH (or git switch BRANCH first)",
        )
    _git(args.repo, "check-ref-format", "--branch", branch)
    sha = _git(args.repo, "rev-parse", "--verify", f"{branch}^{{commit}}")
    _git(args.repo, "push", args.remote, f"{branch}:refs/heads/{branch}")
    out.print(f"pushed {sha[:12]} to {args.remote} {branch}", highlight=False)
    client = _client()
    client.request("POST", "/reconcile")  # no need to wait for the poll
    if not args.wait:
        out.print("the daemon deploys it now; follow it with: odooops builds list", highlight=False)
        return EXIT_OK
    key = _environment(client, branch, args.env)
    return _follow(client, key, sha, args.timeout)


def _environment(client: Any, branch: str, name: str | None) -> str:
    """The environment to follow: ``--to``, else the one (of any project) on ``branch``."""
    if name:
        return str(client.resolve(name))
    deadline = time.monotonic() + FIND_ENV_SECONDS
    with out.status(f"waiting for an environment of {branch}"):
        while True:
            found = [
                f"{i['project']}/{i['env']}"
                for i in client.get("/environments")["items"]
                if i.get("branch") == branch
            ]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise OdooOpsError(
                    f"{len(found)} environments are on {branch}: {', '.join(sorted(found))}",
                    code="usage",
                    remediation=f"odooops push {branch} --wait --to {sorted(found)[0]}",
                )
            if time.monotonic() > deadline:
                raise OdooOpsError(
                    f"no environment is on {branch} (no environment file names it and no "
                    "branch rule with auto_create matches it)",
                    code="unknown_environment",
                    remediation=f"odooops env create NAME --branch {branch}",
                )
            time.sleep(2)


def _follow(client: Any, key: str, sha: str, timeout: float) -> int:
    """Build (log streamed), tests, deployment of ``sha`` in ``key``, to the end."""
    project, env = key.split("/", 1)
    status_path = f"/environments/{project}/{env}/status"
    deadline = time.monotonic() + timeout
    streamed: set[str] = set()
    while time.monotonic() < deadline:
        build = _build_of(client, project, key, sha)
        if build is not None and build["id"] not in streamed and build["state"] != "queued":
            streamed.add(build["id"])
            out.print(f"build {build['id']} of {build['image']}:", highlight=False)
            for line in client.lines(f"/builds/{build['id']}/log", {"follow": "true"}):
                out.print(f"  {line}", style="dim", markup=False, highlight=False)
            build = _build_of(client, project, key, sha)
            if build is not None and build["state"] == "red":
                err.print(f"[red]build {build['id']} is red[/]", highlight=False)
                if build["step"]:
                    err.print(f"failed step: {build['step']}", markup=False, highlight=False)
                for line in build["excerpt"]:
                    err.print(f"  {line}", markup=False, highlight=False)
                return EXIT_FAILED
        status = client.get(status_path)
        ready = next((c for c in status["conditions"] if c["type"] == "Ready"), None)
        rollout = next((c for c in status["conditions"] if c["type"] == "Rollout"), None)
        if status["revision"] == sha and ready is not None:
            if ready["status"] and status["serving"] == sha and status["sync"] == "Synced":
                out.print(
                    f"[green]{key} runs {sha[:12]}[/] ({status['health']}): {status['url']}",
                    highlight=False,
                )
                return EXIT_OK
            if not ready["status"] and ready["reason"] not in ("Pending", "Progressing"):
                err.print(f"[red]{key}: {ready['reason']}[/]", highlight=False)
                err.print(ready["message"], markup=False, highlight=False)
                return EXIT_FAILED
        if rollout is not None and rollout["status"]:
            out.print(f"{key}: {rollout['reason']}: {rollout['message']}", highlight=False)
        time.sleep(2)
    err.print(f"{key} did not run {sha[:12]} within {int(timeout)} s; odooops status {key}")
    return EXIT_FAILED


def _build_of(client: Any, project: str, key: str, sha: str) -> dict[str, Any] | None:
    query = urlencode({"project": project, "limit": 20})
    for build in client.get(f"/builds?{query}")["items"]:
        if build["revision"] == sha and build["environment"] == key:
            return dict(build)
    return None
