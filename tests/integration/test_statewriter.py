"""Writes become commits in a real state repository (bare remote on disk; no Docker needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from reconciler.core.errors import InvalidState
from reconciler.core.model import EnvKey
from reconciler.gitops import changes
from reconciler.gitops.gitsource import Author, GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.world import acme_state_remote, git
from tests.unit.test_validation import REFUSED_AS_HOSTILE, REFUSED_BY_GIT

pytestmark = pytest.mark.integration
ANN = Author("Ann Integrator", "ann@acme.example")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = acme_state_remote(tmp_path)
    return bare


def writer(remote: Path, cache: Path) -> StateWriter:
    return StateWriter(GitSource(f"file://{remote}", cache))


def log(remote: Path, ref: str = "main") -> list[str]:
    return git("--git-dir", str(remote), "log", "--format=%an <%ae>|%s", ref).splitlines()


def test_a_write_is_a_commit_by_the_caller(remote: Path, tmp_path: Path) -> None:
    op = changes.Operation("create", EnvKey("acme", "demo"), {"branch": "release/v2"})
    result = writer(remote, tmp_path / "c").submit(op, ANN, request_id="req-1")
    assert not result.change_request and result.branch == "main"
    assert log(remote)[0] == "Ann Integrator <ann@acme.example>|feat(env): create acme/demo"
    body = git("--git-dir", str(remote), "log", "-1", "--format=%b", "main")
    assert "Request-Id: req-1" in body


def test_a_write_to_production_goes_to_a_change_request_branch(
    remote: Path, tmp_path: Path
) -> None:
    before = log(remote)
    op = changes.Operation("suspend", EnvKey("acme", "production"))
    result = writer(remote, tmp_path / "c").submit(op, ANN)
    assert result.change_request
    assert log(remote) == before  # main untouched
    assert log(remote, result.branch)[0].endswith("chore(env): suspend acme/production")


def test_an_invalid_write_commits_nothing(remote: Path, tmp_path: Path) -> None:
    before = log(remote)
    op = changes.Operation("update", EnvKey("acme", "qa"), {"colour": "blue"})
    with pytest.raises(InvalidState):
        writer(remote, tmp_path / "c").submit(op, ANN)
    assert log(remote) == before


def test_concurrent_patches_to_one_file_both_survive(remote: Path, tmp_path: Path) -> None:
    """Each attempt re-reads the head, so neither writer overwrites the other's edit."""
    key = EnvKey("acme", "qa")
    ops = [
        changes.Operation("update", key, {"overrides": {"workers": 3}}),
        changes.Operation("update", key, {"owner": "bob@acme.example"}),
    ]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            writer(remote, tmp_path / f"c{i}").submit(ops[i], ANN)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    doc = yaml.safe_load(git("--git-dir", str(remote), "show", "main:environments/acme/qa.yaml"))
    assert doc["overrides"] == {"workers": 3}
    assert doc["owner"] == "bob@acme.example"


def test_cli_env_create_and_list(remote: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ODOOOPS_AUTHOR": "Ann Integrator <ann@acme.example>",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }

    def odooops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    url = f"file://{remote}"
    created = odooops(
        "env",
        "create",
        "feature/crm-reports",
        "--branch=feature/crm-reports",
        "--tier",
        "dev",
        "--state-repo",
        url,
    )
    assert created.returncode == 0, created.stderr
    assert "committed" in created.stdout
    listed = odooops("env", "list", "--state-repo", url, "-o", "json")
    names = [row["environment"] for row in yaml.safe_load(listed.stdout)]
    assert "acme/feature-crm-reports" in names
    again = odooops("env", "create", "feature/crm-reports", "--branch=x", "--state-repo", url)
    assert again.returncode == 2
    assert "environment_exists" in again.stderr
    gone = odooops("destroy", "acme/nope", "--state-repo", url)
    assert gone.returncode == 2 and "odooops env list" in gone.stderr
    audit = odooops("audit", "--state-repo", url, "-o", "json")
    assert audit.returncode == 0, audit.stderr
    latest = yaml.safe_load(audit.stdout)[0]
    assert latest["author"] == "Ann Integrator <ann@acme.example>"
    assert latest["change"] == "feat(env): create acme/feature-crm-reports"
    assert latest["via"] == "cli" and latest["request_id"]
    protected = odooops("deploy", "acme/production", "--branch", "release/v9", "--state-repo", url)
    assert protected.returncode == 0 and "change-request" in protected.stdout
    [request] = yaml.safe_load(
        odooops("requests", "list", "--state-repo", url, "-o", "json").stdout
    )
    assert request["state"] == "open"
    own = odooops("requests", "approve", request["id"], "--state-repo", url)
    assert own.returncode == 2 and "cannot approve" in own.stderr
    completion = odooops("completion", "bash")
    assert completion.returncode == 0 and "requests" in completion.stdout


BOB = Author("Bob Reviewer", "bob@acme.example")


def test_change_request_needs_another_person_then_merges(remote: Path, tmp_path: Path) -> None:
    """Four eyes on production: the author cannot approve; an approved request merges."""
    from reconciler.gitops.changerequests import ChangeRequestRefused, ChangeRequests

    op = changes.Operation("update", EnvKey("acme", "production"), {"overrides": {"workers": 6}})
    result = writer(remote, tmp_path / "w").submit(op, ANN, request_id="cr1")
    crs = ChangeRequests(GitSource(f"file://{remote}", tmp_path / "r"))
    [cr] = crs.list()
    assert (cr.id, cr.state, cr.author) == ("cr1", "open", "Ann Integrator <ann@acme.example>")
    assert cr.files == ("environments/acme/production.yaml",)
    with pytest.raises(ChangeRequestRefused):
        crs.merge("cr1", BOB)  # not approved yet
    with pytest.raises(ChangeRequestRefused):
        crs.approve("cr1", ANN)  # the author
    assert crs.approve("cr1", BOB).approvals == ("Bob Reviewer <bob@acme.example>",)
    landed = crs.merge("cr1", BOB)
    assert git("--git-dir", str(remote), "rev-parse", "main") == landed
    doc = yaml.safe_load(
        git("--git-dir", str(remote), "show", "main:environments/acme/production.yaml")
    )
    assert doc["overrides"] == {"workers": 6}
    message = git("--git-dir", str(remote), "log", "-1", "--format=%an|%B", "main")
    assert message.startswith("Ann Integrator|chore(env): update acme/production")
    assert "Approved-By: Bob Reviewer <bob@acme.example>" in message
    assert crs.get("cr1").state == "merged"
    assert result.branch == "odooops/change-cr1"


def test_a_closed_change_request_cannot_merge(remote: Path, tmp_path: Path) -> None:
    from reconciler.gitops.changerequests import ChangeRequestRefused, ChangeRequests

    op = changes.Operation("suspend", EnvKey("acme", "production"))
    writer(remote, tmp_path / "w").submit(op, ANN, request_id="cr2")
    crs = ChangeRequests(GitSource(f"file://{remote}", tmp_path / "r"))
    crs.approve("cr2", BOB)
    assert crs.close("cr2", BOB).state == "closed"
    before = git("--git-dir", str(remote), "rev-parse", "main")
    with pytest.raises(ChangeRequestRefused):
        crs.merge("cr2", BOB)
    assert git("--git-dir", str(remote), "rev-parse", "main") == before


def test_rs256_tokens_minted_with_a_private_key_verify_with_the_public_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from reconciler.api.auth import AuthConfig, TokenAuthority

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.cli.main",
            "token",
            "create",
            "--subject",
            "ci-bot",
            "--scope",
            "deploy",
            "--jwt-public-key",
            str(public),
            "--jwt-private-key",
            str(private),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    verifier = TokenAuthority(AuthConfig(algorithm="RS256", public_key=public.read_bytes()))
    principal = verifier.verify(done.stdout.strip())
    assert (principal.subject, principal.has("deploy")) == ("ci-bot", True)


@pytest.mark.parametrize(
    "branch", [branch for branch, _ in REFUSED_BY_GIT], ids=[why for _, why in REFUSED_BY_GIT]
)
def test_git_itself_refuses_the_branches_validation_refuses_as_invalid(branch: str) -> None:
    """The table of test_validation.py is git's rule, not our guess at it."""
    checked = subprocess.run(
        ["git", "check-ref-format", "--branch", branch], capture_output=True, check=False
    )
    assert checked.returncode != 0, branch


@pytest.mark.parametrize("branch", ["main", "release/v2.1", "fix/ré-ça", "a@b", "HEADS", "x-"])
def test_git_accepts_the_branches_validation_accepts(branch: str) -> None:
    checked = subprocess.run(["git", "check-ref-format", "--branch", branch], check=False)
    assert checked.returncode == 0, branch


@pytest.mark.parametrize(
    "branch",
    [branch for branch, _ in REFUSED_AS_HOSTILE],
    ids=[why for _, why in REFUSED_AS_HOSTILE],
)
def test_a_write_with_a_hostile_branch_commits_nothing(
    remote: Path, tmp_path: Path, branch: str
) -> None:
    """The CLI's writes (``--state-repo``) validate the whole state, so they refuse it too."""
    before = log(remote)
    op = changes.Operation("create", EnvKey("acme", "demo"), {"branch": branch})
    with pytest.raises(InvalidState):
        writer(remote, tmp_path / "c").submit(op, ANN)
    assert log(remote) == before
