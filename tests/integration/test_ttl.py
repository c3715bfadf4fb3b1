"""TTL of environments against a real state repository (a bare remote on disk, no Docker):
expiry written at creation, extended through the CLI and the API, and the sweeper's
commits with a fake clock (stamps, removals, a concurrent extension that wins, a removal
the state refuses, a read-only daemon, the sweeper killed at each of its boundaries)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from reconciler.api.app import create_app
from reconciler.api.auth import AuthConfig, TokenAuthority
from reconciler.core import durations
from reconciler.core.model import EnvKey
from reconciler.core.secretrefs import SecretPolicy
from reconciler.engine.ledger import Ledger
from reconciler.engine.status import EnvironmentStatus, StatusStore
from reconciler.engine.sweeper import Sweeper
from reconciler.gitops.gitsource import GitSource
from reconciler.gitops.statewriter import StateWriter
from tests.integration.test_api import Plane, bearer
from tests.integration.world import REPO_ROOT, Checkout, acme_state_remote, git

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
PAST = "2026-12-01T08:00:00Z"
FUTURE = "2026-12-19T10:00:00Z"


class Clock:
    """A fake clock the tests move by hand."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return acme_state_remote(
        tmp_path,
        {
            "production": "branch: main\n",
            "qa": "branch: release/v1\n",  # staging: permanent
            "old": f"branch: feature/old\nexpires: '{PAST}'\n",
            "dev": "branch: develop\n",  # dev, 14 days, written before expiries existed
            "next": f"branch: feature/next\nexpires: '{FUTURE}'\n",
        },
    )


def show(remote: Path, path: str, ref: str = "main") -> Any:
    return yaml.safe_load(git("--git-dir", str(remote), "show", f"{ref}:{path}"))


def exists(remote: Path, path: str) -> bool:
    listed = git("--git-dir", str(remote), "ls-tree", "--name-only", "main", path)
    return bool(listed.strip())


def log(remote: Path, n: int = 20) -> list[str]:
    return git(
        "--git-dir", str(remote), "log", f"-{n}", "--format=%an <%ae>|%s", "main"
    ).splitlines()


def sweeper(remote: Path, tmp_path: Path, clock: Clock, read_only: bool = False) -> Sweeper:
    return Sweeper(
        GitSource(f"file://{remote}", tmp_path / "mirror"),
        "main",
        SecretPolicy,
        Ledger(tmp_path / "data" / "ledger.db"),
        clock=clock,
        read_only=read_only,
    )


# ------------------------------------------------------------------------------ sweeper
def test_the_sweeper_removes_the_expired_and_stamps_the_rest_by_commits(
    remote: Path, tmp_path: Path
) -> None:
    clock = Clock()
    result = sweeper(remote, tmp_path, clock).sweep()
    assert result.removed == {EnvKey("acme", "old"): durations.parse_instant(PAST)}
    assert result.stamped == {EnvKey("acme", "dev"): T0 + timedelta(days=14)}
    assert len(result.commits) == 2
    assert log(remote, 2) == [
        "OdooOps <odooops@localhost>|chore(ttl): set the expiry of acme/dev "
        "(expires 2026-12-19T12:00:00Z)",
        f"OdooOps <odooops@localhost>|chore(ttl): remove expired acme/old (expired {PAST})",
    ]
    assert not exists(remote, "environments/acme/old.yaml")
    assert show(remote, "environments/acme/dev.yaml") == {
        "branch": "develop",
        "expires": "2026-12-19T12:00:00Z",
    }
    # permanent and unexpired files are left exactly as they were
    assert show(remote, "environments/acme/production.yaml") == {"branch": "main"}
    assert show(remote, "environments/acme/qa.yaml") == {"branch": "release/v1"}
    assert show(remote, "environments/acme/next.yaml")["expires"] == FUTURE


def test_a_stamped_environment_goes_only_once_its_new_expiry_is_past(
    remote: Path, tmp_path: Path
) -> None:
    clock = Clock()
    sweep = sweeper(remote, tmp_path, clock)
    sweep.sweep()
    clock.at = T0 + timedelta(days=13)
    assert sweep.sweep().commits == ()
    assert exists(remote, "environments/acme/dev.yaml")
    clock.at = T0 + timedelta(days=14)
    assert set(sweep.sweep().removed) == {EnvKey("acme", "dev"), EnvKey("acme", "next")}
    assert log(remote, 1) == [
        "OdooOps <odooops@localhost>|chore(ttl): remove 2 expired environments"
    ]
    body = git("--git-dir", str(remote), "log", "-1", "--format=%b", "main")
    assert "- acme/dev (expired 2026-12-19T12:00:00Z)" in body
    assert f"- acme/next (expired {FUTURE})" in body


def test_an_extension_that_lands_during_the_sweep_wins(remote: Path, tmp_path: Path) -> None:
    """The sweeper's push is overtaken by a user's extension: on the new head the
    environment has not expired, so it stays, and the user's commit is kept."""
    user = Checkout(remote, tmp_path / "user")
    clock = Clock()

    class Racing(GitSource):
        raced = False
        reads = 0

        def read_tree(self, commit: str, prefix: str = "") -> dict[str, bytes]:
            Racing.reads += 1
            if not Racing.raced:  # between the sweeper's read and its push
                Racing.raced = True
                user.write(
                    {"environments/acme/old.yaml": f"branch: feature/old\nexpires: '{FUTURE}'\n"},
                    "chore(ttl): extend acme/old by 18d",
                )
            return super().read_tree(commit, prefix)

    sweep = Sweeper(
        Racing(f"file://{remote}", tmp_path / "mirror"),
        "main",
        SecretPolicy,
        Ledger(tmp_path / "ledger.db"),
        clock=clock,
    )
    result = sweep.sweep()
    # the removal was built on the old head, refused at the push, built again on the new one
    # (then the stamp's commit read it once more)
    assert Racing.raced and Racing.reads == 3
    assert EnvKey("acme", "old") not in result.removed
    assert show(remote, "environments/acme/old.yaml")["expires"] == FUTURE
    assert "chore(ttl): extend acme/old by 18d" in [line.split("|")[1] for line in log(remote)]


def test_a_removal_the_state_refuses_is_left_and_the_others_go(
    remote: Path, tmp_path: Path
) -> None:
    """An expired environment another one copies its database from stays (the state would
    be invalid without it); the sweep goes on with the rest and tries it again later."""
    user = Checkout(remote, tmp_path / "user")
    user.write(
        {
            "environments/acme/src.yaml": f"branch: feature/src\nexpires: '{PAST}'\n",
            "environments/acme/copy.yaml": "branch: feature/copy\n"
            f"expires: '{FUTURE}'\ndb: {{source: src}}\n",
        },
        "a copy of an environment about to expire",
    )
    result = sweeper(remote, tmp_path, Clock()).sweep()
    assert set(result.removed) == {EnvKey("acme", "old")}
    assert set(result.refused) == {EnvKey("acme", "src")}
    assert "src" in result.refused[EnvKey("acme", "src")]
    assert exists(remote, "environments/acme/src.yaml")
    assert not exists(remote, "environments/acme/old.yaml")


def test_a_read_only_sweeper_only_reports(remote: Path, tmp_path: Path) -> None:
    before = log(remote)
    mirror = GitSource(f"file://{remote}", tmp_path / "seen")
    mirror.fetch()
    from reconciler.core.config import load_state

    seen = load_state(mirror.read_tree(mirror.resolve("main")), "seen")
    result = sweeper(remote, tmp_path, Clock(), read_only=True).sweep(seen)
    assert result.commits == () and result.due is not None
    assert set(result.due.remove) == {EnvKey("acme", "old")}
    assert log(remote) == before


def test_a_sweep_is_due_once_a_minute(remote: Path, tmp_path: Path) -> None:
    clock = Clock()
    sweep = sweeper(remote, tmp_path, clock)
    assert sweep.sweep_if_due(None) is not None
    clock.at += timedelta(seconds=59)
    assert sweep.sweep_if_due(None) is None
    clock.at += timedelta(seconds=1)
    assert sweep.sweep_if_due(None) is not None


_SWEEP = """
import sys
from datetime import datetime
from pathlib import Path
from reconciler.core.secretrefs import SecretPolicy
from reconciler.engine.ledger import Ledger
from reconciler.engine.sweeper import Sweeper
from reconciler.gitops.gitsource import GitSource

remote, data, at = sys.argv[1:4]
when = datetime.fromisoformat(at)
Sweeper(
    GitSource(remote, Path(data) / "git"), "main", SecretPolicy, Ledger(Path(data) / "ledger.db"),
    clock=lambda: when,
).sweep()
"""


def test_the_sweeper_killed_at_each_boundary_converges(tmp_path: Path) -> None:
    """Killed (SIGKILL) before, between and after its commits, then run again: the expired
    file is gone exactly once, the stamp is there once, nothing else changed."""
    points = 3
    for n in range(1, points + 1):
        root = tmp_path / f"kill-{n}"
        root.mkdir()
        remote = acme_state_remote(
            root,
            {
                "production": "branch: main\n",
                "old": f"branch: feature/old\nexpires: '{PAST}'\n",
                "dev": "branch: develop\n",
            },
        )

        def run(remote: Path = remote, root: Path = root, **env: str) -> Any:
            return subprocess.run(
                [sys.executable, "-c", _SWEEP, f"file://{remote}", str(root / "data"), str(T0)],
                env={**os.environ, **env},
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )

        killed = run(ODOOOPS_FAULT_KILL_AT=f"sweeper:{n}")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        again = run()
        assert again.returncode == 0, again.stderr
        subjects = [line.split("|")[1] for line in log(remote)]
        assert subjects.count(f"chore(ttl): remove expired acme/old (expired {PAST})") == 1
        assert sum(s.startswith("chore(ttl): set the expiry of acme/dev") for s in subjects) == 1
        assert not exists(remote, "environments/acme/old.yaml")
        assert show(remote, "environments/acme/dev.yaml")["expires"] == "2026-12-19T12:00:00Z"
        assert show(remote, "environments/acme/production.yaml") == {"branch": "main"}


# --------------------------------------------------------------------------------- API
@pytest.fixture
def api(remote: Path, tmp_path: Path) -> Iterator[tuple[TestClient, TokenAuthority, Plane]]:
    authority = TokenAuthority(AuthConfig(secret=b"k" * 32))
    plane = Plane(StateWriter(GitSource(f"file://{remote}", tmp_path / "cache")))
    yield TestClient(create_app(plane, authority, clock=Clock())), authority, plane


def test_create_through_the_api_writes_an_expiry_for_a_tier_with_a_ttl(
    api: tuple[TestClient, TokenAuthority, Plane], remote: Path
) -> None:
    client, authority, _ = api
    headers = bearer(authority, "env:write")
    for name, tier, expires in (
        ("acme/eph", "ephemeral", "2026-12-12T12:00:00Z"),
        ("acme/dev2", "dev", "2026-12-19T12:00:00Z"),
        ("acme/stage2", "staging", None),
    ):
        resp = client.post("/v1/environments", json={"name": name, "tier": tier}, headers=headers)
        assert resp.status_code == 202, resp.text
        doc = show(remote, f"environments/{name}.yaml")
        assert doc.get("expires") == expires, name


def test_extend_through_the_api_is_a_commit_authorised_like_deploy(
    api: tuple[TestClient, TokenAuthority, Plane], remote: Path
) -> None:
    client, authority, _ = api
    before = git("--git-dir", str(remote), "rev-parse", "main")
    refused = client.post(
        "/v1/environments/acme/next/extend",
        json={"ttl": "3d"},
        headers=bearer(authority, "env:write"),
    )
    assert refused.status_code == 403
    resp = client.post(
        "/v1/environments/acme/next/extend",
        json={"ttl": "3d"},
        headers=bearer(authority, "deploy"),
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["commit"] == git("--git-dir", str(remote), "rev-parse", "main") != before
    assert show(remote, "environments/acme/next.yaml")["expires"] == "2026-12-22T10:00:00Z"
    assert log(remote, 1) == [
        "Ann Integrator <ann@acme.example>|chore(ttl): extend acme/next by 3d"
    ]
    # an expired one (not swept yet) counts from now
    resp = client.post(
        "/v1/environments/acme/old/extend", json={"ttl": "1d"}, headers=bearer(authority, "deploy")
    )
    assert resp.status_code == 202, resp.text
    assert show(remote, "environments/acme/old.yaml")["expires"] == "2026-12-06T12:00:00Z"


@pytest.mark.parametrize(
    ("env", "ttl", "status", "code"),
    [
        ("production", "3d", 409, "not_expiring"),
        ("qa", "3d", 409, "not_expiring"),
        ("next", "3 days", 400, "invalid_request"),
        ("next", "0d", 400, "invalid_request"),
        ("next", "80d", 400, "ttl_too_long"),
        ("gone", "3d", 404, "unknown_environment"),
    ],
)
def test_an_extension_that_cannot_be_made_changes_nothing(
    api: tuple[TestClient, TokenAuthority, Plane],
    remote: Path,
    env: str,
    ttl: str,
    status: int,
    code: str,
) -> None:
    client, authority, _ = api
    before = git("--git-dir", str(remote), "rev-parse", "main")
    resp = client.post(
        f"/v1/environments/acme/{env}/extend",
        json={"ttl": ttl},
        headers=bearer(authority, "deploy"),
    )
    assert (resp.status_code, resp.json()["error"]) == (status, code), resp.text
    assert resp.json()["remediation"]
    assert git("--git-dir", str(remote), "rev-parse", "main") == before


def test_a_branch_made_environment_is_kept_by_a_push_not_an_extension(
    api: tuple[TestClient, TokenAuthority, Plane], remote: Path
) -> None:
    client, authority, plane = api
    plane.statuses()["acme/feature-crm"] = EnvironmentStatus("acme", "feature-crm")  # type: ignore[index]
    resp = client.post(
        "/v1/environments/acme/feature-crm/extend",
        json={"ttl": "3d"},
        headers=bearer(authority, "deploy"),
    )
    assert (resp.status_code, resp.json()["error"]) == (409, "not_expiring")
    assert "branch rule" in resp.json()["message"]


# --------------------------------------------------------------------------------- CLI
def odooops(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ODOOOPS_AUTHOR": "Ann Integrator <ann@acme.example>",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_create_extend_and_list_with_a_state_repo(remote: Path, tmp_path: Path) -> None:
    url = f"file://{remote}"
    start = datetime.now(UTC).replace(microsecond=0)
    created = odooops(
        tmp_path, "env", "create", "acme/eph", "--tier", "ephemeral", "--state-repo", url
    )
    assert created.returncode == 0, created.stderr
    expires = durations.parse_instant(show(remote, "environments/acme/eph.yaml")["expires"])
    assert start + timedelta(days=7) <= expires <= datetime.now(UTC) + timedelta(days=7)

    extended = odooops(
        tmp_path, "env", "extend", "acme/eph", "--ttl", "3d", "--state-repo", url, "-o", "json"
    )
    assert extended.returncode == 0, extended.stderr
    doc = json.loads(extended.stdout)
    assert doc["expires"] == durations.format_instant(expires + timedelta(days=3))
    assert show(remote, "environments/acme/eph.yaml")["expires"] == doc["expires"]

    listed = odooops(tmp_path, "env", "list", "--state-repo", url, "-o", "json")
    rows = {r["environment"]: r for r in json.loads(listed.stdout)}
    assert rows["acme/eph"]["expires"] == doc["expires"]
    assert rows["acme/production"]["expires"] is None
    table = odooops(tmp_path, "env", "list", "--state-repo", url)
    line = next(x for x in table.stdout.splitlines() if "acme/eph" in x)
    assert "expires in 9d 23h" in line or "expires in 10d" in line
    assert "expired" in next(x for x in table.stdout.splitlines() if "acme/old" in x)


@pytest.mark.parametrize(
    ("env", "ttl", "code"),
    [
        ("acme/production", "3d", "not_expiring"),
        ("acme/next", "100d", "ttl_too_long"),
        ("acme/next", "soon", "usage"),
    ],
)
def test_cli_extend_refusals_say_why_and_commit_nothing(
    remote: Path, tmp_path: Path, env: str, ttl: str, code: str
) -> None:
    before = git("--git-dir", str(remote), "rev-parse", "main")
    run = odooops(
        tmp_path,
        "env",
        "extend",
        env,
        "--ttl",
        ttl,
        "--state-repo",
        f"file://{remote}",
        "-o",
        "json",
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert json.loads(run.stderr)["error"] == code
    assert git("--git-dir", str(remote), "rev-parse", "main") == before


def test_status_shows_the_expiry_and_the_command_that_keeps_it(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    store = StatusStore(tmp_path / "data" / "status.json")
    for env, at in (
        ("soon", now + timedelta(hours=5, minutes=30)),
        ("later", now + timedelta(days=3)),
    ):
        store.put(f"acme/{env}", EnvironmentStatus("acme", env).with_expiry(f"acme/{env}", at, now))
    store.put("acme/prod", EnvironmentStatus("acme", "prod"))
    shown = odooops(tmp_path, "status", "--data-dir", str(tmp_path / "data"))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "expires in 5h" in next(x for x in lines if "acme/soon" in x and "│" in x)
    assert "expires in 2d 23h" in next(x for x in lines if "acme/later" in x and "│" in x)
    assert any(
        "acme/soon expiring" in x and "odooops env extend acme/soon --ttl 3d" in x for x in lines
    )
    as_json = json.loads(
        odooops(tmp_path, "status", "--data-dir", str(tmp_path / "data"), "-o", "json").stdout
    )
    assert as_json["environments"]["acme/prod"]["expires"] is None
    assert as_json["environments"]["acme/later"]["expires"] == durations.format_instant(
        now + timedelta(days=3)
    )
