"""Promotion, approved migrations and hotfix branches through the API, against real git: a bare
state repository (every accepted write is a real commit) and a bare application repository.

The daemon's view is the in-memory plane of ``test_api``; what an environment runs is joined
by the daemon's own ``release_of`` from that status, a resolved environment and a real ledger,
so the gate that lets a promotion through is a row the test gate writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.api.controlplane import DaemonControlPlane
from reconciler.core.errors import OdooOpsError
from reconciler.core.model import DesiredEnvironment, EnvKey, GatePolicy, Tier
from reconciler.core.promotion import Release
from reconciler.core.testgate import gate_key
from reconciler.engine.ledger import Ledger
from reconciler.engine.promotions import Promoter
from reconciler.engine.releases import release_of
from reconciler.engine.status import Condition, EnvironmentStatus, Health, Sync
from reconciler.gitops.changerequests import ChangeRequests
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.factories import desired
from tests.integration.test_api import SECRET, Plane, bearer, head
from tests.integration.test_test_gate import FAILING, PASSING, gate, with_tests
from tests.integration.world import REPO_ROOT, World, acme_state_remote, git

pytestmark = pytest.mark.integration
QA = EnvKey("acme", "qa")
ENVIRONMENTS = {
    "production": "branch: main\n",
    "qa": "branch: release/v1\n",
    "uat": "branch: release/uat\n",
}
PROMOTE = "/v1/environments/acme/production/promote"
AUTHOR = Author("Ann", "ann@acme.example")


class ReleasePlane(Plane):
    """``Plane`` whose ``release`` is the daemon's join, over a real ledger, and whose
    application repository is a real bare repository."""

    def __init__(self, writer: StateWriter, ledger: Ledger, app: GitSource) -> None:
        super().__init__(writer)
        self.ledger, self.app = ledger, app
        self.resolved: dict[EnvKey, DesiredEnvironment] = {}

    def serve(self, key: EnvKey, revision: str, gated: bool = True, **kw: Any) -> None:
        """``key`` runs ``revision``, synced and healthy unless ``kw`` says otherwise."""
        want = desired(key.env, Tier.STAGING, revision=revision)
        if gated:
            want = replace(want, tests=GatePolicy(tiers=frozenset({Tier.STAGING})))
        self.resolved[key] = want
        serving = EnvironmentStatus(
            key.project,
            key.env,
            revision=revision,
            serving=revision,
            sync=Sync.SYNCED,
            health=Health.HEALTHY,
        )
        self.statuses()[str(key)] = replace(serving, **kw)  # type: ignore[index]

    def pass_gate(self, key: EnvKey) -> None:
        want = self.resolved[key]
        self.ledger.put_gate(gate_key(want), key, want.image, True, {"result": "passed"})

    def release(self, key: EnvKey) -> Release | None:
        return release_of(
            key,
            self.statuses().get(str(key)),
            self.resolved.get(key),
            self.ledger.deployments(key),
            self.ledger.passed_gates().get(str(key), frozenset()),
        )

    def app_repository(self, project: str) -> GitSource:
        return self.app


def app_remote(root: Path) -> tuple[Path, list[str]]:
    """A bare application repository with two commits on main; returns it and the commits."""
    work, bare = root / "app-seed", root / "app.git"
    git("init", "-q", "-b", "main", str(work))
    commits = []
    for i in (1, 2):
        (work / "README").write_text(f"v{i}\n")
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"v{i}", cwd=work)
        commits.append(git("rev-parse", "HEAD", cwd=work))
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare, commits


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, list[str]]:
    return app_remote(tmp_path)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """The acme state with a rule for hotfix branches (staging), whose environments
    ``odooops branch`` declares."""
    bare = acme_state_remote(tmp_path, ENVIRONMENTS)
    seed = GitSource(f"file://{bare}", tmp_path / "seed-cache")
    seed.fetch()
    policies = seed.read_file("main", "policies.yaml")
    assert policies is not None
    text = policies.decode().replace(
        "protected_tiers:", '  - match: "hotfix/*"\n    tier: staging\nprotected_tiers:'
    )
    seed.commit_files("main", {"policies.yaml": text.encode()}, "hotfix rule", AUTHOR)
    return bare


@pytest.fixture
def plane(remote: Path, tmp_path: Path, app: tuple[Path, list[str]]) -> ReleasePlane:
    writer = StateWriter(GitSource(f"file://{remote}", tmp_path / "cache"))
    source = GitSource(f"file://{app[0]}", tmp_path / "app-cache")
    return ReleasePlane(writer, Ledger(tmp_path / "ledger.db"), source)


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(AuthConfig(secret=SECRET))


@pytest.fixture
def client(plane: ReleasePlane, authority: TokenAuthority) -> TestClient:
    return TestClient(create_app(plane, authority))


def env_file(remote: Path, env: str, ref: str = "main") -> dict[str, Any]:
    text = git("--git-dir", str(remote), "show", f"{ref}:environments/acme/{env}.yaml")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def message(remote: Path, ref: str = "main") -> str:
    return git("--git-dir", str(remote), "log", "-1", "--format=%B", ref)


# ------------------------------------------------------------------------------- promote
def test_promotion_is_refused_until_the_gate_passed_then_pins_the_served_commit(
    client: TestClient, authority: TokenAuthority, remote: Path, plane: ReleasePlane
) -> None:
    """Refused then allowed: nothing is committed while qa's tests have not passed."""
    rev = "5" * 40
    plane.serve(QA, rev)
    headers = bearer(authority, "deploy", "env:read")
    before = head(remote)
    url = "/v1/environments/acme/uat/promote"
    refused = client.post(url, json={"from": "qa", "confirm": True}, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "promotion_refused"
    assert "tests of odooops/acme:5555555555555555" in refused.json()["message"]
    assert refused.json()["remediation"] == "odooops status acme/qa"
    assert head(remote) == before

    plane.pass_gate(QA)
    dry = client.post(url, json={"from": "acme/qa"}, headers=headers)
    assert dry.status_code == 200, dry.text
    assert dry.json()["committed"] is False
    assert dry.json()["promotion"] == {
        "from": "acme/qa",
        "to": "acme/uat",
        "revision": rev,
        "image": "odooops/acme:5555555555555555",
        "previous": "track",
        "changes": True,
        "modules": None,  # uat serves nothing yet
    }
    assert head(remote) == before

    done = client.post(url, json={"from": "qa", "confirm": True}, headers=headers)
    assert done.status_code == 202, done.text
    assert done.json()["change_request"] is False
    assert env_file(remote, "uat") == {
        "branch": "release/uat",
        "revision": rev,
        "promoted": {"from": "acme/qa", "revision": rev, "image": "odooops/acme:5555555555555555"},
    }
    text = message(remote)
    assert text.startswith("feat(promote): promote acme/qa@555555555555 to acme/uat\n")
    assert f"Promoted-From: acme/qa@{rev}\n" in text
    assert "Image: odooops/acme:5555555555555555\n" in text
    again = client.post(url, json={"from": "qa", "confirm": True}, headers=headers)
    assert again.status_code == 200 and again.json()["promotion"]["changes"] is False
    assert head(remote) == done.json()["commit"]


@pytest.mark.parametrize(
    ("status", "why"),
    [
        ({"health": Health.DEGRADED}, "it is Degraded"),
        ({"sync": Sync.OUT_OF_SYNC}, "it is not synced"),
        ({"conditions": (Condition("Ready", False, "deploy_failed"),)}, "did not succeed"),
    ],
)
def test_an_unhealthy_or_unsynced_source_is_refused_even_when_tested(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    plane: ReleasePlane,
    status: Mapping[str, Any],
    why: str,
) -> None:
    plane.serve(QA, "5" * 40, **status)
    plane.pass_gate(QA)
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/uat/promote",
        json={"from": "qa", "confirm": True},
        headers=bearer(authority, "deploy", "env:read"),
    )
    assert resp.status_code == 409 and why in resp.json()["message"]
    assert head(remote) == before


def test_a_protected_target_gets_a_change_request_carrying_the_pin(
    client: TestClient, authority: TokenAuthority, remote: Path, plane: ReleasePlane
) -> None:
    rev = "5" * 40
    plane.serve(QA, rev, gated=False)
    before = head(remote)
    resp = client.post(
        PROMOTE, json={"from": "qa", "confirm": True}, headers=bearer(authority, "deploy")
    )
    assert resp.status_code == 202, resp.text
    doc = resp.json()
    assert doc["change_request"] is True and doc["branch"].startswith("odooops/change-")
    assert head(remote) == before
    assert env_file(remote, "production", doc["branch"])["revision"] == rev
    assert f"Promoted-From: acme/qa@{rev}" in message(remote, doc["branch"])
    assert plane.triggers == 0


def test_promotion_across_projects_is_invalid_and_needs_read_on_the_source(
    client: TestClient, authority: TokenAuthority, remote: Path, plane: ReleasePlane
) -> None:
    plane.serve(QA, "5" * 40, gated=False)
    before = head(remote)
    limited = bearer(authority, "deploy", environments=["acme/production"])
    refused = client.post(PROMOTE, json={"from": "qa", "confirm": True}, headers=limited)
    assert refused.status_code == 403
    other = client.post(
        PROMOTE, json={"from": "beta/qa", "confirm": True}, headers=bearer(authority, "deploy")
    )
    assert other.status_code == 400 and other.json()["error"] == "invalid_promotion"
    assert head(remote) == before


# ------------------------------------------------------------------------------- migrate
def test_db_migrate_approves_the_held_revision_by_a_commit(
    client: TestClient, authority: TokenAuthority, remote: Path, plane: ReleasePlane
) -> None:
    rev = "7" * 40
    headers = bearer(authority, "deploy")
    plane.serve(QA, rev, gated=False)
    before = head(remote)
    nothing = client.post("/v1/environments/acme/qa/migrate", headers=headers)
    assert nothing.status_code == 409 and nothing.json()["error"] == "no_migration_pending"
    assert head(remote) == before

    held = Condition("Ready", False, "migration_pending", "updates modules")
    plane.serve(QA, rev, gated=False, conditions=(held,))
    resp = client.post("/v1/environments/acme/qa/migrate", headers=headers)
    assert resp.status_code == 202, resp.text
    assert env_file(remote, "qa") == {"branch": "release/v1", "migrate": rev}
    assert message(remote).startswith(
        f"feat(migrate): approve the module update of {rev} on acme/qa\n"
    )
    state = plane.writer.current()
    assert next(s for s in state.environments if s.key == QA).migrate == rev


def test_db_migrate_of_a_protected_environment_is_a_change_request(
    client: TestClient, authority: TokenAuthority, remote: Path, plane: ReleasePlane
) -> None:
    held = Condition("Ready", False, "migration_pending", "updates modules")
    plane.serve(EnvKey("acme", "production"), "7" * 40, gated=False, conditions=(held,))
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/production/migrate", headers=bearer(authority, "deploy")
    )
    assert resp.status_code == 202 and resp.json()["change_request"] is True
    assert head(remote) == before
    assert env_file(remote, "production", resp.json()["branch"])["migrate"] == "7" * 40


# -------------------------------------------------------------------------------- branch
def test_branch_from_creates_the_branch_at_the_served_commit_and_its_environment(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    plane: ReleasePlane,
    app: tuple[Path, list[str]],
) -> None:
    bare, commits = app
    plane.serve(QA, commits[0], gated=False)  # qa serves the older of the two commits
    headers = bearer(authority, "deploy", "env:write")
    resp = client.post(
        "/v1/environments/acme/qa/branch", json={"name": "hotfix/rounding"}, headers=headers
    )
    assert resp.status_code == 202, resp.text
    doc = resp.json()
    assert (doc["app_branch"], doc["revision"], doc["environment"]) == (
        "hotfix/rounding",
        commits[0],
        "acme/hotfix-rounding",
    )
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/hotfix/rounding") == commits[0]
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/main") == commits[1]
    # Owned by the token's subject, as every environment the API creates (a staging tier:
    # no expiry).
    assert env_file(remote, "hotfix-rounding") == {"branch": "hotfix/rounding", "owner": "ann"}

    before = head(remote)
    again = client.post(
        "/v1/environments/acme/qa/branch", json={"name": "hotfix/rounding"}, headers=headers
    )
    assert again.status_code == 409 and again.json()["error"] == "environment_exists"
    assert head(remote) == before


def test_branch_refuses_an_existing_branch_and_creates_nothing(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    plane: ReleasePlane,
    app: tuple[Path, list[str]],
) -> None:
    bare, commits = app
    git("--git-dir", str(bare), "branch", "hotfix/taken", commits[1])
    plane.serve(QA, commits[0], gated=False)
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/qa/branch",
        json={"name": "hotfix/taken"},
        headers=bearer(authority, "deploy", "env:write"),
    )
    assert resp.status_code == 409 and resp.json()["error"] == "branch_exists"
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/hotfix/taken") == commits[1]
    assert head(remote) == before
    bad = client.post(
        "/v1/environments/acme/qa/branch",
        json={"name": "-x"},
        headers=bearer(authority, "deploy", "env:write"),
    )
    assert bad.status_code == 400 and head(remote) == before


def test_a_branch_whose_environment_the_state_would_refuse_is_not_pushed(
    client: TestClient,
    authority: TokenAuthority,
    remote: Path,
    plane: ReleasePlane,
    app: tuple[Path, list[str]],
) -> None:
    """No branch rule matches ``oops/x``: the environment would be invalid, so no branch."""
    bare, commits = app
    plane.serve(QA, commits[0], gated=False)
    before = head(remote)
    resp = client.post(
        "/v1/environments/acme/qa/branch",
        json={"name": "oops/x"},
        headers=bearer(authority, "deploy", "env:write"),
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["problems"][0]["code"] == "unmatched_branch"
    heads = git("--git-dir", str(bare), "for-each-ref", "--format=%(refname)", "refs/heads")
    assert heads.split() == ["refs/heads/main"]
    assert head(remote) == before


def test_a_failed_environment_commit_after_the_push_says_the_branch_exists(
    client: TestClient,
    authority: TokenAuthority,
    plane: ReleasePlane,
    app: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bare, commits = app
    plane.serve(QA, commits[0], gated=False)

    def unreachable(*args: Any, **kw: Any) -> Any:
        raise OdooOpsError("the state repository is unreachable", code="push_failed")

    monkeypatch.setattr(plane, "write", unreachable)
    resp = client.post(
        "/v1/environments/acme/qa/branch",
        json={"name": "hotfix/late"},
        headers=bearer(authority, "deploy", "env:write"),
    )
    assert resp.status_code == 500
    doc = resp.json()
    assert doc["error"] == "branch_environment_not_created"
    assert "branch hotfix/late was created at" in doc["message"]
    assert doc["remediation"] == "odooops env create acme/hotfix-late --branch hotfix/late"
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/hotfix/late") == commits[0]


# ------------------------------------------------------------------ the automatic rule
def test_the_promote_rule_commits_once_per_revision_on_its_schedule(
    remote: Path, plane: ReleasePlane, tmp_path: Path
) -> None:
    """A fake clock: not due, refused (gate), committed, then idempotent."""
    rev = "5" * 40
    policies = git("--git-dir", str(remote), "show", "main:policies.yaml")
    policies += "\npromote:\n  - {from: qa, to: uat, schedule: '0 2 * * *'}\n"
    writer = plane.writer
    writer.repo.commit_files("main", {"policies.yaml": policies.encode()}, "rule", AUTHOR)
    promoter = Promoter(writer.current, plane.release, writer, plane.ledger)
    plane.serve(QA, rev)
    night = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
    assert promoter.run(night) == []  # the first check: qa's gate has not passed
    before = head(remote)
    plane.pass_gate(QA)
    assert promoter.run(night + timedelta(hours=12)) == []  # not due before 02:00 again
    done = promoter.run(night + timedelta(days=1))
    assert len(done) == 1 and "promote acme/qa@555555555555 to acme/uat" in done[0]
    assert head(remote) != before
    assert env_file(remote, "uat")["revision"] == rev
    author = git("--git-dir", str(remote), "log", "-1", "--format=%an", "main")
    assert author == "OdooOps"
    commit = head(remote)
    assert promoter.run(night + timedelta(days=2)) == []  # pinned there already
    assert head(remote) == commit


def test_the_promote_rule_to_a_protected_target_opens_one_change_request(
    remote: Path, plane: ReleasePlane
) -> None:
    policies = git("--git-dir", str(remote), "show", "main:policies.yaml")
    policies += "\npromote:\n  - {from: qa, to: production, schedule: 1h}\n"
    writer = plane.writer
    writer.repo.commit_files("main", {"policies.yaml": policies.encode()}, "rule", AUTHOR)
    promoter = Promoter(writer.current, plane.release, writer, plane.ledger)
    plane.serve(QA, "5" * 40, gated=False)
    before = head(remote)
    now = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
    assert len(promoter.run(now)) == 1
    assert promoter.run(now + timedelta(hours=1)) == []  # the request is still open
    requests = ChangeRequests(writer.repo, writer.branch)
    opened = [cr for cr in requests.list() if cr.state == "open"]
    assert len(opened) == 1
    assert opened[0].title == "feat(promote): promote acme/qa@555555555555 to acme/production"
    assert head(remote) == before


def test_a_promotion_whose_commit_did_not_land_is_tried_again_at_the_next_check(
    remote: Path, plane: ReleasePlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot is recorded only once decided: an unreachable state repository at 02:00
    does not cost the night's promotion."""
    policies = git("--git-dir", str(remote), "show", "main:policies.yaml")
    policies += "\npromote:\n  - {from: qa, to: uat, schedule: '0 2 * * *'}\n"
    writer = plane.writer
    writer.repo.commit_files("main", {"policies.yaml": policies.encode()}, "rule", AUTHOR)
    promoter = Promoter(writer.current, plane.release, writer, plane.ledger)
    plane.serve(QA, "5" * 40, gated=False)
    submit = writer.submit

    def unreachable(*args: Any, **kw: Any) -> Any:
        raise OdooOpsError("the state repository is unreachable", code="push_failed")

    monkeypatch.setattr(writer, "submit", unreachable)
    night = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
    assert promoter.run(night) == []
    assert plane.ledger.last_run("promote acme/qa->acme/uat") is None
    monkeypatch.setattr(writer, "submit", submit)
    assert len(promoter.run(night + timedelta(minutes=1))) == 1
    assert env_file(remote, "uat")["revision"] == "5" * 40


def test_the_cli_promote_is_a_dry_run_exiting_1_until_confirmed(
    served: str, plane: ReleasePlane, authority: TokenAuthority, remote: Path
) -> None:
    plane.serve(QA, "5" * 40, gated=False)
    env = cli_env(served, authority.mint("ann", ["deploy", "env:read"]))
    before = head(remote)
    dry = cli(env, "promote", "acme/qa", "acme/uat")
    assert dry.returncode == 1, dry.stderr
    assert "would promote acme/qa to acme/uat" in dry.stdout
    assert "odooops promote acme/qa acme/uat --confirm" in dry.stdout
    assert head(remote) == before
    assert "modules   not known" in dry.stdout
    plane.serve(EnvKey("acme", "uat"), "4" * 40, gated=False)
    named = cli(env, "promote", "acme/qa", "acme/uat")
    assert "modules   acme_base (their folders differ)" in named.stdout, named.stdout
    done = cli(env, "promote", "acme/qa", "acme/uat", "--confirm")
    assert done.returncode == 0, done.stderr
    assert "committed" in done.stdout and head(remote) != before
    protected = cli(env, "promote", "qa", "production", "--confirm")
    assert protected.returncode == 0, protected.stderr
    assert "odooops requests approve" in protected.stdout


def test_the_cli_migrates_and_branches_through_the_api(
    served: str,
    plane: ReleasePlane,
    authority: TokenAuthority,
    remote: Path,
    app: tuple[Path, list[str]],
) -> None:
    bare, commits = app
    env = cli_env(served, authority.mint("ann", ["deploy", "env:read", "env:write"]))
    plane.serve(QA, commits[0], gated=False)
    nothing = cli(env, "db", "migrate", "acme/qa")
    assert nothing.returncode == 2 and "no_migration_pending" in nothing.stderr
    held = Condition("Ready", False, "migration_pending", "updates modules")
    plane.serve(QA, commits[0], gated=False, conditions=(held,))
    migrated = cli(env, "db", "migrate", "acme/qa")
    assert migrated.returncode == 0, migrated.stderr
    assert env_file(remote, "qa")["migrate"] == commits[0]
    plane.serve(QA, commits[0], gated=False)  # the instant daemon applied the commit
    branched = cli(env, "branch", "hotfix/cli", "--from", "acme/qa")
    assert branched.returncode == 0, branched.stderr
    assert f"branch hotfix/cli created at {commits[0][:12]}" in branched.stdout
    assert git("--git-dir", str(bare), "rev-parse", "refs/heads/hotfix/cli") == commits[0]
    assert env_file(remote, "hotfix-cli") == {"branch": "hotfix/cli", "owner": "ann"}


@pytest.fixture
def served(plane: ReleasePlane, authority: TokenAuthority) -> Iterator[str]:
    """The API on a free local port, as the CLI reaches a daemon."""
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


def cli_env(api: str, token: str) -> dict[str, str]:
    return {**os.environ, "ODOOOPS_API": api, "ODOOOPS_TOKEN": token, "PYTHONPATH": str(REPO_ROOT)}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


# ------------------------------------------------------------------ through the daemon
def test_a_promotion_through_the_daemon_runs_the_commit_and_image_staging_ran(
    world: World,
) -> None:
    """The real daemon's view (status, resolution, ledger) decides; after the commit the
    target serves staging's commit as the same image, which its status confirms."""
    world.app.write({"NOTES": "uat only\n"}, "uat moves on", branch="release/v2")
    world.declare("staging", branch="release/v1")
    world.declare("uat", branch="release/v2")
    result = world.reconcile()
    assert result.errors == {}, result.errors
    engine = world.engine()
    staging, uat = EnvKey(world.project, "staging"), EnvKey(world.project, "uat")
    served = engine.status.get(str(staging))
    assert served is not None and served.serving
    authority = TokenAuthority(AuthConfig(secret=b"s" * 32))
    writes = GitSource(f"file://{world.state_remote}", world.root / "writes")
    writer = StateWriter(writes, secrets=lambda: engine.secrets.policy)
    client = TestClient(create_app(DaemonControlPlane(engine, writer, lambda: None), authority))
    url = f"/v1/environments/{world.project}/uat/promote"
    headers = bearer(authority, "deploy", "env:read")
    dry = client.post(url, json={"from": "staging"}, headers=headers)
    assert dry.status_code == 200, dry.text
    promotion = dry.json()["promotion"]
    assert promotion["revision"] == served.serving
    assert promotion["image"] == engine.current.environments[staging].image  # type: ignore[union-attr]
    assert promotion["modules"] == []  # the same addons: only a file outside them differs
    done = client.post(url, json={"from": "staging", "confirm": True}, headers=headers)
    assert done.status_code == 202, done.text
    result = world.reconcile()
    assert result.errors == {}, result.errors
    status = engine.status.get(str(uat))
    assert status is not None and status.serving == served.serving
    promoted = next(c for c in status.conditions if c.type == "Promoted")
    assert (promoted.status, promoted.reason) == (True, "SameImage")


def test_through_the_daemon_a_failing_gate_refuses_promotion_until_the_tests_pass(
    world: World,
) -> None:
    """Promotion refused then allowed, with the real test gate: staging's new commit fails
    its tests (it keeps serving the old one, so it is not synced at it) and nothing is
    committed; once a commit passes, that commit is what uat is pinned to."""
    gate(world)
    with_tests(world, PASSING, "a test that passes")
    world.app.write({"NOTES": "uat only\n"}, "uat moves on", branch="release/v2")
    world.declare("staging", branch="release/v1")
    world.declare("uat", branch="release/v2")
    assert world.reconcile().errors == {}
    engine = world.engine()
    authority = TokenAuthority(AuthConfig(secret=b"s" * 32))
    writes = GitSource(f"file://{world.state_remote}", world.root / "writes")
    writer = StateWriter(writes, secrets=lambda: engine.secrets.policy)
    client = TestClient(create_app(DaemonControlPlane(engine, writer, lambda: None), authority))
    url = f"/v1/environments/{world.project}/uat/promote"
    headers = bearer(authority, "deploy", "env:read")

    broken = with_tests(world, FAILING, "a test that fails")
    failed = world.reconcile()
    assert EnvKey(world.project, "staging") in failed.errors
    before = git("--git-dir", str(world.state_remote), "rev-parse", "main")
    refused = client.post(url, json={"from": "staging", "confirm": True}, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "promotion_refused"
    assert broken[:12] in refused.json()["message"]  # what its state asks for, untested
    assert git("--git-dir", str(world.state_remote), "rev-parse", "main") == before

    fixed = with_tests(world, PASSING + "\n# fixed\n", "the test passes again")
    assert world.reconcile().errors == {}
    done = client.post(url, json={"from": "staging", "confirm": True}, headers=headers)
    assert done.status_code == 202, done.text
    assert world.reconcile().errors == {}
    uat = engine.status.get(f"{world.project}/uat")
    assert uat is not None and uat.serving == fixed


# ------------------------------------------------------------------------- faults
# One check of the promote rules, in a process of its own that can be killed: qa serves
# ``rev`` (healthy, synced, not gated) and the rule promotes it onto production (protected).
_CHECK = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from reconciler.core.model import EnvKey
from reconciler.core.promotion import Release
from reconciler.engine.ledger import Ledger
from reconciler.engine.promotions import Promoter
from reconciler.gitops.gitsource import GitSource
from reconciler.gitops.statewriter import StateWriter

remote, cache, ledger, rev, minute = sys.argv[1:6]
writer = StateWriter(GitSource(remote, Path(cache)))
key = EnvKey("acme", "qa")
served = Release(key, rev, rev, "odooops/acme:" + rev[:16], "Healthy", "Synced", False, False)
promoter = Promoter(writer.current, lambda k: served if k == key else None, writer,
                    Ledger(Path(ledger)))
promoter.run(datetime(2026, 12, 6, 2, int(minute), tzinfo=UTC))
"""


@pytest.mark.slow
def test_the_daemon_killed_at_each_boundary_of_a_promotion_opens_one_request(
    remote: Path, tmp_path: Path
) -> None:
    """SIGKILL at each boundary of a rule's check, then the next check a minute later: one
    change request for the promotion, never two, and the check recorded."""
    policies = git("--git-dir", str(remote), "show", "main:policies.yaml")
    policies += "\npromote:\n  - {from: qa, to: production, schedule: '0 2 * * *'}\n"
    seed = GitSource(f"file://{remote}", tmp_path / "seed")
    seed.commit_files("main", {"policies.yaml": policies.encode()}, "rule", AUTHOR)

    def check(run: Path, minute: int, **env: str) -> int:
        argv = [f"file://{remote}", str(run / "cache"), str(run / "ledger.db"), "5" * 40]
        done = subprocess.run(
            [sys.executable, "-c", _CHECK, *argv, str(minute)],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            capture_output=True,
            check=False,
        )
        return done.returncode

    def opened() -> list[str]:
        requests = ChangeRequests(GitSource(f"file://{remote}", tmp_path / "look"), "main")
        return [cr.id for cr in requests.list() if cr.state == "open"]

    log = tmp_path / "boundaries.log"
    assert check(tmp_path / "count", 0, ODOOOPS_FAULT_LOG=str(log)) == 0
    boundaries = log.read_text().splitlines()
    assert len(boundaries) == 2, boundaries
    first = opened()
    assert len(first) == 1
    git("--git-dir", str(remote), "branch", "-D", f"odooops/change-{first[0]}")
    for n in range(1, len(boundaries) + 1):
        run = tmp_path / f"kill-{n}"
        assert check(run, 0, ODOOOPS_FAULT_KILL_AT=f"promotions:{n}") == -9
        assert check(run, 1) == 0  # the next check, after the restart: due, not recorded
        requests = opened()
        assert len(requests) == 1, (boundaries[n - 1], requests)
        assert Ledger(run / "ledger.db").last_run("promote acme/qa->acme/production")
        git("--git-dir", str(remote), "branch", "-D", f"odooops/change-{requests[0]}")
