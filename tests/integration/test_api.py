"""The REST API against a real state repository (bare remote on disk): auth, writes as commits.

Reads come from an in-memory control plane implementing the same Protocol as the daemon's;
writes go through the real StateWriter, so every accepted write is a real commit.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from starlette.testclient import TestClient

from reconciler.api.app import RateLimiter, create_app
from reconciler.api.auth import AuthConfig, TokenAuthority, peek
from reconciler.api.controlplane import GitControlPlane
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import EnvKey, StateConfig
from reconciler.core.planner import Plan
from reconciler.engine.buildqueue import BuildQueue
from reconciler.engine.jobs import JobStore
from reconciler.engine.status import Condition, DaemonStatus, EnvironmentStatus, Health, Sync
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter, WriteResult
from tests.factories import MemoryData
from tests.integration.world import REPO_ROOT, acme_state_remote, git

pytestmark = pytest.mark.integration
SECRET = b"k" * 32
WRITES = [
    ("POST", "/v1/environments", {"name": "acme/new", "branch": "release/v2"}, "env:write"),
    ("PATCH", "/v1/environments/acme/qa", {"owner": "bob@acme.example"}, "env:write"),
    ("DELETE", "/v1/environments/acme/qa", None, "env:write"),
    ("POST", "/v1/environments/acme/qa/suspend", None, "env:write"),
    ("POST", "/v1/environments/acme/qa/resume", None, "env:write"),
    ("POST", "/v1/environments/acme/qa/deploy", {"branch": "release/v2"}, "deploy"),
    ("POST", "/v1/reconcile", None, "deploy"),
]
READS = [
    "/v1/ready",
    "/v1/daemon",
    "/v1/environments",
    "/v1/environments/acme/qa",
    "/v1/environments/acme/qa/status",
    "/v1/policies",
    "/v1/projects",
    "/v1/plan",
]


class Plane(GitControlPlane):
    """The daemon's view, in memory; the git side (writes, audit, reviews) is the real one."""

    def __init__(self, writer: StateWriter) -> None:
        super().__init__(writer, self._count_trigger)
        self.triggers = 0
        # An instant daemon: every direct write is applied at once (for ?wait=true).
        self._statuses = {
            "acme/qa": EnvironmentStatus(
                "acme",
                "qa",
                branch="release/v1",
                tier="staging",
                sync=Sync.SYNCED,
                health=Health.HEALTHY,
            )
        }
        self.recorded: list[dict[str, str]] = []
        self.followers = 0  # log streams open right now
        self.idle_follow = False  # a followed stream then stays open, idle, until its client goes
        self._state = writer.current()
        self._data = MemoryData(self.state)
        self._jobs = JobStore()
        self._builds = BuildQueue(
            Path(tempfile.mkdtemp(prefix="builds-")), limit=lambda: 1, timeout=lambda: 60.0
        )

    def builds(self) -> BuildQueue:
        return self._builds

    def data(self) -> MemoryData:
        return self._data

    def jobs(self) -> JobStore:
        return self._jobs

    def statuses(self) -> Mapping[str, EnvironmentStatus]:
        return self._statuses

    def events(self, key: EnvKey) -> list[dict[str, Any]]:
        return [
            {
                "time": "2026-11-25T12:00:00+00:00",
                "type": "Ready",
                "status": True,
                "reason": "Converged",
                "message": "revision abc",
            }
        ]

    def daemon_status(self) -> DaemonStatus:
        return DaemonStatus(
            state_commit=self._state.commit,
            last_poll="now",
            last_pass_seconds=1.25,
            passes=7,
            expired={"acme/feature-old": "branch feature/old has had no commit for 14 days"},
        )

    def state(self) -> StateConfig | None:
        return self._state

    def plan(self) -> Plan:
        return Plan()

    def write(
        self,
        op: changes.Operation | changes.FileOperation,
        author: Author,
        *,
        subject: str,
        request_id: str,
        pr: bool,
        change_request: str | None = None,
    ) -> WriteResult:
        result = super().write(
            op,
            author,
            subject=subject,
            request_id=request_id,
            pr=pr,
            change_request=change_request,
        )
        self._state = self.writer.current()
        if isinstance(op, changes.Operation) and not result.change_request:
            if op.verb == "destroy":
                self._statuses.pop(str(op.key), None)
            else:
                self._statuses[str(op.key)] = EnvironmentStatus(
                    op.key.project,
                    op.key.env,
                    state_commit=result.commit,
                    sync=Sync.SYNCED,
                    health=Health.HEALTHY,
                    conditions=(Condition("Ready", True, "Converged", result.commit[:12]),),
                )
        return result

    def _count_trigger(self) -> None:
        self.triggers += 1

    def shell(self, key: EnvKey, kind: str, tty: bool = True) -> Any:
        raise AssertionError("shell sessions are tested against Docker in test_engine.py")

    def record_session(self, entry: Mapping[str, str]) -> None:
        self.recorded.append(dict(entry))

    def sessions(self, limit: int) -> list[dict[str, str]]:
        return self.recorded[-limit:]

    async def logs(
        self, key: EnvKey, follow: bool, since: int | None, tail: int
    ) -> AsyncIterator[str]:
        for line in [f"odoo | 2026-11-25T12:00:0{i}Z line {i}" for i in range(3)][-tail:]:
            yield line
        if follow and self.idle_follow:
            self.followers += 1
            try:
                await asyncio.Event().wait()  # an idle stream: nothing more is ever written
            finally:
                self.followers -= 1


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = acme_state_remote(tmp_path)
    return bare


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(AuthConfig(secret=SECRET))


@pytest.fixture
def plane(remote: Path, tmp_path: Path) -> Plane:
    return Plane(StateWriter(GitSource(f"file://{remote}", tmp_path / "cache")))


@pytest.fixture
def client(plane: Plane, authority: TokenAuthority) -> TestClient:
    return TestClient(create_app(plane, authority))


def bearer(authority: TokenAuthority, *scopes: str, **kw: object) -> dict[str, str]:
    token = authority.mint("ann", scopes, name="Ann Integrator", email="ann@acme.example", **kw)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


def head(remote: Path) -> str:
    return git("--git-dir", str(remote), "rev-parse", "main")


def call(client: TestClient, method: str, path: str, body: object, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.request(method, path, json=body, headers=headers)


def test_health_is_the_only_public_route(client: TestClient) -> None:
    assert client.get("/v1/health").json() == {"status": "pass"}
    for method, path, body, _ in WRITES:
        resp = call(client, method, path, body, {})
        assert resp.status_code == 401, path
        assert resp.json()["error"] == "unauthenticated"
        assert "odooops" in resp.json()["remediation"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for path in READS:
        assert client.get(path).status_code == 401, path


@pytest.mark.parametrize(("method", "path", "body", "scope"), WRITES)
@pytest.mark.parametrize("problem", ["missing", "expired", "tampered", "under-scoped"])
def test_writes_refuse_bad_tokens_and_commit_nothing(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    method: str,
    path: str,
    body: object,
    scope: str,
    problem: str,
) -> None:
    """A test per scope per write endpoint: missing, expired, tampered, under-scoped."""
    before = head(remote)
    if problem == "missing":
        headers: dict[str, str] = {}
    elif problem == "expired":
        past = TokenAuthority(
            AuthConfig(secret=SECRET), clock=lambda: datetime.now(UTC) - timedelta(days=2)
        )
        headers = bearer(past, scope)
    elif problem == "tampered":
        token = bearer(authority, scope)["Authorization"]
        headers = {"Authorization": token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")}
    else:
        headers = bearer(authority, "env:read")
    resp = call(client, method, path, body, headers)
    expected = {"missing": 401, "expired": 401, "tampered": 401, "under-scoped": 403}[problem]
    assert resp.status_code == expected, resp.text
    assert set(resp.json()) >= {"error", "message", "remediation", "docs"}
    assert head(remote) == before


def test_create_is_a_commit_by_the_token_subject(
    client: TestClient, authority: TokenAuthority, plane: Plane, remote: Path
) -> None:
    resp = client.post(
        "/v1/environments",
        json={"name": "acme/new", "branch": "release/v2"},
        headers={**bearer(authority, "env:write"), "X-Request-Id": "r-42"},
    )
    assert resp.status_code == 202, resp.text
    doc = resp.json()
    assert doc["commit"] == head(remote)
    assert doc["status"] == "/v1/environments/acme/new/status"
    assert git(
        "--git-dir", str(remote), "log", "-1", "--format=%an <%ae>|%s%n%b", "main"
    ).startswith("Ann Integrator <ann@acme.example>|feat(env): create acme/new")
    assert "Request-Id: r-42" in git("--git-dir", str(remote), "log", "-1", "--format=%b")
    assert plane.triggers == 1


def test_create_without_a_branch_tracks_the_branch_of_its_name(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    for name, path, branch in (
        ("acme/staging-2", "environments/acme/staging-2.yaml", "staging-2"),
        (
            "feature/crm-reports",
            "environments/acme/feature-crm-reports.yaml",
            "feature/crm-reports",
        ),
    ):
        resp = client.post(
            "/v1/environments",
            json={"name": name, "tier": "dev"},
            headers=bearer(authority, "env:write"),
        )
        assert resp.status_code == 202, resp.text
        declared = yaml.safe_load(git("--git-dir", str(remote), "show", f"main:{path}"))
        assert declared["branch"] == branch


def test_a_write_that_breaks_the_state_is_422_and_commits_nothing(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    before = head(remote)
    resp = client.patch(
        "/v1/environments/acme/qa",
        json={"overrides": {"workers": "four"}},
        headers=bearer(authority, "env:write"),
    )
    assert resp.status_code == 422
    assert resp.json()["problems"][0]["file"] == "environments/acme/qa.yaml"
    assert head(remote) == before


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PATCH", "/v1/environments/acme/nope", {"owner": "x@y.z"}, 404, "unknown_environment"),
        ("POST", "/v1/environments", {"name": "acme/qa", "branch": "x"}, 409, "environment_exists"),
        (
            "POST",
            "/v1/environments",
            {"name": "n", "branch": "x", "colour": "blue"},
            400,
            "invalid_request",
        ),
        ("POST", "/v1/environments/acme/qa/deploy", {}, 400, "invalid_request"),
        ("GET", "/v1/nothing-here", None, 404, "not_found"),
        # Each of these once answered a 500 or made a wrong commit:
        ("POST", "/v1/environments", {"name": "acme/../x", "branch": "x"}, 400, "invalid_name"),
        ("POST", "/v1/environments", {"name": "", "branch": "x"}, 400, "invalid_name"),
        (
            "POST",
            "/v1/environments",
            {"project": "nope", "name": "x", "branch": "x"},
            404,
            "unknown_environment",
        ),
        ("POST", "/v1/environments", {"name": ["acme/x"], "branch": "x"}, 400, "invalid_request"),
        ("PATCH", "/v1/environments/acme/qa", {"overrides": "big"}, 400, "invalid_request"),
        ("POST", "/v1/environments/acme/qa/suspend", {"pr": "false"}, 400, "invalid_request"),
    ],
)
def test_bad_requests_get_the_structured_error(
    client: TestClient,
    authority: TokenAuthority,
    method: str,
    path: str,
    body: object,
    status: int,
    code: str,
) -> None:
    resp = call(client, method, path, body, bearer(authority, "admin"))
    assert (resp.status_code, resp.json()["error"]) == (status, code)
    assert resp.json()["remediation"]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"[" * 100_000, {}),  # deeper than the parser's recursion limit
        (None, {"X-Request-Id": "a b..c"}),  # not a valid change-request branch name
    ],
)
def test_malformed_requests_are_400_and_commit_nothing(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/production/suspend",
        content=body,
        headers={**bearer(authority, "admin"), **headers},
    )
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request")
    assert head(remote) == before
    assert "odooops/change-" not in git("--git-dir", str(remote), "branch", "--list")


def test_token_limited_to_one_environment_cannot_touch_another(
    client: TestClient, authority: TokenAuthority
) -> None:
    headers = bearer(authority, "env:write", environments=["acme/qa"])
    assert client.post("/v1/environments/acme/qa/suspend", headers=headers).status_code == 202
    refused = client.post("/v1/environments/acme/production/suspend", headers=headers)
    assert refused.status_code == 403
    assert "acme/production" in refused.json()["message"]


def test_protected_environment_write_becomes_a_change_request(
    client: TestClient, authority: TokenAuthority, remote: Path, plane: Plane
) -> None:
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/production/suspend", headers=bearer(authority, "env:write")
    )
    assert resp.status_code == 202
    assert resp.json()["change_request"] is True
    assert resp.json()["branch"].startswith("odooops/change-")
    assert head(remote) == before
    assert plane.triggers == 0  # nothing to apply until it is merged


def test_production_writes_are_refused_outside_the_allowlist(
    plane: Plane, authority: TokenAuthority
) -> None:
    client = TestClient(create_app(plane, authority, production_allowlist=("10.9.0.0/16",)))
    resp = client.post(
        "/v1/environments/acme/production/suspend", headers=bearer(authority, "admin")
    )
    assert resp.status_code == 403
    ok = client.post("/v1/environments/acme/qa/suspend", headers=bearer(authority, "admin"))
    assert ok.status_code == 202


def test_a_flood_of_requests_gets_429_with_retry_after(
    plane: Plane, authority: TokenAuthority
) -> None:
    client = TestClient(create_app(plane, authority, limiter=RateLimiter(rate=0.1, burst=3)))
    headers = bearer(authority, "env:read")
    codes = [client.get("/v1/environments", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    resp = client.get("/v1/environments", headers=headers)
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["error"] == "rate_limited"


def test_reads_answer_from_the_daemon_view(client: TestClient, authority: TokenAuthority) -> None:
    headers = bearer(authority, "env:read")
    items = client.get("/v1/environments", headers=headers).json()["items"]
    assert [(i["project"], i["env"], i["health"]) for i in items] == [("acme", "qa", "Healthy")]
    shown = client.get("/v1/environments/acme/qa", headers=headers).json()
    assert shown["declared"]["branch"] == "release/v1"
    policies = client.get("/v1/policies", headers=headers).json()
    assert policies["protected_tiers"] == ["production"]
    assert client.get("/v1/plan", headers=headers).json()["changes"] is False
    assert client.get("/v1/ready", headers=headers).json()["ready"] is True


def test_daemon_status_carries_the_pass_figures_and_the_expired_branches(
    client: TestClient, authority: TokenAuthority
) -> None:
    """What `odooops status` shows under the table comes from here, not from defaults."""
    doc = client.get("/v1/daemon", headers=bearer(authority, "env:read")).json()
    assert (doc["ready"], doc["last_pass_seconds"], doc["passes"]) == (True, 1.25, 7)
    why = "branch feature/old has had no commit for 14 days"
    assert doc["expired"] == {"acme/feature-old": why}


@pytest.mark.parametrize("to", ["qa", "acme/qa"])
def test_a_copy_target_is_named_bare_or_with_its_project(
    client: TestClient, authority: TokenAuthority, to: str
) -> None:
    headers = bearer(authority, "db:restore", "env:read")
    resp = client.post(
        "/v1/environments/acme/production/clone?wait=true", json={"to": to}, headers=headers
    )
    assert resp.status_code == 200, resp.json()
    assert (resp.json()["environment"], resp.json()["state"]) == ("acme/qa", "succeeded")


def test_a_copy_into_another_project_is_refused(
    client: TestClient, authority: TokenAuthority
) -> None:
    headers = bearer(authority, "db:restore", "env:read")
    resp = client.post(
        "/v1/environments/acme/production/clone", json={"to": "shop/qa"}, headers=headers
    )
    assert resp.status_code == 400
    assert "acme/ENV" in resp.json()["message"]


def test_concurrent_writes_from_several_clients_all_land(
    plane: Plane, authority: TokenAuthority, remote: Path
) -> None:
    app = create_app(plane, authority)
    results: list[int] = []

    def create(i: int) -> None:
        with TestClient(app) as c:
            r = c.post(
                "/v1/environments",
                json={"name": f"acme/e{i}", "branch": f"release/{i}"},
                headers=bearer(authority, "env:write"),
            )
            results.append(r.status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [202] * 6
    files = git(
        "--git-dir", str(remote), "ls-tree", "--name-only", "main", "environments/acme/"
    ).splitlines()
    assert {f"environments/acme/e{i}.yaml" for i in range(6)} <= set(files)


def test_audit_lists_api_writes_with_author_and_request_id(
    client: TestClient, authority: TokenAuthority
) -> None:
    client.post(
        "/v1/environments/acme/qa/suspend",
        headers={**bearer(authority, "env:write"), "X-Request-Id": "r-7"},
    )
    [latest, *_] = client.get("/v1/audit?limit=5", headers=bearer(authority, "env:read")).json()[
        "items"
    ]
    assert (latest["author"], latest["change"], latest["request_id"], latest["via"]) == (
        "Ann Integrator <ann@acme.example>",
        "chore(env): suspend acme/qa",
        "r-7",
        "api",
    )
    bad = client.get("/v1/audit?limit=0", headers=bearer(authority, "env:read"))
    assert bad.status_code == 400


def test_change_request_review_through_the_api(
    plane: Plane, authority: TokenAuthority, remote: Path
) -> None:
    """The author cannot approve; another admin approves and merges; main gets the change."""
    client = TestClient(create_app(plane, authority))
    made = client.post(
        "/v1/environments/acme/production/suspend", headers=bearer(authority, "env:write")
    ).json()
    request_id = made["branch"].removeprefix("odooops/change-")
    own = client.post(f"/v1/requests/{request_id}/approve", headers=bearer(authority, "admin"))
    assert own.status_code == 403 and "cannot approve" in own.json()["message"]
    bob = authority.mint("bob", ["admin"], name="Bob Reviewer", email="bob@acme.example")
    as_bob = {"Authorization": f"Bearer {bob}"}
    approved = client.post(f"/v1/requests/{request_id}/approve", headers=as_bob).json()
    assert approved["approvals"] == [
        {"by": "Bob Reviewer <bob@acme.example>", "subject": "bob", "commit": made["commit"]}
    ]
    merged = client.post(f"/v1/requests/{request_id}/merge", headers=as_bob)
    assert merged.status_code == 202
    assert merged.json()["commit"] == head(remote)
    listed = client.get("/v1/requests", headers=as_bob).json()["items"]
    assert [(r["id"], r["state"]) for r in listed] == [(request_id, "merged")]
    unknown = client.get("/v1/requests/nope", headers=as_bob)
    assert unknown.status_code == 404


def test_metrics_need_a_token_and_count_api_requests(
    plane: Plane, authority: TokenAuthority
) -> None:
    from reconciler.engine.metrics import Metrics

    metrics = Metrics(plane.statuses)
    client = TestClient(create_app(plane, authority, metrics=metrics))
    assert client.get("/metrics").status_code == 401
    client.get("/v1/environments", headers=bearer(authority, "env:read"))
    text = client.get("/metrics", headers=bearer(authority, "env:read")).text
    assert 'odooops_environments{health="Healthy",sync="Synced"} 1.0' in text
    assert 'route="list_environments",status="200"' in text


def test_webhooks_are_verified_deduplicated_and_trigger_a_pass(
    plane: Plane, authority: TokenAuthority
) -> None:
    import hashlib
    import hmac

    secret = "It's a Secret to Everybody"
    client = TestClient(create_app(plane, authority, webhook_secret=lambda: secret))
    body = (
        b'{"ref": "refs/heads/feature/x", "after": "'
        + b"a" * 40
        + b'", "repository": {"clone_url": "file:///x"}}'
    )
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }
    first = client.post("/v1/webhooks/github", content=body, headers=headers)
    assert first.status_code == 202 and plane.triggers == 1
    again = client.post("/v1/webhooks/github", content=body, headers=headers)
    assert again.json() == {"accepted": False, "duplicate": True} and plane.triggers == 1
    forged = client.post(
        "/v1/webhooks/github", content=body + b" ", headers={**headers, "X-GitHub-Delivery": "d-2"}
    )
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_webhook"
    unconfigured = TestClient(create_app(plane, authority))
    assert (
        unconfigured.post("/v1/webhooks/github", content=body, headers=headers).status_code == 404
    )


def test_logs_stream_as_text_and_check_their_parameters(
    client: TestClient, authority: TokenAuthority
) -> None:
    headers = bearer(authority, "env:read")
    resp = client.get("/v1/environments/acme/qa/logs?tail=2&since=10m", headers=headers)
    assert resp.status_code == 200
    assert resp.text.splitlines() == [
        "odoo | 2026-11-25T12:00:01Z line 1",
        "odoo | 2026-11-25T12:00:02Z line 2",
    ]
    assert (
        client.get("/v1/environments/acme/qa/logs?since=soon", headers=headers).status_code == 400
    )
    assert client.get("/v1/environments/acme/nope/logs", headers=headers).status_code == 404


def test_idle_log_streams_hold_no_thread_and_end_with_their_client(
    plane: Plane, authority: TokenAuthority
) -> None:
    """Fifty followed streams that never get a line (about forty froze every route before)
    leave the other routes answering; each subject has at most eight; a client that goes
    away ends its stream."""
    plane.idle_follow = True
    server = ServedApp(create_app(plane, authority))
    streams: list[Any] = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for i in range(50):
                token = authority.mint(f"watcher-{i // 8}", ["env:read"])
                request = http.build_request(
                    "GET",
                    "/v1/environments/acme/qa/logs?follow=true&tail=1",
                    headers={"Authorization": f"Bearer {token}"},
                )
                response = http.send(request, stream=True)
                assert response.status_code == 200
                lines = response.iter_lines()  # kept: dropping it would close the stream
                next(lines)  # the tail arrived: the stream is open and idle
                streams.append((response, lines))
            deadline = time.monotonic() + 10
            while plane.followers < 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert plane.followers == 50
            started = time.monotonic()
            listing = http.get("/v1/environments", headers=bearer(authority, "env:read"))
            assert listing.status_code == 200
            assert time.monotonic() - started < 2
            ninth = http.get(
                "/v1/environments/acme/qa/logs?follow=true",
                headers={"Authorization": f"Bearer {authority.mint('watcher-0', ['env:read'])}"},
            )
            assert ninth.status_code == 429 and ninth.json()["error"] == "too_many_streams"
            for response, _ in streams:
                response.close()
            deadline = time.monotonic() + 10
            while plane.followers and time.monotonic() < deadline:
                time.sleep(0.05)
            assert plane.followers == 0
    finally:
        for response, _ in streams:
            response.close()
        server.stop()


def test_fifty_writes_twenty_streams_and_a_webhook_burst_at_once(
    plane: Plane, authority: TokenAuthority, remote: Path
) -> None:
    """Fifty concurrent writes (ten writers), twenty idle log streams and a burst of a hundred
    webhook deliveries at the same time: every write lands as its own commit, nothing answers
    5xx, and reads stay answered throughout."""
    import hashlib
    import hmac
    from concurrent.futures import ThreadPoolExecutor

    plane.idle_follow = True
    secret = "burst-secret"
    server = ServedApp(create_app(plane, authority, webhook_secret=lambda: secret))
    before = git("--git-dir", str(remote), "rev-list", "--count", "main")
    statuses: list[int] = []
    read_times: list[float] = []
    streams: list[Any] = []
    stop_reading = threading.Event()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            for i in range(20):
                token = authority.mint(f"viewer-{i // 8}", ["env:read"])
                response = http.send(
                    http.build_request(
                        "GET",
                        "/v1/environments/acme/qa/logs?follow=true&tail=1",
                        headers={"Authorization": f"Bearer {token}"},
                    ),
                    stream=True,
                )
                lines = response.iter_lines()
                next(lines)
                streams.append((response, lines))

            def write(i: int) -> int:
                token = authority.mint(f"writer-{i % 10}", ["env:write"], name="W", email="w@x.y")
                answer = http.post(
                    "/v1/environments",
                    json={"name": f"acme/burst-{i}", "branch": f"release/burst-{i}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                return answer.status_code

            def deliver(i: int) -> int:
                body = json.dumps(
                    {"ref": "refs/heads/main", "after": "b" * 40, "repository": {"clone_url": "x"}}
                ).encode()
                digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                answer = http.post(
                    "/v1/webhooks/github",
                    content=body,
                    headers={
                        "X-GitHub-Event": "push",
                        "X-GitHub-Delivery": f"burst-{i}",
                        "X-Hub-Signature-256": f"sha256={digest}",
                        "Content-Type": "application/json",
                    },
                )
                return answer.status_code

            def read() -> None:
                reader = bearer(authority, "env:read")
                while not stop_reading.is_set():
                    started = time.monotonic()
                    answer = http.get("/v1/environments", headers=reader)
                    read_times.append(time.monotonic() - started)
                    statuses.append(answer.status_code)
                    time.sleep(0.05)

            reading = threading.Thread(target=read)
            reading.start()
            with ThreadPoolExecutor(max_workers=24) as pool:
                writes = list(pool.map(write, range(50)))
                deliveries = list(pool.map(deliver, range(100)))
            stop_reading.set()
            reading.join(30)
    finally:
        for response, _ in streams:
            response.close()
        server.stop()
    assert writes == [202] * 50
    assert set(deliveries) <= {200, 202}
    assert statuses and all(s == 200 for s in statuses)
    assert max(read_times) < 10, f"a read waited {max(read_times):.1f} s"
    after = git("--git-dir", str(remote), "rev-list", "--count", "main")
    assert int(after) - int(before) == 50
    declared = git("--git-dir", str(remote), "ls-tree", "--name-only", "main", "environments/acme/")
    assert all(f"environments/acme/burst-{i}.yaml" in declared.split() for i in range(50))


class ServedApp:
    """The app on a real HTTP server in a thread (long streams need a real connection)."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_policy_and_project_updates_are_commits_and_protect_production(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    admin = bearer(authority, "admin")
    policies = client.get("/v1/policies", headers=admin).json()
    policies["prune"] = {"allow_empty": True}
    harmless = client.put("/v1/policies", json=policies, headers=admin)
    assert harmless.status_code == 202 and harmless.json()["branch"] == "main"
    policies["protected_tiers"] = []
    unprotect = client.put("/v1/policies", json=policies, headers=admin)
    assert unprotect.json()["change_request"] is True  # it touches production
    project = {"repository": {"url": "file:///elsewhere"}, "modules": ["acme_base"]}
    moved = client.put("/v1/projects/acme", json=project, headers=admin)
    assert moved.json()["change_request"] is True  # production runs that project
    new = client.put(
        "/v1/projects/shop", json={"repository": {"url": "file:///shop"}}, headers=admin
    )
    assert new.status_code == 202 and new.json()["path"] == "projects/shop.yaml"
    invalid = client.put("/v1/projects/shop", json={"repo": "x"}, headers=admin)
    assert invalid.status_code == 422
    assert (
        client.put(
            "/v1/policies", json=policies, headers=bearer(authority, "env:write")
        ).status_code
        == 403
    )


def test_admin_mints_tokens_through_the_api(client: TestClient, authority: TokenAuthority) -> None:
    resp = client.post(
        "/v1/tokens",
        json={"subject": "cy", "scopes": ["env:read"], "ttl": "1h"},
        headers=bearer(authority, "admin"),
    )
    assert resp.status_code == 201
    minted = {"Authorization": f"Bearer {resp.json()['token']}"}
    assert client.get("/v1/environments", headers=minted).status_code == 200
    assert (
        client.post(
            "/v1/tokens",
            json={"subject": "cy", "scopes": ["root"]},
            headers=bearer(authority, "admin"),
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/v1/tokens",
            json={"subject": "cy", "scopes": ["admin"]},
            headers=bearer(authority, "env:write"),
        ).status_code
        == 403
    )


def test_events_of_an_environment(client: TestClient, authority: TokenAuthority) -> None:
    headers = bearer(authority, "env:read")
    items = client.get("/v1/environments/acme/qa/events", headers=headers).json()["items"]
    assert items[0]["reason"] == "Converged"
    assert client.get("/v1/environments/acme/nope/events", headers=headers).status_code == 404


def test_wait_answers_once_the_environment_converged(
    client: TestClient, authority: TokenAuthority
) -> None:
    headers = bearer(authority, "env:write")
    resp = client.post(
        "/v1/environments?wait=true&timeout=30",
        json={"name": "acme/new", "branch": "release/v2"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["converged"] is True
    assert resp.json()["environment_status"]["state_commit"] == resp.json()["commit"]
    gone = client.delete("/v1/environments/acme/new?wait=true", headers=headers)
    assert gone.json()["converged"] is True and gone.json()["environment_status"] is None
    assert (
        client.post(
            "/v1/environments/acme/qa/suspend?wait=true&timeout=0", headers=headers
        ).status_code
        == 400
    )


def test_wait_gives_up_with_504_and_the_commit_stands(
    plane: Plane, authority: TokenAuthority, remote: Path
) -> None:
    class Stalled(Plane):
        """Commits, but its daemon never applies anything."""

        def write(
            self,
            op: changes.Operation | changes.FileOperation,
            author: Author,
            *,
            subject: str,
            request_id: str,
            pr: bool,
            change_request: str | None = None,
        ) -> WriteResult:
            return GitControlPlane.write(
                self,
                op,
                author,
                subject=subject,
                request_id=request_id,
                pr=pr,
                change_request=change_request,
            )

    stalled = Stalled(plane.writer)
    client = TestClient(create_app(stalled, authority))
    resp = client.post(
        "/v1/environments/acme/qa/suspend?wait=true&timeout=1",
        headers=bearer(authority, "env:write"),
    )
    assert resp.status_code == 504
    assert resp.json()["error"] == "wait_timeout"
    assert "suspend acme/qa" in git("--git-dir", str(remote), "log", "-1", "--format=%s")


# ------------------------------------------------------------------ strict input (issue h2)


@pytest.mark.parametrize(
    ("method", "path", "parameter"),
    [
        ("POST", "/v1/environments/acme/qa/suspend?wait=null", "wait"),
        ("POST", "/v1/environments/acme/qa/suspend?wait=yes", "wait"),
        ("POST", "/v1/environments/acme/qa/suspend?wait=TRUE", "wait"),
        ("POST", "/v1/environments/acme/qa/suspend?wait=", "wait"),
        ("POST", "/v1/environments/acme/qa/suspend?wait=true&timeout=1e3", "timeout"),
        ("POST", "/v1/environments/acme/qa/suspend?wait=true&timeout=%D9%A3", "timeout"),
        ("POST", "/v1/environments/acme/qa/suspend?wiat=true", "wiat"),
        ("POST", "/v1/environments/acme/qa/suspend?wait=true&wait=false", "wait"),
        ("PUT", "/v1/policies?pr=yes", "pr"),
        ("PUT", "/v1/projects/acme?pr=", "pr"),
        ("GET", "/v1/audit?limit=%2B5", "limit"),
        ("GET", "/v1/environments?page=2", "page"),
        ("GET", "/v1/environments/acme/qa/logs?follow=maybe", "follow"),
        ("GET", "/v1/environments/acme/qa/logs?tail=-1", "tail"),
        ("GET", "/v1/environments/acme/qa/mail?q=%00", "q"),
        ("POST", "/v1/environments/acme/qa/backups?wait=on", "wait"),
        ("POST", "/v1/environments/acme/qa/import?confirm=yes", "confirm"),
    ],
)
def test_a_malformed_query_is_400_naming_the_parameter_and_changes_nothing(
    client: TestClient,
    authority: TokenAuthority,
    plane: Plane,
    remote: Path,
    method: str,
    path: str,
    parameter: str,
) -> None:
    before = head(remote)
    resp = client.request(method, path, json={}, headers=bearer(authority, "admin"))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request"), resp.text
    assert parameter in resp.json()["message"]
    assert resp.json()["remediation"]
    assert head(remote) == before
    assert plane.jobs().list() == []  # no data job was started either


@pytest.mark.parametrize(
    ("query", "status"), [("?wait=0", 202), ("?wait=false", 202), ("?wait=1&timeout=30", 200)]
)
def test_the_four_spellings_of_a_boolean_are_understood(
    client: TestClient, authority: TokenAuthority, query: str, status: int
) -> None:
    resp = client.post(
        f"/v1/environments/acme/qa/suspend{query}", headers=bearer(authority, "env:write")
    )
    assert resp.status_code == status, resp.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/environments", "GET, HEAD, POST"),
        ("POST", "/v1/health", "GET, HEAD"),
        ("PUT", "/v1/environments/acme/qa", "DELETE, GET, HEAD, PATCH"),
        ("DELETE", "/v1/environments/acme/qa/backups", "GET, HEAD, POST"),
        ("GET", "/v1/webhooks/github", "POST"),
    ],
)
def test_405_names_every_method_of_the_path_in_allow(
    client: TestClient, authority: TokenAuthority, method: str, path: str, allow: str
) -> None:
    resp = client.request(method, path, headers=bearer(authority, "admin"))
    assert resp.status_code == 405
    assert resp.headers["Allow"] == allow
    assert resp.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path", "parameter"),
    [
        ("GET", "/v1/environments/acme/%C2%84/backups", "env"),
        ("GET", "/v1/environments/acme/%C2%84/mail", "env"),
        ("GET", "/v1/environments/ACME/qa", "project"),
        ("GET", "/v1/environments/acme/q_a/status", "env"),
        ("GET", "/v1/environments/acme/-qa/events", "env"),
        ("GET", "/v1/environments/acme/qa%0A/logs", "env"),
        ("POST", "/v1/environments/acme/" + "q" * 33 + "/backups", "env"),
        ("GET", "/v1/projects/Acme", "name"),
        ("PUT", "/v1/projects/a%20b", "name"),
    ],
)
def test_a_path_naming_no_possible_environment_is_400_never_an_empty_answer(
    client: TestClient,
    authority: TokenAuthority,
    plane: Plane,
    method: str,
    path: str,
    parameter: str,
) -> None:
    resp = client.request(method, path, json={}, headers=bearer(authority, "admin"))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request"), resp.text
    assert resp.json()["message"].startswith(parameter)
    if "%C2%84" in path:  # quoted with the control character escaped, never raw
        assert "\\u0084" in resp.json()["message"]
    assert plane.jobs().list() == []


def test_a_shell_on_a_malformed_name_is_refused(
    client: TestClient, authority: TokenAuthority
) -> None:
    with client.websocket_connect(
        "/v1/environments/acme/%C2%84/shell", headers=bearer(authority, "shell")
    ) as ws:
        assert json.loads(ws.receive_text())["error"] == "invalid_request"
        assert ws.receive()["code"] == 4400


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/environments/acme/nope/backups", None),
        ("POST", "/v1/environments/acme/nope/backups", {"reason": "x"}),
        ("POST", "/v1/environments/acme/nope/restore", {"backup": "latest"}),
        ("POST", "/v1/environments/acme/nope/clone", {"to": "qa"}),
        ("POST", "/v1/environments/acme/qa/clone", {"to": "nope"}),
        ("GET", "/v1/environments/acme/nope/export", None),
        ("GET", "/v1/environments/acme/nope/mail", None),
        ("GET", "/v1/environments/acme/nope/mail/m-1", None),
        ("GET", "/v1/environments/elsewhere/qa/backups", None),
    ],
)
def test_data_routes_refuse_an_unknown_environment_at_once_and_start_no_job(
    client: TestClient,
    authority: TokenAuthority,
    plane: Plane,
    method: str,
    path: str,
    body: object,
) -> None:
    resp = client.request(method, path, json=body, headers=bearer(authority, "admin"))
    assert (resp.status_code, resp.json()["error"]) == (404, "unknown_environment"), resp.text
    assert "nope" in resp.json()["message"] or "elsewhere" in resp.json()["message"]
    assert plane.jobs().list() == []


def test_an_import_for_an_unknown_environment_is_refused_before_the_upload_is_stored(
    plane: Plane, authority: TokenAuthority, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    client = TestClient(create_app(plane, authority, upload_dir=uploads))
    resp = client.post(
        "/v1/environments/acme/nope/import",
        content=b"PK" + b"\0" * 100_000,
        headers={**bearer(authority, "admin"), "Content-Type": "application/octet-stream"},
    )
    assert (resp.status_code, resp.json()["error"]) == (404, "unknown_environment")
    assert not uploads.exists() or list(uploads.iterdir()) == []
    assert plane.jobs().list() == []


def test_a_backup_of_a_known_environment_still_starts_a_job(
    client: TestClient, authority: TokenAuthority, plane: Plane
) -> None:
    resp = client.post(
        "/v1/environments/acme/qa/backups?wait=true&timeout=30",
        json={"reason": "before the migration"},
        headers=bearer(authority, "db:backup"),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "succeeded"
    listed = client.get("/v1/environments/acme/qa/backups", headers=bearer(authority, "env:read"))
    assert [b["status"] for b in listed.json()["items"]] == ["good"]


def test_a_job_on_a_held_environment_is_refused_with_the_reason_but_its_backups_list(
    client: TestClient, authority: TokenAuthority, plane: Plane
) -> None:
    class Held(MemoryData):
        """Every environment is declared but held, as when its branch is gone."""

        def environment(self, key: EnvKey) -> Any:
            raise OdooOpsError(
                f"environment {key} is held: branch release/v1 does not exist",
                code="environment_held",
                remediation=f"odooops status {key}",
            )

    plane._data = Held(plane.state)
    admin = bearer(authority, "admin")
    resp = client.post("/v1/environments/acme/qa/backups", json={}, headers=admin)
    assert (resp.status_code, resp.json()["error"]) == (409, "environment_held")
    assert "release/v1" in resp.json()["message"]
    assert plane.jobs().list() == []
    assert client.get("/v1/environments/acme/qa/backups", headers=admin).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/environments", {"name": "acme/x", "branch": "feature/\u202ecod.exe"}),
        ("POST", "/v1/environments", {"name": "acme/x", "branch": "feature/x\u200b"}),
        ("POST", "/v1/environments", {"name": "acme/x", "branch": "main\n"}),
        ("POST", "/v1/environments", {"name": "acme/x", "branch": "a\x84b"}),
        ("POST", "/v1/environments/acme/qa/deploy", {"branch": "-x"}),
        ("POST", "/v1/environments/acme/qa/deploy", {"branch": "refs/tags/v1"}),
        ("POST", "/v1/environments/acme/qa/deploy", {"branch": "a..b"}),
        ("PATCH", "/v1/environments/acme/qa", {"branch": "x.lock"}),
    ],
)
def test_a_branch_git_would_refuse_or_that_hides_characters_is_400_before_any_commit(
    client: TestClient, authority: TokenAuthority, remote: Path, method: str, path: str, body: Any
) -> None:
    before = head(remote)
    resp = client.request(method, path, json=body, headers=bearer(authority, "admin"))
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_request"), resp.text
    assert resp.json()["message"].startswith("branch ")
    assert "git check-ref-format" in resp.json()["remediation"]
    assert not any(c in resp.json()["message"] for c in "\u202e\u200b\n\x84")
    assert head(remote) == before
    assert "odooops/change-" not in git("--git-dir", str(remote), "branch", "--list")


def _signed(secret: str, doc: dict[str, Any], delivery: str) -> tuple[bytes, dict[str, str]]:
    import hashlib
    import hmac

    body = json.dumps(doc).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature,
        "Content-Type": "application/json",
    }
    return body, headers


@pytest.mark.parametrize(
    ("ref", "repository", "triggered"),
    [
        ("refs/heads/feature/x", "file:///x", True),  # the project's repository, as declared
        ("refs/heads/feature/x", "FILE:///x.git/", True),  # the same, written otherwise
        ("refs/heads/main", "STATE", True),  # the state repository
        ("refs/heads/main", "https://github.com/someone/else.git", False),
        ("refs/heads/main", "", False),
        ("refs/tags/v1.0", "file:///x", False),  # a tag: no environment follows one
    ],
)
def test_a_delivery_triggers_a_pass_only_for_a_watched_repository_and_a_branch(
    plane: Plane,
    authority: TokenAuthority,
    remote: Path,
    ref: str,
    repository: str,
    triggered: bool,
) -> None:
    secret = "s3cret"
    client = TestClient(create_app(plane, authority, webhook_secret=lambda: secret))
    repository = f"file://{remote}" if repository == "STATE" else repository
    doc = {"ref": ref, "after": "a" * 40, "repository": {"clone_url": repository}}
    body, headers = _signed(secret, doc, "d-" + ref + repository)
    resp = client.post("/v1/webhooks/github", content=body, headers=headers)
    assert resp.status_code == 202, resp.text  # accepted either way: the forge stops retrying
    assert resp.json()["triggered"] is triggered
    assert plane.triggers == (1 if triggered else 0)


def test_a_webhook_body_over_the_limit_is_413_before_its_signature_is_checked(
    plane: Plane, authority: TokenAuthority
) -> None:
    client = TestClient(create_app(plane, authority, webhook_secret=lambda: "s3cret"))
    resp = client.post(
        "/v1/webhooks/github",
        content=b" " * (25 * 2**20 + 1),
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert (resp.status_code, resp.json()["error"]) == (413, "payload_too_large")
    assert plane.triggers == 0


@pytest.fixture
def served(plane: Plane, authority: TokenAuthority) -> Iterator[str]:
    """The API on a free local port, as the CLI reaches a daemon."""
    import uvicorn

    config = uvicorn.Config(
        create_app(plane, authority), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the API did not start"
        threading.Event().wait(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("text", ["a&b", "50% off #1", "x=y"])
def test_the_cli_sends_a_mail_search_as_one_encoded_parameter(
    served: str, plane: Plane, authority: TokenAuthority, text: str
) -> None:
    """``-q "a&b"`` once became ``q=a`` and a parameter ``b``, which the API now refuses."""
    plane.data().mail[EnvKey("acme", "qa")] = []
    token = authority.mint("ann", ["env:read"])
    env = {
        **os.environ,
        "ODOOOPS_API": served,
        "ODOOOPS_TOKEN": token,
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.cli",
            "mail",
            "list",
            "acme/qa",
            "-q",
            text,
            "-o",
            "json",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# ----------------------------------------------------------- change requests against insiders


def as_subject(authority: TokenAuthority, subject: str, *scopes: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {authority.mint(subject, scopes, **kw)}"}


def test_a_reused_request_id_cannot_extend_an_approved_request(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    """The reported attack: a token with only env:write, claiming the author's email, sends a
    production write with the X-Request-Id of an approved request."""
    ann = bearer(authority, "env:write")
    opened = client.post(
        "/v1/environments/acme/production/suspend", headers={**ann, "X-Request-Id": "r-1"}
    ).json()
    cr_id = opened["change_request_id"]
    assert opened["request_id"] == "r-1" and cr_id != "r-1"
    bob = as_subject(authority, "bob", "admin", email="bob@acme.example")
    client.post(f"/v1/requests/{cr_id}/approve", headers=bob)
    approved = client.get(f"/v1/requests/{cr_id}", headers=bob).json()
    assert len(approved["approvals"]) == 1
    mallory = as_subject(
        authority, "mallory", "env:write", name="Ann Integrator", email="ann@acme.example"
    )
    patch = {"overrides": {"workers": 64}}
    second = client.patch(
        "/v1/environments/acme/production", json=patch, headers={**mallory, "X-Request-Id": "r-1"}
    )
    assert second.status_code == 202, second.text
    assert second.json()["change_request_id"] != cr_id
    joined = client.patch(
        "/v1/environments/acme/production",
        json={**patch, "change_request": cr_id},
        headers=mallory,
    )
    assert (joined.status_code, joined.json()["error"]) == (403, "forbidden")
    assert client.get(f"/v1/requests/{cr_id}", headers=bob).json() == approved


def test_the_owner_extends_a_request_and_its_approval_goes_stale(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    ann = bearer(authority, "env:write")
    opened = client.post("/v1/environments/acme/production/suspend", headers=ann).json()
    cr_id = opened["change_request_id"]
    bob = as_subject(authority, "bob", "admin", email="bob@acme.example")
    client.post(f"/v1/requests/{cr_id}/approve", headers=bob)
    joined = client.patch(
        "/v1/environments/acme/production",
        json={"owner": "x@acme.example", "change_request": cr_id},
        headers=ann,
    )
    assert joined.status_code == 202, joined.text
    assert (joined.json()["branch"], joined.json()["change_request_id"]) == (
        opened["branch"],
        cr_id,
    )
    shown = client.get(f"/v1/requests/{cr_id}", headers=bob).json()
    assert (shown["approvals"], shown["stale_approvals"]) == ([], 1)
    before = head(remote)
    stale = client.post(f"/v1/requests/{cr_id}/merge", headers=bob)
    assert (stale.status_code, stale.json()["error"]) == (409, "approval_stale")
    assert head(remote) == before
    client.post(f"/v1/requests/{cr_id}/approve", headers=bob)
    assert client.post(f"/v1/requests/{cr_id}/merge", headers=bob).status_code == 202
    production = git("--git-dir", str(remote), "show", "main:environments/acme/production.yaml")
    assert "suspended: true" in production and "owner: x@acme.example" in production


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (
            "/v1/environments/acme/production/suspend",
            {"change_request": "../x"},
            400,
            "invalid_request",
        ),
        ("/v1/environments/acme/production/suspend", {"change_request": 7}, 400, "invalid_request"),
        (
            "/v1/environments/acme/production/suspend",
            {"change_request": "nope"},
            404,
            "unknown_change_request",
        ),
        ("/v1/policies?change_request=..", None, 400, "invalid_request"),
    ],
)
def test_joining_a_change_request_checks_its_id(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    path: str,
    body: object,
    status: int,
    code: str,
) -> None:
    method = "PUT" if path.startswith("/v1/policies") else "POST"
    if method == "PUT":
        body = client.get("/v1/policies", headers=bearer(authority, "admin")).json()
    resp = call(client, method, path, body, bearer(authority, "admin"))
    assert (resp.status_code, resp.json()["error"]) == (status, code), resp.text
    assert "odooops/change-" not in git("--git-dir", str(remote), "branch", "--list")


def test_four_eyes_is_by_token_subject_not_email(
    client: TestClient, authority: TokenAuthority
) -> None:
    """An admin can mint any email: the author's own subject under another email is refused."""
    cr_id = client.post(
        "/v1/environments/acme/production/suspend", headers=bearer(authority, "env:write")
    ).json()["change_request_id"]
    alias = as_subject(authority, "ann", "admin", email="someone-else@acme.example")
    own = client.post(f"/v1/requests/{cr_id}/approve", headers=alias)
    assert (own.status_code, own.json()["error"]) == (403, "forbidden")


# ----------------------------------------------------------------------------- tokens


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def test_revoked_tokens_are_refused_at_once_and_every_step_is_audited(
    plane: Plane, remote: Path, data_dir: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    from reconciler.api.revocations import AUDIT_FILE, RevocationList

    authority = TokenAuthority(AuthConfig(secret=SECRET), revocations=RevocationList(data_dir))
    client = TestClient(create_app(plane, authority))
    admin = bearer(authority, "admin")
    minted = client.post(
        "/v1/tokens", json={"subject": "cy", "scopes": ["env:write"]}, headers=admin
    ).json()
    cy = {"Authorization": f"Bearer {minted['token']}"}
    assert client.get("/v1/environments", headers=cy).status_code == 200
    revoke = {"jti": minted["jti"], "reason": "left the team"}
    assert client.post("/v1/tokens/revoke", json=revoke, headers=cy).status_code == 403
    done = client.post("/v1/tokens/revoke", json=revoke, headers=admin)
    assert done.status_code == 200 and done.json()["by"] == "ann"
    before = head(remote)
    refused = client.post("/v1/environments/acme/qa/suspend", headers=cy)
    assert (refused.status_code, refused.json()["error"]) == (401, "token_revoked")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert head(remote) == before
    # The CLI revokes a whole token in the data directory; the running API refuses it at once.
    dee = authority.mint("dee", ["env:read"])
    revoke_dee = ["token", "revoke", dee, "--reason", "gone", "--data-dir", str(data_dir)]
    cli = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *revoke_dee],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    gone = client.get("/v1/environments", headers={"Authorization": f"Bearer {dee}"})
    assert gone.json()["error"] == "token_revoked"
    events = [json.loads(x) for x in (data_dir / AUDIT_FILE).read_text().splitlines()]
    assert [(e["event"], e["jti"], e["by"]) for e in events[:2]] == [
        ("minted", minted["jti"], "ann"),
        ("revoked", minted["jti"], "ann"),
    ]
    assert events[1]["reason"] == "left the team"
    assert (events[2]["event"], events[2]["jti"], events[2]["subject"]) == (
        "revoked",
        peek(dee)["jti"],
        "dee",
    )
    assert events[2]["by"].startswith("cli:") and events[2]["reason"] == "gone"


@pytest.mark.parametrize(
    "body",
    [
        {"jti": "a b", "reason": "x"},
        {"reason": "x"},
        {"jti": "abc", "token": "x.y.z", "reason": "x"},
        {"jti": "abc"},
        {"token": "not-a-token", "reason": "x"},
    ],
)
def test_a_bad_revocation_is_400_and_revokes_nothing(
    plane: Plane, data_dir: Path, body: dict[str, str]
) -> None:
    from reconciler.api.revocations import REVOKED_FILE, RevocationList

    authority = TokenAuthority(AuthConfig(secret=SECRET), revocations=RevocationList(data_dir))
    resp = TestClient(create_app(plane, authority)).post(
        "/v1/tokens/revoke", json=body, headers=bearer(authority, "admin")
    )
    assert resp.status_code == 400 and resp.json()["remediation"]
    assert not (data_dir / REVOKED_FILE).exists()


def test_tokens_above_the_maximum_lifetime_are_refused_and_change_nothing(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    lenient = TokenAuthority(AuthConfig(secret=SECRET, max_ttl=timedelta(days=90)))
    long_lived = lenient.mint("ann", ["env:write"], ttl=timedelta(days=60))
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/qa/suspend", headers={"Authorization": f"Bearer {long_lived}"}
    )
    assert (resp.status_code, resp.json()["error"]) == (401, "token_lifetime_exceeded")
    assert head(remote) == before
    minting = client.post(
        "/v1/tokens",
        json={"subject": "cy", "scopes": ["env:read"], "ttl": "31d"},
        headers=bearer(authority, "admin"),
    )
    assert (minting.status_code, minting.json()["error"]) == (400, "invalid_token_request")
    default = client.post(
        "/v1/tokens",
        json={"subject": "cy", "scopes": ["env:read"]},
        headers=bearer(authority, "admin"),
    ).json()
    assert authority.verify(default["token"]).expires_at - datetime.now(UTC) <= timedelta(hours=12)


# ------------------------------------------------------------------- environment globs


def test_reads_of_the_whole_platform_are_confined_to_the_token_globs(
    plane: Plane, authority: TokenAuthority, remote: Path
) -> None:
    """plan, audit, requests, sessions and metrics show a glob-limited token its environments."""
    from reconciler.core.planner import Action, Kind
    from reconciler.engine.metrics import Metrics

    qa, production = EnvKey("acme", "qa"), EnvKey("acme", "production")

    class Planned(Plane):
        def plan(self) -> Plan:
            return Plan(
                (
                    Action(qa, Kind.UPDATE_MODULES, "odoo", "new revision"),
                    Action(production, Kind.UPDATE_MODULES, "odoo", "new revision"),
                ),
                ("database acme_production of protected acme/production", "3 environments: x"),
                {production: "branch missing"},
            )

    planned = Planned(plane.writer)
    planned._statuses["acme/production"] = EnvironmentStatus(
        "acme", "production", sync=Sync.OUT_OF_SYNC, health=Health.DEGRADED
    )
    client = TestClient(create_app(planned, authority, metrics=Metrics(planned.statuses)))
    admin = bearer(authority, "admin")
    client.post("/v1/environments/acme/qa/suspend", headers=admin)  # on main
    policies = client.get("/v1/policies", headers=admin).json()
    policies["prune"] = {"allow_empty": True}
    client.put("/v1/policies", json=policies, headers=admin)  # on main, not an environment
    client.post("/v1/environments/acme/production/suspend", headers=admin)  # a change request
    for env in ("acme/qa", "acme/production"):
        planned.record_session({"subject": "ann", "environment": env, "event": "start"})
    limited = bearer(authority, "env:read", environments=["acme/qa"])

    plan = client.get("/v1/plan", headers=limited).json()
    assert [a["environment"] for a in plan["actions"]] == ["acme/qa"]
    assert (plan["retained"], plan["held"], plan["changes"]) == ([], {}, True)
    whole = client.get("/v1/plan", headers=admin).json()
    assert len(whole["actions"]) == 2 and len(whole["retained"]) == 2 and whole["held"]

    audit = client.get("/v1/audit", headers=limited).json()["items"]
    assert [a["change"] for a in audit] == ["chore(env): suspend acme/qa"]
    assert len(client.get("/v1/audit", headers=admin).json()["items"]) == 3

    assert client.get("/v1/requests", headers=limited).json()["items"] == []
    [cr] = client.get("/v1/requests", headers=admin).json()["items"]
    assert client.get(f"/v1/requests/{cr['id']}", headers=limited).status_code == 404
    qa_admin = bearer(authority, "admin", environments=["acme/qa"])
    approve = client.post(f"/v1/requests/{cr['id']}/approve", headers=qa_admin)
    assert approve.status_code == 404

    sessions = client.get("/v1/sessions", headers=limited).json()["items"]
    assert [s["environment"] for s in sessions] == ["acme/qa"]

    metrics = client.get("/metrics", headers=limited).text
    assert 'odooops_environments{health="Healthy",sync="Synced"} 1.0' in metrics
    assert "Degraded" not in metrics
    assert "Degraded" in client.get("/metrics", headers=admin).text


# ------------------------------------------------------------------------ data routes


def test_a_restore_from_another_environment_needs_db_backup_on_it(
    client: TestClient, authority: TokenAuthority
) -> None:
    """Restoring production's backup into qa reads production's data: env:read is not enough."""
    body = {"backup": "latest", "from": "production"}
    reader = bearer(authority, "db:restore", "env:read")
    refused = client.post("/v1/environments/acme/qa/restore", json=body, headers=reader)
    assert refused.status_code == 403 and "db:backup" in refused.json()["message"]
    qa_only = bearer(authority, "db:restore", "db:backup", environments=["acme/qa"])
    outside = client.post("/v1/environments/acme/qa/restore", json=body, headers=qa_only)
    assert outside.status_code == 403 and "acme/production" in outside.json()["message"]
    own = client.post(
        "/v1/environments/acme/qa/restore", json={"backup": "latest"}, headers=qa_only
    )
    assert own.status_code == 202
    allowed = bearer(authority, "db:restore", "db:backup")
    assert (
        client.post("/v1/environments/acme/qa/restore", json=body, headers=allowed).status_code
        == 202
    )


def test_a_data_rollback_pins_the_kept_data_s_revision_by_a_commit(
    client: TestClient, authority: TokenAuthority, plane: Plane, remote: Path
) -> None:
    """The kept data is marked and the environment pinned to its revision in one request;
    without kept data nothing is committed; it needs deploy as well as db:restore."""
    path = "/v1/environments/acme/qa/rollback"
    before = head(remote)
    none = client.post(path, json={}, headers=bearer(authority, "db:restore", "deploy"))
    assert (none.status_code, none.json()["error"]) == (409, "nothing_kept")
    assert head(remote) == before
    plane.data().kept[EnvKey("acme", "qa")] = {"database": "odooops_old_x", "revision": "a" * 40}
    refused = client.post(path, json={}, headers=bearer(authority, "db:restore"))
    assert refused.status_code == 403 and "deploy" in refused.json()["message"]
    assert "rollback" not in plane.data().kept[EnvKey("acme", "qa")]
    done = client.post(path, json={}, headers=bearer(authority, "db:restore", "deploy"))
    assert done.status_code == 202, done.json()
    assert head(remote) == done.json()["commit"] != before
    pinned = git("--git-dir", str(remote), "show", "main:environments/acme/qa.yaml")
    assert f"revision: {'a' * 40}" in pinned
    assert plane.data().kept[EnvKey("acme", "qa")]["rollback"] is True


def test_a_data_rollback_of_production_needs_confirm_and_goes_through_a_change_request(
    client: TestClient, authority: TokenAuthority, plane: Plane, remote: Path
) -> None:
    path = "/v1/environments/acme/production/rollback"
    key = EnvKey("acme", "production")
    plane.data().kept[key] = {"database": "odooops_old_y", "revision": "b" * 40}
    headers = bearer(authority, "db:restore", "deploy")
    before = head(remote)
    unconfirmed = client.post(path, json={}, headers=headers)
    assert (unconfirmed.status_code, unconfirmed.json()["error"]) == (409, "confirm_required")
    assert head(remote) == before and "rollback" not in plane.data().kept[key]
    done = client.post(path, json={"confirm": True}, headers=headers)
    assert done.status_code == 202, done.json()
    assert done.json()["change_request"] and head(remote) == before  # main untouched


def test_a_protected_export_is_refused_outside_the_production_allowlist(
    plane: Plane, authority: TokenAuthority
) -> None:
    client = TestClient(create_app(plane, authority, production_allowlist=("10.9.0.0/16",)))
    headers = bearer(authority, "db:backup")
    refused = client.get("/v1/environments/acme/production/export", headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert "allowlist" in refused.json()["remediation"]
    staging = client.get("/v1/environments/acme/qa/export", headers=headers)
    assert staging.status_code == 200 and staging.content.startswith(b"PK")


def test_builds_list_show_and_log_only_what_the_token_may_read(
    client: TestClient, authority: TokenAuthority, plane: Plane
) -> None:
    def work(on_line: Callable[[str], None], deadline: float) -> None:
        on_line("Step 1/2 : FROM odoo:19.0\n")
        on_line("Step 2/2 : COPY layers/app/ /\n")

    qa = plane.builds().run("odooops/acme:1", "acme", "acme/qa", "a" * 40, work)
    plane.builds().run("odooops/shop:1", "shop", "shop/prod", "b" * 40, work)
    reader = bearer(authority, "env:read", environments=["acme/qa"])
    listed = client.get("/v1/builds", headers=reader)
    assert listed.status_code == 200, listed.text
    assert [b["id"] for b in listed.json()["items"]] == [qa.id]  # shop/prod is not its to see
    assert listed.json()["items"][0]["state"] == "green"
    one = client.get(f"/v1/builds/{qa.id}", headers=reader)
    assert (one.status_code, one.json()["environment"]) == (200, "acme/qa")
    log = client.get(f"/v1/builds/{qa.id}/log?follow=true", headers=reader)
    assert log.text == "Step 1/2 : FROM odoo:19.0\nStep 2/2 : COPY layers/app/ /\n"
    other = plane.builds().list(project="shop")[0].id
    for path in (f"/v1/builds/{other}", f"/v1/builds/{other}/log", "/v1/builds/nope"):
        resp = client.get(path, headers=reader)
        assert (resp.status_code, resp.json()["error"]) == (404, "not_found"), path
    bad = client.get("/v1/builds?project=Bad!", headers=reader)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


def test_dev_environments_count_against_the_token_subject_not_a_free_owner(
    client: TestClient, authority: TokenAuthority, remote: Path
) -> None:
    """The quota's owner is the token's subject; a sixth dev environment is refused naming
    the limit and the five that count, and nothing is committed."""
    for n in range(5):
        resp = client.post(
            "/v1/environments",
            json={"name": f"acme/dev-{n}", "branch": f"feature/d{n}", "tier": "dev"},
            headers=bearer(authority, "env:write"),
        )
        assert resp.status_code == 202, resp.text
    declared = yaml.safe_load(
        git("--git-dir", str(remote), "show", "main:environments/acme/dev-0.yaml")
    )
    assert declared["owner"] == "ann"
    before = head(remote)
    refused = client.post(
        "/v1/environments",
        json={"name": "acme/dev-5", "branch": "feature/d5", "tier": "ephemeral"},
        headers=bearer(authority, "env:write"),
    )
    assert refused.status_code == 409 and refused.json()["error"] == "quota_exceeded"
    assert (
        "quotas.dev_environments_per_user allows (5): acme/dev-0, acme/dev-1"
        in (refused.json()["message"])
    )
    assert refused.json()["remediation"].startswith("odooops destroy acme/dev-0")
    assert head(remote) == before
    staging = client.post(  # not a dev tier: no quota
        "/v1/environments",
        json={"name": "acme/stage-2", "branch": "release/v9"},
        headers=bearer(authority, "env:write"),
    )
    assert staging.status_code == 202, staging.text
    other = client.post(
        "/v1/environments",
        json={"name": "acme/dev-9", "branch": "feature/d9", "tier": "dev", "owner": "bob"},
        headers=bearer(authority, "env:write"),
    )
    assert other.status_code == 403 and "for itself only, not for bob" in other.json()["message"]
    admin = client.post(
        "/v1/environments",
        json={"name": "acme/dev-9", "branch": "feature/d9", "tier": "dev", "owner": "bob"},
        headers=bearer(authority, "admin"),
    )
    assert admin.status_code == 202, admin.text
