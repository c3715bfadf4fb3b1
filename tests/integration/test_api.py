"""The REST API against a real state repository (bare remote on disk): auth, writes as commits.

Reads come from an in-memory control plane implementing the same Protocol as the daemon's;
writes go through the real StateWriter, so every accepted write is a real commit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from reconciler.api.app import RateLimiter, create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.controlplane import GitControlPlane
from reconciler.core.model import EnvKey, StateConfig
from reconciler.core.planner import Plan
from reconciler.engine.jobs import JobStore
from reconciler.engine.status import Condition, DaemonStatus, EnvironmentStatus, Health, Sync
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter, WriteResult
from tests.factories import MemoryData
from tests.integration.world import acme_state_remote, git

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
        self._state = writer.current()
        self._data = MemoryData(self.state)
        self._jobs = JobStore()

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
        request_id: str,
        pr: bool,
    ) -> WriteResult:
        result = super().write(op, author, request_id, pr)
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

    def logs(self, key: EnvKey, follow: bool, since: int | None, tail: int) -> Iterator[str]:
        yield from [f"odoo | 2026-11-25T12:00:0{i}Z line {i}" for i in range(3)][-tail:]


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
    assert approved["approvals"] == ["Bob Reviewer <bob@acme.example>"]
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
    body = b'{"ref": "refs/heads/feature/x", "after": "' + b"a" * 40 + b'"}'
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
            request_id: str,
            pr: bool,
        ) -> WriteResult:
            return GitControlPlane.write(self, op, author, request_id, pr)

    stalled = Stalled(plane.writer)
    client = TestClient(create_app(stalled, authority))
    resp = client.post(
        "/v1/environments/acme/qa/suspend?wait=true&timeout=1",
        headers=bearer(authority, "env:write"),
    )
    assert resp.status_code == 504
    assert resp.json()["error"] == "wait_timeout"
    assert "suspend acme/qa" in git("--git-dir", str(remote), "log", "-1", "--format=%s")
