"""Writes become commits in a real state repository (bare remote on disk; no Docker needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    cr_id = result.change_request_id
    crs = ChangeRequests(GitSource(f"file://{remote}", tmp_path / "r"))
    [cr] = crs.list()
    assert (cr.id, cr.state, cr.author) == (cr_id, "open", "Ann Integrator <ann@acme.example>")
    assert cr.files == ("environments/acme/production.yaml",)
    with pytest.raises(ChangeRequestRefused):
        crs.merge(cr_id, BOB)  # not approved yet
    with pytest.raises(ChangeRequestRefused):
        crs.approve(cr_id, ANN)  # the author
    [approval] = crs.approve(cr_id, BOB).approvals
    assert (approval.by, approval.commit) == ("Bob Reviewer <bob@acme.example>", result.commit)
    landed = crs.merge(cr_id, BOB)
    assert git("--git-dir", str(remote), "rev-parse", "main") == landed
    doc = yaml.safe_load(
        git("--git-dir", str(remote), "show", "main:environments/acme/production.yaml")
    )
    assert doc["overrides"] == {"workers": 6}
    message = git("--git-dir", str(remote), "log", "-1", "--format=%an|%B", "main")
    assert message.startswith("Ann Integrator|chore(env): update acme/production")
    assert (
        f"Approved-By: Bob Reviewer <bob@acme.example> (subject <bob@acme.example>) "
        f"at {result.commit}" in message
    )
    assert crs.get(cr_id).state == "merged"
    assert result.branch == f"odooops/change-{cr_id}"


def test_a_closed_change_request_cannot_merge(remote: Path, tmp_path: Path) -> None:
    from reconciler.gitops.changerequests import ChangeRequestRefused, ChangeRequests

    op = changes.Operation("suspend", EnvKey("acme", "production"))
    cr_id = writer(remote, tmp_path / "w").submit(op, ANN).change_request_id
    crs = ChangeRequests(GitSource(f"file://{remote}", tmp_path / "r"))
    crs.approve(cr_id, BOB)
    assert crs.close(cr_id, BOB).state == "closed"
    before = git("--git-dir", str(remote), "rev-parse", "main")
    with pytest.raises(ChangeRequestRefused):
        crs.merge(cr_id, BOB)
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


# ------------------------------------------------------------------ change requests held by git

CAROL = Author("Carol Ops", "carol@acme.example")
PRODUCTION = EnvKey("acme", "production")


def workers(n: int) -> changes.Operation:
    return changes.Operation("update", PRODUCTION, {"overrides": {"workers": n}})


def rev(remote: Path, ref: str) -> str:
    return git("--git-dir", str(remote), "rev-parse", ref)


def requests_of(remote: Path, cache: Path) -> Any:
    from reconciler.gitops.changerequests import ChangeRequests

    return ChangeRequests(GitSource(f"file://{remote}", cache))


def test_the_server_names_change_requests_and_a_request_id_only_correlates(
    remote: Path, tmp_path: Path
) -> None:
    """Two writes with one client request id open two requests, neither named by it."""
    w = writer(remote, tmp_path / "w")
    first = w.submit(workers(6), ANN, subject="ann", request_id="r-1")
    second = w.submit(workers(8), CAROL, subject="carol", request_id="r-1")
    assert first.change_request_id != second.change_request_id
    assert "r-1" not in (first.change_request_id, second.change_request_id)
    assert first.branch == f"odooops/change-{first.change_request_id}"
    assert len(log(remote, f"main..{first.branch}")) == 1  # the second did not land there
    body = git("--git-dir", str(remote), "log", "-1", "--format=%B", first.branch)
    assert "Request-Id: r-1" in body
    assert "OdooOps-Subject: ann" in body
    assert f"Change-Request: {first.change_request_id}" in body


def test_only_the_owner_may_add_to_a_change_request(remote: Path, tmp_path: Path) -> None:
    from reconciler.gitops.changerequests import ChangeRequestRefused, UnknownChangeRequest

    w = writer(remote, tmp_path / "w")
    opened = w.submit(workers(6), ANN, subject="ann")
    before = rev(remote, opened.branch)
    for author, subject in ((CAROL, "carol"), (ANN, "ann-2"), (ANN, None)):
        with pytest.raises(ChangeRequestRefused) as info:
            w.submit(workers(64), author, subject=subject, change_request=opened.change_request_id)
        assert info.value.code == "forbidden" and info.value.remediation
    with pytest.raises(UnknownChangeRequest):
        w.submit(workers(64), ANN, subject="ann", change_request="nope")
    assert rev(remote, opened.branch) == before
    qa = changes.Operation("suspend", EnvKey("acme", "qa"))
    joined = w.submit(qa, ANN, subject="ann", change_request=opened.change_request_id)
    assert (joined.branch, joined.change_request_id) == (opened.branch, opened.change_request_id)
    assert joined.commit == rev(remote, opened.branch) and rev(remote, "main") != joined.commit


def test_a_change_after_approval_makes_it_stale_and_merge_refuses(
    remote: Path, tmp_path: Path
) -> None:
    from reconciler.gitops.changerequests import ChangeRequestRefused

    w = writer(remote, tmp_path / "w")
    cr_id = w.submit(workers(6), ANN, subject="ann").change_request_id
    crs = requests_of(remote, tmp_path / "r")
    crs.approve(cr_id, BOB, subject="bob")
    w.submit(workers(60), ANN, subject="ann", change_request=cr_id)
    cr = crs.get(cr_id)
    assert cr.approvals == () and len(cr.stale_approvals) == 1
    main = rev(remote, "main")
    with pytest.raises(ChangeRequestRefused) as info:
        crs.merge(cr_id, BOB, subject="bob")
    assert info.value.code == "approval_stale"
    assert f"odooops requests approve {cr_id}" in info.value.remediation
    assert rev(remote, "main") == main
    crs.approve(cr_id, BOB, subject="bob")
    crs.merge(cr_id, BOB, subject="bob")
    doc = yaml.safe_load(
        git("--git-dir", str(remote), "show", "main:environments/acme/production.yaml")
    )
    assert doc["overrides"] == {"workers": 60}


def test_four_eyes_compare_token_subjects_and_emails(remote: Path, tmp_path: Path) -> None:
    """An author cannot approve under another email (any admin mints any email), nor another
    subject with the author's email."""
    from reconciler.gitops.changerequests import ChangeRequestRefused

    cr_id = writer(remote, tmp_path / "w").submit(workers(6), ANN, subject="ann").change_request_id
    crs = requests_of(remote, tmp_path / "r")
    for who, subject in ((Author("Ann Alias", "alias@acme.example"), "ann"), (ANN, "not-ann")):
        with pytest.raises(ChangeRequestRefused):
            crs.approve(cr_id, who, subject=subject)
    [approval] = crs.approve(cr_id, BOB, subject="bob").approvals
    assert (approval.subject, approval.commit) == ("bob", crs.get(cr_id).last_change)
    trailer = git("--git-dir", str(remote), "log", "-1", "--format=%B", f"odooops/change-{cr_id}")
    assert f"Approved-By: Bob Reviewer <bob@acme.example> (subject bob) at {approval.commit}" in (
        trailer
    )


def test_merge_refuses_files_changed_by_a_commit_disguised_as_a_review(
    remote: Path, tmp_path: Path
) -> None:
    from reconciler.gitops.changerequests import ChangeRequestRefused
    from tests.integration.world import Checkout

    opened = writer(remote, tmp_path / "w").submit(workers(6), ANN, subject="ann")
    crs = requests_of(remote, tmp_path / "r")
    crs.approve(opened.change_request_id, BOB, subject="bob")
    Checkout(remote, tmp_path / "co").write(
        {"environments/acme/production.yaml": "branch: main\noverrides: {workers: 99}\n"},
        "chore(review): approve\n\nApproved-By: Bob Reviewer <bob@acme.example>",
        branch=opened.branch,
    )
    main = rev(remote, "main")
    with pytest.raises(ChangeRequestRefused) as info:
        crs.merge(opened.change_request_id, BOB, subject="bob")
    assert info.value.code == "approval_stale"
    assert rev(remote, "main") == main


def test_the_merge_credits_every_author_and_names_the_approved_commit(
    remote: Path, tmp_path: Path
) -> None:
    """A change pushed to the request by someone else (direct git access) is theirs too, and
    makes them an author who cannot approve."""
    from reconciler.gitops.changerequests import ChangeRequestRefused

    opened = writer(remote, tmp_path / "w").submit(workers(6), ANN, subject="ann")
    pushed = GitSource(f"file://{remote}", tmp_path / "g").commit_files(
        opened.branch,
        {"environments/acme/qa.yaml": b"branch: release/v2\n"},
        "feat(env): qa on release/v2",
        CAROL,
    )
    crs = requests_of(remote, tmp_path / "r")
    with pytest.raises(ChangeRequestRefused):
        crs.approve(opened.change_request_id, CAROL)
    crs.approve(opened.change_request_id, BOB, subject="bob")
    landed = crs.merge(opened.change_request_id, BOB, subject="bob")
    message = git("--git-dir", str(remote), "log", "-1", "--format=%an|%B", landed)
    assert message.startswith("Ann Integrator|")
    assert "Co-Authored-By: Carol Ops <carol@acme.example>" in message
    assert f"Approved-Commit: {pushed}" in message
    assert "Merged-By: Bob Reviewer <bob@acme.example> (subject bob)" in message


def test_cli_adds_to_its_own_request_with_request(remote: Path, tmp_path: Path) -> None:
    """--request ID joins a request the same git identity opened; another person is refused."""
    url = f"file://{remote}"

    def odooops(author: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ODOOOPS_AUTHOR": author, "XDG_CACHE_HOME": str(tmp_path / "c")}
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", *args, "--state-repo", url, "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ann, carol = "Ann Integrator <ann@acme.example>", "Carol Ops <carol@acme.example>"
    opened = odooops(ann, "env", "suspend", "acme/production")
    assert opened.returncode == 0, opened.stderr
    cr_id = json.loads(opened.stdout)["change_request_id"]
    pin = ("deploy", "acme/production", "--revision", "a" * 40, "--request", cr_id)
    other = odooops(carol, *pin)
    assert other.returncode == 2 and "only its owner" in other.stderr
    joined = odooops(ann, *pin)
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["branch"] == f"odooops/change-{cr_id}"


def test_cli_tokens_default_to_12h_stay_under_the_maximum_and_are_audited(tmp_path: Path) -> None:
    from reconciler.api.revocations import AUDIT_FILE

    def token(*args: str, data_dir: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        where = ("--data-dir", str(data_dir), "-o", "json")
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", "token", *args, *where],
            capture_output=True,
            text=True,
            timeout=60,
        )

    (tmp_path / "api.key").write_text("k" * 44)
    create = ("create", "--subject", "ann", "--scope", "env:read")
    too_long = token(*create, "--ttl", "31d")
    assert too_long.returncode == 2 and "invalid_token_request" in too_long.stderr
    assert token(*create, "--ttl", "31d", "--token-max-ttl", "60d").returncode == 0
    made = json.loads(token(*create).stdout)
    lifetime = datetime.fromisoformat(made["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=11) < lifetime <= timedelta(hours=12)
    events = [json.loads(x) for x in (tmp_path / AUDIT_FILE).read_text().splitlines()]
    assert [(e["event"], e["subject"], e["via"]) for e in events] == [("minted", "ann", "cli")] * 2
    assert events[-1]["jti"] == made["jti"]
    revoked = token("revoke", made["jti"], "--reason", "test")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["jti"] == made["jti"]
    nowhere = token("revoke", made["jti"], "--reason", "r", data_dir=tmp_path / "typo")
    assert nowhere.returncode == 2 and "reach no daemon" in nowhere.stderr
